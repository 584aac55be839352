"""How far 2 threads can scale on this machine: numba-tiled's micro-kernel on data that stays
in L1 (no memory traffic, no packing, no synchronisation inside the timed loop), on 1 thread and
on 2, side by side. What 2 threads gain here is what the cores' clocks allow; no GEMM can
scale further. Run: python docs/fma_scaling.py (docs/numba-tiled.md quotes it)."""

from __future__ import annotations

import affbench  # noqa: F401  - before numpy: thread-pool settings (affbench/measure/pool_env.py)

import time

import numba
import numpy as np
from numba import njit, prange

from implementations import numba_tiled as nt

KC = 256  # A panel 6 x 256 and B panel 256 x NR: 6 + 8 KB float32 (float64 twice), in L1


@njit(parallel=True, fastmath=True)
def _burn(A, B, C, bias, kc, mr, nr, reps, tasks):
    for t in prange(tasks):
        for _ in range(reps):
            nt._ukr_main(kc, A[t], 0, 1, mr, B[t], 0, nr, C[t], 0, nr, bias, 0, 1, mr, nr)


def rate(dtype: str, threads: int, reps: int = 20000) -> float:
    """GFLOP/s of `threads` tasks, each running the micro-kernel `reps` times on its own panels."""
    nr = nt.NV * nt.VECTOR_BYTES // np.dtype(dtype).itemsize
    rng = np.random.default_rng(0)
    A = rng.random((threads, KC * nt.MR)).astype(dtype)
    B = rng.random((threads, KC * nr)).astype(dtype)
    C = np.zeros((threads, nt.MR * nr), dtype)
    bias = np.zeros(nr, dtype)
    numba.set_num_threads(threads)
    _burn(A, B, C, bias, KC, nt.MR, nr, 10, threads)
    best = 0.0
    for _ in range(5):
        t0 = time.perf_counter()
        _burn(A, B, C, bias, KC, nt.MR, nr, reps, threads)
        best = max(best, 2.0 * nt.MR * nr * KC * reps * threads / (time.perf_counter() - t0) / 1e9)
    return best


if __name__ == "__main__":
    for dtype in ("float32", "float64"):
        pairs = []
        for _ in range(3):  # alternate, so drift of the host lands on both
            one, two = rate(dtype, 1), rate(dtype, 2)
            pairs.append((one, two, two / one))
        for one, two, s in pairs:
            print(f"{dtype}: 1 thread {one:7.1f} GFLOP/s, 2 threads {two:7.1f} GFLOP/s, 2/1 = {s:.3f}")
