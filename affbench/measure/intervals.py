"""Confidence intervals for medians and ratios of timings, and the verdicts drawn from them.

Pure arithmetic on lists of samples: no clock, no kernel. ``timing`` decides when to stop
sampling with it, ``runner`` records its intervals, ``report`` and ``compare`` read them back.

Why these intervals
-------------------
Timings are skewed, have outliers and drift with the machine: no normal model fits them. The
median's interval is therefore distribution-free: the order statistics x_(j) .. x_(n+1-j) of n
samples cover the median with probability 1 - 2 P(B < j), B ~ Binomial(n, 1/2) (exact for any
continuous distribution; it needs n >= 6 for 95%).

That interval assumes independent samples. Samples taken back to back are not: the machine
has slow windows lasting seconds, which shift every sample of one visit alike. So samples are
taken in several *rounds* (visits spread over the run), and the interval also gets a
between-round part: a t-interval over the round medians. The recorded half-width is the larger
of the two, so drift between rounds widens the interval instead of hiding between runs.

A ratio of two cases timed side by side (implementation / baseline) is estimated from paired
samples: the k-th sample of each in the same rotation of a round-robin, adjacent in time, so
drift cancels in the ratio. Its interval is the median interval of the per-rotation ratios,
widened by rounds in the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

#: Every interval in affbench is a 95% interval.
CONFIDENCE = 0.95
#: Sampling stops when every half-width (relative to the estimate) is at most this.
DEFAULT_TARGET = 0.02

# Student t quantiles, two-sided 95%, by degrees of freedom (no scipy dependency).
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def t975(df: int) -> float:
    """Two-sided 95% Student t quantile for ``df`` degrees of freedom (tabulated; conservative
    between table entries)."""
    if df < 1:
        return math.inf
    if df in _T975:
        return _T975[df]
    below = [d for d in _T975 if d < df]
    return _T975[max(below)] if df < 30 else 1.96 + 2.4 / df


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% interval [low, high]."""

    value: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        """The larger distance from the estimate to an end, relative to the estimate."""
        if not (self.value > 0) or not math.isfinite(self.low) or not math.isfinite(self.high):
            return math.inf
        return max(self.value - self.low, self.high - self.value) / self.value

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high

    def inverse(self) -> "Interval":
        """1/x: a time ratio turned into a speedup, or back."""
        inv = lambda v: 1.0 / v if v > 0 else math.inf  # noqa: E731
        return Interval(inv(self.value), inv(self.high), inv(self.low))

    @staticmethod
    def unknown(value: float = math.nan) -> "Interval":
        return Interval(value, -math.inf, math.inf)


@lru_cache(maxsize=4096)
def median_ci_ranks(n: int, confidence: float = CONFIDENCE) -> tuple[int, int] | None:
    """0-based indices (lo, hi) into n sorted samples of the distribution-free interval of the
    median, or None when n is too small to reach ``confidence`` (n < 6 at 95%)."""
    if n < 1:
        return None
    alpha = (1.0 - confidence) / 2.0
    total = 2 ** n
    # the largest j with P(B <= j - 1) <= alpha: the interval is x_(j) .. x_(n+1-j), 1-based
    cdf, j = 0, 0
    while True:
        nxt = cdf + math.comb(n, j)  # P(B <= j) * 2^n
        if nxt > alpha * total:
            break
        cdf, j = nxt, j + 1
    if j == 0:
        return None
    return j - 1, n - j


def median_ci_coverage(n: int, confidence: float = CONFIDENCE) -> float:
    """The exact coverage of median_ci_ranks(n): at least ``confidence`` by construction."""
    ranks = median_ci_ranks(n, confidence)
    if ranks is None:
        return math.nan
    j = ranks[0] + 1
    return 1.0 - 2.0 * sum(math.comb(n, i) for i in range(j)) / 2 ** n


def median_interval(samples: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Median with its distribution-free interval; an infinite interval below 6 samples."""
    a = np.sort(np.asarray(samples, dtype=np.float64))
    if a.size == 0:
        return Interval.unknown()
    med = float(np.median(a))
    ranks = median_ci_ranks(int(a.size), confidence)
    if ranks is None:
        return Interval.unknown(med)
    return Interval(med, float(a[ranks[0]]), float(a[ranks[1]]))


def rounds_interval(rounds: Sequence[Sequence[float]]) -> Interval:
    """Median of all samples pooled, with the wider of two intervals:

    * the distribution-free interval of the pooled samples (noise within rounds);
    * a t-interval over the round medians, in log space (drift between rounds).
    """
    pooled = [s for r in rounds for s in r]
    inside = median_interval(pooled)
    between = _between_rounds(rounds, inside.value)
    if between is None:
        return inside
    return Interval(inside.value, min(inside.low, between.low), max(inside.high, between.high))


def _between_rounds(rounds: Sequence[Sequence[float]], center: float) -> Interval | None:
    medians = [float(np.median(r)) for r in rounds if len(r)]
    if len(medians) < 2 or not (center > 0) or min(medians) <= 0:
        return None
    logs = np.log(medians)
    spread = t975(len(logs) - 1) * float(np.std(logs, ddof=1)) / math.sqrt(len(logs))
    return Interval(center, center * math.exp(-spread), center * math.exp(spread))


def paired_ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """a[k] / b[k] for the rotations both took (the shorter list bounds the pairs)."""
    return [x / y for x, y in zip(a, b) if y > 0]


def ratio_interval(rounds_a: Sequence[Sequence[float]], rounds_b: Sequence[Sequence[float]]) -> Interval:
    """time(a) / time(b) from samples paired within each round, widened by the spread of the
    per-round ratios (see the module docstring)."""
    per_round = [paired_ratios(ra, rb) for ra, rb in zip(rounds_a, rounds_b)]
    return rounds_interval([r for r in per_round if r])


def ratio_of_intervals(a: Interval, b: Interval) -> Interval:
    """b / a for two independent estimates (two runs): log half-widths add in quadrature."""
    if not (a.value > 0 and b.value > 0):
        return Interval.unknown()
    if not all(v > 0 and math.isfinite(v) for v in (a.low, a.high, b.low, b.high)):
        return Interval.unknown(b.value / a.value)
    r = b.value / a.value
    down = math.hypot(math.log(b.value / b.low), math.log(a.high / a.value))
    up = math.hypot(math.log(b.high / b.value), math.log(a.value / a.low))
    return Interval(r, r * math.exp(-down), r * math.exp(up))


def is_tie(ratio: Interval, band: float = DEFAULT_TARGET) -> bool:
    """Is a ratio indistinguishable from 1? True when its interval reaches into the band
    [1/(1+band), 1+band]: differences smaller than the precision asked of the measurement are
    not called, and neither are those the measurement could not resolve."""
    if not math.isfinite(ratio.low) or not math.isfinite(ratio.high):
        return True
    return ratio.low <= 1.0 + band and ratio.high >= 1.0 / (1.0 + band)


def direction(ratio: Interval, band: float = DEFAULT_TARGET) -> str:
    """'tie', 'above' (the whole interval above 1+band) or 'below'."""
    if is_tie(ratio, band):
        return "tie"
    return "above" if ratio.low > 1.0 else "below"
