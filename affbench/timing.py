"""Calibration, sampling and statistics.

The statistics take samples, not a clock; the loops that gather samples take the clock as
an argument, so tests drive them with a fake clock. Nothing here knows about kernels.

One *sample* is the mean time per call over ``repeats`` back-to-back calls, with ``repeats``
chosen so that a sample lasts at least ``min_sample_s`` (far above the clock's resolution).
Cases that are compared with each other are sampled round-robin (case A, B, C, A, B, C, ...),
so slow drift of a shared machine lands on all of them alike.
"""

from __future__ import annotations

import gc
import math
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterator, Sequence

import numpy as np

Clock = Callable[[], float]

#: A case whose coefficient of variation is above this is flagged noisy (pyperf warns at 10%).
NOISE_CV_THRESHOLD = 0.10


@dataclass(frozen=True)
class Stats:
    n: int
    median: float
    q1: float
    q3: float
    iqr: float
    min: float
    mean: float
    std: float
    cv: float


def summarize(samples: Sequence[float]) -> Stats:
    """Median, quartiles, IQR, min, mean, std (sample, ddof=1) and CV of per-call times."""
    if len(samples) == 0:
        raise ValueError("summarize() needs at least one sample")
    a = np.asarray(samples, dtype=np.float64)
    q1, median, q3 = (float(v) for v in np.percentile(a, [25, 50, 75]))
    mean = float(a.mean())
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return Stats(n=int(a.size), median=median, q1=q1, q3=q3, iqr=q3 - q1, min=float(a.min()),
                 mean=mean, std=std, cv=std / mean if mean > 0 else math.nan)


def is_noisy(stats: Stats, threshold: float = NOISE_CV_THRESHOLD) -> bool:
    return bool(stats.n > 1 and stats.cv > threshold)


def clock_resolution(clock: Clock = time.perf_counter, tries: int = 200) -> float:
    """Smallest non-zero step seen between consecutive clock readings."""
    best = math.inf
    for _ in range(tries):
        t0 = clock()
        t1 = clock()
        while t1 == t0:
            t1 = clock()
        best = min(best, t1 - t0)
    return best


@dataclass(frozen=True)
class Plan:
    """How hard to look at each case."""

    min_sample_s: float = 1e-3  # one sample lasts at least this (perf_counter resolves ~1e-7 s)
    warmup_calls: int = 1
    min_samples: int = 5
    max_samples: int = 50
    budget_s: float = 0.25  # sampling time per case; min_samples are taken even past it
    #: an untimed call precedes each sample of a case whose calls are shorter than this. In a
    #: round-robin the previous case ran on another thread pool, and this case's pool may have
    #: gone to sleep meanwhile; the priming call wakes it, so a sample measures back-to-back
    #: calls as a training loop makes them. Longer calls absorb the wake-up (tens of µs).
    prime_below_s: float = 0.02


@dataclass
class Timed:
    """One case to time: ``call()`` runs the pass once; ``context()`` sets up its threads."""

    call: Callable[[], object]
    context: Callable[[], ContextManager] = nullcontext
    repeats: int = 0
    prime: bool = False
    samples: list[float] | None = None
    error: BaseException | None = None


@contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def take_sample(call: Callable[[], object], repeats: int, clock: Clock) -> float:
    """Seconds per call over ``repeats`` back-to-back calls."""
    with _gc_paused():
        t0 = clock()
        for _ in range(repeats):
            call()
        t1 = clock()
    return (t1 - t0) / repeats


def calibrate(call: Callable[[], object], clock: Clock, min_sample_s: float, max_repeats: int = 1 << 24) -> int:
    """The smallest power-of-two-ish repeat count whose sample lasts at least min_sample_s."""
    return calibrate_timed(call, clock, min_sample_s, max_repeats)[0]


def calibrate_timed(call: Callable[[], object], clock: Clock, min_sample_s: float,
                    max_repeats: int = 1 << 24) -> tuple[int, float]:
    """calibrate(), also returning the time per call of its last (accepted) sample."""
    repeats = 1
    while True:
        per_call = take_sample(call, repeats, clock)
        total = per_call * repeats
        if total >= min_sample_s or repeats >= max_repeats:
            return repeats, per_call
        if total <= 0:
            repeats = min(max_repeats, repeats * 10)
        else:  # aim 20% past the target, at least double
            repeats = min(max_repeats, max(2 * repeats, math.ceil(repeats * 1.2 * min_sample_s / total)))


def sample_round_robin(cases: Sequence[Timed], plan: Plan, clock: Clock = time.perf_counter) -> None:
    """Warm up and calibrate each case, then sample them in turn until each has
    ``max_samples`` or the shared budget (``budget_s`` per case) is spent with every case at
    ``min_samples`` or more. Fills ``repeats`` and ``samples``; a case that raises gets
    ``error`` set and is dropped from the rotation, the others go on."""
    live: list[Timed] = []
    for case in cases:
        case.samples = []
        try:
            with case.context():
                for _ in range(plan.warmup_calls):
                    case.call()
                case.repeats, per_call = calibrate_timed(case.call, clock, plan.min_sample_s)
                case.prime = per_call < plan.prime_below_s
            live.append(case)
        except Exception as exc:  # noqa: BLE001 - recorded, reported, sweep goes on
            case.error = exc
    start = clock()
    budget = plan.budget_s * max(len(live), 1)
    while live:
        for case in list(live):
            try:
                with case.context():
                    if case.prime:
                        case.call()
                    case.samples.append(take_sample(case.call, case.repeats, clock))
            except Exception as exc:  # noqa: BLE001
                case.error = exc
                live.remove(case)
                continue
            if len(case.samples) >= plan.max_samples:
                live.remove(case)
        spent = clock() - start
        if spent >= budget and all(len(c.samples) >= plan.min_samples for c in live):
            break
