"""Calibration, sampling and statistics.

The statistics take samples, not a clock; the loops that gather samples take the clock as
an argument, so tests drive them with a fake clock. Nothing here knows about kernels.

One *sample* is the mean time per call over ``repeats`` back-to-back calls, with ``repeats``
chosen so that a sample lasts at least ``min_sample_s`` (far above the clock's resolution).
Cases that are compared with each other are sampled round-robin (case A, B, C, A, B, C, ...),
so slow drift of a shared machine lands on all of them alike.

Sampling stops on precision, not on a count: a group of cases is visited in several *rounds*
(``sample_round_robin`` is one round; the engine spreads a group's rounds over the whole run),
and after ``min_rounds`` it stops once every case's median and every ratio to the baseline has
a 95% interval within ``target`` (see ``affbench.measure.intervals``), or its budget is spent.
"""

from __future__ import annotations

import gc
import math
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Callable, ContextManager, Iterator, Sequence

import numpy as np

from affbench.measure.intervals import DEFAULT_TARGET, Interval, ratio_interval, rounds_interval

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
    warmup_calls: int = 1  # untimed calls at the start of every round
    min_samples: int = 5  # per case over all rounds, taken even past the budget
    max_samples: int = 50  # per case over all rounds
    budget_s: float = 0.25  # sampling seconds per case over all rounds (each round gets 1/max_rounds)
    #: stop once every median and ratio has a 95% interval within this relative half-width
    target: float = DEFAULT_TARGET
    min_rounds: int = 1  # visits before the precision is first checked
    max_rounds: int = 1  # visits at most
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
    samples: list[float] | None = None  # every sample, round after round
    error: BaseException | None = None
    rounds: list[list[float]] = field(default_factory=list)  # the samples of each round
    #: the case this one is paired with for its ratio (same work, the baseline implementation)
    baseline: "Timed | None" = None
    settled: bool = False  # no more rounds needed


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


def round_plan(plan: Plan) -> Plan:
    """What one round of a multi-round plan takes: its share of the samples and the budget."""
    if plan.max_rounds <= 1:
        return plan
    return replace(plan, min_samples=math.ceil(plan.min_samples / plan.min_rounds),
                   max_samples=max(1, math.ceil(plan.max_samples / plan.max_rounds)),
                   budget_s=plan.budget_s / plan.max_rounds, min_rounds=1, max_rounds=1)


def sample_round_robin(cases: Sequence[Timed], plan: Plan, clock: Clock = time.perf_counter) -> None:
    """One round: warm up each case (calibrating it on its first round), then sample them in
    turn until each has ``max_samples`` or the shared budget (``budget_s`` per case) is spent
    with every case at ``min_samples`` or more. Appends the round to ``rounds`` and
    ``samples``; a case that raises gets ``error`` set and is dropped from the rotation, the
    others go on. ``plan`` is the round's plan (see round_plan)."""
    live: list[Timed] = []
    fresh: dict[int, list[float]] = {}
    for case in cases:
        if case.samples is None or not case.rounds:
            case.samples = []
        if case.error is not None:
            continue
        try:
            with case.context():
                for _ in range(plan.warmup_calls):
                    case.call()
                if case.repeats <= 0:
                    case.repeats, per_call = calibrate_timed(case.call, clock, plan.min_sample_s)
                    case.prime = per_call < plan.prime_below_s
            live.append(case)
            fresh[id(case)] = []
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
                    fresh[id(case)].append(take_sample(case.call, case.repeats, clock))
            except Exception as exc:  # noqa: BLE001
                case.error = exc
                live.remove(case)
                continue
            if len(fresh[id(case)]) >= plan.max_samples:
                live.remove(case)
        spent = clock() - start
        if spent >= budget and all(len(fresh[id(c)]) >= plan.min_samples for c in live):
            break
    for case in cases:
        taken = fresh.get(id(case))
        if taken:
            case.rounds.append(taken)
            case.samples.extend(taken)


@dataclass(frozen=True)
class Precision:
    """What a case's rounds have established so far."""

    median: Interval
    ratio: Interval | None  # time / baseline's time, None without a baseline

    @property
    def worst(self) -> float:
        """The larger relative half-width of the two intervals."""
        return max(self.median.half_width, self.ratio.half_width if self.ratio else 0.0)


def precision(case: Timed) -> Precision:
    base = case.baseline
    ratio = None
    if base is not None and base is not case and base.rounds:
        ratio = ratio_interval(case.rounds, base.rounds)
    return Precision(rounds_interval(case.rounds), ratio)


def should_stop(case: Timed, plan: Plan) -> bool:
    """The stopping rule, checked after each round: never before ``min_rounds``; then as soon as
    the case is precise (``precision(case).worst <= target``) or out of rounds, samples or
    budget. A case that failed stops at once."""
    if case.error is not None:
        return True
    done = len(case.rounds)
    if done < plan.min_rounds:
        return False
    if done >= plan.max_rounds or len(case.samples or ()) >= plan.max_samples:
        return True
    spent = sum(case.samples or ()) * max(case.repeats, 1)
    if spent >= plan.budget_s:
        return True
    return precision(case).worst <= plan.target


def stop_reason(case: Timed, plan: Plan) -> str:
    """Why a settled case stopped: 'precise', or what ran out first."""
    if precision(case).worst <= plan.target:
        return "precise"
    if len(case.rounds) > plan.max_rounds:  # only the run's time allowance gives rounds beyond these
        return "time_limit"
    if len(case.samples or ()) >= plan.max_samples:
        return "max_samples"
    if sum(case.samples or ()) * max(case.repeats, 1) >= plan.budget_s:
        return "budget"
    # fewer rounds than max_rounds and nothing else spent: the run's time limit cut it short
    return "max_rounds" if len(case.rounds) >= plan.max_rounds else "time_limit"


def active(cases: Sequence[Timed]) -> list[Timed]:
    """Cases that take the next round: the unsettled ones, and the baselines they pair with."""
    out = [c for c in cases if not c.settled and c.error is None]
    for c in list(out):
        base = c.baseline
        if base is not None and base not in out and base.error is None:
            out.append(base)
    return [c for c in cases if c in out]  # keep the caller's order


def settle(cases: Sequence[Timed], plan: Plan) -> None:
    """Mark the cases that need no more rounds (should_stop). A settled baseline still takes
    the rounds of the cases paired with it (see active): their ratios need its samples."""
    for c in cases:
        if not c.settled and should_stop(c, plan):
            c.settled = True


def sample_rounds(cases: Sequence[Timed], plan: Plan, clock: Clock = time.perf_counter,
                  between: Callable[[int], None] | None = None) -> None:
    """Rounds of sample_round_robin over ``cases`` until every case settles. The engine spreads
    rounds over the run instead; this is for one group on its own (kernels, tests).
    ``between(round_index)`` runs after each round (e.g. to give the inputs a fresh address)."""
    per_round = round_plan(plan)
    index = 0
    while True:
        todo = active(cases)
        if not todo:
            return
        sample_round_robin(todo, per_round, clock)
        settle(cases, plan)
        index += 1
        if between is not None:
            between(index)
