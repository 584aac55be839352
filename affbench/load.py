"""Is the machine busy? A calibration kernel timed at the start and end of a run, the load
average, and the share of noisy cases. Numbers from a busy machine are flagged, not hidden."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from .timing import Plan, Timed, sample_round_robin, summarize

#: Calibration drift (end vs start) above this fraction is reported.
DRIFT_LIMIT = 0.25
#: A load average per core above this at start or end is reported.
LOADAVG_PER_CORE_LIMIT = 0.5
#: More than this fraction of noisy cases is reported.
NOISY_SHARE_LIMIT = 0.2


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


def snapshot() -> dict[str, Any]:
    return {"calibration_s": calibration_kernel_s(), "loadavg": loadavg(), "at": time.time()}


def assess(start: dict[str, Any], end: dict[str, Any] | None, cores: int,
           noisy_cases: int = 0, measured_cases: int = 0) -> list[str]:
    """Warnings a reader of the numbers must see."""
    warnings: list[str] = []
    for when, snap in (("start", start), ("end", end)):
        if snap and snap.get("loadavg") is not None and snap["loadavg"] > LOADAVG_PER_CORE_LIMIT * cores:
            warnings.append(f"load average {snap['loadavg']:.2f} at the {when} of the run on {cores} cores: "
                            "other processes were competing for the CPU")
    if start and end and start.get("calibration_s") and end.get("calibration_s"):
        drift = end["calibration_s"] / start["calibration_s"] - 1
        if abs(drift) > DRIFT_LIMIT:
            warnings.append(f"the calibration kernel ran {drift:+.0%} slower at the end than at the start: "
                            "the machine's speed changed during the run")
    if measured_cases and noisy_cases / measured_cases > NOISY_SHARE_LIMIT:
        warnings.append(f"{noisy_cases} of {measured_cases} measured cases are noisy "
                        f"(coefficient of variation above the threshold)")
    return warnings
