"""The float64 reference, the book's finite-difference gradient check, and FLOP counts."""

from __future__ import annotations

from typing import Callable

import numpy as np

PASSES = ("forward", "backward", "step")


def forward(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """y = x @ W + b computed in float64, whatever the inputs' dtype."""
    x64, W64, b64 = (np.asarray(a, dtype=np.float64) for a in (x, W, b))
    return x64 @ W64 + b64.reshape(-1)


def backward(x: np.ndarray, W: np.ndarray, dout: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dW, db) computed in float64."""
    x64, W64, d64 = (np.asarray(a, dtype=np.float64) for a in (x, W, dout))
    return d64 @ W64.T, x64.T @ d64, d64.sum(axis=0)


def flops(pass_: str, N: int, K: int, M: int) -> int:
    """FLOPs of one pass, counting a multiply-add as 2.

    forward 2NKM (the product) + NM (the bias); backward 2NKM for dx and 2NKM for dW,
    plus NM for db; step is forward then backward (about 6NKM).
    """
    fwd = 2 * N * K * M + N * M
    bwd = 4 * N * K * M + N * M
    if pass_ == "forward":
        return fwd
    if pass_ == "backward":
        return bwd
    if pass_ == "step":
        return fwd + bwd
    raise ValueError(f"unknown pass {pass_!r}; known: {', '.join(PASSES)}")


def numerical_gradient(f: Callable[[], float], a: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """Central differences of the scalar f() w.r.t. every entry of ``a``, perturbed in place
    (as the book's ``numerical_gradient`` does) and restored afterwards."""
    grad = np.zeros_like(a, dtype=np.float64)
    it = np.nditer(a, flags=["multi_index"], op_flags=[["readwrite"]])
    while not it.finished:
        idx = it.multi_index
        old = a[idx]
        a[idx] = old + h
        f_plus = f()
        a[idx] = old - h
        f_minus = f()
        a[idx] = old
        grad[idx] = (f_plus - f_minus) / (2 * h)
        it.iternext()
    return grad


def gradient_check(N: int = 3, K: int = 7, M: int = 5, seed: int = 0) -> dict[str, float]:
    """Check the reference backward against finite differences of L = sum(y * G).

    Returns the mean absolute difference per quantity (dx, dW, db), as the book prints.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, K))
    W = rng.standard_normal((K, M))
    b = rng.standard_normal(M)
    G = rng.standard_normal((N, M))  # dL/dy

    def loss() -> float:
        return float(np.sum(forward(x, W, b) * G))

    dx, dW, db = backward(x, W, G)
    return {
        "dx": float(np.mean(np.abs(numerical_gradient(loss, x) - dx))),
        "dW": float(np.mean(np.abs(numerical_gradient(loss, W) - dW))),
        "db": float(np.mean(np.abs(numerical_gradient(loss, b) - db))),
    }
