"""The book's NumPy code: BLAS does the products. The baseline every other kernel is judged by."""

from __future__ import annotations

import numpy as np

from affbench.protocol import KernelImpl


class NumpyAffine(KernelImpl):
    name = "numpy"
    description = "the book's code: np.dot (OpenBLAS), broadcast bias, np.sum(dout, axis=0)"

    def _forward(self, x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.dot(x, W) + b

    def _backward(self, x: np.ndarray, W: np.ndarray, dout: np.ndarray):
        dx = np.dot(dout, W.T)
        dW = np.dot(x.T, dout)
        db = np.sum(dout, axis=0)
        return dx, dW, db
