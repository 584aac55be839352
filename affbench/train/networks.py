"""The book's networks, built from the book's layers with affbench's Affine on any implementation.

One class, :class:`Network`, is the book's TwoLayerNet (ch05) generalised to any number of
hidden layers, as its MultiLayerNet (ch06) is: Affine-ReLU pairs, a last Affine, SoftmaxWithLoss.
:data:`NETWORKS` names the three this benchmark trains:

- ``two-layer``: TwoLayerNet, 784->50->10 at batch 100, weights 0.01*randn, SGD lr 0.1 (ch04/ch05);
- ``deep-mlp``: 784->1024->1024->10, He initialisation (MultiLayerNet's 'relu'), Momentum;
- ``convnet-head``: the two Affine layers of SimpleConvNet (ch07), 30*12*12->100->10, fed with
  the pooled feature maps (N, 30, 12, 12) its convolution and pooling would produce (the
  first Affine flattens them, as the book's Affine does).

The Affine layers hold ``params["W1"]`` etc. by reference, so the optimizer's in-place update and
the book's numerical gradient (which perturbs the weights in place) reach them.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from affbench.layer import Affine
from affbench.protocol import AffineImpl
from affbench.reference import numerical_gradient as _numerical_gradient
from affbench.train.layers import SGD, Momentum, ReLU, SoftmaxWithLoss


class Laps(Protocol):
    """Where a step's time goes (affbench.train.loop.Laps): ``lap(part)`` charges the time since
    the previous lap to ``part``."""

    def lap(self, part: str) -> None: ...


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    description: str
    hidden: tuple[int, ...]
    #: the standard deviation of the initial weights, or "he" for sqrt(2 / in_features)
    weight_init: float | str
    optimizer: str  # "sgd" or "momentum"
    lr: float
    #: one sample's shape in the timing runs (MNIST's 784 pixels, or SimpleConvNet's pooled maps)
    mnist_shape: tuple[int, ...]
    #: what the digits data becomes for this network: "pixels" (64) or "pooled" (30, 2, 2) maps
    digits_input: str = "pixels"
    #: epochs on digits before the accuracy is read: the book's small initial weights (0.01)
    #: leave TwoLayerNet and the conv head near chance for ~200 steps at lr 0.1 (18 steps an epoch)
    digits_epochs: int = 30
    classes: int = 10

    def make_optimizer(self) -> SGD | Momentum:
        return SGD(self.lr) if self.optimizer == "sgd" else Momentum(self.lr)

    def layer_sizes(self, in_features: int) -> list[int]:
        return [in_features, *self.hidden, self.classes]


NETWORKS: dict[str, NetworkSpec] = {
    "two-layer": NetworkSpec("two-layer", "the book's TwoLayerNet (ch04/ch05)", (50,), 0.01, "sgd", 0.1, (784,)),
    "deep-mlp": NetworkSpec("deep-mlp", "a deeper MLP (the book's MultiLayerNet, He init)", (1024, 1024), "he",
                            "momentum", 0.01, (784,), digits_epochs=3),
    "convnet-head": NetworkSpec("convnet-head", "SimpleConvNet's two Affine layers (ch07) on pooled maps", (100,),
                                0.01, "sgd", 0.1, (30, 12, 12), digits_input="pooled"),
}


class Network:
    """Affine-ReLU x len(hidden), Affine, SoftmaxWithLoss; the book's interface (predict, loss,
    accuracy, gradient, numerical_gradient) with the weights in ``params``."""

    def __init__(self, layer_sizes: Sequence[int], impl: str | AffineImpl = "numpy", weight_init: float | str = 0.01,
                 dtype: str | np.dtype = "float64", seed: int = 0) -> None:
        if len(layer_sizes) < 2 or any(int(n) < 1 for n in layer_sizes):
            raise ValueError(f"layer_sizes must be two or more positive sizes, got {list(layer_sizes)}")
        if not (weight_init == "he" or (isinstance(weight_init, (int, float)) and weight_init > 0)):
            raise ValueError(f"weight_init must be a positive standard deviation or 'he', got {weight_init!r}")
        dtype = np.dtype(dtype)
        rng = np.random.default_rng(seed)
        self.params: dict[str, np.ndarray] = {}
        self.layers: OrderedDict[str, Affine | ReLU] = OrderedDict()
        pairs = list(zip(layer_sizes, layer_sizes[1:]))
        for i, (in_features, out_features) in enumerate(pairs, 1):
            std = math.sqrt(2.0 / in_features) if weight_init == "he" else float(weight_init)
            # drawn in float64 and then cast: every dtype and implementation starts from the same weights
            self.params[f"W{i}"] = (std * rng.standard_normal((in_features, out_features))).astype(dtype)
            self.params[f"b{i}"] = np.zeros(out_features, dtype=dtype)
            self.layers[f"Affine{i}"] = Affine(self.params[f"W{i}"], self.params[f"b{i}"], impl)
            if i < len(pairs):
                self.layers[f"Relu{i}"] = ReLU()
        self.last_layer = SoftmaxWithLoss()
        self.dtype = dtype

    @property
    def affines(self) -> list[Affine]:
        return [layer for layer in self.layers.values() if isinstance(layer, Affine)]

    def predict(self, x: np.ndarray, laps: Laps | None = None) -> np.ndarray:
        for layer in self.layers.values():
            x = layer.forward(x)
            if laps is not None:
                laps.lap("affine forward" if isinstance(layer, Affine) else "relu")
        return x

    def loss(self, x: np.ndarray, t: np.ndarray, laps: Laps | None = None) -> float:
        y = self.predict(x, laps)
        loss = self.last_layer.forward(y, t)
        if laps is not None:
            laps.lap("softmax-with-loss")
        return loss

    def accuracy(self, x: np.ndarray, t: np.ndarray, batch: int = 1000) -> float:
        """Share of samples whose largest output is their label (in batches, to bound memory)."""
        labels = t.argmax(axis=1) if t.ndim != 1 else t
        right = 0
        for start in range(0, x.shape[0], batch):
            right += int(np.sum(self.predict(x[start:start + batch]).argmax(axis=1) == labels[start:start + batch]))
        return right / x.shape[0]

    def gradient(self, x: np.ndarray, t: np.ndarray, laps: Laps | None = None) -> tuple[float, dict[str, np.ndarray]]:
        """Backpropagation: the loss of this forward, and dL/d(param) for every parameter."""
        loss = self.loss(x, t, laps)
        dout = self.last_layer.backward(1.0)
        if laps is not None:
            laps.lap("softmax-with-loss")
        for layer in reversed(self.layers.values()):
            dout = layer.backward(dout)
            if laps is not None:
                laps.lap("affine backward" if isinstance(layer, Affine) else "relu")
        grads: dict[str, np.ndarray] = {}
        for i, affine in enumerate(self.affines, 1):
            grads[f"W{i}"], grads[f"b{i}"] = affine.dW, affine.db
        return loss, grads

    def numerical_gradient(self, x: np.ndarray, t: np.ndarray, h: float = 1e-4) -> dict[str, np.ndarray]:
        """The book's check: central differences of the loss, each weight perturbed in place."""
        return {key: _numerical_gradient(lambda: self.loss(x, t), param, h) for key, param in self.params.items()}


def build(spec: NetworkSpec, in_shape: tuple[int, ...], impl: str | AffineImpl = "numpy",
          dtype: str | np.dtype = "float64", seed: int = 0) -> Network:
    """``spec``'s network for samples of shape ``in_shape`` (its input size follows the data)."""
    return Network(spec.layer_sizes(math.prod(in_shape)), impl, spec.weight_init, dtype, seed)
