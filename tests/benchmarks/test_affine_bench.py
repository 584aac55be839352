"""pytest-benchmark comparisons of every registered implementation on identical work.

One benchmark per implementation × pass (forward, backward, step = forward then backward)
× dtype × layer shape. Each pytest-benchmark *group* is one (pass, dtype, shape), so with
``--benchmark-group-by=group`` (the default in pyproject) each table ranks the
implementations on the same work. The implementations are read from the registry at
collection time, so a newly registered one (or a plug-in's) is included automatically.

* Kernels are called once per dtype before anything is timed (``affbench_warm``), so a JIT
  compile never lands in pytest-benchmark's calibration.
* The result of the timed calls is checked against the float64 reference with the tolerance
  of ``affbench.verify`` (normwise error over the |X||W| scale): a wrong kernel's benchmark
  fails, and its timings are left out of the saved JSON.
* Under ``--benchmark-disable`` (the regular test run) each function runs once, as a quick
  correctness test; the 1024³ cases are skipped there (seconds each for the loop kernels).
* ``extra_info`` carries impl, pass, dtype, N, K, M, threads, the pool sizes in effect,
  the first-call (compile) seconds, flops and, when timed, gflops from the median.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import pytest

from affbench import reference, registry, verify
from affbench.measure.threads import backend_of, planned_jax_threads
from affbench.pytest_plugin import pools_for

#: (N, K, M): the book's layer (batch 100, 784 -> 50), then square layers.
SHAPES: tuple[tuple[int, int, int], ...] = ((100, 784, 50), (256, 256, 256), (1024, 1024, 1024))
DTYPES = ("float32", "float64")
PASSES = reference.PASSES
#: Cases above this much work (N*K*M) run only when timing (--benchmark-enable).
DISABLED_MODE_MAX_WORK = 256**3
SKIP_UNTIMED = ("{N}x{K}x{M} runs only with --benchmark-enable: untimed it would just re-check "
                "correctness (covered at 256³) at seconds per loop kernel")


def _cases():
    for N, K, M in SHAPES:
        for dtype in DTYPES:
            for pass_ in PASSES:
                for name in registry.names():
                    if getattr(registry.get(name), "slow", False) and (N, K, M) != SHAPES[0]:
                        continue  # pure Python: the smallest shape only
                    group = f"{pass_} {dtype} N={N} K={K} M={M}"
                    yield pytest.param(name, pass_, dtype, N, K, M, id=f"{pass_}-{dtype}-{N}x{K}x{M}-{name}",
                                       marks=pytest.mark.benchmark(group=group))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Names of their own: tests/conftest.py has an ``impl`` fixture parametrized over impl_name.
    if "bench_impl" in metafunc.fixturenames:
        metafunc.parametrize("bench_impl,bench_pass,bench_dtype,N,K,M", list(_cases()))


@pytest.fixture(scope="session")
def affine_inputs():
    """``get(N, K, M, dtype)``: inputs, float64 reference results and error scales (cached)."""

    @functools.lru_cache(maxsize=2)  # cases run shape by shape, dtype by dtype
    def get(N: int, K: int, M: int, dtype: str) -> SimpleNamespace:
        x, W, b, dout = verify.make_inputs(N, K, M, dtype)
        ref = dict(zip(verify.QUANTITIES, (reference.forward(x, W, b), *reference.backward(x, W, dout))))
        return SimpleNamespace(x=x, W=W, b=b, dout=dout, ref=ref, scales=verify.error_scales(x, W, b, dout))

    return get


def _outputs(pass_: str, result) -> dict[str, object]:
    if pass_ == "forward":
        return {"y": result}
    if pass_ == "backward":
        got = tuple(result) if isinstance(result, tuple) else (result,)
        return dict(zip(("dx", "dW", "db"), got + (None,) * (3 - len(got))))
    y, grads = result
    return {"y": y, **_outputs("backward", grads)}


def _problems(pass_: str, result, data: SimpleNamespace, dtype: str) -> list[str]:
    """Why the timed result is wrong ([] when it agrees with the reference)."""
    problems = []
    for q, got in _outputs(pass_, result).items():
        ref = data.ref[q]
        if not isinstance(got, np.ndarray) or got.shape != ref.shape or got.dtype != np.dtype(dtype):
            desc = f"shape {got.shape} dtype {got.dtype}" if isinstance(got, np.ndarray) else type(got).__name__
            problems.append(f"{q}: got {desc}, expected shape {ref.shape} dtype {dtype}")
            continue
        scale, n = data.scales[q]
        err, tol = verify.normwise_error(got, ref, scale), verify.tolerance(dtype, n)
        if not err <= tol:
            problems.append(f"{q}: normwise error {err:.3g} > tolerance {tol:.3g}")
    return problems


def test_affine(benchmark, affbench_threads, affbench_warm, affine_inputs, bench_impl, bench_pass, bench_dtype,
                N, K, M):
    impl, pass_, dtype = bench_impl, bench_pass, bench_dtype
    if benchmark.disabled and N * K * M > DISABLED_MODE_MAX_WORK:
        pytest.skip(SKIP_UNTIMED.format(N=N, K=K, M=M))
    kernel = registry.get(impl)
    if backend_of(kernel) == "jax" and planned_jax_threads() != affbench_threads:
        # XLA sizes its pool once per process (affbench/measure/threads.py): JAX started earlier in
        # this session with another count cannot be timed at this one
        pytest.skip(f"JAX runs with {planned_jax_threads()} thread(s) in this session, not {affbench_threads}: "
                    f"AFFBENCH_JAX_THREADS={affbench_threads} in a fresh session measures that count")
    compile_s = affbench_warm(kernel, dtype)
    data = affine_inputs(N, K, M, dtype)
    # The kernel gets its own copies, compared afterwards: inputs must come back unchanged.
    x, W, b, dout = (a.copy() for a in (data.x, data.W, data.b, data.dout))
    flops = reference.flops(pass_, N, K, M)
    benchmark.extra_info.update({"impl": impl, "pass": pass_}, dtype=dtype, N=N, K=K, M=M, threads=affbench_threads,
                                compile_s=compile_s, flops=flops)

    def step():
        return kernel.forward(x, W, b), kernel.backward(x, W, dout)

    with pools_for(kernel, affbench_threads) as pools:
        benchmark.extra_info.update(pools)
        if pass_ == "forward":
            result = benchmark(kernel.forward, x, W, b)
        elif pass_ == "backward":
            result = benchmark(kernel.backward, x, W, dout)
        else:
            result = benchmark(step)

    problems = _problems(pass_, result, data, dtype)
    if not all(np.array_equal(a, o) for a, o in zip((x, W, b, dout), (data.x, data.W, data.b, data.dout))):
        problems.append("an input was modified")
    if problems:
        benchmark.has_error = True  # keep a wrong kernel's timings out of the saved JSON
        pytest.fail(f"{impl} {pass_} {dtype} N={N} K={K} M={M} disagrees with the float64 reference: "
                    + "; ".join(problems), pytrace=False)
    if benchmark.stats:  # None under --benchmark-disable
        median = benchmark.stats.stats.median
        benchmark.extra_info["gflops"] = flops / median / 1e9 if median > 0 else None
