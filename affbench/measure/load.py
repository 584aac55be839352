"""Is the machine busy? A calibration kernel timed at the start and end of a run, the CPU
time other processes used (while the kernel ran, and over the whole run), the load average,
and the share of noisy cases. Numbers from a busy machine are flagged, not hidden.

The 1-minute load average alone misses a load that started shortly before a run: two busy
neighbours raise it by only ~0.2 in the first 5 seconds. /proc/stat's busy time of the
cores this process may use, minus this process's own CPU time, sees them at once.
"""

from __future__ import annotations

import os
import resource
import time
from typing import Any

import numpy as np

from affbench.measure.timing import Plan, Timed, sample_round_robin, summarize

#: Calibration drift (end vs start) above this fraction is reported.
DRIFT_LIMIT = 0.25
#: A load average per core above this at start or end is reported.
LOADAVG_PER_CORE_LIMIT = 0.5
#: Other processes using more than this many cores per usable core (at start, end, or on average
#: over the run) is reported: on 2 cores, half a core busy elsewhere already delays a 2-thread case.
BACKGROUND_PER_CORE_LIMIT = 0.25
#: More than this fraction of noisy cases is reported. On this 2-core machine the default preset
#: flags 22-28% of its cases noisy when idle (µs-scale 2-thread cases with 4 samples jitter)
#: and 52% with other jobs running; other processes' CPU use is the direct detector.
NOISY_SHARE_LIMIT = 0.4


def loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def calibration_kernel_s(seconds: float = 0.3) -> float:
    """Median time of a fixed single-threaded 128³ float64 matmul: a yardstick for the machine."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((128, 128))
    b = rng.standard_normal((128, 128))
    case = Timed(call=lambda: a @ b, context=lambda: threadpool_limits(1, user_api="blas"))
    sample_round_robin([case], Plan(min_samples=15, max_samples=200, budget_s=seconds), time.perf_counter)
    return summarize(case.samples).median


def cpu_counters() -> dict[str, float] | None:
    """Busy CPU seconds of the cores this process may run on (from /proc/stat; steal time
    counts as busy), this process's own CPU seconds (all threads, and waited-for children),
    and a monotonic wall clock; None where /proc/stat is missing."""
    try:
        allowed: set[int] | None = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        allowed = None
    try:
        with open("/proc/stat") as fh:
            lines = fh.read().splitlines()
        tick = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    busy = 0
    seen = False
    for line in lines:
        name, _, rest = line.partition(" ")
        if not (name.startswith("cpu") and name[3:].isdigit()):
            continue
        if allowed is not None and int(name[3:]) not in allowed:
            continue
        v = [int(f) for f in rest.split()] + [0] * 8
        busy += v[0] + v[1] + v[2] + v[5] + v[6] + v[7]  # user nice system irq softirq steal
        seen = True
    if not seen:
        return None
    own = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        own += r.ru_utime + r.ru_stime
    return {"busy_s": busy / tick, "own_s": own, "wall_s": time.monotonic()}


def background_cores(before: dict[str, float] | None, after: dict[str, float] | None) -> float | None:
    """Cores' worth of CPU time used by other processes between two cpu_counters() readings."""
    if not before or not after:
        return None
    wall = after["wall_s"] - before["wall_s"]
    if wall <= 0:
        return None
    others = (after["busy_s"] - before["busy_s"]) - (after["own_s"] - before["own_s"])
    return max(0.0, others / wall)


def snapshot() -> dict[str, Any]:
    before = cpu_counters()
    calibration = calibration_kernel_s()
    after = cpu_counters()
    return {"calibration_s": calibration, "loadavg": loadavg(), "at": time.time(),
            "background_cores": background_cores(before, after), "counters": after}


def assess(start: dict[str, Any], end: dict[str, Any] | None, cores: int,
           noisy_cases: int = 0, measured_cases: int = 0) -> list[str]:
    """Warnings a reader of the numbers must see."""
    warnings: list[str] = []
    # The load average counts this run's own threads and lags by a minute: it is a fallback
    # for machines without /proc/stat, and only at the start, before the run adds to it.
    if start and start.get("background_cores") is None and start.get("loadavg") is not None \
            and start["loadavg"] > LOADAVG_PER_CORE_LIMIT * cores:
        warnings.append(f"load average {start['loadavg']:.2f} at the start of the run on {cores} cores: "
                        "other processes were competing for the CPU")
    limit = BACKGROUND_PER_CORE_LIMIT * cores
    for when, snap in (("start", start), ("end", end)):
        busy = snap.get("background_cores") if snap else None
        if busy is not None and busy > limit:
            warnings.append(f"other processes used {busy:.2f} of {cores} cores while the calibration kernel "
                            f"ran at the {when} of the run")
    during = run_background_cores(start, end)
    if during is not None and during > limit:
        warnings.append(f"other processes used {during:.2f} of {cores} cores on average during the run")
    if start and end and start.get("calibration_s") and end.get("calibration_s"):
        drift = end["calibration_s"] / start["calibration_s"] - 1
        if abs(drift) > DRIFT_LIMIT:
            warnings.append(f"the calibration kernel ran {drift:+.0%} slower at the end than at the start: "
                            "the machine's speed changed during the run")
    if measured_cases and noisy_cases / measured_cases > NOISY_SHARE_LIMIT:
        warnings.append(f"{noisy_cases} of {measured_cases} measured cases are noisy "
                        f"(coefficient of variation above the threshold)")
    return warnings


def run_background_cores(start: dict[str, Any] | None, end: dict[str, Any] | None) -> float | None:
    """Other processes' average CPU use from the start snapshot to the end one."""
    if not start or not end:
        return None
    return background_cores(start.get("counters"), end.get("counters"))
