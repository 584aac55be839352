"""Setting and reading each backend's thread count: Numba, BLAS, PyTorch and JAX.

Numba's pool and OpenBLAS's pool contend for the same cores: alternating them in one
process slowed a 256³ np.dot about 3x on this 2-core machine (shared/FACTS.md). So each
case runs with the pool it does not use held at one thread: a Numba kernel runs with BLAS
limited to 1 and the BLAS kernel with Numba limited to 1. Counts are set with
``numba.set_num_threads`` and ``threadpoolctl.threadpool_limits`` (environment variables set
after import are ignored by both), and the counts actually in effect are read back.

The peers (docs/peers.md has the measurements):

* PyTorch: ``torch.set_num_threads`` per case. It sets ATen's OpenMP pool and the MKL it
  links statically (threadpoolctl cannot see that MKL; one busy thread per count was measured
  in a 1024³ ``torch.mm`` at 1 and 2). Numba and OpenBLAS are held at 1 while it runs.
* JAX: XLA sizes its CPU thread pool once, when JAX creates its CPU client, from the CPU
  affinity mask of the process at that moment. Neither ``XLA_FLAGS``
  (``--xla_cpu_multi_thread_eigen=false``, ``intra_op_parallelism_threads``) nor
  ``OMP_NUM_THREADS`` changed the CPU used by a 1024³ product in jaxlib 0.10.2, and nothing
  changes it later. So :func:`start_jax` narrows the affinity to the first N cores while the
  client is created and restores it at once (for the new threads too): the pool keeps N
  threads, free to run on any core. N is ``AFFBENCH_JAX_THREADS``, else every usable core; a
  case asking JAX for another count raises :class:`FixedThreadCount` (``run`` measures those
  cases in a child process started with that count).
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

BACKENDS = ("numba", "blas", "python", "torch", "jax")
#: Backends whose pool size is chosen in process (by the case) rather than at start-up.
PEER_BACKENDS = ("torch", "jax")
#: JAX's thread count for this process (and the worker processes it starts).
JAX_THREADS_ENV = "AFFBENCH_JAX_THREADS"


class FixedThreadCount(ValueError):
    """A case asks a backend for a thread count it cannot have in this process."""


@dataclass(frozen=True)
class ThreadState:
    numba_threads: int
    blas_threads: int
    #: the peer's own pool while a torch or JAX case runs (torch.get_num_threads(), or JAX's
    #: XLA pool size); None for the other backends
    peer_threads: int | None = None


def max_threads() -> int:
    """The most threads a case may ask for: Numba's pool size (it cannot grow after start)."""
    import numba

    return int(numba.config.NUMBA_NUM_THREADS)


def backend_of(impl: object) -> str:
    """Which thread pool an implementation runs on: 'numba', 'blas', 'python', 'torch' or 'jax'
    (an ``impl.backend`` naming one of them wins)."""
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
    """Run the body with ``threads`` threads for ``backend``; the other pools held at 1 when
    ``isolate`` (the default), else at the same count. JAX cannot change its count in process:
    asking it for another count than it started with raises FixedThreadCount."""
    import numba

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    limit = max_threads()
    if threads > limit:
        raise ValueError(f"threads={threads} is above Numba's pool size {limit} (NUMBA_NUM_THREADS at start-up)")
    if backend == "jax":
        require_jax_threads(threads)  # before touching any pool: a refused case changes nothing
    other = 1 if isolate else threads
    n_numba = threads if backend == "numba" else other
    n_blas = threads if backend == "blas" else other
    previous = numba.get_num_threads()
    numba.set_num_threads(n_numba)
    try:
        with controller().limit(limits=n_blas, user_api="blas"):
            if backend == "torch":
                with torch_threads(threads) as n:
                    yield ThreadState(numba.get_num_threads(), blas_threads(), n)
            else:
                peer = planned_jax_threads() if backend == "jax" else None  # JAX starts at its first call
                yield ThreadState(numba_threads=numba.get_num_threads(), blas_threads=blas_threads(),
                                  peer_threads=peer)
    finally:
        numba.set_num_threads(previous)


# --------------------------------------------------------------------------- PyTorch
@contextmanager
def torch_threads(threads: int) -> Iterator[int]:
    """``torch.set_num_threads(threads)`` for the body (restored after); yields the count read
    back. The intra-op pool only: inter-op threads run independent graph nodes, and a Linear's
    forward and backward are chains."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


# --------------------------------------------------------------------------- JAX
#: Set by start_jax: the pool size JAX was started with, and how it was set.
_jax_state: dict[str, Any] = {}


def planned_jax_threads() -> int:
    """The count JAX starts (or started) with in this process: AFFBENCH_JAX_THREADS, else every
    usable core. A bad value raises ValueError naming the variable."""
    if "threads" in _jax_state:
        return int(_jax_state["threads"])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    raw = os.environ.get(JAX_THREADS_ENV, "").strip()
    if not raw:
        return cores
    if not raw.isdigit() or not 1 <= int(raw) <= cores:
        raise ValueError(f"{JAX_THREADS_ENV}={raw!r}: expected a thread count from 1 to {cores} (usable cores)")
    return int(raw)


def jax_started_elsewhere() -> bool:
    """JAX's CPU client exists but start_jax did not make it (its pool size is not ours)."""
    if "threads" in _jax_state or "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        return bool(getattr(xla_bridge, "_backends", None))
    except Exception:  # noqa: BLE001 - a private attribute; if it moved, assume not started
        return False


def start_jax() -> Any:
    """Import JAX and create its CPU client with planned_jax_threads() threads (see the module
    doc); float64 enabled, so float64 inputs stay float64. Returns the jax module."""
    if "threads" in _jax_state:
        import jax

        return jax
    n = planned_jax_threads()
    if jax_started_elsewhere():
        raise FixedThreadCount("JAX was started before affbench could size its thread pool: "
                               f"import affbench and let it start JAX (count from {JAX_THREADS_ENV})")
    full = os.sched_getaffinity(0)
    before = set(os.listdir("/proc/self/task"))
    narrowed = n < len(full)
    if narrowed:
        os.sched_setaffinity(0, set(sorted(full)[:n]))
    try:
        import jax

        jax.config.update("jax_enable_x64", True)  # else float64 arrays are silently cast to float32
        jax.devices("cpu")  # creates the CPU client and its thread pool, sized from the affinity
    finally:
        if narrowed:
            os.sched_setaffinity(0, full)
            for tid in set(os.listdir("/proc/self/task")) - before:  # threads made meanwhile
                try:
                    os.sched_setaffinity(int(tid), full)
                except OSError:  # a thread that ended meanwhile
                    pass
    _jax_state.update(threads=n, how=(f"CPU affinity narrowed to {n} of {len(full)} cores while JAX created "
                                      "its CPU client, then restored" if narrowed else
                                      f"every usable core ({len(full)}): XLA's default"))
    os.environ[JAX_THREADS_ENV] = str(n)  # worker processes start JAX with the same count
    return jax


def jax_threads() -> int | None:
    """JAX's pool size in this process, once start_jax ran; None before."""
    return _jax_state.get("threads")


def jax_status() -> dict[str, Any]:
    """For env.json: the count and how it was set, or what it will be."""
    if "threads" in _jax_state:
        return {"threads": _jax_state["threads"], "how": _jax_state["how"], "started": True}
    try:
        return {"threads": planned_jax_threads(), "started": False}
    except ValueError as exc:
        return {"threads": None, "started": False, "error": str(exc)}


def require_jax_threads(threads: int) -> None:
    """Raise FixedThreadCount unless JAX runs (or will start) with ``threads`` threads."""
    have = planned_jax_threads()
    if threads != have:
        raise FixedThreadCount(
            f"JAX runs with {have} thread(s) in this process: XLA sizes its CPU pool once, when JAX starts "
            f"({JAX_THREADS_ENV}={threads} in a fresh process measures {threads})")


def thread_env_vars() -> dict[str, str]:
    """Thread-related environment variables, as recorded in env.json."""
    keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
            "NUMBA_THREADING_LAYER", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "GOMP_SPINCOUNT",
            "OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT", "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
            "XLA_FLAGS", JAX_THREADS_ENV)
    return {k: os.environ[k] for k in keys if k in os.environ}
