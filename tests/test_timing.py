"""affbench.measure.timing: statistics on known samples, and the sampling loops driven by a fake clock.

The fake clock only moves when a fake call runs (by that call's cost), so every repeat count,
sample and stopping decision is exact and the tests take no real time.
"""

from __future__ import annotations

import gc
import math
from contextlib import contextmanager

import numpy as np
import pytest

from affbench.measure.timing import (
    NOISE_CV_THRESHOLD,
    Plan,
    Stats,
    Timed,
    calibrate,
    clock_resolution,
    is_noisy,
    precision,
    round_plan,
    sample_round_robin,
    sample_rounds,
    should_stop,
    stop_reason,
    summarize,
    take_sample,
)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.t


class FakeCase:
    """A case whose call costs ``cost`` fake seconds; it can be made to raise from call ``fail_at`` on."""

    def __init__(self, clock: FakeClock, name: str, cost: float, log: list[str],
                 fail_at: int | None = None, fail_in_context: bool = False) -> None:
        self.clock, self.name, self.cost, self.log = clock, name, cost, log
        self.fail_at, self.fail_in_context = fail_at, fail_in_context
        self.calls = 0
        self.timed = Timed(call=self.call, context=self.context)

    def call(self) -> None:
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise RuntimeError(f"{self.name} broke at call {self.calls}")
        self.clock.t += self.cost

    @contextmanager
    def context(self):
        self.log.append(self.name)  # entered once for warm-up + calibration, then once per sample
        yield


# --------------------------------------------------------------------------- summarize
def test_summarize_known_samples():
    s = summarize([5.0, 1.0, 4.0, 2.0, 3.0])
    assert s.n == 5
    assert s.median == 3.0
    assert (s.q1, s.q3, s.iqr) == (2.0, 4.0, 2.0)
    assert s.min == 1.0 and s.mean == 3.0
    assert s.std == pytest.approx(math.sqrt(2.5))  # sample std, ddof=1
    assert s.cv == pytest.approx(math.sqrt(2.5) / 3.0)


def test_summarize_even_count_interpolates_quartiles():
    s = summarize([1.0, 2.0, 3.0, 4.0])
    assert s.median == 2.5
    assert s.q1 == pytest.approx(1.75) and s.q3 == pytest.approx(3.25)
    assert s.iqr == pytest.approx(1.5)
    assert s.std == pytest.approx(np.std([1, 2, 3, 4], ddof=1))


def test_summarize_single_and_constant_samples():
    one = summarize([2e-6])
    assert (one.n, one.median, one.q1, one.q3, one.iqr, one.std, one.cv) == (1, 2e-6, 2e-6, 2e-6, 0.0, 0.0, 0.0)
    flat = summarize([3.0] * 7)
    assert flat.std == 0.0 and flat.cv == 0.0 and flat.iqr == 0.0


def test_summarize_zero_mean_gives_nan_cv_and_empty_raises():
    assert math.isnan(summarize([0.0, 0.0]).cv)
    with pytest.raises(ValueError, match="at least one sample"):
        summarize([])


# --------------------------------------------------------------------------- is_noisy
def _stats(cv: float, n: int = 10) -> Stats:
    return Stats(n=n, median=1.0, q1=1.0, q3=1.0, iqr=0.0, min=1.0, mean=1.0, std=cv, cv=cv)


def test_is_noisy_threshold():
    assert NOISE_CV_THRESHOLD == 0.10
    assert is_noisy(_stats(0.1001))
    assert not is_noisy(_stats(0.10))  # strictly above the threshold
    assert not is_noisy(_stats(0.05))
    assert not is_noisy(_stats(0.5, n=1))  # one sample says nothing about spread
    assert is_noisy(_stats(0.06), threshold=0.05)
    assert not is_noisy(_stats(math.nan))


def test_is_noisy_on_real_samples():
    assert not is_noisy(summarize([1.00, 1.01, 0.99, 1.00, 1.02]))
    assert is_noisy(summarize([1.0, 1.0, 1.0, 1.0, 2.0]))


# --------------------------------------------------------------------------- take_sample / calibrate
def test_take_sample_is_time_per_call_with_gc_paused():
    clock = FakeClock()
    seen = []

    def call():
        seen.append(gc.isenabled())
        clock.t += 0.5

    assert gc.isenabled()
    assert take_sample(call, 4, clock) == 0.5
    assert seen == [False] * 4  # a collection must not land inside a sample
    assert gc.isenabled()


def test_calibrate_reaches_min_sample_s_without_overshooting():
    clock, log = FakeClock(), []
    case = FakeCase(clock, "A", 1e-5, log)
    repeats = calibrate(case.call, clock, min_sample_s=1e-3)
    assert repeats * 1e-5 >= 1e-3
    assert repeats <= math.ceil(1.2 * 1e-3 / 1e-5)  # aims 20% past the target, no more
    assert case.calls == 1 + repeats  # one trial sample of 1 call, then one of `repeats`


@pytest.mark.parametrize("cost", [1e-8, 3e-7, 1e-6, 2.5e-4, 9e-4])
def test_calibrate_sample_lasts_at_least_min_sample_s(cost):
    clock, log = FakeClock(), []
    case = FakeCase(clock, "A", cost, log)
    repeats = calibrate(case.call, clock, min_sample_s=1e-3)
    assert repeats * cost >= 1e-3 * (1 - 1e-9)
    assert repeats * cost <= 2.5e-3  # never wildly past the target


def test_calibrate_slow_call_needs_one_repeat():
    clock, log = FakeClock(), []
    case = FakeCase(clock, "A", 0.01, log)
    assert calibrate(case.call, clock, min_sample_s=1e-3) == 1
    assert case.calls == 1


def test_calibrate_clock_that_never_moves_stops_at_max_repeats():
    clock = FakeClock()
    calls = []
    repeats = calibrate(lambda: calls.append(1), clock, min_sample_s=1e-3, max_repeats=500)
    assert repeats == 500
    assert len(calls) <= 1 + 10 + 100 + 500  # never a sample of more than max_repeats calls


def test_clock_resolution_sees_the_smallest_step():
    state = {"t": 0.0, "n": 0}

    def clock():
        state["n"] += 1
        if state["n"] % 3 == 0:  # the clock moves every third read, by 1 µs
            state["t"] += 1e-6
        return state["t"]

    assert clock_resolution(clock, tries=20) == pytest.approx(1e-6)


# --------------------------------------------------------------------------- sample_round_robin
def _cases(clock, costs, log, **kw):
    return [FakeCase(clock, name, cost, log, **kw.get(name, {})) for name, cost in costs.items()]


def test_round_robin_order_and_exact_samples():
    clock, log = FakeClock(), []
    cases = _cases(clock, {"A": 1e-5, "B": 2e-5, "C": 4e-6}, log)
    plan = Plan(min_sample_s=1e-3, warmup_calls=2, min_samples=3, max_samples=6, budget_s=1.0)
    sample_round_robin([c.timed for c in cases], plan, clock)
    # warm-up + calibration once per case, in order; then one sample per case per round
    assert log[:3] == ["A", "B", "C"]
    assert log[3:] == ["A", "B", "C"] * 6
    for c in cases:
        t = c.timed
        assert t.error is None
        assert t.repeats * c.cost >= plan.min_sample_s
        assert len(t.samples) == 6  # budget never ran out: max_samples stops it
        assert t.samples == pytest.approx([c.cost] * 6)
        # 2 warm-up calls + calibration (1 + repeats) + 6 samples of `repeats`, each after one
        # untimed priming call (the calls are short)
        assert t.prime
        assert c.calls == 2 + 1 + t.repeats + 6 * (1 + t.repeats)


def test_priming_call_only_for_short_calls():
    clock, log = FakeClock(), []
    cases = _cases(clock, {"short": 1e-5, "long": 5e-2}, log)
    plan = Plan(min_sample_s=1e-3, warmup_calls=0, min_samples=3, max_samples=3, budget_s=1.0, prime_below_s=0.02)
    sample_round_robin([c.timed for c in cases], plan, clock)
    short, long_ = (c.timed for c in cases)
    assert short.prime and not long_.prime
    assert cases[1].calls == 1 + 3  # calibration (1 call suffices), 3 samples


def test_round_robin_stops_when_the_shared_budget_is_spent():
    clock, log = FakeClock(), []
    cases = _cases(clock, {"A": 1e-5, "B": 1e-5, "C": 1e-5}, log)
    plan = Plan(min_sample_s=1e-3, warmup_calls=1, min_samples=2, max_samples=1000, budget_s=0.01)
    sample_round_robin([c.timed for c in cases], plan, clock)
    repeats = cases[0].timed.repeats
    round_s = 3 * repeats * 1e-5
    expected_rounds = math.ceil(3 * plan.budget_s / round_s - 1e-9)  # budget is budget_s per case, shared
    counts = {len(c.timed.samples) for c in cases}
    assert len(counts) == 1  # round-robin: every case gets the same number
    n = counts.pop()
    assert expected_rounds <= n <= expected_rounds + 1
    assert plan.min_samples < n < plan.max_samples


def test_round_robin_takes_min_samples_even_past_the_budget():
    clock, log = FakeClock(), []
    cases = _cases(clock, {"A": 0.05, "B": 0.2}, log)  # each sample is far beyond the budget
    plan = Plan(min_sample_s=1e-3, warmup_calls=1, min_samples=4, max_samples=50, budget_s=1e-6)
    sample_round_robin([c.timed for c in cases], plan, clock)
    assert [len(c.timed.samples) for c in cases] == [4, 4]
    assert [c.timed.repeats for c in cases] == [1, 1]


def test_round_robin_max_samples_per_case():
    clock, log = FakeClock(), []
    cases = _cases(clock, {"A": 1e-4, "B": 1e-4}, log)
    plan = Plan(min_sample_s=1e-3, warmup_calls=0, min_samples=1, max_samples=7, budget_s=1e9)
    sample_round_robin([c.timed for c in cases], plan, clock)
    assert [len(c.timed.samples) for c in cases] == [7, 7]


def test_round_robin_a_case_that_raises_is_dropped_and_the_others_go_on():
    clock, log = FakeClock(), []
    # B's calls: 1 warm-up, 1 + 120 calibration; it breaks in its 2nd sample
    cases = _cases(clock, {"A": 1e-5, "B": 1e-5, "C": 1e-5}, log, B={"fail_at": 1 + 1 + 120 + 120 + 5})
    plan = Plan(min_sample_s=1e-3, warmup_calls=1, min_samples=3, max_samples=5, budget_s=1.0)
    sample_round_robin([c.timed for c in cases], plan, clock)
    a, b, c = (x.timed for x in cases)
    assert b.repeats == 120
    assert isinstance(b.error, RuntimeError) and "B broke" in str(b.error)
    assert len(b.samples) == 1  # the sample it finished is kept; the broken one is not
    assert a.error is None and c.error is None
    assert len(a.samples) == len(c.samples) == 5
    assert log[3:] == ["A", "B", "C", "A", "B", "C"] + ["A", "C"] * 3


def test_round_robin_a_case_failing_in_warmup_never_samples():
    clock, log = FakeClock(), []
    cases = _cases(clock, {"A": 1e-5, "B": 1e-5}, log, A={"fail_at": 1})
    plan = Plan(min_sample_s=1e-3, warmup_calls=1, min_samples=2, max_samples=3, budget_s=1.0)
    sample_round_robin([c.timed for c in cases], plan, clock)
    a, b = (x.timed for x in cases)
    assert isinstance(a.error, RuntimeError) and a.samples == []
    assert b.error is None and len(b.samples) == 3
    assert log == ["A", "B", "B", "B", "B"]


def test_round_robin_a_context_that_raises_is_an_error_too():
    clock, log = FakeClock(), []
    good = FakeCase(clock, "A", 1e-5, log)

    @contextmanager
    def bad_context():
        raise OSError("cannot set threads")
        yield  # pragma: no cover

    bad = Timed(call=lambda: None, context=bad_context)
    sample_round_robin([bad, good.timed], Plan(min_samples=2, max_samples=2, budget_s=1.0), clock)
    assert isinstance(bad.error, OSError) and bad.samples == []
    assert good.timed.error is None and len(good.timed.samples) == 2


def test_round_robin_no_cases_and_all_failing_return():
    clock = FakeClock()
    sample_round_robin([], Plan(), clock)
    log: list[str] = []
    cases = _cases(clock, {"A": 1e-5}, log, A={"fail_at": 1})
    sample_round_robin([c.timed for c in cases], Plan(), clock)
    assert cases[0].timed.error is not None


def test_round_robin_does_not_swallow_base_exceptions():
    """A KeyboardInterrupt (or the runner's Interrupted) must stop the sweep, not fail one case."""
    clock = FakeClock()

    def call():
        clock.t += 1e-3
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sample_round_robin([Timed(call=call)], Plan(), clock)


# --------------------------------------------------------------------------- rounds and the stopping rule
class NoisyCase(FakeCase):
    """Each call costs ``cost`` times a random factor (sd ``noise``); calls longer than
    min_sample_s, so every sample is one call and carries the noise undiluted."""

    def __init__(self, clock, name, cost, log, noise, seed):
        super().__init__(clock, name, cost, log)
        self.rng, self.noise = np.random.default_rng(seed), noise

    def call(self) -> None:
        self.calls += 1
        self.clock.t += self.cost * float(np.exp(self.rng.normal(0.0, self.noise)))


def _rounds_plan(**kw):
    base = dict(min_sample_s=1e-3, warmup_calls=0, min_samples=6, max_samples=600, budget_s=100.0,
                target=0.02, min_rounds=3, max_rounds=6)
    return Plan(**(base | kw))


def test_round_plan_shares_samples_and_budget():
    plan = _rounds_plan(min_samples=7, max_samples=60, budget_s=1.2)
    one = round_plan(plan)
    assert (one.min_samples, one.max_samples, one.budget_s) == (3, 10, pytest.approx(0.2))
    assert (one.min_rounds, one.max_rounds) == (1, 1)
    assert round_plan(Plan()) == Plan()  # a one-round plan is its own round


def test_never_stops_before_min_rounds_even_when_precise():
    clock, log = FakeClock(), []
    case = NoisyCase(clock, "A", 2e-3, log, noise=0.0, seed=0)
    plan = _rounds_plan()
    for r in range(1, 4):
        sample_round_robin([case.timed], round_plan(plan), clock)
        assert len(case.timed.rounds) == r
        assert should_stop(case.timed, plan) is (r >= 3)
    assert stop_reason(case.timed, plan) == "precise"


def test_quiet_cases_stop_on_precision_noisy_ones_on_max_rounds():
    clock, log = FakeClock(), []
    quiet = NoisyCase(clock, "quiet", 2e-3, log, noise=0.01, seed=1)
    noisy = NoisyCase(clock, "noisy", 2e-3, log, noise=0.40, seed=2)
    plan = _rounds_plan(max_samples=60)  # 10 per round: +-40% noise cannot reach 2% in 60
    sample_rounds([quiet.timed, noisy.timed], plan, clock)
    assert len(quiet.timed.rounds) == 3 and stop_reason(quiet.timed, plan) == "precise"
    assert precision(quiet.timed).worst <= 0.02
    assert len(noisy.timed.rounds) == 6 and stop_reason(noisy.timed, plan) == "max_samples"
    assert precision(noisy.timed).worst > 0.02


def test_precision_reached_after_more_rounds():
    """Noise of 8%: 3 rounds of 30 samples give about +-3%; more rounds bring it under 2%."""
    clock, log = FakeClock(), []
    case = NoisyCase(clock, "A", 2e-3, log, noise=0.08, seed=3)
    plan = _rounds_plan(max_samples=300, max_rounds=10)
    sample_rounds([case.timed], plan, clock)
    assert 3 < len(case.timed.rounds) < 10
    assert precision(case.timed).worst <= 0.02 and stop_reason(case.timed, plan) == "precise"


def test_budget_stops_a_slow_case():
    clock, log = FakeClock(), []
    slow = NoisyCase(clock, "slow", 0.1, log, noise=0.3, seed=4)
    plan = _rounds_plan(budget_s=1.0)  # 0.1 s per sample: 6 s of rounds would be needed
    sample_rounds([slow.timed], plan, clock)
    assert stop_reason(slow.timed, plan) == "budget"
    assert len(slow.timed.samples) >= 6  # min_samples taken even past the budget
    assert sum(slow.timed.samples) < 2.0


def test_ratio_precision_keeps_the_baseline_sampling():
    """A case paired with a baseline needs both intervals: the baseline, precise by itself,
    goes on taking the rounds its partner needs, and the pairs stay aligned."""
    clock, log = FakeClock(), []
    base = NoisyCase(clock, "numpy", 2e-3, log, noise=0.005, seed=5)
    other = NoisyCase(clock, "other", 3e-3, log, noise=0.08, seed=6)
    other.timed.baseline = base.timed
    plan = _rounds_plan(max_rounds=8, max_samples=240)  # 30 per round
    sample_rounds([base.timed, other.timed], plan, clock)
    assert len(base.timed.rounds) == len(other.timed.rounds) > 3
    p = precision(other.timed)
    assert p.ratio is not None and p.ratio.value == pytest.approx(1.5, rel=0.03)
    assert [len(r) for r in base.timed.rounds] == [len(r) for r in other.timed.rounds]


def test_a_failing_case_settles_and_the_rest_go_on():
    clock, log = FakeClock(), []
    good = NoisyCase(clock, "good", 2e-3, log, noise=0.01, seed=7)
    bad = FakeCase(clock, "bad", 2e-3, log, fail_at=20)
    plan = _rounds_plan()
    sample_rounds([bad.timed, good.timed], plan, clock)
    assert isinstance(bad.timed.error, RuntimeError)
    assert good.timed.error is None and len(good.timed.rounds) == 3
