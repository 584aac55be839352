"""Where a 1024^3 forward's time goes in numba-tiled's shared-B scheme (_gemm_shared), per thread:
the B pack, the A packs, the micro-kernels, and each parallel region's wall time, in millions of
TSC cycles per call (llvm.readcyclecounter), on 1 thread and on 2, three times each. A copy of
_gemm_shared's loops with counters around each part (the kernel itself carries none); it calls
numba-tiled's own packing and macro-kernel functions and checks its result against NumPy.
Run: python docs/shared_profile.py [float64|float32] (docs/numba-tiled.md quotes it)."""

from __future__ import annotations

import affbench  # noqa: F401  - before numpy: thread-pool settings (affbench/measure/pool_env.py)

import sys
import time

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from implementations import numba_tiled as nt

N = 1024
KC = 512


@intrinsic
def _cycles(typingctx):
    def codegen(context, builder, sig, args):
        fn = builder.module.declare_intrinsic("llvm.readcyclecounter", fnty=ir.FunctionType(ir.IntType(64), []))
        return builder.call(fn, [])
    return types.int64(), codegen


@njit(parallel=True, nogil=True)
def profiled_forward(A, B, C, bias, kstep, buf, asz, bsz, T, nr_c, mcs, counter, prof):
    """C = A . B + bias as _gemm_shared computes it; prof[t] += (B pack, A pack, micro-kernels)
    cycles of thread t, prof[0, 3] / prof[1, 3] += the pack / compute regions' wall cycles."""
    m, n = C.shape
    k = A.shape[1]
    bbuf = buf[:bsz]
    nchunks = (m + mcs - 1) // mcs
    rpan = (m + nt.MR - 1) // nt.MR
    npan = (n + nr_c - 1) // nr_c
    for pc in range(0, k, kstep):
        kc = min(kstep, k - pc)
        mode = 2 if pc == 0 else 1
        w0 = _cycles()
        for t in prange(T):
            s = _cycles()
            q0 = npan * t // T
            q1 = npan * (t + 1) // T
            if q0 < q1:
                j0 = q0 * nr_c
                nt._pack_b(B, False, pc, kc, j0, min(n, q1 * nr_c) - j0, bbuf[q0 * nr_c * kc:], nr_c, bias, False,
                           False)
            prof[t, 0] += _cycles() - s
        w1 = _cycles()
        counter[0] = 0
        for t in prange(T):
            abuf = buf[bsz + t * asz:bsz + (t + 1) * asz]
            while True:
                c = nt._fetch_add(counter, 0, 1)
                if c >= nchunks:
                    break
                ic = (rpan * c // nchunks) * nt.MR
                mc = min(m, (rpan * (c + 1) // nchunks) * nt.MR) - ic
                s = _cycles()
                nt._pack_a(A, False, ic, mc, pc, kc, abuf, nt.MR)
                s2 = _cycles()
                nt._macro(A, False, abuf, True, bbuf, nr_c, True, C, bias, mode, ic, mc, 0, n, pc, kc, nr_c, False)
                prof[t, 2] += _cycles() - s2
                prof[t, 1] += s2 - s
        w2 = _cycles()
        prof[0, 3] += w1 - w0
        prof[1, 3] += w2 - w1


def main(dtype: str) -> None:
    rng = np.random.default_rng(0)
    x, W = (rng.standard_normal((N, N)).astype(dtype) for _ in range(2))
    b = rng.standard_normal(N).astype(dtype)
    nr_c = (nt.VECTOR_BYTES // x.itemsize) * nt.NV
    asz, bsz = nt.MC * KC, KC * N
    buf = nt._aligned_empty(bsz + 2 * asz, x)
    y = np.empty((N, N), dtype)
    counter = np.zeros(1, np.int64)
    print("Mcycles per call (thread 0 + thread 1): B pack | A pack | micro-kernels | region walls: pack, compute")
    for threads in (1, 2) * 3:
        numba.set_num_threads(threads)
        mcs = int(nt._chunk_rows(N, threads)) if threads > 1 else nt.MC
        prof = np.zeros((2, 4), np.int64)
        profiled_forward(x, W, y, b, KC, buf, asz, bsz, threads, nr_c, mcs, counter, prof)
        np.testing.assert_allclose(y, x.astype(float) @ W + b, rtol=1e-3 if dtype == "float32" else 1e-9,
                                   atol=1e-2 if dtype == "float32" else 1e-9)
        prof[:] = 0
        walls = []
        for _ in range(10):
            t0 = time.perf_counter()
            profiled_forward(x, W, y, b, KC, buf, asz, bsz, threads, nr_c, mcs, counter, prof)
            walls.append(time.perf_counter() - t0)
        p = prof / 10 / 1e6
        both = (lambda j: f"{p[0, j]:5.2f} + {p[1, j]:5.2f}") if threads > 1 else (lambda j: f"{p[0, j]:5.2f}")
        print(f"{dtype} {threads} thread(s): {np.median(walls) * 1e3:7.3f} ms | {both(0)} | {both(1)} | {both(2)} | "
              f"{p[0, 3]:5.2f}, {p[1, 3]:5.2f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "float64")
