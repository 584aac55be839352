"""The agreement rule of `train`: every implementation's loss curve follows numpy's within
max(2·τ(n), 10·E) (affbench/train/agreement.py), and a wrong kernel does not."""

from __future__ import annotations

import math

import numpy as np
import pytest

from affbench.protocol import KernelImpl
from affbench.train import agreement
from affbench.train.data import synthetic
from affbench.train.loop import Trainer
from affbench.train.networks import NETWORKS, Network
from affbench.verify import tolerance as product_tolerance

STEPS = 30


class ScaledDW(KernelImpl):
    """numpy with dW off by a relative ``error``: a kernel bug too small for a loss to show at once."""

    name = "test-scaled-dw"

    def __init__(self, error: float) -> None:
        self.error = error

    def _forward(self, x, W, b):
        return x @ W + b

    def _backward(self, x, W, dout):
        return dout @ W.T, (x.T @ dout) * (1 + self.error), dout.sum(axis=0)


def curve(impl, dtype: str, layer_sizes=(196, 50, 10), steps: int = STEPS) -> np.ndarray:
    spec = NETWORKS["two-layer"]
    data = synthetic((layer_sizes[0],), 500, dtype=dtype, seed=1)
    net = Network(list(layer_sizes), impl, spec.weight_init, dtype, seed=0)
    return Trainer(net, spec.make_optimizer(), data, batch=50, seed=2).curve(steps)[0]


def rule(dtype: str, reference: np.ndarray, layer_sizes=(196, 50, 10)) -> agreement.Tolerance:
    n = agreement.longest_sum(layer_sizes, 50)
    return agreement.tolerance(dtype, n, reference, curve(agreement.NudgedNumpy(7), dtype, layer_sizes))


@pytest.fixture(scope="module")
def references() -> dict[str, tuple[np.ndarray, agreement.Tolerance]]:
    out = {}
    for dtype in ("float64", "float32"):
        ref = curve("numpy", dtype)
        out[dtype] = (ref, rule(dtype, ref))
    return out


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("impl", ["numba-serial", "numba-prange", "numba-tiled"])
def test_every_implementation_agrees_with_numpy(references, impl, dtype):
    ref, tol = references[dtype]
    result = agreement.check(curve(impl, dtype), ref, tol)
    assert result.passed, result
    assert result.max_difference < 0.01 * tol.value or dtype == "float32"  # float64: the loss's last bits


def test_naive_agrees_on_a_tiny_network():
    sizes = (6, 5, 10)
    ref = curve("numpy", "float64", sizes, steps=10)
    tol = agreement.tolerance("float64", 50, ref, curve(agreement.NudgedNumpy(1), "float64", sizes, steps=10))
    assert agreement.check(curve("naive", "float64", sizes, steps=10), ref, tol).passed


@pytest.mark.parametrize("error", [1e-2, 1e-6, 1e-9])
def test_a_slightly_wrong_gradient_disagrees_in_float64(references, error):
    ref, tol = references["float64"]
    result = agreement.check(curve(ScaledDW(error), "float64"), ref, tol)
    assert not result.passed, result


def test_a_wrong_gradient_disagrees_in_float32(references):
    """float32's rule is coarse (2·τ(n) ~ 3e-5 here): a dW 10% off is caught, 1% is not at this
    small size (100 steps of the book's 784-50-10 catch 1%: docs/train.md)."""
    ref, tol = references["float32"]
    assert not agreement.check(curve(ScaledDW(0.1), "float32"), ref, tol).passed


def test_the_tolerance_is_the_rounding_bound_when_training_does_not_amplify(references):
    ref, tol = references["float64"]
    assert tol.rounding == pytest.approx(2 * product_tolerance("float64", 196))
    assert tol.source == "rounding" and tol.value == tol.rounding
    assert tol.envelope < 1e-14  # a nudge moves the loss by its last bits, if at all


def test_the_tolerance_follows_the_nudged_run_when_training_amplifies():
    ref = np.full(5, 2.0)
    nudged = np.array([2.0, 2.0, 2.01, 2.02, 2.0])  # parted by 1% at most
    tol = agreement.tolerance("float32", 100, ref, nudged)
    assert tol.envelope == pytest.approx(0.01) and tol.value == pytest.approx(0.1) and tol.source == "nudged numpy"
    assert agreement.check(ref * 1.09, ref, tol).passed
    assert not agreement.check(ref * 1.11, ref, tol).passed


def test_check_reports_the_worst_and_the_last_step_and_fails_on_nan():
    ref = np.array([2.0, 1.0, 1.0])
    tol = agreement.Tolerance(rounding=1e-3, envelope=0.0)
    result = agreement.check(np.array([2.0, 1.0005, 1.0001]), ref, tol)
    assert result.max_difference == pytest.approx(5e-4) and result.final_difference == pytest.approx(1e-4)
    assert result.passed
    bad = agreement.check(np.array([2.0, math.nan, 1.0]), ref, tol)
    assert not bad.passed and bad.max_difference == math.inf
    with pytest.raises(ValueError, match="lengths"):
        agreement.check(np.ones(2), ref, tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nudged_numpy_is_one_rounding_error_from_numpy(dtype):
    rng = np.random.default_rng(0)
    x, W, b = (rng.standard_normal(s).astype(dtype) for s in ((20, 30), (30, 8), (8,)))
    exact = x @ W + b
    nudged = agreement.NudgedNumpy(0).forward(x, W, b)
    assert nudged.dtype == dtype
    moved = np.abs(nudged.astype(np.float64) - exact) / np.max(np.abs(exact))
    assert 0 < np.max(moved) <= 1.5 * np.finfo(dtype).eps  # eps, and the addition's own rounding
    _, dW, _ = agreement.NudgedNumpy(0).backward(x, W, exact)
    ref = np.dot(x.T, exact)
    assert 0 < np.max(np.abs(dW - ref)) <= 1.5 * np.finfo(dtype).eps * np.max(np.abs(ref))
    assert not np.array_equal(nudged, agreement.NudgedNumpy(1).forward(x, W, b))  # seeded noise, per seed
    assert agreement.NudgedNumpy(0).forward(x[:0], W, b).shape == (0, 8)
    assert np.array_equal(nudged, agreement.NudgedNumpy(0).forward(x, W, b))


def test_longest_sum():
    assert agreement.longest_sum([784, 50, 10], 100) == 784
    assert agreement.longest_sum([4, 3, 2], 100) == 100
