"""Settings OpenBLAS reads once, when it loads: they must be made before NumPy is imported.

OpenBLAS's worker threads busy-wait for about 2**28 cycles (~0.1 s) after each call before they
sleep. When a Numba kernel runs next, a spinning worker takes a core from it: measured here,
numba-tiled's 1024² forward on 2 threads took 64 ms right after a 2-thread np.dot and 29 ms on
its own. With OPENBLAS_THREAD_TIMEOUT=20 (2**20 cycles, ~0.4 ms) the workers sleep before the
next kernel starts and the penalty is gone, while back-to-back BLAS calls (within a sample)
still find them awake. A value the user set is kept; env.json records the value and whether
it came in time to take effect.
"""

from __future__ import annotations

import os
import sys

OPENBLAS_THREAD_TIMEOUT = "20"

#: numpy was imported before affbench could set the timeout: OpenBLAS never saw it.
numpy_imported_first = "numpy" in sys.modules
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", OPENBLAS_THREAD_TIMEOUT)


def status() -> dict[str, object]:
    return {"value": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
            "in_effect": not numpy_imported_first,
            "why": "OpenBLAS workers sleep after 2**value cycles instead of spinning ~0.1 s into the next Numba kernel"}
