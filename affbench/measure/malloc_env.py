"""glibc malloc's dynamic thresholds, pinned so a kernel's time does not depend on what ran before.

glibc serves blocks above ``M_MMAP_THRESHOLD`` (128 KiB at start) with a fresh ``mmap`` and
returns free memory at the top of the heap to the OS once it exceeds ``M_TRIM_THRESHOLD``.
Both thresholds move: freeing an mmapped block raises the first to that block's size (up to
32 MiB) and the second to twice that. So whether a pass's outputs and temporaries come back
as already-mapped heap memory or as new pages that fault on first touch depends on the sizes
of the blocks that earlier cases happened to free. Measured here (numba-tiled float64
backward, N=100, 784->50, 1 thread): 1147 us per call when each call's ~1.3 MB of
allocations was trimmed and faulted back in, 477 us once the thresholds were pinned; NumPy's
step moved from 958 to 413 us at 2 threads in a process that had run nothing larger. The
same pass timed in a different order, or after a larger case, gave the other figure.

affbench pins both at import, to the values glibc's own rule settles at after it has seen a
32 MiB block (mmap above 32 MiB, trim above 64 MiB): every kernel, the baseline included,
then pays for its allocations the same way whatever ran before it. Set
``AFFBENCH_PIN_MALLOC=0`` to keep glibc's defaults. Elsewhere than glibc this does nothing,
and ``status()`` says so; env.json records it.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD
ENV_VAR = "AFFBENCH_PIN_MALLOC"

_state: dict[str, object] = {"pinned": False, "why_not": "not attempted"}


def pin() -> bool:
    """Pin glibc's mmap and trim thresholds; True when both took effect."""
    if os.environ.get(ENV_VAR, "1").strip().lower() in ("0", "no", "false", "off"):
        _state.update(pinned=False, why_not=f"{ENV_VAR}=0")
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # TypeError: CDLL(None) on Windows
        _state.update(pinned=False, why_not="no mallopt (not glibc)")
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    _state.update(pinned=ok, why_not=None if ok else "mallopt refused the values")
    return ok


def status() -> dict[str, object]:
    """What env.json and the pytest-benchmark machine info record."""
    out: dict[str, object] = {"pinned": _state["pinned"]}
    if _state["pinned"]:
        out.update(mmap_threshold=MMAP_THRESHOLD, trim_threshold=TRIM_THRESHOLD)
    else:
        out["why_not"] = _state["why_not"]
    out["why"] = ("glibc's dynamic thresholds made a pass's allocations page-fault or not depending on "
                  "earlier cases; pinned, every kernel pays for its allocations alike")
    return out


pin()
