"""Speedups over the baseline with their 95% intervals, and the verdicts the report draws from them.

A run of schema 2 records, for every case timed beside numpy, the ratio time / numpy time from
paired samples (drift cancels) with its interval: the speedup is 1 / ratio, its interval the
inverted one. Rows without it (schema 1, or a baseline other than the one the run paired
with) fall back to baseline median / case median, the interval from the two median intervals
(``intervals.ratio_of_intervals``: independent estimates, wider). Pure functions, no pandas.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from affbench.measure.intervals import DEFAULT_TARGET, Interval, is_tie, ratio_of_intervals
from affbench.registry import BASELINE
from affbench.store.results import _finite, recorded_ratio, time_interval

#: The implementation every schema-2 ``ratio`` is measured against.
RATIO_BASELINE = BASELINE
#: An exact interval: the baseline against itself.
ONE = Interval(1.0, 1.0, 1.0)


def tie_band(env: Mapping[str, Any]) -> float:
    """The precision the run aimed for (env.json sweep.plan.target): differences inside it are
    ties. DEFAULT_TARGET when the run did not record one."""
    sweep = env.get("sweep")
    plan = sweep.get("plan") if isinstance(sweep, Mapping) else None
    target = plan.get("target") if isinstance(plan, Mapping) else None
    if isinstance(target, (int, float)) and not isinstance(target, bool) and target > 0:
        return float(target)
    return DEFAULT_TARGET


def ratio_to_baseline(row: Mapping[str, Any], base: Mapping[str, Any], baseline: str) -> tuple[Interval, str]:
    """time(row) / time(base) with its interval, and where it came from: 'paired' (recorded by
    the run) or 'medians' (two independent median intervals)."""
    if row.get("impl") == baseline:
        return ONE, "paired"
    if baseline == RATIO_BASELINE:
        rec = recorded_ratio(row)
        if rec is not None:
            return rec, "paired"
    return ratio_of_intervals(time_interval(base), time_interval(row)), "medians"


def speedup_interval(row: Mapping[str, Any], base: Mapping[str, Any], baseline: str) -> tuple[Interval, str]:
    """Speedup over the baseline (1 / ratio) with its interval [1/ratio_high, 1/ratio_low]."""
    ratio, source = ratio_to_baseline(row, base, baseline)
    return ratio.inverse(), source


def verdict(speedup: Interval, band: float, predicted: bool = False) -> str:
    """'above' (clearly faster), 'below' (clearly slower) or 'tie'. A prediction has no
    interval: its point value decides, and the report marks it as predicted."""
    if predicted:
        v = speedup.value
        if not _finite(v):
            return "tie"
        return "above" if v > 1.0 + band else "below" if v < 1.0 / (1.0 + band) else "tie"
    if is_tie(speedup, band):
        return "tie"
    return "above" if speedup.low > 1.0 else "below"


def clearly_faster(a: Interval, b: Interval, band: float) -> bool:
    """Is time a clearly below time b? Only when a's interval, widened by the band, stays below
    b's: overlapping intervals (or a gap smaller than the precision aimed for) are a tie.

    A side without an interval (fewer than 6 samples: schema-1 runs took 5 of slow cases)
    counts by its estimate alone, so a pure-Python loop 400× slower does not tie with
    everything; the report prints such a speedup with '(—)'."""
    hi = a.high if math.isfinite(a.high) else a.value
    lo = b.low if math.isfinite(b.low) else b.value
    return hi * (1.0 + band) < lo


def rank(entries: Sequence[tuple[str, Interval]], band: float) -> tuple[str, list[str]]:
    """The fastest of (name, time-like interval) entries on one scale, and every name tied with
    it (itself first, then by estimate). A single name means a clear winner."""
    order = sorted(entries, key=lambda e: (e[1].value if _finite(e[1].value) else math.inf, e[0]))
    best_name, best = order[0]
    tied = [best_name] + [n for n, iv in order[1:] if not clearly_faster(best, iv, band)]
    return best_name, tied


def geomean_interval(values: Sequence[Interval]) -> Interval:
    """Geometric mean of speedups with an interval from their log half-widths added in
    quadrature (cases are timed apart, their errors independent). Unknown if any end is."""
    v = [iv for iv in values if _finite(iv.value) and iv.value > 0]
    if not v:
        return Interval.unknown()
    n = len(v)
    g = math.exp(sum(math.log(iv.value) for iv in v) / n)
    if not all(_finite(iv.low) and _finite(iv.high) and iv.low > 0 for iv in v):
        return Interval.unknown(g)
    down = math.sqrt(sum(math.log(iv.value / iv.low) ** 2 for iv in v)) / n
    up = math.sqrt(sum(math.log(iv.high / iv.value) ** 2 for iv in v)) / n
    return Interval(g, g * math.exp(-down), g * math.exp(up))
