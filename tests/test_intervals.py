"""affbench.measure.intervals: the interval arithmetic against exact binomial values and known
distributions, the between-round widening, paired ratios, and the tie logic."""

from __future__ import annotations

import math

import numpy as np
import pytest

from affbench.measure.intervals import (
    Interval,
    direction,
    is_tie,
    median_ci_coverage,
    median_ci_ranks,
    median_interval,
    ratio_interval,
    ratio_of_intervals,
    rounds_interval,
    t975,
)


# --------------------------------------------------------------------------- order statistics
@pytest.mark.parametrize("n, ranks, coverage", [
    (6, (0, 5), 1 - 2 / 64),            # min..max of 6: 1 - 2 * (1/2)^6
    (10, (1, 8), 1 - 2 * 11 / 1024),    # x_(2)..x_(9): 1 - 2 P(B <= 1)
    (20, (5, 14), 1 - 2 * sum(math.comb(20, i) for i in range(6)) / 2 ** 20),
])
def test_median_ranks_exact_binomial_values(n, ranks, coverage):
    assert median_ci_ranks(n) == ranks
    assert median_ci_coverage(n) == pytest.approx(coverage)


def test_too_few_samples_have_no_95_interval():
    assert median_ci_ranks(5) is None
    iv = median_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert iv.value == 3.0 and iv.half_width == math.inf


@pytest.mark.parametrize("n", range(6, 301))
def test_ranks_are_the_tightest_reaching_95(n):
    lo, hi = median_ci_ranks(n)
    assert hi == n - 1 - lo  # symmetric
    assert median_ci_coverage(n) >= 0.95
    # one rank tighter would fall below 95%
    j = lo + 2
    tighter = 1 - 2 * sum(math.comb(n, i) for i in range(j)) / 2 ** n
    assert tighter < 0.95


@pytest.mark.parametrize("n", [8, 30, 120])
def test_coverage_on_a_known_skewed_distribution(n):
    """Lognormal samples with a known median exp(mu): the interval covers it as often as the
    binomial says (within the simulation's own error)."""
    rng = np.random.default_rng(12345 + n)
    mu, trials = math.log(1e-4), 4000
    true_median = math.exp(mu)
    hits = 0
    for _ in range(trials):
        iv = median_interval(rng.lognormal(mu, 0.3, size=n))
        hits += iv.low <= true_median <= iv.high
    expected = median_ci_coverage(n)
    sd = math.sqrt(expected * (1 - expected) / trials)
    assert abs(hits / trials - expected) < 4 * sd


def test_half_width_shrinks_like_one_over_sqrt_n():
    rng = np.random.default_rng(7)
    def width(n):
        return np.median([(lambda iv: (iv.high - iv.low) / 2)(median_interval(rng.normal(1.0, 0.05, n)))
                          for _ in range(300)])

    w100, w400 = width(100), width(400)
    assert w100 / w400 == pytest.approx(2.0, rel=0.15)
    # normal theory for the median: 1.96 * sqrt(pi/2) * sigma / sqrt(n) (the order statistics
    # cover a little more than 95%, hence a little wider)
    assert 1.0 <= w100 / (1.96 * math.sqrt(math.pi / 2) * 0.05 / 10) < 1.25


# --------------------------------------------------------------------------- rounds
def test_rounds_without_drift_keep_the_pooled_interval():
    rng = np.random.default_rng(1)
    rounds = [list(rng.normal(1.0, 0.01, 40)) for _ in range(3)]
    pooled = median_interval([s for r in rounds for s in r])
    got = rounds_interval(rounds)
    assert got.value == pooled.value
    assert got.half_width == pytest.approx(pooled.half_width, rel=0.5)
    assert got.half_width < 0.01


def test_drift_between_rounds_widens_the_interval():
    """Round medians 1.00, 1.10, 1.05: the pooled order statistics alone would claim ~2%; the
    t-interval over three round medians (t = 4.30, 2 df) says about +-12%."""
    rng = np.random.default_rng(2)
    rounds = [list(level * rng.normal(1.0, 0.002, 40)) for level in (1.00, 1.10, 1.05)]
    pooled = median_interval([s for r in rounds for s in r])
    got = rounds_interval(rounds)
    logs = np.log([1.00, 1.10, 1.05])
    expected = 4.303 * logs.std(ddof=1) / math.sqrt(3)
    assert got.high / got.value == pytest.approx(math.exp(expected), rel=0.01)
    assert got.half_width > 3 * pooled.half_width


def test_t_quantiles():
    assert t975(2) == 4.303 and t975(30) == 2.042
    assert t975(11) == t975(10)  # conservative between table entries
    assert t975(1000) == pytest.approx(1.96, abs=0.01)
    assert t975(0) == math.inf


def test_paired_ratio_cancels_common_drift():
    """Both cases drift alike, rotation by rotation (the machine's slow windows): their medians
    are uncertain, their ratio is not."""
    rng = np.random.default_rng(3)
    rounds_a, rounds_b = [], []
    for _ in range(3):
        drift = np.exp(rng.normal(0, 0.15, 30))  # +-15% from rotation to rotation
        base = 1e-3 * drift * rng.normal(1.0, 0.005, 30)
        rounds_b.append(list(base))
        rounds_a.append(list(1.08e-3 * drift * rng.normal(1.0, 0.005, 30)))
    ratio = ratio_interval(rounds_a, rounds_b)
    assert ratio.value == pytest.approx(1.08, rel=0.01)
    assert ratio.half_width < 0.01
    assert rounds_interval(rounds_a).half_width > 0.03
    assert direction(ratio) == "above"


def test_ratio_of_two_runs_adds_log_half_widths():
    a = Interval(1.0, 0.97, 1.03)
    b = Interval(1.2, 1.2 * 0.96, 1.2 * 1.04)
    r = ratio_of_intervals(a, b)
    assert r.value == pytest.approx(1.2)
    down = math.hypot(math.log(1 / 0.96), math.log(1.03))
    up = math.hypot(math.log(1.04), math.log(1 / 0.97))
    assert (r.low, r.high) == (pytest.approx(1.2 * math.exp(-down)), pytest.approx(1.2 * math.exp(up)))
    assert ratio_of_intervals(Interval.unknown(1.0), b).half_width == math.inf


def test_inverse_swaps_the_ends():
    iv = Interval(2.0, 1.6, 2.5).inverse()
    assert (iv.value, iv.low, iv.high) == (0.5, 0.4, 0.625)


# --------------------------------------------------------------------------- ties
@pytest.mark.parametrize("low, high, tie, way", [
    (1.05, 1.11, False, "above"),
    (0.90, 0.95, False, "below"),
    (0.97, 1.01, True, "tie"),     # crosses 1
    (1.01, 1.05, True, "tie"),     # above 1, but reaches into the 2% band
    (1.021, 1.05, False, "above"),  # clear of the band
    (0.95, 0.975, False, "below"),  # clear of 1/1.02 = 0.9804
    (0.95, 0.985, True, "tie"),     # reaches into the band
])
def test_tie_logic(low, high, tie, way):
    iv = Interval((low + high) / 2, low, high)
    assert is_tie(iv, 0.02) is tie
    assert direction(iv, 0.02) == way


def test_unknown_interval_is_a_tie():
    assert is_tie(Interval.unknown(1.5))
    assert is_tie(Interval(1.5, 1.4, 1.6), band=0.0) is False
    assert is_tie(Interval(1.0, 0.9, 1.1), band=0.0) is True
