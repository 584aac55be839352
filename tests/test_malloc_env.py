"""affbench.measure.malloc_env: glibc's malloc thresholds pinned at import (or left alone when asked)."""

from __future__ import annotations

import ctypes
import json
import platform
import subprocess
import sys

import pytest

from affbench.measure import malloc_env


def _glibc() -> bool:
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc" and hasattr(ctypes.CDLL(None), "mallinfo2")


# A fresh process: imports affbench (which pins, unless told not to), then allocates three
# 640 KB arrays -- above glibc's initial 128 KiB mmap threshold -- and reports how many bytes
# of them were served by mmap, and how much free memory the heap kept after they were freed.
PROBE = r"""
import ctypes, json
import affbench, numpy as np
from affbench import malloc_env
class MI(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                 "fsmblks", "uordblks", "fordblks", "keepcost")]
info = ctypes.CDLL(None).mallinfo2
info.restype = MI
before = info().hblkhd
arrays = [np.ones(80_000) for _ in range(3)]
mapped = info().hblkhd - before
del arrays
print(json.dumps({"status": malloc_env.status(), "mapped": mapped, "kept_free": info().fordblks}))
"""


def _probe(pin: str | None) -> dict:
    import os

    env = dict(os.environ)
    env.pop(malloc_env.ENV_VAR, None)
    if pin is not None:
        env[malloc_env.ENV_VAR] = pin
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not _glibc(), reason="glibc only (mallopt, mallinfo2)")
def test_pinned_thresholds_keep_mid_sized_blocks_in_the_heap():
    got = _probe(None)
    assert got["status"]["pinned"] is True
    assert got["status"]["mmap_threshold"] == 32 << 20 and got["status"]["trim_threshold"] == 64 << 20
    assert got["mapped"] < 640_000  # none of the three 640 KB arrays came from mmap
    assert got["kept_free"] >= 3 * 640_000  # and freeing them did not hand the pages back to the OS


@pytest.mark.skipif(not _glibc(), reason="glibc only (mallopt, mallinfo2)")
def test_opting_out_keeps_glibcs_dynamic_thresholds():
    got = _probe("0")
    assert got["status"]["pinned"] is False and got["status"]["why_not"] == f"{malloc_env.ENV_VAR}=0"
    assert got["mapped"] >= 640_000  # the first array above 128 KiB is mmapped, as glibc does by default


def test_status_is_json_and_says_why():
    st = malloc_env.status()
    json.dumps(st)
    assert "why" in st and isinstance(st["pinned"], bool)
    assert ("mmap_threshold" in st) if st["pinned"] else st.get("why_not")
