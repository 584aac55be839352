"""The book's networks for `train`: layers, gradients (the book's numerical check), data, steps.

The numerical gradient check perturbs each weight in place through ``network.params``; the
Affine layers hold those arrays by reference, so a layer that copied its weights would see no
perturbation and the check would fail (numerical gradients of zero).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from affbench.train import data as train_data
from affbench.train.layers import SGD, Momentum, ReLU, SoftmaxWithLoss, cross_entropy_error, softmax
from affbench.train.loop import AFFINE_PARTS, PARTS, Laps, Trainer, affine_share
from affbench.train.networks import NETWORKS, Network, build

#: every built-in implementation; pure Python (naive) and numba-prange (a parallel launch of
#: tens of µs per call, 10^4 calls) are checked on the small networks only
IMPLS = ("numpy", "numba-serial", "numba-prange", "numba-tiled")
FAST_IMPLS = ("numpy", "numba-serial", "numba-tiled")


#: The book's loss is log(y + 1e-7) and its backward the gradient of log(y): the two differ by a
#: relative 1e-7 / y (~1e-6 at y ~ 0.1, measured 1e-6 .. 1.3e-5); central differences with
#: h = 1e-4 add ~1e-8. A wrong gradient is off by a relative 1e-1 or more.
RELATIVE_LIMIT = 1e-4


def check_gradients(net: Network, x: np.ndarray, t: np.ndarray) -> dict[str, float]:
    """The book's gradient_check, per parameter: max |backprop - numerical| / max |backprop|
    (the book prints the mean absolute difference, which depends on the gradients' scale)."""
    _, grads = net.gradient(x, t)
    grads = {k: v.copy() for k, v in grads.items()}
    numerical = net.numerical_gradient(x, t)
    return {k: float(np.max(np.abs(grads[k] - numerical[k])) / np.max(np.abs(grads[k]))) for k in grads}


@pytest.mark.parametrize("impl", FAST_IMPLS)
@pytest.mark.parametrize("network", ["two-layer", "convnet-head"])
def test_gradient_check_on_the_books_networks(network, impl):
    """The book's check (h = 1e-4, float64, 3 samples) on the networks as built for digits:
    TwoLayerNet 64-50-10 and SimpleConvNet's head on (3, 30, 2, 2) pooled maps (N-d input)."""
    spec = NETWORKS[network]
    shape = (64,) if spec.digits_input == "pixels" else (30, 2, 2)
    rng = np.random.default_rng(1)
    net = build(spec, shape, impl, "float64", seed=0)
    for key, p in net.params.items():  # away from the book's 0.01 weights, where every gradient is alike
        p += 0.1 * rng.standard_normal(p.shape)
    x = rng.random((3, *shape))
    t = np.array([0, 3, 9])
    diffs = check_gradients(net, x, t)
    assert set(diffs) == {"W1", "b1", "W2", "b2"}
    for key, d in diffs.items():
        assert d < RELATIVE_LIMIT, (key, d)


@pytest.mark.parametrize("impl", IMPLS)
def test_gradient_check_on_a_deep_network(impl):
    """Two hidden layers (the deep MLP's structure at a small width), He initialisation."""
    rng = np.random.default_rng(2)
    net = Network([10, 8, 8, 10], impl, "he", "float64", seed=3)
    x = rng.standard_normal((3, 10))
    t = np.eye(10)[[1, 4, 7]]  # one-hot labels take the other branch of SoftmaxWithLoss
    diffs = check_gradients(net, x, t)
    assert len(diffs) == 6 and max(diffs.values()) < RELATIVE_LIMIT, diffs


def test_gradient_check_naive_on_a_tiny_network():
    rng = np.random.default_rng(4)
    net = Network([6, 5, 3], "naive", 0.5, "float64", seed=5)
    diffs = check_gradients(net, rng.standard_normal((3, 6)), np.array([0, 1, 2]))
    assert max(diffs.values()) < RELATIVE_LIMIT, diffs


def test_a_wrong_gradient_fails_the_check():
    """The check can fail: a network whose last ReLU lets negative values through backward."""
    rng = np.random.default_rng(6)
    net = Network([8, 6, 4], "numpy", 0.5, "float64", seed=7)
    x, t = rng.standard_normal((3, 8)), np.array([0, 1, 3])
    net.layers["Relu1"].backward = lambda dout: dout  # the mask forgotten
    assert max(check_gradients(net, x, t).values()) > 100 * RELATIVE_LIMIT


def test_weights_are_shared_with_the_affine_layers():
    net = build(NETWORKS["two-layer"], (20,), "numpy")
    assert net.layers["Affine1"].W is net.params["W1"] and net.layers["Affine2"].b is net.params["b2"]
    x = np.ones((2, 20))
    before = net.predict(x).copy()
    net.params["b2"] += 1.0  # in place, as the optimizers do
    assert np.allclose(net.predict(x), before + 1.0)


def test_same_seed_same_weights_for_every_implementation_and_dtype():
    a = build(NETWORKS["deep-mlp"], (16,), "numpy", "float64", seed=3)
    b = build(NETWORKS["deep-mlp"], (16,), "numba-tiled", "float64", seed=3)
    c = build(NETWORKS["deep-mlp"], (16,), "numpy", "float32", seed=3)
    for key in a.params:
        assert np.array_equal(a.params[key], b.params[key])
        assert c.params[key].dtype == np.float32 and np.array_equal(c.params[key], a.params[key].astype(np.float32))
    # He initialisation: std sqrt(2 / in_features)
    assert abs(np.std(a.params["W2"]) - np.sqrt(2 / 1024)) < 0.1 * np.sqrt(2 / 1024)


def test_network_sizes_follow_the_data():
    assert NETWORKS["two-layer"].layer_sizes(784) == [784, 50, 10]
    assert NETWORKS["deep-mlp"].layer_sizes(784) == [784, 1024, 1024, 10]
    assert NETWORKS["convnet-head"].layer_sizes(30 * 12 * 12) == [4320, 100, 10]
    net = build(NETWORKS["convnet-head"], (30, 2, 2))
    assert net.params["W1"].shape == (120, 100)
    assert net.predict(np.zeros((4, 30, 2, 2))).shape == (4, 10)


@pytest.mark.parametrize("bad, text", [([5], "two or more"), ([5, 0, 2], "two or more")])
def test_network_refuses_bad_sizes(bad, text):
    with pytest.raises(ValueError, match=text):
        Network(bad)


def test_network_refuses_a_bad_weight_init():
    with pytest.raises(ValueError, match="weight_init"):
        Network([4, 2], weight_init=-1.0)


# --------------------------------------------------------------------------- layers

def test_softmax_and_cross_entropy():
    x = np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, 1000.0]])  # the shift keeps exp finite
    y = softmax(x)
    assert np.allclose(y.sum(axis=1), 1.0) and np.allclose(y[1], 1 / 3)
    assert cross_entropy_error(y, np.array([2, 0])) == pytest.approx(-(np.log(y[0, 2] + 1e-7) + np.log(1 / 3 + 1e-7)) / 2)
    assert cross_entropy_error(y[0], np.array([0, 0, 1])) == pytest.approx(-np.log(y[0, 2] + 1e-7))


def test_softmax_with_loss_backward_is_the_same_for_one_hot_and_index_labels():
    x = np.random.default_rng(0).standard_normal((4, 5))
    a, b = SoftmaxWithLoss(), SoftmaxWithLoss()
    labels = np.array([0, 4, 2, 2])
    assert a.forward(x, labels) == pytest.approx(b.forward(x, np.eye(5)[labels]))
    assert np.allclose(a.backward(), b.backward())
    assert np.allclose(a.backward(), (softmax(x) - np.eye(5)[labels]) / 4)


def test_relu_masks_forward_and_backward():
    relu = ReLU()
    out = relu.forward(np.array([[-1.0, 0.0, 2.0]]))
    assert out.tolist() == [[0.0, 0.0, 2.0]]
    assert relu.backward(np.array([[5.0, 5.0, 5.0]])).tolist() == [[0.0, 0.0, 5.0]]


def test_optimizers_update_in_place():
    W = np.ones(3)
    SGD(lr=0.5).update({"W": W}, {"W": np.array([1.0, 2.0, 0.0])})
    assert W.tolist() == [0.5, 0.0, 1.0]
    W = np.zeros(2)
    m = Momentum(lr=1.0, momentum=0.5)
    for _ in range(2):
        m.update({"W": W}, {"W": np.ones(2)})
    assert W.tolist() == [-2.5, -2.5]  # v: -1, then -1.5
    m.reset()
    assert m.v is None
    with pytest.raises(ValueError, match="lr"):
        SGD(lr=0)
    with pytest.raises(ValueError, match="momentum"):
        Momentum(momentum=1.0)


def test_float32_stays_float32():
    net = build(NETWORKS["two-layer"], (8,), "numpy", "float32")
    trainer = Trainer(net, SGD(0.1), train_data.synthetic((8,), 50, dtype="float32"), batch=5)
    trainer.step()
    assert all(p.dtype == np.float32 for p in net.params.values())


# --------------------------------------------------------------------------- data

def test_synthetic_data_is_seeded_and_learnable():
    a = train_data.synthetic((30, 2, 2), 500, seed=1)
    b = train_data.synthetic((30, 2, 2), 500, seed=1)
    assert a.x.shape == (500, 30, 2, 2) and a.sample_shape == (30, 2, 2) and len(a) == 500
    assert np.array_equal(a.x, b.x) and np.array_equal(a.t, b.t)
    assert 0 <= a.x.min() and a.x.max() < 1
    assert len(np.unique(a.t)) >= 8  # the teacher spreads the labels over the classes
    # learnable: what is learnt on 1500 samples holds on 500 others (chance: ~10-15%)
    data = train_data.synthetic((20,), 2000, seed=1)
    net = build(NETWORKS["two-layer"], (20,))
    Trainer(net, SGD(0.5), train_data.Dataset("first 1500", data.x[:1500], data.t[:1500]), batch=50).curve(600)
    assert net.accuracy(data.x[1500:], data.t[1500:]) > 0.5


def test_digits_as_pixels_and_pooled_maps():
    pytest.importorskip("sklearn")
    pixels = train_data.digits("float32")
    assert pixels.x.shape == (train_data.DIGITS_SAMPLES, 64) and pixels.x.dtype == np.float32
    assert pixels.x.min() == 0.0 and pixels.x.max() == 1.0 and set(np.unique(pixels.t)) == set(range(10))
    pooled = train_data.digits("float64", "pooled")
    assert pooled.x.shape == (1797, 30, 2, 2) and pooled.x.min() >= 0.0
    with pytest.raises(ValueError, match="as_"):
        train_data.digits(as_="rgb")


def test_pooled_features_shape_follows_simpleconvnet():
    images = np.random.default_rng(0).random((2, 28, 28))
    assert train_data.pooled_features(images).shape == (2, 30, 12, 12)  # MNIST: 30*12*12 = 4320
    with pytest.raises(ValueError, match="images"):
        train_data.pooled_features(np.zeros((2, 28)))


def test_digits_without_scikit_learn_names_the_install_command(monkeypatch):
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now raises ImportError
    with pytest.raises(train_data.MissingExtra, match=r'pip install -e "\.\[train\]"'):
        train_data.digits()


# --------------------------------------------------------------------------- steps

def test_trainers_with_one_seed_see_the_same_batches_and_reset_repeats_them():
    data = train_data.synthetic((10,), 100, seed=2)
    runs = []
    for impl in ("numpy", "numba-serial"):
        trainer = Trainer(build(NETWORKS["two-layer"], (10,), impl), SGD(0.1), data, batch=10, seed=4)
        runs.append(trainer.curve(6)[0])
        trainer.reset()
        runs.append(trainer.curve(6)[0])
    assert np.allclose(runs[0], runs[2], rtol=1e-14)
    assert np.array_equal(runs[0], runs[1]) and np.array_equal(runs[2], runs[3])


def test_laps_split_a_step_into_its_parts():
    data = train_data.synthetic((10,), 100, seed=2)
    trainer = Trainer(build(NETWORKS["deep-mlp"], (10,)), Momentum(0.01), data, batch=10)
    laps = Laps()
    for _ in range(3):
        trainer.step(laps)
    assert len(laps.steps) == 3
    for step in laps.steps:
        assert set(step) == {*PARTS, "total"}
        assert all(step[p] >= 0 for p in PARTS)
        assert sum(step[p] for p in PARTS) == pytest.approx(step["total"])
        assert all(step[p] > 0 for p in (*AFFINE_PARTS, "relu", "softmax-with-loss", "update", "batch"))
        assert 0 < affine_share(step) < 1


def test_laps_with_a_fake_clock():
    ticks = iter([0.0, 1.0, 4.0, 10.0])
    laps = Laps(clock=lambda: next(ticks))
    laps.start()
    laps.lap("affine forward")
    laps.lap("relu")
    laps.finish()
    step = laps.steps[0]
    assert step["affine forward"] == 1.0 and step["relu"] == 3.0 and step["other"] == 6.0 and step["total"] == 10.0
    assert affine_share(step) == pytest.approx(0.1)


def test_epochs_count_steps():
    data = train_data.synthetic((4,), 25)
    trainer = Trainer(build(NETWORKS["two-layer"], (4,)), SGD(0.1), data, batch=10)
    assert trainer.epochs(2) == 6
    with pytest.raises(ValueError, match="batch"):
        Trainer(trainer.network, SGD(0.1), data, batch=0)
