"""First calls: compile (or load from cache) every code path of an implementation, timed.

One place for it, used by `run` (compile_s), `kernels` and the pytest-benchmark fixtures, so
no timing anywhere ever contains a JIT compile. Adaptive kernels pick a code path by size, so
the probes cover each: empty, batch 1 (a small W and one over L2, which numba-tiled streams),
small (serial), the book's layer, and a size large enough for the parallel and cache-blocked paths.
"""

from __future__ import annotations

import time
from typing import Any

from affbench.measure import threads
from affbench.verify import make_inputs

PROBES: tuple[tuple[int, int, int], ...] = ((0, 3, 2), (1, 16, 16), (1, 1024, 160), (16, 16, 16), (100, 784, 50),
                                            (256, 256, 256))


def first_calls(impl: Any, dtype: str, threads_: int | None = None, isolate: bool = True) -> float:
    """Run forward and backward on every probe, twice, on ``threads_`` threads (default: all)
    and then on one; return the seconds the first calls took beyond the second ones: the
    compile or cache-load time (0 when already compiled)."""
    backend = threads.backend_of(impl)
    # JAX's pool size is fixed for the process: compile with the count it has (threads_for
    # would refuse another)
    n = threads.planned_jax_threads() if backend == "jax" else (threads_ or threads.max_threads())
    total = 0.0
    prepare = getattr(impl, "prepare", None)
    if callable(prepare):  # importing a framework is no part of its first call
        prepare()
    # and on one thread: a kernel may take a path of its own there (numba-tiled's batch-1
    # stream without a parallel region), which a 1-thread case would otherwise compile
    counts = (n, 1) if n > 1 and backend != "jax" else (n,)
    for count in counts:
        with threads.threads_for(backend, count, isolate):
            for shape in PROBES:
                x, W, b, dout = make_inputs(*shape, dtype)
                times = []
                for _ in range(2):
                    t0 = time.perf_counter()
                    impl.forward(x, W, b)
                    impl.backward(x, W, dout)
                    times.append(time.perf_counter() - t0)
                total += max(0.0, times[0] - times[1])
    return total
