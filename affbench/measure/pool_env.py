"""Settings the two thread pools read once, when they load: made at import, before either loads.

Both pools keep their idle workers spinning for a while after each call, and on 2 cores a
spinning worker takes a core from whichever kernel runs next:

- OpenBLAS's workers busy-wait about 2**28 cycles (~0.1 s). Measured here: numba-tiled's 1024²
  forward on 2 threads took 64 ms right after a 2-thread np.dot and 29 ms on its own.
  ``OPENBLAS_THREAD_TIMEOUT=20`` (2**20 cycles, ~0.4 ms) puts them to sleep first. OpenBLAS
  reads it when NumPy loads it.
- GNU OpenMP's workers (Numba's ``omp`` threading layer) spin ``GOMP_SPINCOUNT`` = 300,000
  rounds, measured as ~9 ms of a core burnt after each parallel region; NumPy's 2-thread
  book-layer step sampled right after numba-tiled's took 585 us against 409 us with
  ``GOMP_SPINCOUNT=10000`` (~0.35 ms of spinning, measured the same way). libgomp reads it
  when Numba first starts its pool (the first parallel call).

Short waits keep back-to-back calls of one kernel (within a sample) fast: its workers are
still awake. Values the user set are kept (and an OMP_WAIT_POLICY the user set is left to
decide: libgomp would let GOMP_SPINCOUNT override it); env.json records each value, who set
it, and whether it came in time to take effect. Sleeping pools are woken by the untimed priming call before each
short sample (affbench.measure.timing).
"""

from __future__ import annotations

import os
import sys
import warnings

OPENBLAS_THREAD_TIMEOUT = "20"
GOMP_SPINCOUNT = "10000"

#: numpy was imported before affbench could set the timeout: OpenBLAS never saw it.
numpy_imported_first = "numpy" in sys.modules
#: what the user set before affbench was imported (kept, and in effect whatever the order)
user_openblas = "OPENBLAS_THREAD_TIMEOUT" in os.environ
user_gomp = "GOMP_SPINCOUNT" in os.environ
#: libgomp lets a set GOMP_SPINCOUNT override OMP_WAIT_POLICY, so a wait policy the user chose
#: (passive: no spinning; active: spin for good) leaves GOMP_SPINCOUNT unset
user_wait_policy = os.environ.get("OMP_WAIT_POLICY")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", OPENBLAS_THREAD_TIMEOUT)
if not user_gomp and user_wait_policy is None:
    os.environ["GOMP_SPINCOUNT"] = GOMP_SPINCOUNT


def _read_maps() -> str | None:
    try:
        with open("/proc/self/maps") as fh:
            return fh.read().lower()
    except OSError:
        return None


_maps = _read_maps()  # read once, at import: what is mapped before affbench could act


def _mapped(name: str) -> bool | None:
    """A shared library whose path contains ``name`` was mapped into this process when affbench
    was imported (None: cannot tell)."""
    return None if _maps is None else name in _maps


if numpy_imported_first and not user_openblas and _mapped("openblas") is not False:
    # said at import, not only in a run's env.json: a script timing kernels itself gets every
    # Numba time after a NumPy call inflated (a session lost an hour to it: 2-5x here). Not said
    # when NumPy's BLAS is not OpenBLAS (MKL, Accelerate), which this setting does not concern.
    warnings.warn("numpy was imported before affbench, so OpenBLAS loaded without OPENBLAS_THREAD_TIMEOUT: "
                  "its idle workers spin ~0.1 s after each call, into whatever kernel runs next. "
                  "Import affbench before numpy, or set OPENBLAS_THREAD_TIMEOUT=20 before Python starts.",
                  RuntimeWarning, stacklevel=3)  # 3: the line of the user's own `import affbench`


def _libgomp_loaded() -> bool:
    """libgomp is mapped already (Numba ran a parallel function before affbench was imported)."""
    return bool(_mapped("libgomp"))


gomp_loaded_first = _libgomp_loaded()


def status() -> dict[str, object]:
    """OPENBLAS_THREAD_TIMEOUT as env.json records it (key ``openblas_thread_timeout``).

    in_effect: OpenBLAS read the value (set before the process started, or by affbench before
    NumPy loaded OpenBLAS); set_by: "user" or "affbench"."""
    return {"value": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
            "in_effect": user_openblas or not numpy_imported_first,
            "set_by": "user" if user_openblas else "affbench",
            "why": "OpenBLAS workers sleep after 2**value cycles instead of spinning ~0.1 s into the next Numba kernel"}


def gomp_status() -> dict[str, object]:
    """GOMP_SPINCOUNT as env.json records it (key ``gomp_spincount``); value None when the
    user's OMP_WAIT_POLICY decides instead (``omp_wait_policy``)."""
    out: dict[str, object] = {
        "value": os.environ.get("GOMP_SPINCOUNT"),
        "in_effect": user_gomp or user_wait_policy is not None or not gomp_loaded_first,
        "set_by": "user" if (user_gomp or user_wait_policy is not None) else "affbench",
        "why": "Numba's OpenMP workers spin ~0.35 ms instead of ~9 ms into the next kernel"}
    if user_wait_policy is not None:
        out["omp_wait_policy"] = user_wait_policy
    return out
