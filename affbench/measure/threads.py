"""Setting and reading Numba's and BLAS's thread counts, in process.

Numba's pool and OpenBLAS's pool contend for the same cores: alternating them in one
process slowed a 256³ np.dot about 3x on this 2-core machine (shared/FACTS.md). So each
case runs with the pool it does not use held at one thread: a Numba kernel runs with BLAS
limited to 1 and the BLAS kernel with Numba limited to 1. Counts are set with
``numba.set_num_threads`` and ``threadpoolctl.threadpool_limits`` (environment variables set
after import are ignored by both), and the counts actually in effect are read back.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

BACKENDS = ("numba", "blas", "python")


@dataclass(frozen=True)
class ThreadState:
    numba_threads: int
    blas_threads: int


def max_threads() -> int:
    """The most threads a case may ask for: Numba's pool size (it cannot grow after start)."""
    import numba

    return int(numba.config.NUMBA_NUM_THREADS)


def backend_of(impl: object) -> str:
    """Which thread pool an implementation runs on: 'numba', 'blas' or 'python'."""
    backend = getattr(impl, "backend", None)
    if backend in BACKENDS:
        return backend
    if getattr(impl, "jit", False):
        return "numba"
    return "blas" if getattr(impl, "name", "") == "numpy" else "python"


_controller = None


def controller():
    """One threadpoolctl controller for the process: building one inspects every loaded
    library (~2 ms); limiting through an existing one takes ~15 µs, cheap enough per sample."""
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


def blas_threads() -> int:
    """The BLAS pool size in effect now (read from the library, not remembered)."""
    counts = [lib.num_threads for lib in controller().lib_controllers if lib.user_api == "blas"]
    return max(counts) if counts else 1


@contextmanager
def threads_for(backend: str, threads: int, isolate: bool = True) -> Iterator[ThreadState]:
    """Run the body with ``threads`` threads for ``backend``; the other pool held at 1 when
    ``isolate`` (the default), else at the same count."""
    import numba

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    limit = max_threads()
    if threads > limit:
        raise ValueError(f"threads={threads} is above Numba's pool size {limit} (NUMBA_NUM_THREADS at start-up)")
    other = 1 if isolate else threads
    n_numba = threads if backend == "numba" else other
    n_blas = threads if backend == "blas" else other
    previous = numba.get_num_threads()
    numba.set_num_threads(n_numba)
    try:
        with controller().limit(limits=n_blas, user_api="blas"):
            yield ThreadState(numba_threads=numba.get_num_threads(), blas_threads=blas_threads())
    finally:
        numba.set_num_threads(previous)


def thread_env_vars() -> dict[str, str]:
    """Thread-related environment variables, as recorded in env.json."""
    keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
            "NUMBA_THREADING_LAYER", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "GOMP_SPINCOUNT",
            "OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT", "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
    return {k: os.environ[k] for k in keys if k in os.environ}
