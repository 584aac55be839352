"""What goes into env.json: the machine, the software, the thread settings, the command.

Extensible like pytest-benchmark's machine-info hook: call :func:`add_collector` with a
function returning a dict, and its keys are merged into every env.json.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from affbench.measure import malloc_env, pool_env
from affbench.version import __version__

_collectors: list[Callable[[], dict[str, Any]]] = []

#: Zen 3 / most AVX2+FMA cores: two 256-bit FMA pipes = 16 FP64 or 32 FP32 FLOPs per cycle.
FLOPS_PER_CYCLE_AVX2_FMA = {"float64": 16, "float32": 32}
FLOPS_PER_CYCLE_AVX512 = {"float64": 32, "float32": 64}


def add_collector(fn: Callable[[], dict[str, Any]]) -> None:
    """Register a function whose returned dict is merged into env.json."""
    _collectors.append(fn)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _cpuinfo() -> dict[str, str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = (s.strip() for s in line.split(":", 1))
            info.setdefault(k, v)
    return info


def nominal_clock(info: dict[str, str]) -> tuple[float | None, str]:
    """The base clock in GHz and where it came from: cpufreq's base_frequency, the "@ x.xxGHz"
    of the model name, or (a VM's fixed clock, or the *current* clock on bare metal with
    frequency scaling) /proc/cpuinfo's "cpu MHz"."""
    import re

    try:
        khz = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/base_frequency").read_text())
        return round(khz / 1e6, 3), "cpufreq base_frequency"
    except (OSError, ValueError):
        pass
    m = re.search(r"@\s*([0-9.]+)\s*GHz", info.get("model name", ""))
    if m:
        return float(m.group(1)), "model name"
    try:
        mhz = float(info.get("cpu MHz", ""))
        return (round(mhz / 1000, 3), "cpu MHz in /proc/cpuinfo") if mhz else (None, "unknown")
    except ValueError:
        return None, "unknown"


def cpu() -> dict[str, Any]:
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    ghz, clock_source = nominal_clock(info)
    physical = int(info["cpu cores"]) if info.get("cpu cores", "").isdigit() else None
    return {
        "model": info.get("model name") or platform.processor() or platform.machine(),
        "logical_cores": usable_cores(),
        "physical_cores": physical,
        "avx2": "avx2" in flags,
        "fma": "fma" in flags,
        "avx512": "avx512f" in flags,
        "nominal_ghz": ghz,
        "clock_source": clock_source,
        "machine": platform.machine(),
    }


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def peak_cores(cpu_info: dict[str, Any]) -> int:
    """Cores that each bring their own FMA pipes: usable cores, but not hyper-thread siblings."""
    logical = cpu_info.get("logical_cores") or usable_cores()
    physical = cpu_info.get("physical_cores")
    return min(logical, physical) if physical else logical


def peak_gflops(cpu_info: dict[str, Any], cores: int) -> dict[str, Any]:
    """Theoretical peak = cores × FLOPs per cycle × nominal clock, where the CPU tells enough."""
    ghz = cpu_info.get("nominal_ghz")
    if not ghz or not cpu_info.get("fma"):
        return {"float32": None, "float64": None, "how": "unknown: no clock or no FMA flag in /proc/cpuinfo"}
    per_cycle = FLOPS_PER_CYCLE_AVX512 if cpu_info.get("avx512") else FLOPS_PER_CYCLE_AVX2_FMA
    width = "AVX-512" if cpu_info.get("avx512") else "AVX2"
    return {
        "float64": cores * per_cycle["float64"] * ghz,
        "float32": cores * per_cycle["float32"] * ghz,
        "how": (f"{cores} cores x {per_cycle['float64']} FP64 / {per_cycle['float32']} FP32 FLOPs per cycle "
                f"(two {width} FMA pipes assumed) x {ghz} GHz nominal clock "
                f"({cpu_info.get('clock_source', '/proc/cpuinfo')}); "
                "boost clocks can exceed it"),
    }


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def numba_threading_layer() -> str:
    """The layer Numba's parallel code runs on (omp, tbb, workqueue), once one was chosen."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel function has run yet
        return f"not yet chosen (config: {numba.config.THREADING_LAYER})"


def blas_libraries() -> list[dict[str, Any]]:
    """The BLAS and OpenMP libraries loaded in this process (threadpoolctl.threadpool_info()),
    sorted: threadpoolctl lists them in load order, which varies, and runs should compare equal.
    env.json and the pytest-benchmark machine info both record this."""
    from threadpoolctl import threadpool_info

    return sorted(threadpool_info(),
                  key=lambda lib: (str(lib.get("user_api")), str(lib.get("prefix")), str(lib.get("filepath"))))


def software() -> dict[str, Any]:
    import llvmlite
    import numba
    import numpy

    layer = numba_threading_layer()
    return {
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "numpy": numpy.__version__,
        "numba": numba.__version__,
        "llvmlite": llvmlite.__version__,
        "blas": blas_libraries(),
        "numba_threading_layer": layer,
        "numba_num_threads": numba.config.NUMBA_NUM_THREADS,
    }


def package_version(dist: str) -> str | None:
    """An installed distribution's version, read from its metadata (nothing is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def peers() -> dict[str, Any]:
    """The peer frameworks (implementations/torch_peer.py, jax_peer.py): their versions (None
    when not installed), the declared implementations that are not installed, and how each
    peer's threads are controlled, with JAX's pool size for this process."""
    from affbench import registry
    from affbench.measure import threads

    return {
        "torch": package_version("torch"),
        "jax": package_version("jax"),
        "jaxlib": package_version("jaxlib"),
        "not_installed": {n: info.message for n, info in registry.unavailable().items()},
        "torch_threads": "torch.set_num_threads per case (ATen's OpenMP pool and its MKL); read back into peer_threads",
        "jax_threads": threads.jax_status(),
    }


def collect(command: list[str] | None = None) -> dict[str, Any]:
    from affbench.measure.threads import thread_env_vars

    c = cpu()
    env: dict[str, Any] = {
        "affbench_version": __version__,
        "cpu": c,
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "env_vars": thread_env_vars(),
        "git_commit": git_commit(),
        "command": " ".join(command if command is not None else sys.argv),
    }
    env.update(software())
    env["peak_gflops"] = peak_gflops(c, peak_cores(c))
    env["openblas_thread_timeout"] = pool_env.status()
    env["gomp_spincount"] = pool_env.gomp_status()
    env["malloc"] = malloc_env.status()
    env["peers"] = peers()
    for fn in _collectors:
        env.update(fn())
    return env
