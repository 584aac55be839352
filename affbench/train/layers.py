"""The book's other layers and optimizers ("Deep Learning from Scratch", common/layers.py,
common/functions.py, common/optimizer.py): ReLU, SoftmaxWithLoss, SGD and Momentum.

Plain NumPy, the same for every Affine implementation, so they are the part of a training step
a faster Affine cannot speed up. They keep the input's dtype (a float32 network stays float32).
"""

from __future__ import annotations

from typing import Mapping, MutableMapping

import numpy as np


class ReLU:
    def __init__(self) -> None:
        self.mask: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.mask = x <= 0
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        # In place, as the book does: dout is the next layer's fresh dx, owned by no one else.
        dout[self.mask] = 0
        return dout


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so exp never overflows."""
    shifted = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=-1, keepdims=True)


def cross_entropy_error(y: np.ndarray, t: np.ndarray) -> float:
    """Mean cross-entropy of probabilities ``y`` (batch, classes) against labels ``t`` (class
    indices, or one-hot rows). The book's 1e-7 keeps log away from 0."""
    if y.ndim == 1:
        t = np.reshape(t, (1, -1))
        y = y.reshape(1, -1)
    if t.size == y.size:
        t = t.argmax(axis=1)
    batch = y.shape[0]
    return float(-np.sum(np.log(y[np.arange(batch), t] + 1e-7)) / batch)


class SoftmaxWithLoss:
    def __init__(self) -> None:
        self.loss: float | None = None
        self.y: np.ndarray | None = None
        self.t: np.ndarray | None = None

    def forward(self, x: np.ndarray, t: np.ndarray) -> float:
        self.t = t
        self.y = softmax(x)
        self.loss = cross_entropy_error(self.y, t)
        return self.loss

    def backward(self, dout: float = 1.0) -> np.ndarray:
        if self.y is None or self.t is None:
            raise RuntimeError("backward() called before forward()")
        batch = self.t.shape[0]
        if self.t.size == self.y.size:  # one-hot labels
            return (self.y - self.t) * (dout / batch)
        dx = self.y.copy()
        dx[np.arange(batch), self.t] -= 1
        return dx * (dout / batch)


class SGD:
    """W <- W - lr * dW, in place (the Affine layers hold their weights by reference)."""

    def __init__(self, lr: float = 0.01) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        self.lr = lr

    def update(self, params: MutableMapping[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        for key in params:
            params[key] -= self.lr * grads[key]

    def reset(self) -> None:
        """Forget any state (SGD has none): a timing round starts from the same place."""


class Momentum:
    """v <- momentum * v - lr * dW;  W <- W + v, in place."""

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        self.lr = lr
        self.momentum = momentum
        self.v: dict[str, np.ndarray] | None = None

    def update(self, params: MutableMapping[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        if self.v is None:
            self.v = {key: np.zeros_like(val) for key, val in params.items()}
        for key in params:
            self.v[key] *= self.momentum
            self.v[key] -= self.lr * grads[key]
            params[key] += self.v[key]

    def reset(self) -> None:
        self.v = None
