"""Time per training step, with its 95% interval, and where the step's time goes.

Built on the suite's timing machinery (affbench.measure.timing): every implementation's step is a
:class:`~affbench.measure.timing.Timed` case, sampled round-robin with the others in rounds
(``sample_rounds``) until the median and the ratio to numpy are known within the plan's target
or the plan runs out; the ratio is the median of samples paired within a rotation, so a shared
machine's drift cancels. Each case runs under ``threads_for`` (its own pool at ``threads``, the
other held at 1), and the counts in effect are recorded.

Where the time goes is measured on a second trainer per implementation whose steps carry
:class:`~affbench.train.loop.Laps` (a clock reading between the parts), sampled in the same
rotation: the plain steps give the time, the lapped ones the Affine share, so the laps' own
cost never enters the reported time. Between rounds every trainer is reset to its initial
weights and first batch, so each round repeats the same work.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Mapping

import numpy as np

from affbench.measure.intervals import Interval, rounds_interval
from affbench.measure.threads import ThreadState, backend_of, threads_for
from affbench.measure.timing import Plan, Timed, precision, sample_rounds, stop_reason
from affbench.train.loop import PARTS, Laps, Trainer, affine_share


@dataclass
class StepTiming:
    impl: str
    threads: ThreadState | None
    time: Interval  # seconds per step: median with its 95% interval
    ratio: Interval | None  # time / numpy's, from paired samples; None for numpy itself
    share: Interval  # the fraction of a step spent in the Affine layers (forward and backward)
    parts: dict[str, float]  # mean seconds per step in each part of loop.PARTS (lapped steps)
    samples: list[float] = field(default_factory=list)
    rounds: int = 0
    repeats: int = 0
    lapped_steps: int = 0
    stopped: str = ""
    error: str | None = None

    @property
    def speedup(self) -> Interval | None:
        """numpy's time / this one's: above 1 is faster."""
        return self.ratio.inverse() if self.ratio is not None else None

    @property
    def amdahl(self) -> Interval:
        """The best speedup of the whole step an infinitely fast Affine could give: 1 / (1 - share)."""
        return Interval(*(amdahl_bound(s) for s in (self.share.value, self.share.low, self.share.high)))


def amdahl_bound(share: float) -> float:
    """1 / (1 - share): the step's time if the Affine part took none, as a speedup."""
    if not math.isfinite(share):
        return math.nan if math.isnan(share) else math.inf
    return math.inf if share >= 1 else 1.0 / (1.0 - max(share, 0.0))


def _impl_of(trainer: Trainer):
    return trainer.network.affines[0].impl


def measure(trainers: Mapping[str, tuple[Trainer, Trainer]], threads: int, plan: Plan, baseline: str = "numpy",
            isolate: bool = True, clock: Callable[[], float] = time.perf_counter) -> dict[str, StepTiming]:
    """Time ``trainers`` (implementation -> (plain trainer, lapped trainer)) side by side."""
    laps = {name: Laps(clock) for name in trainers}
    plain: dict[str, Timed] = {}
    lapped: dict[str, Timed] = {}
    states: dict[str, ThreadState] = {}
    for name, (a, b) in trainers.items():
        backend = backend_of(_impl_of(a))
        context = partial(threads_for, backend, threads, isolate)
        with context() as state:
            states[name] = state
        plain[name] = Timed(call=a.step, context=context)
        lapped[name] = Timed(call=partial(b.step, laps[name]), context=context)
    if baseline in plain:
        for name, case in plain.items():
            if name != baseline:
                case.baseline = plain[baseline]
    ends: dict[str, list[int]] = {name: [0] for name in trainers}

    def between(_round: int) -> None:
        for name, (a, b) in trainers.items():
            a.reset()
            b.reset()
            if len(laps[name].steps) > ends[name][-1]:
                ends[name].append(len(laps[name].steps))

    sample_rounds([*plain.values(), *lapped.values()], plan, clock, between)
    out = {}
    for name in trainers:
        case = plain[name]
        steps = laps[name].steps
        error = case.error or lapped[name].error
        per_round = [[affine_share(s) for s in steps[lo:hi]] for lo, hi in zip(ends[name], ends[name][1:])]
        per_round = [r for r in per_round if r]
        share = rounds_interval(per_round) if per_round else Interval.unknown()
        parts = {p: float(np.mean([s[p] for s in steps])) if steps else math.nan for p in PARTS}
        if case.samples:
            prec = precision(case)
            time_iv, ratio = prec.median, prec.ratio
            stopped = stop_reason(case, plan)
        else:
            time_iv, ratio, stopped = Interval.unknown(), None, "failed"
        out[name] = StepTiming(
            impl=name, threads=states[name], time=time_iv, ratio=ratio, share=share, parts=parts,
            samples=list(case.samples or []), rounds=len(case.rounds), repeats=case.repeats,
            lapped_steps=len(steps), stopped=stopped,
            error=None if error is None else f"{type(error).__name__}: {error}")
    return out
