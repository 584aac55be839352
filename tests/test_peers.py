"""The peers (implementations/torch_peer.py, jax_peer.py): with the extra installed, and without.

Without the extra (simulated here by hiding the packages: ``sys.modules[name] = None`` and
declaring the peers again), ``list`` says so with the install command, ``verify`` and ``run``
skip them with that message, and nothing fails. With it: they verify on every shape and dtype,
keep the protocol's contract (inputs untouched, results the caller owns, bad input refused
before any framework call), their thread pools are set as affbench/measure/threads.py says, and a run
including them reports them, JAX at two thread counts included.

Tests that need a peer skip when it is not installed, unless AFFBENCH_REQUIRE_PEERS=1 (CI sets
it: there a missing extra is a failure, not a skip).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from affbench import cli, registry
from affbench.measure import threads
from affbench.store import results
from affbench.verify import make_inputs, verify

PEERS = ("torch", "torch-ops", "jax")
REQUIRE = os.environ.get("AFFBENCH_REQUIRE_PEERS") == "1"
TWO_CORES = threads.max_threads() >= 2


def need(name: str) -> None:
    """Skip (or fail under AFFBENCH_REQUIRE_PEERS=1) when ``name`` is not installed here."""
    missing = registry.unavailable().get(name)
    if missing is not None:
        if REQUIRE:
            pytest.fail(f"AFFBENCH_REQUIRE_PEERS=1 but {missing.message}")
        pytest.skip(missing.message)


# --------------------------------------------------------------------------- not installed
@pytest.fixture
def peers_hidden(monkeypatch):
    """torch, jax and jaxlib made unimportable, the peers declared again; restored afterwards."""
    for module in ("torch", "jax", "jaxlib"):
        monkeypatch.setitem(sys.modules, module, None)
    registry.reload()
    yield
    monkeypatch.undo()
    registry.reload()


def test_register_optional_declares_what_cannot_be_imported():
    from affbench.protocol import KernelImpl

    class Needy(KernelImpl):
        name = "needs-a-missing-module"

    try:
        assert registry.register_optional(Needy(), requires=("numpy", "affbench_no_such_module"),
                                          install="pip install it") is None
        assert "needs-a-missing-module" not in registry.names()
        info = registry.unavailable()["needs-a-missing-module"]
        assert "affbench_no_such_module" in info.reason and info.install == "pip install it"
        impl = registry.register_optional(Needy(), requires=("numpy",), install="pip install it")
        assert registry.get("needs-a-missing-module") is impl and "needs-a-missing-module" not in registry.unavailable()
        assert registry.register_optional(Needy(), requires=("numpy",), install="-") is impl  # declared again: kept
    finally:
        registry.unregister("needs-a-missing-module")
    assert "needs-a-missing-module" not in registry.unavailable()


def test_hidden_peers_are_declared_not_registered(peers_hidden):
    for name in PEERS:
        assert name not in registry.names()
        info = registry.unavailable()[name]
        assert info.install == 'python -m pip install -e ".[peers]"'
        with pytest.raises(registry.NotInstalled) as exc:
            registry.get(name)
        assert isinstance(exc.value, KeyError)
        assert str(exc.value) == info.message and "not installed" in info.message and info.install in info.message
    assert registry.unavailable()["jax"].reason.startswith(("No module named", "ValueError", "ImportError"))


def test_peers_come_back_when_installed(peers_hidden, monkeypatch):
    monkeypatch.undo()  # the packages are importable again (if installed at all)
    registry.reload()
    for name in PEERS:
        assert (name in registry.names()) != (name in registry.unavailable())


def test_list_names_the_missing_peers_with_the_install_command(peers_hidden, capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    missing = out.split("not installed")[1].split("presets")[0]
    for name in PEERS:
        assert f"  {name} " in missing
    assert missing.count('install with: python -m pip install -e ".[peers]"') == len(PEERS)
    assert "numba-tiled" in out.split("not installed")[0]


def test_verify_skips_missing_peers_with_the_message(peers_hidden, capsys):
    assert cli.main(["verify", "--impl", "torch,jax"]) == 0
    err = capsys.readouterr().err
    assert "skipped torch: not installed" in err and "skipped jax: not installed" in err
    assert "[peers]" in err
    assert cli.main(["verify", "--impl", "numpy,torch", "--dtype", "float64"]) == 0
    captured = capsys.readouterr()
    assert "skipped torch" in captured.err and "numpy" in captured.out and "all checks passed" in captured.out


def test_run_skips_missing_peers_and_runs_the_rest(peers_hidden, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["run", "--impl", "numpy,torch,jax", "--batch", "2", "--layer", "8:4", "--pass", "forward",
            "--dtype", "float64", "--threads", "1", "--budget", "0.01", "--rounds", "1", "--out", str(out),
            "--no-report", "--no-progress", "--no-workers"]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "skipped torch: not installed" in err and "skipped jax: not installed" in err
    rows = results.read_rows(out).rows
    assert {r["impl"] for r in rows} == {"numpy"} and all(r["status"] == "ok" for r in rows)
    env = results.read_env(out)
    assert set(env["not_installed"]) == {"torch", "jax"}
    assert env["peers"]["torch"] is None or isinstance(env["peers"]["torch"], str)  # metadata, not an import
    # only missing peers asked for: nothing to do, and no failure
    assert cli.main(["run", "--impl", "torch", "--out", str(tmp_path / "none")]) == 0
    assert "nothing to run" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


# --------------------------------------------------------------------------- correctness
@pytest.mark.parametrize("name", PEERS)
def test_peer_verifies_on_every_shape_and_dtype(name):
    need(name)
    report = verify([name])
    assert report.ok, [f"{c.dtype} {c.case} {c.quantity}: {c.detail or c.error}" for c in report.failures()]
    assert {c.dtype for c in report.checks} == {"float32", "float64"}
    assert len({c.case for c in report.checks}) >= 17  # every shape, layout, exact and N-d case


@pytest.mark.parametrize("name", PEERS)
def test_results_are_owned_by_the_caller(name):
    """New, writable NumPy arrays of the input dtype, sharing memory with nothing: writing into one
    changes no input and no later result."""
    need(name)
    impl = registry.get(name)
    for dtype in ("float32", "float64"):
        x, W, b, dout = make_inputs(5, 7, 3, dtype, seed=4)
        kept = [a.copy() for a in (x, W, b, dout)]
        y = impl.forward(x, W, b)
        grads = impl.backward(x, W, dout)
        outs = [y, *grads]
        for a in outs:
            assert type(a) is np.ndarray and a.dtype == np.dtype(dtype) and a.flags.writeable
            for src in (x, W, b, dout):
                assert not np.shares_memory(a, src)
        for i, a in enumerate(outs):
            for other in outs[i + 1:]:
                assert not np.shares_memory(a, other)
        expected = [a.copy() for a in outs]
        for a in outs:
            a[...] = 7.0  # the caller's to scribble on
        for a, k in zip((x, W, b, dout), kept):
            np.testing.assert_array_equal(a, k)
        again = [impl.forward(x, W, b), *impl.backward(x, W, dout)]
        for got, want in zip(again, expected):
            np.testing.assert_array_equal(got, want)


def test_torch_backward_follows_the_arrays_not_a_stale_graph():
    """torch keeps the last forward's graph for the backward of the same x and W. The graph
    saves x and W by reference (from_numpy), so a backward sees their values now, as the
    stateless protocol demands; other arrays get a graph of their own."""
    need("torch")
    impl = registry.get("torch")
    x, W, b, dout = make_inputs(6, 5, 4, "float64", seed=8)
    impl.forward(x, W, b)
    x *= 2.0  # in place, between forward and backward (the book's gradient check does this to W)
    W += 1.0
    dx, dW, db = impl.backward(x, W, dout)
    np.testing.assert_allclose(dx, dout @ W.T, rtol=1e-13)
    np.testing.assert_allclose(dW, x.T @ dout, rtol=1e-13)
    np.testing.assert_allclose(db, dout.sum(0), rtol=1e-13)
    x2, W2, _, dout2 = make_inputs(3, 5, 2, "float64", seed=9)  # no forward of these: graph built here
    dx2, dW2, db2 = impl.backward(x2, W2, dout2)
    np.testing.assert_allclose(dx2, dout2 @ W2.T, rtol=1e-13)
    np.testing.assert_allclose(dW2, x2.T @ dout2, rtol=1e-13)
    first = impl.backward(x, W, dout)  # the retained graph serves backward after backward
    np.testing.assert_allclose(first[1], impl.backward(x, W, dout)[1], rtol=0)


@pytest.mark.parametrize("name", PEERS)
def test_negative_strides_on_a_length_one_axis(name):
    """NumPy calls x[::-1] of one row C-contiguous, with a negative stride that
    torch.from_numpy refuses (found by the fuzz tests): it must be computed, not refused, and
    torch's kept graph must still see later in-place changes."""
    need(name)
    impl = registry.get(name)
    for dtype in ("float32", "float64"):
        x0, W, b, dout = make_inputs(1, 6, 3, dtype, seed=5)
        x = x0[::-1]
        assert x.flags.c_contiguous and x.strides[0] < 0
        tol = dict(rtol=1e-5) if dtype == "float32" else dict(rtol=1e-12)
        np.testing.assert_allclose(impl.forward(x, W, b), x0 @ W + b, **tol)
        x0 *= 3.0  # x is a view of x0: the backward must use the new values
        dx, dW, db = impl.backward(x, W, dout)
        np.testing.assert_allclose(dW, x0.T @ dout, **tol)
        np.testing.assert_allclose(dx, dout @ W.T, **tol)


@pytest.mark.parametrize("name", PEERS)
def test_bad_input_is_refused_before_any_framework_call(name, monkeypatch):
    need(name)
    impl = registry.get(name)
    from implementations import torch_peer

    def no_framework(*args, **kwargs):
        raise AssertionError("a framework was called with unchecked input")

    monkeypatch.setattr(torch_peer, "_import_torch", no_framework)
    monkeypatch.setattr(impl, "_compiled", no_framework, raising=False)
    x, W, b, dout = make_inputs(4, 3, 2, "float32")
    with pytest.raises(ValueError, match=r"\bx and W do not chain"):
        impl.forward(x, W.T.copy(), b)
    with pytest.raises(TypeError, match=r"\bW\b.*float16|\bW has dtype float16"):
        impl.forward(x, W.astype(np.float16), b)
    with pytest.raises(TypeError, match="one dtype"):
        impl.backward(x, W.astype(np.float64), dout)
    with pytest.raises(ValueError, match=r"\bdout has shape"):
        impl.backward(x, W, dout.T.copy())
    with pytest.raises(TypeError, match=r"\bb must be a numpy.ndarray"):
        impl.forward(x, W, [0.0, 0.0])


# --------------------------------------------------------------------------- threads
def test_torch_threads_are_set_per_case_with_the_other_pools_at_one():
    need("torch")
    import numba
    import torch

    impl = registry.get("torch")
    assert threads.backend_of(impl) == "torch" and threads.backend_of(registry.get("torch-ops")) == "torch"
    before = torch.get_num_threads()
    for n in ((1, 2) if TWO_CORES else (1,)):
        with threads.threads_for("torch", n) as state:
            assert torch.get_num_threads() == n == state.peer_threads
            assert numba.get_num_threads() == 1 == state.numba_threads
            assert threads.blas_threads() == 1 == state.blas_threads
    assert torch.get_num_threads() == before
    with threads.threads_for("numba", 1) as state:
        assert state.peer_threads is None


_JAX_PROBE = textwrap.dedent("""
    import json, os, sys, time
    import affbench, numpy as np
    from affbench.measure import threads
    jax = threads.start_jax()
    import jax.numpy as jnp
    a = jnp.asarray(np.random.default_rng(0).standard_normal((768, 768)))
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    t0, c0 = time.perf_counter(), sum(os.times()[:2])
    while time.perf_counter() - t0 < 0.6:
        f(a).block_until_ready()
    cores = (sum(os.times()[:2]) - c0) / (time.perf_counter() - t0)
    masks = {len(os.sched_getaffinity(int(t))) for t in os.listdir("/proc/self/task")}
    try:
        threads.require_jax_threads(threads.jax_threads() % 2 + 1)
        refused = False
    except threads.FixedThreadCount:
        refused = True
    print(json.dumps({"threads": threads.jax_threads(), "env": os.environ[threads.JAX_THREADS_ENV],
                      "cores_used": cores, "masks": sorted(masks), "usable": len(os.sched_getaffinity(0)),
                      "refused_other_count": refused, "x64": str(jnp.zeros(1, jnp.float64).dtype)}))
""")


def _jax_probe(count: str | None) -> dict:
    env = dict(os.environ)
    env.pop(threads.JAX_THREADS_ENV, None)
    if count is not None:
        env[threads.JAX_THREADS_ENV] = count
    proc = subprocess.run([sys.executable, "-c", _JAX_PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_jax_pool_is_sized_once_at_start_from_the_affinity():
    """AFFBENCH_JAX_THREADS=1: XLA's pool gets one thread, so a 768² product loop uses one core
    of CPU time at most (CPU time, not wall time: a busy machine can only lower it); every
    thread's affinity is the full mask again; another count is refused."""
    need("jax")
    one = _jax_probe("1")
    assert one["threads"] == 1 and one["env"] == "1"
    assert one["cores_used"] < 1.3, one
    assert one["masks"] == [one["usable"]], "a thread kept the narrowed affinity"
    assert one["refused_other_count"] and one["x64"] == "float64"
    default = _jax_probe(None)
    assert default["threads"] == default["usable"] and default["masks"] == [default["usable"]]


def test_jax_threads_variable_is_checked(monkeypatch):
    monkeypatch.setattr(threads, "_jax_state", {})  # as before JAX starts (only the planning is called)
    for bad in ("0", "two", "99999"):
        monkeypatch.setenv(threads.JAX_THREADS_ENV, bad)
        with pytest.raises(ValueError, match=threads.JAX_THREADS_ENV):
            threads.planned_jax_threads()
    monkeypatch.setenv(threads.JAX_THREADS_ENV, "1")
    assert threads.planned_jax_threads() == 1
    with pytest.raises(threads.FixedThreadCount, match="XLA sizes its CPU pool once"):
        threads.require_jax_threads(2)


# --------------------------------------------------------------------------- a run with them
@pytest.mark.slow
def test_run_with_the_peers_reports_them_everywhere(tmp_path):
    """numpy and the three peers at 1 and 2 threads, both dtypes: every peer case measured (JAX
    at its second count in a child process, paired there with numpy), peer_threads recorded,
    and the report gives each peer its heatmap and its place in the figures and tables."""
    for name in PEERS:
        need(name)
    if not TWO_CORES:
        pytest.skip("needs two cores for two thread counts")
    out = tmp_path / "run"
    env = dict(os.environ)
    env.pop(threads.JAX_THREADS_ENV, None)
    proc = subprocess.run(
        [sys.executable, "-m", "affbench", "run", "--impl", "numpy,torch,torch-ops,jax", "--batch", "1,8",
         "--layer", "16:8", "--pass", "step", "--threads", "1,2", "--budget", "0.02", "--rounds", "2",
         "--out", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "child run with AFFBENCH_JAX_THREADS=1" in proc.stderr
    rows = results.read_rows(out).rows
    assert len(rows) == 4 * 2 * 2 * 2 and {r["status"] for r in rows} == {"ok"}, \
        [(r["case_id"], r["status"], r["error"]) for r in rows if r["status"] != "ok"]
    for r in rows:
        if r["impl"] == "numpy":
            assert r["peer_threads"] is None and r["blas_threads"] == r["threads"]
        else:
            assert r["peer_threads"] == r["threads"], r
            assert r["numba_threads"] == 1 and r["blas_threads"] == 1
            assert r["ratio"] > 0 and r["peak_mem_bytes"] is None  # tracemalloc cannot see their allocators
    jax_rows = [r for r in rows if r["impl"] == "jax"]
    assert {r["threads"] for r in jax_rows} == {1, 2} and all(r["compile_s"] > 0 for r in jax_rows)
    assert all(r["compile_s"] is not None for r in rows if r["impl"] == "torch")
    peers_env = results.read_env(out)["peers"]
    assert peers_env["jax_threads"]["threads"] == 2 and set(peers_env["jax_threads"]["counts"]) == {"1", "2"}
    assert peers_env["torch"] and peers_env["jax"] and peers_env["not_installed"] == {}
    assert not any(p.name.startswith(".jax-threads") for p in out.iterdir()), "the child's scratch was left"
    figures = {p.name for p in (out / "figures").iterdir()}
    for name in PEERS:
        assert f"speedup_heatmap_{name}.png" in figures
    assert {"time_vs_batch_step.png", "gflops_vs_size.png", "thread_scaling.png", "compile_times.png"} <= figures
    md = (out / "report.md").read_text()
    scaling = md.split("## Thread scaling")[1].split("## Compile times")[0]
    compile_ = md.split("## Compile times")[1].split("##")[0]
    for name in PEERS:
        assert f"| {name} |" in scaling
    assert "| jax |" in compile_ and "| torch |" in compile_
    assert "JAX threads" in md and "2 in the main process" in md
