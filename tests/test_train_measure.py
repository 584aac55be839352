"""`train`'s timing (affbench.train.measure) and one network's whole run (affbench.train.runner)
on tiny settings. Nothing here asserts a time: only what the measurement records and how."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from affbench import registry
from affbench.measure.intervals import Interval
from affbench.measure.timing import Plan
from affbench.protocol import KernelImpl
from affbench.train import runner
from affbench.train.data import synthetic
from affbench.train.layers import SGD
from affbench.train.loop import PARTS, Trainer
from affbench.train.measure import StepTiming, amdahl_bound, measure
from affbench.train.networks import NETWORKS, build

TINY_PLAN = Plan(min_sample_s=1e-4, warmup_calls=1, min_samples=3, max_samples=4, budget_s=0.02,
                 min_rounds=2, max_rounds=2)


def pair(impl: str) -> tuple[Trainer, Trainer]:
    data = synthetic((20,), 200, seed=1)
    return tuple(Trainer(build(NETWORKS["two-layer"], (20,), impl), SGD(0.1), data, batch=10, seed=2)
                 for _ in range(2))


def test_measure_records_times_ratios_shares_and_threads():
    trainers = {"numpy": pair("numpy"), "numba-serial": pair("numba-serial")}
    initial = {k: v.copy() for k, v in trainers["numpy"][0].network.params.items()}
    out = measure(trainers, threads=1, plan=TINY_PLAN)
    assert set(out) == {"numpy", "numba-serial"}
    for name, t in out.items():
        assert t.error is None and t.rounds == 2 and len(t.samples) >= 3
        assert t.time.low <= t.time.value <= t.time.high
        assert 0 < t.share.value < 1 and t.lapped_steps >= 6
        assert set(t.parts) == set(PARTS) and all(v >= 0 for v in t.parts.values())
        assert t.amdahl.value == pytest.approx(1 / (1 - t.share.value))
        assert t.threads is not None and t.threads.blas_threads == 1 and t.threads.numba_threads == 1
    assert out["numpy"].ratio is None and out["numpy"].speedup is None
    ratio = out["numba-serial"].ratio
    assert ratio is not None and out["numba-serial"].speedup.value == pytest.approx(1 / ratio.value)
    # each round started from the initial weights: after the last one, they are back there
    for key, value in trainers["numpy"][0].network.params.items():
        assert np.array_equal(value, initial[key])


def test_a_failing_implementation_is_recorded_not_raised():
    trainers = {"numpy": pair("numpy"), "broken": pair("numpy")}

    def boom(laps=None):
        raise RuntimeError("kernel exploded")

    trainers["broken"][0].step = boom
    out = measure(trainers, threads=1, plan=TINY_PLAN)
    assert "kernel exploded" in out["broken"].error and out["broken"].stopped == "failed"
    assert out["numpy"].error is None


@pytest.mark.parametrize("share, bound", [(0.0, 1.0), (0.5, 2.0), (0.9, 10.0), (1.0, math.inf), (-0.1, 1.0)])
def test_amdahl_bound(share, bound):
    assert amdahl_bound(share) == pytest.approx(bound)


def test_amdahl_interval_follows_the_share_interval():
    t = StepTiming("x", None, Interval(1, 1, 1), None, Interval(0.8, 0.75, 0.9), {})
    assert (t.amdahl.low, t.amdahl.value, t.amdahl.high) == pytest.approx((4.0, 5.0, 10.0))


def test_run_network_on_a_tiny_setting():
    pytest.importorskip("sklearn")
    settings = runner.Settings(networks=("two-layer",), impls=("numpy", "numba-serial"), batch=10, iterations=5,
                               epochs=1, threads=1, samples=100, plan=TINY_PLAN)
    compile_s = runner.compile_all(settings.impls, settings.dtype, 1, lambda _: None)
    result = runner.run_network(NETWORKS["two-layer"], settings, compile_s)
    assert result.layer_sizes == [784, 50, 10] and result.digits_layer_sizes == [64, 50, 10]
    assert result.digits_steps == 180 and result.digits_epochs == 1
    numpy_, serial = result.impls["numpy"], result.impls["numba-serial"]
    assert len(numpy_.curve.losses) == 5 and numpy_.curve.agreement is None
    assert serial.curve.agreement.passed and serial.digits.agreement.passed
    assert np.all(np.diff(numpy_.curve.wall_s) > 0)
    assert serial.digits.accuracy == numpy_.digits.accuracy > 0.1
    assert serial.timing.ratio is not None and numpy_.timing.ratio is None
    assert result.nudged is not None and len(result.nudged.losses) == 5


class WrongBias(KernelImpl):
    """A kernel whose forward adds 1e-3 to every output: wrong, and training shows it."""

    name = "test-wrong-bias"

    def _forward(self, x, W, b):
        return x @ W + b + 1e-3

    def _backward(self, x, W, dout):
        return dout @ W.T, x.T @ dout, dout.sum(axis=0)


def test_a_disagreeing_implementation_is_not_timed():
    registry.register(WrongBias)
    try:
        settings = runner.Settings(networks=("two-layer",), impls=("numpy", "test-wrong-bias"), batch=10,
                                   iterations=5, digits=False, threads=1, samples=100, plan=TINY_PLAN)
        result = runner.run_network(NETWORKS["two-layer"], settings, {})
    finally:
        registry.unregister("test-wrong-bias")
    assert result.impls["test-wrong-bias"].curve.agreement.passed is False
    assert result.impls["test-wrong-bias"].timing is None and result.impls["numpy"].timing is not None


def test_naive_prediction_scales_with_the_work():
    small = runner.Settings(networks=("two-layer",), batch=2, iterations=10, digits=False)
    assert runner.predicted_naive_s(small) < 10
    assert runner.predicted_naive_s(runner.Settings()) > 1000
    assert runner.predicted_naive_s(replace(small, batch=4)) == pytest.approx(2 * runner.predicted_naive_s(small))
