"""Pure-Python loops written straight from the index formulas. Slow by design: it is the
reading of the maths that the fast kernels must agree with, and the floor of the speed plots.

No NumPy arithmetic runs inside the loops: arrays become nested lists first. Sums are
accumulated in Python floats (double precision) and rounded to the dtype once at the end.
"""

from __future__ import annotations

import numpy as np

from affbench.protocol import KernelImpl


class NaiveAffine(KernelImpl):
    name = "naive"
    description = "pure-Python triple loops over nested lists (index formulas, no NumPy maths)"
    slow = True

    def _forward(self, x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        N, K = x.shape
        M = W.shape[1]
        X, Wl, bl = x.tolist(), W.tolist(), b.tolist()
        # y_ij = sum_k x_ik * W_kj + b_j
        y = [[0.0] * M for _ in range(N)]
        for i in range(N):
            xi, yi = X[i], y[i]
            for j in range(M):
                s = 0.0
                for k in range(K):
                    s += xi[k] * Wl[k][j]
                yi[j] = s + bl[j]
        return np.array(y, dtype=x.dtype).reshape(N, M)

    def _backward(self, x: np.ndarray, W: np.ndarray, dout: np.ndarray):
        N, K = x.shape
        M = W.shape[1]
        X, Wl, D = x.tolist(), W.tolist(), dout.tolist()
        # dx_ik = sum_j dout_ij * W_kj           (dY . W^T)
        dx = [[0.0] * K for _ in range(N)]
        for i in range(N):
            Di = D[i]
            for k in range(K):
                Wk = Wl[k]
                s = 0.0
                for j in range(M):
                    s += Di[j] * Wk[j]
                dx[i][k] = s
        # dW_kj = sum_i x_ik * dout_ij           (X^T . dY)
        dW = [[0.0] * M for _ in range(K)]
        for k in range(K):
            for j in range(M):
                s = 0.0
                for i in range(N):
                    s += X[i][k] * D[i][j]
                dW[k][j] = s
        # db_j = sum_i dout_ij
        db = [0.0] * M
        for j in range(M):
            s = 0.0
            for i in range(N):
                s += D[i][j]
            db[j] = s
        dt = x.dtype
        return (
            np.array(dx, dtype=dt).reshape(N, K),
            np.array(dW, dtype=dt).reshape(K, M),
            np.array(db, dtype=dt).reshape(M),
        )
