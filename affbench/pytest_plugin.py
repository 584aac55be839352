"""pytest-benchmark integration: thread settings, JIT warm-up, and what the saved JSON records.

``tests/benchmarks/conftest.py`` imports the hook and the fixtures from here (a
``pytest_plugins`` line is only allowed in the root conftest). A project that wants them
everywhere can instead load this module with ``-p affbench.pytest_plugin``.

What it adds to pytest-benchmark:

* ``pytest_benchmark_update_machine_info``: Numba and llvmlite versions, Numba's threading
  layer and thread count, the thread count of the session (``affbench_threads``), and the
  BLAS (and OpenMP) libraries as ``threadpoolctl.threadpool_info()`` reports them. These keys are read back by
  :mod:`affbench.store.pytest_import`, which names them as env.json does.
* ``pytest_benchmark_update_commit_info``: the pytest command line and the session start time
  (kept out of machine_info, whose every difference makes ``--benchmark-compare`` warn).
* ``affbench_threads`` (session fixture): the thread count, set once in process for the whole
  session, from ``AFFBENCH_THREADS`` or else Numba's pool size (``NUMBA_NUM_THREADS``);
  ``numba.set_num_threads`` and ``threadpoolctl.threadpool_limits`` (BLAS), both at that count.
* :func:`pools_for`: per case, the pool a kernel does not use is held at one thread (a Numba
  kernel runs with BLAS at 1, the BLAS kernel with Numba at 1, a peer with both at 1): on two
  cores an idle pool measurably slows the other (shared/FACTS.md). JAX starts with the
  session's count (``AFFBENCH_JAX_THREADS``, set by ``affbench_threads`` unless given): XLA
  cannot change it later.
* ``affbench_warm`` (session fixture): calls each implementation once per dtype before any
  timing, so JIT compile (or a cache load) never lands in pytest-benchmark's calibration;
  the seconds it took are kept per (implementation, dtype).
"""

from __future__ import annotations

import os
import shlex
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

import pytest

from affbench.engine import warmup
from affbench.measure import environment, malloc_env, pool_env, threads

THREADS_ENV = "AFFBENCH_THREADS"

#: What this session set and saw; the machine-info hook reports it (it runs at session end,
#: after the session fixtures are torn down, so it must not read the live settings).
_state: dict[str, Any] = {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


# --------------------------------------------------------------------------- threads
def requested_threads() -> int:
    """``AFFBENCH_THREADS`` if set (1 .. Numba's pool size), else Numba's pool size."""
    import numba

    limit = int(numba.config.NUMBA_NUM_THREADS)
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return limit
    try:
        n = int(raw)
    except ValueError:
        raise pytest.UsageError(f"{THREADS_ENV}={raw!r} is not an integer") from None
    if not 1 <= n <= limit:
        raise pytest.UsageError(
            f"{THREADS_ENV}={n} is outside 1..{limit} (Numba's pool size, NUMBA_NUM_THREADS at start-up)")
    return n


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A bad AFFBENCH_THREADS is one usage line before anything runs (raised in the session
    fixture, it was an error with a traceback for every selected benchmark)."""
    if any("affbench_threads" in getattr(item, "fixturenames", ()) for item in items):
        requested_threads()


@pytest.fixture(scope="session")
def affbench_threads() -> Iterator[int]:
    """Set Numba's and BLAS's thread counts for the whole session; yield the count."""
    import numba
    from threadpoolctl import threadpool_limits

    n = requested_threads()
    if threads.jax_threads() is None and not os.environ.get(threads.JAX_THREADS_ENV, "").strip():
        os.environ[threads.JAX_THREADS_ENV] = str(n)  # JAX, if it runs, starts with the session's count
    previous = numba.get_num_threads()
    numba.set_num_threads(n)  # also starts Numba's threading layer, so it can be recorded
    with threadpool_limits(limits=n, user_api="blas"):
        _state.update(threads=n, numba_num_threads=numba.get_num_threads(), blas_threads=threads.blas_threads(),
                      numba_threading_layer=environment.numba_threading_layer(), blas=environment.blas_libraries())
        try:
            yield n
        finally:
            numba.set_num_threads(previous)


@contextmanager
def pools_for(impl: object, threads_: int) -> Iterator[dict[str, int]]:
    """Within the body: the implementation's own pool at ``threads_``, the other at 1
    (affbench.measure.threads.threads_for). Yields the counts in effect."""
    with threads.threads_for(threads.backend_of(impl), threads_) as state:
        pools = {"numba_threads": state.numba_threads, "blas_threads": state.blas_threads}
        if state.peer_threads is not None:
            pools["peer_threads"] = state.peer_threads
        yield pools


# --------------------------------------------------------------------------- warm-up
@pytest.fixture(scope="session")
def affbench_warm(affbench_threads: int) -> Callable[[Any, str], float]:
    """``warm(impl, dtype)``: the first calls of forward and backward for this (implementation,
    dtype) in the session, on every probe size of affbench.engine.warmup (so adaptive kernels compile
    every code path before pytest-benchmark calibrates). Returns the compile or cache-load
    seconds, also on every later call."""
    done: dict[tuple[str, str], float] = {}

    def warm(impl: Any, dtype: str) -> float:
        key = (impl.name, str(dtype))
        if key not in done:
            done[key] = warmup.first_calls(impl, str(dtype), affbench_threads)
        return done[key]

    return warm


# --------------------------------------------------------------------------- hooks
def runtime_info() -> dict[str, Any]:
    """The Numba / llvmlite / BLAS facts that go into machine_info (also usable alone).

    pytest-benchmark asks for machine_info twice: at configure time for ``--benchmark-compare``
    (before any fixture ran) and when saving. Both answers must be equal, or every comparison
    warns that the machine differs; so the thread counts are the session's settings (recorded
    by ``affbench_threads`` once it ran, else the ones it will apply), and Numba's threading
    layer is started here if need be, so that it can be named.
    """
    import llvmlite
    import numba
    import numpy

    threads = _state.get("threads") or requested_threads()
    numba.get_num_threads()  # starts Numba's threading layer (the session does so anyway)
    blas_threads = _state.get("blas_threads", threads)
    libs = [dict(lib, num_threads=blas_threads) if lib.get("user_api") == "blas" else lib
            for lib in (_state.get("blas") or environment.blas_libraries())]
    return {
        "numpy": numpy.__version__,
        "numba": numba.__version__,
        "llvmlite": llvmlite.__version__,
        "numba_threading_layer": _state.get("numba_threading_layer") or environment.numba_threading_layer(),
        "numba_num_threads": _state.get("numba_num_threads", threads),
        "numba_pool_size": int(numba.config.NUMBA_NUM_THREADS),
        "affbench_threads": threads,
        "blas": libs,
        "blas_threads": blas_threads,
        "openblas_thread_timeout": pool_env.status(),
        "gomp_spincount": pool_env.gomp_status(),
        "malloc": malloc_env.status(),
        # versions only, and JAX's planned count (not whether it started: both answers must match)
        "peers": {**{k: v for k, v in environment.peers().items() if k in ("torch", "jax", "jaxlib")},
                  "jax_threads": _state.get("threads") or requested_threads()},
    }


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    machine_info.update(runtime_info())


def pytest_benchmark_update_commit_info(config: pytest.Config, commit_info: dict[str, Any]) -> None:
    args = [str(a) for a in config.invocation_params.args]
    commit_info["affbench_command"] = shlex.join(["python", "-m", "pytest", *args])
    commit_info["affbench_started_at"] = _state["started_at"]
