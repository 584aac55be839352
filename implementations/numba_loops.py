"""Simple Numba loops: what plain ``@njit`` and ``prange`` give without any tuning.

They are the baselines the tuned kernels are measured against, so they stay plain: the
i-k-j order (contiguous innermost loop) and nothing more. Outputs are allocated in Python,
so memory measurement sees them, and the kernels only fill them.

Races: ``prange`` runs only the outermost loop in parallel and makes no reductions into
slices, so dW is parallel over its rows k and db over its columns j: each thread owns the
elements it writes. (``dW[k, :] +=`` inside a prange over the batch would race.)
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from affbench.protocol import KernelImpl


# --------------------------------------------------------------------------- serial
@njit(cache=True)
def _forward_serial(x, W, b, y):
    N, K = x.shape
    M = W.shape[1]
    for i in range(N):
        for j in range(M):
            y[i, j] = b[j]
        for k in range(K):
            a = x[i, k]
            for j in range(M):
                y[i, j] += a * W[k, j]


@njit(cache=True)
def _backward_serial(x, W, dout, dx, dW, db):
    N, K = x.shape
    M = W.shape[1]
    for i in range(N):  # dx = dout . W^T: dot products of contiguous rows
        for k in range(K):
            dx[i, k] = 0
            for j in range(M):
                dx[i, k] += dout[i, j] * W[k, j]
    dW[:, :] = 0
    db[:] = 0
    for i in range(N):  # dW = x^T . dout, db = column sums of dout
        for k in range(K):
            a = x[i, k]
            for j in range(M):
                dW[k, j] += a * dout[i, j]
        for j in range(M):
            db[j] += dout[i, j]


# --------------------------------------------------------------------------- prange
@njit(parallel=True, cache=True)
def _forward_prange(x, W, b, y):
    N, K = x.shape
    M = W.shape[1]
    for i in prange(N):
        for j in range(M):
            y[i, j] = b[j]
        for k in range(K):
            a = x[i, k]
            for j in range(M):
                y[i, j] += a * W[k, j]


@njit(parallel=True, cache=True)
def _backward_prange(x, W, dout, dx, dW, db):
    N, K = x.shape
    M = W.shape[1]
    for i in prange(N):  # each thread owns rows of dx
        for k in range(K):
            dx[i, k] = 0
            for j in range(M):
                dx[i, k] += dout[i, j] * W[k, j]
    for k in prange(K):  # each thread owns rows of dW: no race across the batch
        for j in range(M):
            dW[k, j] = 0
        for i in range(N):
            a = x[i, k]
            for j in range(M):
                dW[k, j] += a * dout[i, j]
    for j in prange(M):  # each thread owns columns of db
        db[j] = 0
        for i in range(N):
            db[j] += dout[i, j]


class _NumbaLoops(KernelImpl):
    jit = True
    _fwd = None
    _bwd = None

    def _forward(self, x, W, b):
        y = np.empty((x.shape[0], W.shape[1]), dtype=x.dtype)
        type(self)._fwd(x, W, b, y)
        return y

    def _backward(self, x, W, dout):
        dx = np.empty_like(x)
        dW = np.empty_like(W)
        db = np.empty(W.shape[1], dtype=x.dtype)
        type(self)._bwd(x, W, dout, dx, dW, db)
        return dx, dW, db


class NumbaSerialAffine(_NumbaLoops):
    name = "numba-serial"
    description = "@njit i-k-j loops, one thread"
    compile_options = {"parallel": False, "cache": True, "fastmath": False}
    _fwd = staticmethod(_forward_serial)
    _bwd = staticmethod(_backward_serial)


class NumbaPrangeAffine(_NumbaLoops):
    name = "numba-prange"
    description = "@njit(parallel=True) i-k-j loops; prange over rows of y/dx, rows of dW, columns of db"
    compile_options = {"parallel": True, "cache": True, "fastmath": False}
    _fwd = staticmethod(_forward_prange)
    _bwd = staticmethod(_backward_prange)
