"""Tuned Numba kernels: packed, cache-blocked, register-tiled GEMM for the three products.

Every product is a GEMM ``C (m x n) = A (m x k) . B (k x n)``; what differs is where A and B
come from, and each product gets its own entry kernel with its own packing:

=========  ======================  =====  =====  =====  ===================================
product    shape                   m      n      k      A, B read as
=========  ======================  =====  =====  =====  ===================================
forward    NN  y  = x . W + b      N      M      K      rows of x, rows of W; bias in store
dX         NT  dx = dY . W^T       N      K      M      rows of dY, rows of W (dot products
                                                        of contiguous rows, transposed into
                                                        the B panels while packing)
dW         TN  dW = x^T . dY       K      M      N      columns of x, rows of dY; db summed
                                                        while the dY panels are packed
=========  ======================  =====  =====  =====  ===================================

The micro-kernel
    ``_ukr_main`` computes an MR x NR block (MR = 6 rows, NR = 2 vectors) as 12 independent
    vector accumulators: enough to cover the 4-cycle FMA latency on both FMA pipes. The
    vectors are the widest the CPU has (``VECTOR_BYTES``): zmm where it has AVX-512F
    (``<8 x double>`` / ``<16 x float>``: a 6 x 16 block in float64, 6 x 32 in float32), else
    ymm (AVX2: 6 x 8, 6 x 16). On the AVX-512 Zen 5 VM this project moved to, zmm made the
    1024^3 step 1.8x faster than ymm (0.58x NumPy's time, whose OpenBLAS runs its Haswell
    kernels there, against 1.05-1.08x) and the book layer's 0.83-0.86x -> 0.54-0.60x. It is
    written as LLVM IR through ``numba.extending.intrinsic`` because LLVM's SLP vectoriser
    did not turn scalar-variable accumulators into ymm registers (it emitted scalar
    ``vfmadd231sd``, ~9 GFLOP/s); the IR version emits ``vfmadd231pd/ps ymm`` only and runs
    at the machine's FMA peak from L1 (measured 51 GFLOP/s FP64, 102 FP32 on one core: the
    boost clock is above the nominal 2.445 GHz). Edge tiles use masked loads/stores
    (``vmaskmov``), so any m, n, k works without touching memory outside the arrays.
    ``_ukr_thin`` (1 row x 8 vectors) serves single-row products (batch 1). ``_ukr_rem``
    (MR rows x 1 vector) takes a last column tile of at most one vector, half the work of a
    masked main tile. A last tile of at most DOT_COLS = 2 columns (M = 50 is 3 x 16 + 2 in
    float32, 6 x 8 + 2 in float64) spends one FMA per row and k step for 2 useful lanes in
    either; instead ``_ukr_dot`` computes it as dot products along k (the forward: rows of x
    and the tile's columns of W, packed column-major, are both contiguous along k) and
    ``_ukr_colv`` as vectors over rows (dW: a row of x is a run of rows of x^T), each with 8
    or more independent accumulators. Measured, float32 book forward (1 thread): ~137 ->
    ~108 us; its dW product 1.27-1.36x NumPy's time -> 1.08-1.10x.

Blocking (BLIS loop order): jc over n in NC columns, pc over k in depth blocks of at most
KC (equal blocks: 784 = 2 x 392), pack the B block (kc x NC, NR-wide panels, zero padded,
64-byte aligned), ic over m in MC rows, pack the A block (MC x kc, MR-tall panels), then
jr/ir over micro-tiles. The first pc block stores (forward: stores acc + b, fused), later
blocks accumulate. KC = 512 was measured against 256 and 384 side by side with NumPy: the
1024^3 and 2048^3 steps ran 4-13% faster at 512 (fewer micro-kernel calls, whose fixed cost
is ~9% of a 256-deep float32 call); the book's layer did not change beyond noise.

Packing B copies rows a vector at a time (``_pack_rows``) or, for the NT product, loads
VL x VL blocks of W and transposes them in registers (``_pack_cols``): ~0.2 ns per element,
10x faster than the scalar loops they replaced (the dX product spent 43 of its 138 us
transposing W). B is packed whenever its rows are not 32-byte multiples (the book's W rows
are 200 bytes: read in place, half the vector loads straddle cache lines, ~30% slower).

Parallelism, three schemes:
- products of N*K*M >= ``SHARED_WORK`` with at least T*MC rows (``_gemm_shared``): per depth
  block the T threads pack the B block together (disjoint panels), then take row chunks of
  at most MC rows (a multiple of T chunks) from an atomic counter (an LLVM ``atomicrmw`` intrinsic), each packing its own A
  rows. Run-time balance matters on this shared VM, where one core at times runs at half
  speed: a static split makes the fast core wait for the slow one.
- smaller products (``_gemm_parallel``): ``prange`` over T tasks, each owning a disjoint block
  of rows of C (or, when C has too few rows, of columns; the NT product with n > m splits
  columns, so each task transposes only its own part of W); each task packs its own B block
  (duplicated packing costs ~T/m of the multiply-adds), so there is one parallel region per
  product instead of two per depth block.
- a short C (under T*MC rows, no more rows than the depth) whose B must be packed, like the
  book's forward (100 rows, 784 deep, W rows of 200 bytes) (``_gemm_parallel`` given ``part``): the T tasks split
  the depth instead, each computing all of C over its part of it and packing only that part of
  B; task 0 writes C, the others partial sums that are added into C after the parallel region
  ((T-1)*m*n additions). A row split would have each task pack all of B (8 us of a 2-thread
  float32 forward's 64) and split 17 row panels 8 | 9.
- the backward of a product below SHARED_WORK (``_backward_pair``): dX's and dW's tasks in one
  parallel region, each thread doing its part of dX and then of dW, so one wake-up and join
  instead of two (the book's backward: 0.96-0.99 of the two-region time).
dW is C for the TN product, so its rows are owned by one task or chunk each: no
``dW[k, :] +=`` across the batch, no race; db is summed while B (dY) is packed, by the one
task that packs each column.

Serial below a work threshold: products with N*K*M below ``PARALLEL_WORK`` (measured on
the 2-core Zen 3: a prange launch costs a few microseconds, a serial call well under one)
run the serial entry kernels, so batch 1 and small layers don't pay for threads; their forward
and backward are one Numba call each (``_small_forward``, ``_small_backward``: at ~3-5 us a
call, each dispatch from Python counts), and a batch-1 stream on one thread runs without a
parallel region (``_row_stream_serial``).

Memory: outputs (allocated in Python with ``np.empty``) plus one packing buffer per product
call, sized in ``_gemm``: at most T * (MC*KC + KC*NC) elements for the static split and
KC*NC + T*MC*KC for the shared scheme (each block rounded up to a cache line), i.e. up to
(96*512 + 512*2048) elements = 8.8 MB per thread in float64 (4.4 MB in float32), and only
as much of it as the shape needs (the book's layer: under 1 MB per product). The split-depth
scheme adds (T-1)*m*n partial sums, m < T*MC: the book's forward on 2 threads, 100 x 50
elements (40 KB in float64). No other temporaries. A
is packed only when C has PACK_A_COLS columns or more: for a narrow C (the book's dW, 784 x
50) x^T is read in place (6 contiguous elements of a row of x per step of the
micro-kernel), which measured ~1.3x faster than packing it transposed. Single-row products
(batch 1) use the row kernels and skip packing altogether (a W larger than L2 is streamed row
by row instead, _row_stream: batch 1 is then memory-bound); the batch-1 backward is one
Numba call.
"""

from __future__ import annotations

import os

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from affbench.protocol import KernelImpl

# ------------------------------------------------------------------------- parameters
def _host_vector_bytes() -> int:
    """The widest vector register of this CPU the micro-kernels can use: 64 bytes (zmm) with
    AVX-512F, else 32 (ymm, AVX2)."""
    try:
        from llvmlite import binding as ll

        return 64 if ll.get_host_cpu_features().get("avx512f") else 32
    except Exception:  # noqa: BLE001 - no feature list: AVX2, what every x86-64 target here has
        return 32


#: Read at import, for tests and experiments only: the ymm kernels on an AVX-512 machine.
VECTOR_BYTES_ENV = "AFFBENCH_TILED_VECTOR_BYTES"


def _vector_bytes(host: int) -> int:
    raw = os.environ.get(VECTOR_BYTES_ENV, "").strip()
    if not raw:
        return host
    if raw not in ("32", "64"):
        raise ValueError(f"{VECTOR_BYTES_ENV}={raw!r}: accepted 32 (AVX2) or 64 (AVX-512)")
    if int(raw) > host:
        raise ValueError(f"{VECTOR_BYTES_ENV}={raw}: this CPU has no AVX-512F; accepted: 32")
    return int(raw)


HOST_VECTOR_BYTES = _host_vector_bytes()
VECTOR_BYTES = _vector_bytes(HOST_VECTOR_BYTES)
MR = 6  # rows of the main micro-kernel
NV = 2  # vectors per micro-kernel row: NR = NV * (VECTOR_BYTES / itemsize)
NV_THIN = (13, 8, 4)  # vectors of the single-row kernels (the narrowest that fits is used)
KC = 512  # most depth of a packed block (measured against 256 and 384: see above)
MC = 96  # rows of a packed A block (MC x KC: 384 KB float64, in the 512 KB L2)
NC = 2048  # columns of a packed B block (KC x NC: 8 MB float64, in the 32 MB L3)
#: N*K*M below which the serial kernels run (a prange launch costs ~3-6 us: the shared FACTS.md)
PARALLEL_WORK = 64 * 64 * 64
#: N*K*M from which the run-time balanced path (_gemm_shared) runs on more than one thread
SHARED_WORK = 256 * 256 * 256
#: depth per task from which a short C (under T*MC rows, and no more rows than the depth) whose B
#: must be packed splits its depth among the tasks (_gemm_parallel with part) instead of its rows: each task
#: then packs 1/T of B instead of all of it, and adds m*n*(T-1) partial sums, fewer than that
#: when m <= k. Measured, book forward (100 x 784 -> 50) on 2 threads: 0.79-0.83x the row
#: split's time in float32, 0.84-0.89x in float64 (six runs side by side).
SPLITK_DEPTH = 64
PACK_A_COLS = 256  # pack A blocks when C has this many columns (else read A in place)
PACK_B_ROWS = 512  # pack B blocks when C has this many rows (else read B's rows in place)
#: ... or when C has PACK_B_MIN_ROWS rows or more and a B block (kc x n) is over PACK_B_BYTES
#: (L2): read in place, a wide W's rows lie a page or more apart. Measured side by side, forward
#: at batch 128 on 2 threads (with the depth split this then takes): 0.60x the in-place time at
#: 2048->2048 float32, 0.68x at 1024->1024 float32, 0.82x in float64
PACK_B_BYTES = 512 * 1024
PACK_B_MIN_ROWS = 64
#: a batch-1 forward whose W is larger than this (L2) streams W's rows (_row_stream), split by
#: depth over the threads, instead of _row_nn's register panels
ROW_STREAM_BYTES = 512 * 1024

_FASTMATH = {"reassoc", "contract"}  # reassociation and FMA contraction; no nnan/ninf assumptions
# Numba's on-disk cache is keyed by the source and the CPU, not by VECTOR_BYTES: a width other
# than the CPU's (the environment override) is never cached, so no cached kernel of one width
# meets a fresh one of the other
_OPTS = dict(cache=VECTOR_BYTES == HOST_VECTOR_BYTES, fastmath=_FASTMATH, nogil=True)


@njit(**_OPTS)
def _nr(like):
    """NR, the columns of a micro-tile, for like's dtype: NV AVX2 vectors (8 doubles, 16 floats)."""
    return NV * (VECTOR_BYTES // like.itemsize)


# ------------------------------------------------------------------------- LLVM IR helpers
class _Gen:
    """What each intrinsic's codegen needs for the element type of array argument ``elt``:
    AVX2 vector type (VL lanes), the FMA and masked load/store intrinsics, i64 arguments and
    element pointers into array arguments."""

    def __init__(self, context, builder, sig, args, elt: int = 1):
        self.context, self.builder, self.sig, self.args = context, builder, sig, args
        self.i64 = ir.IntType(64)
        self.i32 = ir.IntType(32)
        self.ety = context.get_value_type(sig.args[elt].dtype)
        self.isz = context.get_abi_sizeof(self.ety)
        self.VL = VECTOR_BYTES // self.isz
        self.vty = ir.VectorType(self.ety, self.VL)
        self.vpt = self.vty.as_pointer()
        mty = ir.VectorType(ir.IntType(1), self.VL)
        sfx = "v%d%s" % (self.VL, "f64" if self.isz == 8 else "f32")
        mod = builder.module
        vty, vpt, i32 = self.vty, self.vpt, self.i32
        self.fma = cgutils.get_or_insert_function(mod, ir.FunctionType(vty, [vty, vty, vty]), "llvm.fma." + sfx)
        self.mload = cgutils.get_or_insert_function(
            mod, ir.FunctionType(vty, [vpt, i32, mty, vty]), "llvm.masked.load.%s.p0" % sfx)
        self.mstore = cgutils.get_or_insert_function(
            mod, ir.FunctionType(ir.VoidType(), [vty, vpt, i32, mty]), "llvm.masked.store.%s.p0" % sfx)
        self.zero = ir.Constant(vty, None)
        self.align = ir.Constant(i32, self.isz)

    def c64(self, v: int):
        return ir.Constant(self.i64, v)

    def int(self, k: int):
        """Integer argument k as i64."""
        v = self.args[k]
        return self.builder.sext(v, self.i64) if v.type.width < 64 else v

    def array(self, k: int):
        return self.context.make_array(self.sig.args[k])(self.context, self.builder, self.args[k])

    def ptr(self, k: int, offset):
        """Pointer to element ``offset`` of array argument k."""
        return self.builder.gep(self.array(k).data, [offset])

    def vptr(self, base, offset):
        """base + offset (elements) as a vector pointer."""
        return self.builder.bitcast(self.builder.gep(base, [offset]), self.vpt)

    def load(self, base, offset, mask=None):
        """A vector from base + offset; masked (zero in the dead lanes) when mask is given."""
        ptr = self.vptr(base, offset)
        if mask is None:
            return self.builder.load(ptr, align=self.isz)
        return self.builder.call(self.mload, [ptr, self.align, mask, self.zero])

    def splat(self, scalar):
        b = self.builder
        undef = ir.Constant(self.vty, ir.Undefined)
        return b.shuffle_vector(b.insert_element(undef, scalar, ir.Constant(self.i32, 0)), undef,
                                ir.Constant(ir.VectorType(self.i32, self.VL), None))

    def lane_masks(self, nv: int, count):
        """Masks of the lanes v*VL + l < count, one per vector v (count: i64)."""
        b, VL = self.builder, self.VL
        vt = ir.VectorType(self.i64, VL)
        cv = b.shuffle_vector(b.insert_element(ir.Constant(vt, ir.Undefined), count, ir.Constant(self.i32, 0)),
                              ir.Constant(vt, ir.Undefined), ir.Constant(ir.VectorType(self.i32, VL), None))
        return [b.icmp_signed("<", ir.Constant(vt, [v * VL + lane for lane in range(VL)]), cv) for v in range(nv)]

    def clamp(self, i: int, n):
        """min(i, n - 1) as i64: rows or columns past the live ones re-read the last live one."""
        b = self.builder
        return b.select(b.icmp_signed("<", self.c64(i), n), self.c64(i), b.sub(n, self.c64(1)))


# ------------------------------------------------------------------------- micro-kernel
def _make_ukernel(mr_c: int, nv: int):
    """An intrinsic computing C[mr_c x NR] (=|+=|= . + bias) from A (strided) and B (row-major).

    ukr(kc, A, ao, a_rs, a_cs, B, bo, ldb, C, co, ldc, bias, bo2, mode, mr, nr):
      A element (i, p) = A.flat[ao + i*a_rs + p*a_cs] (broadcast loads, any strides);
      B row p = B.flat[bo + p*ldb : + NR] (vector loads; masked to nr columns when nr < NR);
      C row i = C.flat[co + i*ldc : + nr]; rows i >= mr are neither read nor written.
      mode 0: C = acc; 1: C += acc; 2: C = acc + bias.flat[bo2 : bo2 + nr].
    kc >= 0 (kc == 0 gives acc = 0).
    """

    @intrinsic
    def ukr(typingctx, kc, A, ao, a_rs, a_cs, B, bo, ldb, C, co, ldc, bias, bo2, mode, mr, nr):
        sig = types.void(kc, A, ao, a_rs, a_cs, B, bo, ldb, C, co, ldc, bias, bo2, mode, mr, nr)

        def codegen(context, builder, sig, args):
            g = _Gen(context, builder, sig, args)
            VL, isz, vpt = g.VL, g.isz, g.vpt
            NR = nv * VL
            fma, mload, mstore, c64 = g.fma, g.mload, g.mstore, g.c64
            kc, ao, a_rs, a_cs, bo, ldb, co, ldc, bo2, mode, mr, nr = (
                g.int(k) for k in (0, 2, 3, 4, 6, 7, 9, 10, 12, 13, 14, 15))

            pA = g.ptr(1, ao)
            pB = g.ptr(5, bo)
            # rows p < safe can be read NR wide without leaving B (packed panels: all of
            # them; B read in place: all but the last row(s)); later rows use masked loads
            b_items = g.array(5).nitems
            room = builder.sub(b_items, builder.add(bo, c64(NR)))
            ldb1 = builder.select(builder.icmp_signed(">", ldb, c64(0)), ldb, c64(1))
            safe = builder.add(builder.sdiv(room, ldb1), c64(1))
            safe = builder.select(builder.icmp_signed("<", room, c64(0)), c64(0), safe)
            safe = builder.select(builder.icmp_signed("<", safe, kc), safe, kc)
            pC = g.ptr(8, co)
            pBias = g.ptr(11, bo2)
            zero, align, splat = g.zero, g.align, g.splat

            accs = [[cgutils.alloca_once_value(builder, zero) for _ in range(nv)] for _ in range(mr_c)]
            full = builder.and_(builder.icmp_signed("==", mr, c64(mr_c)), builder.icmp_signed("==", nr, c64(NR)))
            # lane masks for partial columns: lane l of vector v is live when v*VL + l < nr
            masks = g.lane_masks(nv, nr)
            # row offsets of A; rows beyond mr re-read row mr-1 (computed, never stored)
            rowoff = [builder.mul(g.clamp(i, mr), a_rs) for i in range(mr_c)]

            def body(masked):
                if masked:  # the rows that are safe to read whole, then the rest masked
                    body_range(False, c64(0), safe)
                    body_range(True, safe, kc)
                else:
                    body_range(False, c64(0), kc)

            def body_range(masked, start, stop):
                with cgutils.for_range_slice(builder, start, stop, c64(1)) as (p, _):
                    pa = builder.gep(pA, [builder.mul(p, a_cs)])
                    pb = builder.gep(pB, [builder.mul(p, ldb)])
                    bv = []
                    for v in range(nv):
                        ptr = builder.bitcast(builder.gep(pb, [c64(v * VL)]), vpt)
                        if masked:
                            bv.append(builder.call(mload, [ptr, align, masks[v], zero]))
                        else:
                            bv.append(builder.load(ptr, align=isz))
                    for i in range(mr_c):
                        a = splat(builder.load(builder.gep(pa, [rowoff[i]]), align=isz))
                        for v in range(nv):
                            builder.store(builder.call(fma, [a, bv[v], builder.load(accs[i][v])]), accs[i][v])

            def store(kind, masked):
                for i in range(mr_c):
                    prow = builder.gep(pC, [builder.mul(ldc, c64(i))])

                    def one_row():
                        for v in range(nv):
                            ptr = builder.bitcast(builder.gep(prow, [c64(v * VL)]), vpt)
                            val = builder.load(accs[i][v])
                            if kind:
                                src = ptr if kind == 1 else builder.bitcast(builder.gep(pBias, [c64(v * VL)]), vpt)
                                if masked:
                                    old = builder.call(mload, [src, align, masks[v], zero])
                                else:
                                    old = builder.load(src, align=isz)
                                val = builder.fadd(val, old)
                            if masked:
                                builder.call(mstore, [val, ptr, align, masks[v]])
                            else:
                                builder.store(val, ptr, align=isz)

                    if masked and i > 0:
                        with builder.if_then(builder.icmp_signed("<", c64(i), mr)):
                            one_row()
                    else:
                        one_row()

            def stores(masked):
                with builder.if_else(builder.icmp_signed("==", mode, c64(0))) as (m0, other):
                    with m0:
                        store(0, masked)
                    with other:
                        with builder.if_else(builder.icmp_signed("==", mode, c64(1))) as (m1, m2):
                            with m1:
                                store(1, masked)
                            with m2:
                                store(2, masked)

            with builder.if_else(full, likely=True) as (fast, edge):
                with fast:
                    body(False)
                    stores(False)
                with edge:
                    body(True)
                    stores(True)
            return context.get_dummy_value()

        return sig, codegen

    return ukr


def _make_dot_kernel(mr_c: int, ncol: int):
    """An intrinsic for a last column tile of at most ``ncol`` columns, as dot products along k.

    dot(kc, A, ao, lda, D, do, C, co, ldc, bias, bo2, mode, mr, nr):
      C[i, c] (=|+=|= . + bias) sum over p < kc of A.flat[ao + i*lda + p] * D.flat[do + c*kc + p]
      for i < mr <= mr_c, c < nr <= ncol: rows of A contiguous along k (A read in place) and
      the tile's columns of B packed column-major (_pack_b with dot=True).
    The main kernel spends one FMA per row and k step on such a tile however few of its
    lanes are columns (M = 50 in float32: 2 of 8); along k every lane is used, so the
    book's 2 leftover columns cost mr_c*ncol FMAs per VL steps of k instead of mr_c per step.
    mr_c*ncol independent accumulators, masked loads for the last kc % VL steps, a horizontal
    sum per output at the end.
    """

    @intrinsic
    def dot(typingctx, kc, A, ao, lda, D, do, C, co, ldc, bias, bo2, mode, mr, nr):
        sig = types.void(kc, A, ao, lda, D, do, C, co, ldc, bias, bo2, mode, mr, nr)

        def codegen(context, builder, sig, args):
            g = _Gen(context, builder, sig, args)
            i32, VL, fma, c64 = g.i32, g.VL, g.fma, g.c64
            kc, ao, lda, do, co, ldc, bo2, mode, mr, nr = (g.int(k) for k in (0, 2, 3, 5, 7, 8, 10, 11, 12, 13))
            pA, pD, pC, pBias = g.ptr(1, ao), g.ptr(4, do), g.ptr(6, co), g.ptr(9, bo2)
            zero = g.zero
            # rows past mr re-read row mr-1 and columns past nr column nr-1 (computed, never stored)
            arow = [builder.gep(pA, [builder.mul(g.clamp(i, mr), lda)]) for i in range(mr_c)]
            dcol = [builder.gep(pD, [builder.mul(g.clamp(c, nr), kc)]) for c in range(ncol)]
            accs = [[cgutils.alloca_once_value(builder, zero) for _ in range(ncol)] for _ in range(mr_c)]
            kv = builder.mul(builder.sdiv(kc, c64(VL)), c64(VL))

            def step(p, mask):
                dv = [g.load(dcol[c], p, mask) for c in range(ncol)]
                for i in range(mr_c):
                    av = g.load(arow[i], p, mask)
                    for c in range(ncol):
                        builder.store(builder.call(fma, [av, dv[c], builder.load(accs[i][c])]), accs[i][c])

            with cgutils.for_range_slice(builder, c64(0), kv, c64(VL)) as (p, _):
                step(p, None)
            with builder.if_then(builder.icmp_signed("<", kv, kc)):
                step(kv, g.lane_masks(1, builder.sub(kc, kv))[0])

            for i in range(mr_c):
                for c in range(ncol):
                    with builder.if_then(builder.and_(builder.icmp_signed("<", c64(i), mr),
                                                      builder.icmp_signed("<", c64(c), nr))):
                        v = builder.load(accs[i][c])
                        tot = builder.extract_element(v, ir.Constant(i32, 0))
                        for l in range(1, VL):
                            tot = builder.fadd(tot, builder.extract_element(v, ir.Constant(i32, l)))
                        out = builder.gep(pC, [builder.add(builder.mul(c64(i), ldc), c64(c))])
                        res = cgutils.alloca_once_value(builder, tot)
                        with builder.if_then(builder.icmp_signed("==", mode, c64(1))):  # C += acc
                            builder.store(builder.fadd(tot, builder.load(out)), res)
                        with builder.if_then(builder.icmp_signed("==", mode, c64(2))):  # C = acc + bias
                            builder.store(builder.fadd(tot, builder.load(builder.gep(pBias, [c64(c)]))), res)
                        builder.store(builder.load(res), out)
            return context.get_dummy_value()

        return sig, codegen

    return dot


DOT_COLS = 2  # a last column tile this narrow runs as dot products along k (_ukr_dot)
COLV_VECTORS = 4  # row vectors of _ukr_colv: 4 x DOT_COLS = 8 accumulators


def _make_colvec_kernel(nvr: int, ncol: int):
    """An intrinsic for a last column tile of at most ``ncol`` columns when A is transposed in
    place (the TN product: A(i, p) = x[p, i], so a run of rows of C is a contiguous run of x).

    colv(kc, A, ao, a_cs, B, bo, ldb, C, co, ldc, mode, mr, nr):
      C[i, c] (=|+=) sum over p < kc of A.flat[ao + p*a_cs + i] * B.flat[bo + p*ldb + c]
      for i < mr <= nvr*VL, c < nr <= ncol (mode 0: store, 1: accumulate).
    Vectors run over rows: nvr*ncol accumulators (8: both FMA pipes busy), nvr vector loads of
    A and ncol broadcasts of B per step of k, where the main kernel would spend one FMA per
    row and step on a tile of which 2 lanes in 8 or 16 are columns (the book's dW, M = 50).
    Rows past mr are masked on load; the results are stored a lane at a time.
    """

    @intrinsic
    def colv(typingctx, kc, A, ao, a_cs, B, bo, ldb, C, co, ldc, mode, mr, nr):
        sig = types.void(kc, A, ao, a_cs, B, bo, ldb, C, co, ldc, mode, mr, nr)

        def codegen(context, builder, sig, args):
            g = _Gen(context, builder, sig, args)
            i32, VL, isz, fma, c64, zero = g.i32, g.VL, g.isz, g.fma, g.c64, g.zero
            kc, ao, a_cs, bo, ldb, co, ldc, mode, mr, nr = (g.int(k) for k in (0, 2, 3, 5, 6, 8, 9, 10, 11, 12))
            pA, pB, pC = g.ptr(1, ao), g.ptr(4, bo), g.ptr(7, co)
            masks = g.lane_masks(nvr, mr)
            full = builder.icmp_signed(">=", mr, c64(nvr * VL))
            bcol = [g.clamp(c, nr) for c in range(ncol)]
            accs = [[cgutils.alloca_once_value(builder, zero) for _ in range(ncol)] for _ in range(nvr)]

            def body(masked):
                with cgutils.for_range_slice(builder, c64(0), kc, c64(1)) as (p, _):
                    pa = builder.gep(pA, [builder.mul(p, a_cs)])
                    pb = builder.gep(pB, [builder.mul(p, ldb)])
                    bv = [g.splat(builder.load(builder.gep(pb, [bcol[c]]), align=isz)) for c in range(ncol)]
                    for v in range(nvr):
                        av = g.load(pa, c64(v * VL), masks[v] if masked else None)
                        for c in range(ncol):
                            builder.store(builder.call(fma, [av, bv[c], builder.load(accs[v][c])]), accs[v][c])

            with builder.if_else(full, likely=True) as (f, m):
                with f:
                    body(False)
                with m:
                    body(True)

            acc1 = builder.icmp_signed("==", mode, c64(1))
            for v in range(nvr):
                for l in range(VL):
                    i = v * VL + l
                    with builder.if_then(builder.icmp_signed("<", c64(i), mr)):
                        for c in range(ncol):
                            with builder.if_then(builder.icmp_signed("<", c64(c), nr)):
                                val = builder.extract_element(builder.load(accs[v][c]), ir.Constant(i32, l))
                                out = builder.gep(pC, [builder.add(builder.mul(c64(i), ldc), c64(c))])
                                res = cgutils.alloca_once_value(builder, val)
                                with builder.if_then(acc1):
                                    builder.store(builder.fadd(val, builder.load(out)), res)
                                builder.store(builder.load(res), out)
            return context.get_dummy_value()

        return sig, codegen

    return colv




_ukr_main = _make_ukernel(MR, NV)
_ukr_rem = _make_ukernel(MR, 1)  # the last column tile when it is at most one vector wide
#: one vector of columns, twice MR rows (12 accumulators, as many as _ukr_main): the vector part
#: of a last tile one vector and at most DOT_COLS columns wide (float32 zmm: M = 50 is 32 + 16 + 2)
_ukr_tall = _make_ukernel(2 * MR, 1)
_ukr_dot = _make_dot_kernel(MR, DOT_COLS)
_ukr_colv = _make_colvec_kernel(COLV_VECTORS, DOT_COLS)
_ukr_thin13 = _make_ukernel(1, NV_THIN[0])
_ukr_thin8 = _make_ukernel(1, NV_THIN[1])
_ukr_thin4 = _make_ukernel(1, NV_THIN[2])


# ------------------------------------------------------------------------- packing
def _make_pack_rows(nv: int):
    """An intrinsic packing rows of B into an NR-wide panel (NR = nv vectors), zero padded.

    pack_rows(kc, B, bo, ldb, P, po, ncols, db, dbo, sum_db):
      P.flat[po + p*NR + c] = B.flat[bo + p*ldb + c] for c < ncols, 0 for ncols <= c < NR, p < kc;
      sum_db: db.flat[dbo + c] += sum over p of B.flat[bo + p*ldb + c] (c < ncols).
    Vector loads (masked when ncols < NR: nothing outside the columns is read) and aligned
    vector stores: one load and one store per vector instead of a scalar loop per element.
    P.flat[po] must be 32-byte aligned.
    """

    @intrinsic
    def pack_rows(typingctx, kc, B, bo, ldb, P, po, ncols, db, dbo, sum_db):
        sig = types.void(kc, B, bo, ldb, P, po, ncols, db, dbo, sum_db)

        def codegen(context, builder, sig, args):
            g = _Gen(context, builder, sig, args)
            VL, c64 = g.VL, g.c64
            NR = nv * VL
            kc, bo, ldb, po, ncols, dbo = (g.int(k) for k in (0, 2, 3, 5, 6, 8))
            sum_db = args[9]
            pB, pP, pD = g.ptr(1, bo), g.ptr(4, po), g.ptr(7, dbo)
            masks = g.lane_masks(nv, ncols)
            full = builder.icmp_signed(">=", ncols, c64(NR))
            sums = [cgutils.alloca_once_value(builder, g.zero) for _ in range(nv)]
            do_sum = builder.icmp_unsigned("!=", sum_db, ir.Constant(sum_db.type, 0))

            def loop(masked):
                with cgutils.for_range_slice(builder, c64(0), kc, c64(1)) as (p, _):
                    src = builder.gep(pB, [builder.mul(p, ldb)])
                    dst = builder.gep(pP, [builder.mul(p, c64(NR))])
                    for v in range(nv):
                        val = g.load(src, c64(v * VL), masks[v] if masked else None)
                        builder.store(val, g.vptr(dst, c64(v * VL)), align=32)
                        with builder.if_then(do_sum):
                            builder.store(builder.fadd(builder.load(sums[v]), val), sums[v])

            with builder.if_else(full, likely=True) as (f, m):
                with f:
                    loop(False)
                with m:
                    loop(True)
            with builder.if_then(do_sum):
                for v in range(nv):
                    old = g.load(pD, c64(v * VL), masks[v])
                    builder.call(g.mstore, [builder.fadd(old, builder.load(sums[v])), g.vptr(pD, c64(v * VL)),
                                            g.align, masks[v]])
            return context.get_dummy_value()

        return sig, codegen

    return pack_rows


def _transpose(builder, rows, VL):
    """Transpose VL vectors of VL lanes (out[i][k] = rows[k][i]) by swapping off-diagonal
    w x w blocks for w = VL/2 ... 1: log2(VL) rounds of VL/2 two-input shuffles per pair."""
    v = list(rows)
    w = VL // 2
    while w >= 1:
        for i in range(VL):
            if i & w:
                continue
            j = i | w
            lo = [k if not (k & w) else VL + k - w for k in range(VL)]
            hi = [k + w if not (k & w) else VL + k for k in range(VL)]
            v[i], v[j] = builder.shuffle_vector(v[i], v[j], ir.Constant(ir.VectorType(ir.IntType(32), VL), lo)), \
                builder.shuffle_vector(v[i], v[j], ir.Constant(ir.VectorType(ir.IntType(32), VL), hi))
        w //= 2
    return v


def _make_pack_cols(nv: int):
    """An intrinsic packing B = W^T into an NR-wide panel: the transposing pack of the NT product.

    pack_cols(kb, W, wo, ldw, P, po, ncols):
      P.flat[po + p*NR + c] = W.flat[wo + c*ldw + p] for c < ncols (0 for ncols <= c < NR),
      p < kb*VL (whole blocks of VL rows of the panel; the caller packs the rest).
    Each VL x VL block is VL contiguous vector loads from rows of W, a register transpose and
    VL aligned vector stores. Rows c >= ncols of W are never read. P.flat[po] 32-byte aligned.
    """

    @intrinsic
    def pack_cols(typingctx, kb, W, wo, ldw, P, po, ncols):
        sig = types.void(kb, W, wo, ldw, P, po, ncols)

        def codegen(context, builder, sig, args):
            g = _Gen(context, builder, sig, args)
            VL, c64 = g.VL, g.c64
            NR = nv * VL
            kb, wo, ldw, po, ncols = (g.int(k) for k in (0, 2, 3, 5, 6))
            pW, pP = g.ptr(1, wo), g.ptr(4, po)
            # row pointers of W; a row past ncols reads row 0 instead and is replaced by zeros
            live = [builder.icmp_signed("<", c64(c), ncols) for c in range(NR)]
            rowp = [builder.gep(pW, [builder.select(live[c], builder.mul(c64(c), ldw), c64(0))]) for c in range(NR)]
            with cgutils.for_range_slice(builder, c64(0), kb, c64(1)) as (q, _):
                p0 = builder.mul(q, c64(VL))
                dst = builder.gep(pP, [builder.mul(p0, c64(NR))])
                for grp in range(nv):
                    rows = [builder.select(live[c], g.load(rowp[c], p0), g.zero) for c in range(grp * VL, (grp + 1) * VL)]
                    for r, val in enumerate(_transpose(builder, rows, VL)):
                        builder.store(val, g.vptr(dst, c64(r * NR + grp * VL)), align=32)
            return context.get_dummy_value()

        return sig, codegen

    return pack_cols


_pack_rows = _make_pack_rows(NV)
_pack_cols = _make_pack_cols(NV)
_pack_rows1 = _make_pack_rows(1)  # the vector part of a split panel (see _pack_b)
_pack_cols1 = _make_pack_cols(1)


@njit(**_OPTS)
def _pack_a(A, trans, i0, mc, p0, kc, buf, mr_c):
    """A block rows i0..i0+mc, depth p0..p0+kc into MR-tall panels: buf[q*MR*kc + p*MR + r].

    trans: A(i, p) = A[p, i] (the x^T of dW), else A[i, p]. Rows past mc are zero.
    """
    npan = (mc + mr_c - 1) // mr_c
    for q in range(npan):
        base = q * mr_c * kc
        rows = min(mr_c, mc - q * mr_c)
        if trans:
            for p in range(kc):
                src = p0 + p
                o = base + p * mr_c
                for r in range(rows):
                    buf[o + r] = A[src, i0 + q * mr_c + r]
                for r in range(rows, mr_c):
                    buf[o + r] = 0
        elif rows == MR and mr_c == MR:  # a whole panel in store order: MR reads (unrolled), one
            r0 = i0 + q * MR  # run of stores (row by row, stores MR apart: 1.3-1.8x the time, alone)
            for p in range(kc):
                o = base + p * MR
                for r in range(MR):
                    buf[o + r] = A[r0 + r, p0 + p]
        else:
            for r in range(rows):
                i = i0 + q * mr_c + r
                for p in range(kc):
                    buf[base + p * mr_c + r] = A[i, p0 + p]
            for r in range(rows, mr_c):
                for p in range(kc):
                    buf[base + p * mr_c + r] = 0


@njit(**_OPTS)
def _pack_b(B, trans, p0, kc, j0, nc, buf, nr_c, db, sum_db, dot):
    """B block depth p0..p0+kc, columns j0..j0+nc into NR-wide panels: buf[q*NR*kc + p*NR + c].

    trans: B(p, j) = B[j, p] (the W^T of dX: rows of W read contiguously, transposed in
    registers), else B[p, j] (rows copied a vector at a time). Columns past nc are zero.
    sum_db: db[j0+j] += B(p, j) for the packed rows (the fused db; only without trans).
    dot: a last panel of at most DOT_COLS columns is stored column-major instead,
    buf[q*NR*kc + c*kc + p], for _ukr_dot; one of VL + at most DOT_COLS columns is split: its
    first VL columns VL wide, buf[q*NR*kc + p*VL + c], then the rest column-major after them.
    buf must be 32-byte aligned (the panels are stored with aligned vector stores).
    """
    npan = (nc + nr_c - 1) // nr_c
    ldb = B.shape[1]
    Bf = B.reshape(B.size)
    vl = nr_c // NV
    for q in range(npan):
        base = q * nr_c * kc
        jb = j0 + q * nr_c
        cols = min(nr_c, nc - q * nr_c)
        if dot and vl < cols <= vl + DOT_COLS:
            # a split panel: its first VL columns row-major, VL wide (for _ukr_tall), the rest
            # column-major after them (for _ukr_dot): no FMA on lanes past the last column
            if trans:
                kb = kc // vl
                _pack_cols1(kb, Bf, jb * ldb + p0, ldb, buf, base, vl)
                for p in range(kb * vl, kc):
                    for c in range(vl):
                        buf[base + p * vl + c] = B[jb + c, p0 + p]
            else:
                _pack_rows1(kc, Bf, p0 * ldb + jb, ldb, buf, base, vl, db, jb, False)
            rest = base + kc * vl
            for c in range(cols - vl):
                o = rest + c * kc
                if trans:
                    for p in range(kc):
                        buf[o + p] = B[jb + vl + c, p0 + p]
                else:
                    for p in range(kc):
                        buf[o + p] = B[p0 + p, jb + vl + c]
        elif dot and cols <= DOT_COLS:
            for c in range(cols):
                o = base + c * kc
                if trans:
                    for p in range(kc):
                        buf[o + p] = B[jb + c, p0 + p]
                else:
                    for p in range(kc):
                        buf[o + p] = B[p0 + p, jb + c]
                    if sum_db:
                        for p in range(kc):
                            db[jb + c] += B[p0 + p, jb + c]
        elif trans:
            kb = kc // vl
            _pack_cols(kb, Bf, jb * ldb + p0, ldb, buf, base, cols)
            for p in range(kb * vl, kc):  # the last kc % VL rows of the panel
                o = base + p * nr_c
                for c in range(cols):
                    buf[o + c] = B[jb + c, p0 + p]
                for c in range(cols, nr_c):
                    buf[o + c] = 0
        else:
            _pack_rows(kc, Bf, p0 * ldb + jb, ldb, buf, base, cols, db, jb, sum_db)


# ------------------------------------------------------------------------- one task
@njit(**_OPTS)
def _task_bounds(t, T, m, n, mr_c, nr_c, cols=False):
    """Rows [r0, r1) and columns [c0, c1) of C owned by task t of T (MR/NR aligned).

    cols: split columns when there are enough (the NT product with n > m: each task then
    transposes only its own part of W while packing, instead of all of it).
    """
    mp = (m + mr_c - 1) // mr_c
    npn = (n + nr_c - 1) // nr_c
    if (mp >= 2 * T and not (cols and npn >= 2 * T)) or npn < T:  # split rows
        r0 = min(m, (mp * t // T) * mr_c)
        r1 = min(m, (mp * (t + 1) // T) * mr_c)
        return r0, r1, 0, n
    c0 = min(n, (npn * t // T) * nr_c)
    c1 = min(n, (npn * (t + 1) // T) * nr_c)
    return 0, m, c0, c1


@njit(inline='always', **_OPTS)
def _gemm_task(A, ta, B, tb, C, bias, has_bias, db, sum_db, r0, r1, c0, c1, k0, k, kstep, abuf, bbuf, nr_c, pa,
               pb, dot, macro):
    """C[r0:r1, c0:c1] = op(A).op(B) (+ bias) over the depth k0..k (k > k0): the BLIS loops of one task.

    Inlined by Numba into its callers (_gemm_serial, _gemm_parallel's prange body): as a function
    of its own its code was linked into and re-optimised in each of them, ~1.3 s more first
    compile per dtype.

    kstep: the depth of a packed block (_depth_step). macro: _macro's address (_macro_address),
    or None to call _macro directly (_gemm_serial).

    pa / pb: pack A / B blocks (else the micro-kernel reads them in place: A with strides,
    B by rows, which needs tb False). db (sum_db) is summed by the task owning row 0.
    """
    ldb = B.shape[1]
    Af = A.reshape(A.size)
    Bf = B.reshape(B.size)
    for jc in range(c0, c1, NC):
        nc = min(NC, c1 - jc)
        for pc in range(k0, k, kstep):
            kc = min(kstep, k - pc)
            if pc == k0:
                mode = 2 if has_bias else 0
            else:
                mode = 1
            if pb:
                _pack_b(B, tb, pc, kc, jc, nc, bbuf, nr_c, db, sum_db and r0 == 0, dot)
                bsrc = bbuf
                bstride = nr_c
            else:
                if sum_db and r0 == 0:
                    for p in range(pc, pc + kc):
                        for j in range(jc, jc + nc):
                            db[j] += B[p, j]
                bsrc = Bf
                bstride = ldb
            for ic in range(r0, r1, MC):
                mc = min(MC, r1 - ic)
                if pa:
                    _pack_a(A, ta, ic, mc, pc, kc, abuf, MR)
                    asrc = abuf
                else:
                    asrc = Af
                if macro is None:  # decided at compile time (a None-typed argument)
                    _macro(A, ta, asrc, pa, bsrc, bstride, pb, C, bias, mode, ic, mc, jc, nc, pc, kc, nr_c, dot)
                else:
                    _call_macro(macro, A, ta, asrc, pa, bsrc, bstride, pb, C, bias, mode, ic, mc, jc, nc, pc, kc,
                                nr_c, dot)


@njit(**_OPTS)
def _macro(A, ta, asrc, pa, bsrc, bstride, pb, C, bias, mode, ic, mc, jc, nc, pc, kc, nr_c, dot):
    """The micro-tiles of C[ic:ic+mc, jc:jc+nc] for depth block pc..pc+kc (BLIS's jr/ir loops).

    asrc: the packed A block (pa) or A itself, flat; bsrc: the packed B block (pb, panels of
    kc x NR) or B itself, flat, with row stride bstride. dot: the last panel, if at most
    DOT_COLS wide, was packed column-major for _ukr_dot (A then is read in place, not transposed).
    """
    ldc = C.shape[1]
    lda = A.shape[1]
    vrows = COLV_VECTORS * (nr_c // NV)  # rows of a _ukr_colv tile
    for jr in range(0, nc, nr_c):
        nr = min(nr_c, nc - jr)
        if pb:
            boff = (jr // nr_c) * nr_c * kc
        else:
            boff = pc * bstride + jc + jr
        if ta and not pa and nr <= DOT_COLS:  # (never with a bias: only the forward has one)
            # a narrow last tile of the TN product: vectors over rows (contiguous in A = x^T)
            for ir in range(0, mc, vrows):
                _ukr_colv(kc, asrc, pc * lda + ic + ir, lda, bsrc, boff, bstride,
                          C, (ic + ir) * ldc + jc + jr, ldc, mode, min(vrows, mc - ir), nr)
            continue
        vl = nr_c // NV
        if dot and vl < nr <= vl + DOT_COLS:  # a split panel (_pack_b); A is x, read in place
            for ir in range(0, mc, 2 * MR):
                _ukr_tall(kc, asrc, (ic + ir) * lda + pc, lda, 1, bsrc, boff, vl,
                          C, (ic + ir) * ldc + jc + jr, ldc, bias, jc + jr, mode, min(2 * MR, mc - ir), vl)
            for ir in range(0, mc, MR):
                _ukr_dot(kc, asrc, (ic + ir) * lda + pc, lda, bsrc, boff + kc * vl, C, (ic + ir) * ldc + jc + jr + vl,
                         ldc, bias, jc + jr + vl, mode, min(MR, mc - ir), nr - vl)
            continue
        if ta and not pa and vl < nr <= vl + DOT_COLS:
            # one vector and a narrow rest: the vector by _ukr_tall, the rest as above, instead
            # of a main tile whose second vector does DOT_COLS of VL lanes' work
            for ir in range(0, mc, 2 * MR):
                _ukr_tall(kc, asrc, pc * lda + ic + ir, 1, lda, bsrc, boff, bstride,
                          C, (ic + ir) * ldc + jc + jr, ldc, bias, jc + jr, mode, min(2 * MR, mc - ir), vl)
            for ir in range(0, mc, vrows):
                _ukr_colv(kc, asrc, pc * lda + ic + ir, lda, bsrc, boff + vl, bstride,
                          C, (ic + ir) * ldc + jc + jr + vl, ldc, mode, min(vrows, mc - ir), nr - vl)
            continue
        for ir in range(0, mc, MR):
            mr = min(MR, mc - ir)
            if pa:
                aoff = (ir // MR) * MR * kc
                a_rs = 1
                a_cs = MR
            elif ta:  # A(i, p) = A[p, i]
                aoff = pc * lda + ic + ir
                a_rs = 1
                a_cs = lda
            else:
                aoff = (ic + ir) * lda + pc
                a_rs = lda
                a_cs = 1
            if dot and nr <= DOT_COLS:
                _ukr_dot(kc, asrc, aoff, lda, bsrc, boff, C, (ic + ir) * ldc + jc + jr, ldc, bias, jc + jr, mode, mr, nr)
            elif 2 * nr > nr_c:
                _ukr_main(kc, asrc, aoff, a_rs, a_cs, bsrc, boff, bstride,
                          C, (ic + ir) * ldc + jc + jr, ldc, bias, jc + jr, mode, mr, nr)
            else:  # half the work for a narrow last tile (M = 50: 2 of 8 or 16)
                _ukr_rem(kc, asrc, aoff, a_rs, a_cs, bsrc, boff, bstride,
                         C, (ic + ir) * ldc + jc + jr, ldc, bias, jc + jr, mode, mr, nr)


def _macro_sig(dtype: types.Float) -> tuple:
    """_macro's one signature per dtype (it is compiled for exactly this and called by address)."""
    a1, a2, i, b = types.Array(dtype, 1, "C"), types.Array(dtype, 2, "C"), types.int64, types.boolean
    return (a2, b, a1, b, a1, i, b, a2, a1, i, i, i, i, i, i, i, i, b)


_MACRO_ADDRESS: dict[int, int] = {}  # dtype.num -> the address of _macro's native function


def _macro_address(dtype: np.dtype) -> int:
    """The address of _macro compiled (or loaded from Numba's cache) for ``dtype``.

    Why by address: Numba links a callee's code into every caller and re-optimises all of it
    there, so each of _gemm_task (twice), _gemm_serial, _gemm_parallel, _gemm_shared, their
    prange bodies and _gemm optimised its own copy of _macro and the micro-kernels inlined into
    it: 27 s of float32's first compile of _gemm, 12-13 s since. Called through an address
    passed as an argument (never a constant: the callers stay cacheable), _macro is optimised
    once per dtype, plus once in the small products' _gemm_serial (see there).
    """
    addr = _MACRO_ADDRESS.get(dtype.num)
    if addr is None:
        sig = _macro_sig(numba.from_dtype(dtype))
        _macro.compile(sig)
        cres = _macro.overloads[sig]
        addr = _MACRO_ADDRESS[dtype.num] = cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)
    return addr


@intrinsic
def _call_macro(typingctx, fn, A, ta, asrc, pa, bsrc, bstride, pb, C, bias, mode, ic, mc, jc, nc, pc, kc, nr_c,
                dot):
    """_macro(A, ..., dot) through its address fn (_macro_address): the call Numba would make,
    without linking _macro's code into the caller. Integers and booleans (literals too) are cast
    to _macro_sig's; arrays must have its dtype, ndim and layout (read-only or unaligned ones
    share the same native struct)."""
    got = (A, ta, asrc, pa, bsrc, bstride, pb, C, bias, mode, ic, mc, jc, nc, pc, kc, nr_c, dot)
    if not isinstance(fn, types.Integer) or not isinstance(A, types.Array) or not isinstance(A.dtype, types.Float):
        return None
    want = _macro_sig(A.dtype)
    for g, w in zip(got, want):
        ok = (isinstance(g, types.Array) and (g.dtype, g.ndim, g.layout) == (w.dtype, w.ndim, w.layout)
              if isinstance(w, types.Array) else
              isinstance(g, types.Integer) if isinstance(w, types.Integer) else isinstance(g, types.Boolean))
        if not ok:
            raise numba.core.errors.TypingError(f"_call_macro: argument of type {g}, expected {w}")
    sig = types.none(fn, *got)

    def codegen(context, builder, sig, args):
        vals = []
        for g, w, v in zip(sig.args[1:], want, args[1:]):
            if isinstance(w, types.Array):
                assert context.get_value_type(g) == context.get_value_type(w)
                vals.append(v)
            else:
                vals.append(context.cast(builder, v, g, w))
        fnty = context.call_conv.get_function_type(types.none, want)
        callee = builder.inttoptr(context.cast(builder, args[0], sig.args[0], types.int64), fnty.as_pointer())
        context.call_conv.call_function(builder, callee, types.none, want, vals)  # (status: _macro cannot raise)
        return context.get_dummy_value()

    return sig, codegen


@njit(**_OPTS)
def _gemm_serial(A, ta, B, tb, C, bias, has_bias, db, sum_db, k, macro):
    """C = op(A) . op(B) (+ bias) on this thread (_gemm's arguments).

    macro: _macro's address (_macro_address), or None: _macro's code linked in. The small
    products' entry from Python passes None: calls of a few microseconds (N=16, 50->10) took
    ~0.2 us longer through the address (a second code region per call, and the lookup).
    """
    m, n = C.shape
    nr_c, pa, pb, dot, kc, line = _plan(A, ta, B, tb, C, k)
    asz = _ceil_to(min(MC, _ceil_to(m, MR)) * kc, line) if pa else 0
    bsz = _ceil_to(kc * min(NC, _ceil_to(n, nr_c)), line) if pb else 0
    buf = _aligned_empty(asz + bsz, C)
    if sum_db:
        db[:] = 0
    if macro is None:  # literal zeros: a _gemm_task specialised for the whole of C (~0.1 us of a small backward)
        _gemm_task(A, ta, B, tb, C, bias, has_bias, db, sum_db, 0, m, 0, n, 0, k, kc,
                   buf[:asz], buf[asz:], nr_c, pa, pb, dot, macro)
    else:  # not literals: the same _gemm_task as _gemm_parallel's, compiled once
        zero = np.int64(0)
        _gemm_task(A, ta, B, tb, C, bias, has_bias, db, sum_db, zero, m, zero, n, zero, k, kc,
                   buf[:asz], buf[asz:], nr_c, pa, pb, dot, macro)


@njit(**_OPTS)
def _small_forward(x, W, b, y):
    """y = x . W + b for a product below PARALLEL_WORK: one Numba call of 4 arguments instead of
    _gemm_serial's 11 from Python (Numba's dispatch types each one): 1.50 -> 1.32 us at N=16,
    50->10 float32, measured side by side."""
    no = x.shape[0] < 0  # a run-time False: _gemm_serial keeps the one signature all its callers share
    _gemm_serial(x, no, W, no, y, b, not no, b, no, x.shape[1], None)


@njit(**_OPTS)
def _small_backward(x, W, dout, dx, dW, db):
    """The whole backward of a product below PARALLEL_WORK in one call from Python: its two
    dispatches cost ~0.5 us more of a ~5 us backward (N=16, 50->10: 1.04 -> 0.94x NumPy's
    time float32, measured side by side).

    The flags are run-time booleans, so both calls have the forward's signature of _gemm_serial
    (literal flags compiled two more of it: ~8 s more first compile per dtype).
    """
    no = x.shape[0] < 0
    yes = not no
    _gemm_serial(dout, no, W, yes, dx, db, no, db, no, W.shape[1], None)  # NT: dx = dout . W^T
    _gemm_serial(x, yes, dout, no, dW, db, no, db, yes, x.shape[0], None)  # TN: dW = x^T . dout, db fused


@njit(**_OPTS)
def _split_depth(t, T, k):
    """Depth range [k0, k1) of task t of T in the split-depth scheme (whole vectors of 8)."""
    return min(k, _ceil_to(k * t // T, 8)), min(k, _ceil_to(k * (t + 1) // T, 8))


@njit(parallel=True, **_OPTS)
def _gemm_parallel(A, ta, B, tb, C, bias, has_bias, db, sum_db, k, kstep, buf, asz, bsz, T, nr_c, pa, pb, dot,
                   part, macro):
    """C = op(A).op(B) (+ bias): T tasks, each one _gemm_task call (one inlined copy of the kernels).

    part empty: task t owns a block of C's rows or columns (_task_bounds) over the whole depth.
    part of shape (T-1, m, n): task t owns a depth range (_split_depth) and all of C; task 0
    writes C (with the bias), task t > 0 its partial sum part[t - 1], added into C after the
    parallel region (m*n*(T-1) additions). Against a split of C's rows, each task then packs
    only its depth of B instead of all of it, and the tasks are equal however many row panels
    C has. (Not with sum_db: db would be summed over part of the depth.)
    """
    m, n = C.shape
    splitk = part.shape[0] > 0
    if sum_db:
        db[:] = 0
    for t in prange(T):
        if splitk:
            r0, r1, c0, c1 = 0, m, 0, n
            k0, k1 = _split_depth(t, T, k)
            step = _depth_step(k1 - k0) if k1 > k0 else 1
        else:
            r0, r1, c0, c1 = _task_bounds(t, T, m, n, MR, nr_c, tb and n > m)
            k0, k1, step = 0, k, kstep
        if r0 < r1 and c0 < c1 and k0 < k1:
            o = t * (asz + bsz)
            out = part[t - 1] if splitk and t > 0 else C
            _gemm_task(A, ta, B, tb, out, bias, has_bias and (t == 0 or not splitk), db, sum_db, r0, r1, c0, c1,
                       k0, k1, step, buf[o:o + asz], buf[o + asz:o + asz + bsz], nr_c, pa, pb, dot, macro)
    if splitk:
        _add_partials(C, part, k)


@njit(parallel=True, **_OPTS)
def _backward_parallel(x, W, dout, dx, dW, db, no, yes, T, buf, size, plans, macro):
    """dX = dout . W^T and dW = x^T . dout (db fused) in one parallel region: task t does its
    part of dX, then its part of dW, in one packing buffer of ``size`` elements (plans: per
    product nr_c, pa, pb, dot, kstep, asz, bsz as _plan and _gemm choose them, in a row).

    Against two _gemm calls: one wake-up and join of the threads instead of two, one call from
    Python instead of two, and a thread done with its part of dX starts on dW at once. Only
    for products on _gemm_parallel's static split (work below SHARED_WORK: neither takes the
    shared-B or the depth-split scheme)."""
    N, K = x.shape
    M = W.shape[1]
    db[:] = 0
    for t in prange(T):
        o = t * size
        for p in range(2):
            nr_c, kstep, asz, bsz = plans[p, 0], plans[p, 4], plans[p, 5], plans[p, 6]
            pa, pb, dot = plans[p, 1] != 0, plans[p, 2] != 0, plans[p, 3] != 0
            if p == 0:  # NT: dx = dout . W^T, split by columns when K > N (each task transposes its part of W)
                A, ta, B, tb, C, k, m, n, cols, sum_db = dout, no, W, yes, dx, M, N, K, K > N, no
            else:  # TN: dW = x^T . dout, db summed by the task owning row 0
                A, ta, B, tb, C, k, m, n, cols, sum_db = x, yes, dout, no, dW, N, K, M, no, yes
            r0, r1, c0, c1 = _task_bounds(t, T, m, n, MR, nr_c, cols)
            if r0 < r1 and c0 < c1:
                _gemm_task(A, ta, B, tb, C, db, no, db, sum_db, r0, r1, c0, c1, 0, k, kstep, buf[o:o + asz],
                           buf[o + asz:o + asz + bsz], nr_c, pa, pb, dot, macro)


@njit(**_OPTS)
def _backward_pair(x, W, dout, dx, dW, db, threads, macro):
    """The backward of a product of at least PARALLEL_WORK and below SHARED_WORK on threads >= 2
    threads: plans both products as _gemm would (_plan, _task_bounds) and runs them in one
    parallel region (_backward_parallel)."""
    no = x.shape[0] < 0  # run-time booleans, as in _small_backward
    yes = not no
    N, K = x.shape
    M = W.shape[1]
    T = threads
    nr1, pa1, pb1, dot1, kc1, line = _plan(dout, no, W, yes, dx, M)
    nr2, pa2, pb2, dot2, kc2, line = _plan(x, yes, dout, no, dW, N)
    asz1, bsz1 = _static_sizes(N, K, kc1, T, nr1, pa1, pb1, K > N, line)
    asz2, bsz2 = _static_sizes(K, M, kc2, T, nr2, pa2, pb2, no, line)
    size = max(asz1 + bsz1, asz2 + bsz2)  # a task does its two parts one after the other
    buf = _aligned_empty(T * size, dx)
    plans = np.empty((2, 7), dtype=np.int64)  # an array: a parallel region takes no tuple of mixed types
    plans[0, 0], plans[0, 1], plans[0, 2], plans[0, 3], plans[0, 4], plans[0, 5], plans[0, 6] = (
        nr1, pa1, pb1, dot1, kc1, asz1, bsz1)
    plans[1, 0], plans[1, 1], plans[1, 2], plans[1, 3], plans[1, 4], plans[1, 5], plans[1, 6] = (
        nr2, pa2, pb2, dot2, kc2, asz2, bsz2)
    _backward_parallel(x, W, dout, dx, dW, db, no, yes, T, buf, size, plans, macro)


@njit(**_OPTS)
def _add_partials(C, part, k):
    """C += part[t - 1] for every task t > 0 of a depth split of k (_split_depth) whose range is
    not empty (an empty range's partial sum was never written)."""
    T = part.shape[0] + 1
    m, n = C.shape
    for t in range(1, T):
        k0, k1 = _split_depth(t, T, k)
        if k0 < k1:
            for i in range(m):
                for j in range(n):
                    C[i, j] += part[t - 1, i, j]


@intrinsic
def _fetch_add(typingctx, arr, idx, val):
    """Atomically arr[idx] += val; returns the old value (seq_cst): the shared chunk counter."""
    sig = types.int64(arr, idx, val)

    def codegen(context, builder, sig, args):
        arr, idx, val = args
        ary = context.make_array(sig.args[0])(context, builder, arr)
        ptr = builder.gep(ary.data, [idx])
        return builder.atomic_rmw("add", ptr, val, "seq_cst")

    return sig, codegen


@njit(parallel=True, **_OPTS)
def _gemm_shared(A, ta, B, tb, C, bias, has_bias, db, sum_db, k, kstep, buf, asz, bsz, T, nr_c, pa, dot, counter,
                 mcs, macro):
    """Large products on T threads, balanced at run time (BLIS's shared-B scheme).

    For each depth block: the T threads pack the B block together (disjoint panels, so the
    fused db has one writer per column), then take row chunks of MC rows from a shared atomic
    counter, each packing its own A rows. A thread slowed by a neighbour on its core takes
    fewer chunks instead of holding the other one at the end of a static split (measured on
    this shared 2-core VM: one core at times ran at half speed). Two parallel regions per
    depth block (a few microseconds each) limit this to products of at least SHARED_WORK.
    buf: the shared B block (bsz elements), then T A blocks of asz elements.
    """
    m, n = C.shape
    if sum_db:
        db[:] = 0
    bbuf = buf[:bsz]
    nchunks = (m + mcs - 1) // mcs
    rpan = (m + MR - 1) // MR  # row panels, dealt out evenly: chunks differ by at most one panel
    for jc in range(0, n, NC):
        nc = min(NC, n - jc)
        npan = (nc + nr_c - 1) // nr_c
        for pc in range(0, k, kstep):
            kc = min(kstep, k - pc)
            mode = (2 if has_bias else 0) if pc == 0 else 1
            for t in prange(T):
                q0 = npan * t // T
                q1 = npan * (t + 1) // T
                if q0 < q1:
                    j0 = q0 * nr_c
                    _pack_b(B, tb, pc, kc, jc + j0, min(nc, q1 * nr_c) - j0, bbuf[q0 * nr_c * kc:],
                            nr_c, db, sum_db, dot)
            counter[0] = 0
            for t in prange(T):
                abuf = buf[bsz + t * asz:bsz + (t + 1) * asz]
                Af = A.reshape(A.size)
                while True:
                    c = _fetch_add(counter, 0, 1)
                    if c >= nchunks:
                        break
                    ic = (rpan * c // nchunks) * MR
                    mc = min(m, (rpan * (c + 1) // nchunks) * MR) - ic
                    if pa:
                        _pack_a(A, ta, ic, mc, pc, kc, abuf, MR)
                        _call_macro(macro, A, ta, abuf, pa, bbuf, nr_c, True, C, bias, mode, ic, mc, jc, nc, pc, kc,
                                    nr_c, dot)
                    else:
                        _call_macro(macro, A, ta, Af, pa, bbuf, nr_c, True, C, bias, mode, ic, mc, jc, nc, pc, kc,
                                    nr_c, dot)


# ------------------------------------------------------------------------- single row
@njit(**_OPTS)
def _row_nn(x, W, b, y):
    """y[0, :] = x[0, :] . W + b with W read in place (no packing): the batch-1 forward.

    Column panels of 13, 8 or 4 vectors (the narrowest that covers what is left), so the
    book's M = 50 is one pass over W in float64 (13 x 4 = 52 columns) and float32.
    """
    k = x.shape[1]
    n = y.shape[1]
    vl = VECTOR_BYTES // y.itemsize
    j = 0
    while j < n:
        r = n - j
        if r > NV_THIN[1] * vl:
            w = min(r, NV_THIN[0] * vl)
            _ukr_thin13(k, x, 0, 0, 1, W, j, n, y, j, n, b, j, 2, 1, w)
        elif r > NV_THIN[2] * vl:
            w = r
            _ukr_thin8(k, x, 0, 0, 1, W, j, n, y, j, n, b, j, 2, 1, w)
        else:
            w = r
            _ukr_thin4(k, x, 0, 0, 1, W, j, n, y, j, n, b, j, 2, 1, w)
        j += w


@njit(**_OPTS)
def _row_axpy(x, W, y, k0, k1):
    """y[:] += x[0, k0:k1] . W[k0:k1, :], streaming W's rows in order, four at a time.

    For a W larger than L2 (batch 1 is then memory-bound): _row_nn's column panels read each
    row of W in a short piece, a page or more apart for a wide layer, which the hardware
    prefetchers do not follow; here every row is read whole and in order. y stays in L1.
    """
    M = W.shape[1]
    k = k0
    while k + 4 <= k1:
        a0 = x[0, k]
        a1 = x[0, k + 1]
        a2 = x[0, k + 2]
        a3 = x[0, k + 3]
        for j in range(M):
            y[j] += a0 * W[k, j] + a1 * W[k + 1, j] + a2 * W[k + 2, j] + a3 * W[k + 3, j]
        k += 4
    while k < k1:
        a = x[0, k]
        for j in range(M):
            y[j] += a * W[k, j]
        k += 1


@njit(parallel=True, **_OPTS)
def _row_stream(x, W, b, y, part):
    """y[0, :] = x[0, :] . W + b for a W larger than L2, on part.shape[0] + 1 tasks (part:
    (T-1, 1, M)): task t streams its own contiguous range of W's rows (_split_depth) into y
    (task 0, starting from b) or into part[t - 1], added into y after the parallel region."""
    K, M = W.shape
    T = part.shape[0] + 1
    for t in prange(T):
        k0, k1 = _split_depth(t, T, K)
        out = y[0] if t == 0 else part[t - 1, 0]
        for j in range(M):
            out[j] = b[j] if t == 0 else 0
        _row_axpy(x, W, out, k0, k1)
    _add_partials(y, part, K)


@njit(**_OPTS)
def _row_stream_serial(x, W, b, y):
    """_row_stream on one thread without its parallel region: a region of one task still costs
    ~2-4 us to enter and leave, 4-5% of a 1-thread batch-1 forward over a W of 3-4 MB
    (784->1024 and 1024->1024: 0.95-0.96 of _row_stream's time, measured side by side)."""
    for j in range(W.shape[1]):
        y[0, j] = b[j]
    _row_axpy(x, W, y[0], 0, W.shape[0])


@njit(**_OPTS)
def _row_tn(x, d, dW, db):
    """dW = x[0, :]^T . d[0, :] (an outer product: k = 1) and db = d[0, :], for batch 1."""
    K = x.shape[1]
    M = d.shape[1]
    for i in range(K):
        a = x[0, i]
        for j in range(M):
            dW[i, j] = a * d[0, j]
    for j in range(M):
        db[j] = d[0, j]


@njit(**_OPTS)
def _row_nt(d, W, dx, zero):
    """dx[0, j] = d[0, :] . W[j, :]: dot products of contiguous rows, four rows of W at a time."""
    K, M = W.shape
    j = 0
    while j + 4 <= K:
        s0 = zero
        s1 = zero
        s2 = zero
        s3 = zero
        for p in range(M):
            a = d[0, p]
            s0 += a * W[j, p]
            s1 += a * W[j + 1, p]
            s2 += a * W[j + 2, p]
            s3 += a * W[j + 3, p]
        dx[0, j] = s0
        dx[0, j + 1] = s1
        dx[0, j + 2] = s2
        dx[0, j + 3] = s3
        j += 4
    while j < K:
        s = zero
        for p in range(M):
            s += d[0, p] * W[j, p]
        dx[0, j] = s
        j += 1


@njit(**_OPTS)
def _row_backward(x, W, d, dx, dW, db):
    """The whole batch-1 backward in one call (one dispatch from Python instead of two)."""
    _row_nt(d, W, dx, dx.dtype.type(0))
    _row_tn(x, d, dW, db)


@njit(**_OPTS)
def _colsum(d, db):
    """db = d.sum(0): only for K == 0, where there is no dW pass to fuse it into."""
    db[:] = 0
    for i in range(d.shape[0]):
        for j in range(d.shape[1]):
            db[j] += d[i, j]


# ------------------------------------------------------------------------- entry
@njit(**_OPTS)
def _ceil_to(v, q):
    return -(-v // q) * q


ALIGN = 64  # bytes: packed panels start on a cache line, so no 32-byte load of a panel row splits one


@njit(**_OPTS)
def _aligned_empty(n, like):
    """n elements of like's dtype starting on an ALIGN-byte boundary (np.empty only promises 16).

    A panel row of NR elements is 64 bytes; from a 16-byte aligned buffer half of its two
    vector loads straddle cache lines, which on Zen 3 cost the micro-kernel ~30% (measured:
    the book's forward in place with 200-byte rows, 147 us, against 103 us with 192-byte rows).
    """
    isz = like.itemsize
    raw = np.empty(n + ALIGN // isz, like.dtype)
    skip = ((ALIGN - raw.ctypes.data % ALIGN) % ALIGN) // isz
    return raw[skip:skip + n]


@njit(**_OPTS)
def _depth_step(k):
    """Depth of the packed blocks: k split into equal blocks of at most KC (1100 = 3 x 368,
    not 2 x 512 + 76, whose short block pays a micro-kernel call's fixed cost for little work),
    in whole vectors of 8 so the transposing pack needs no tail (except at the end of k)."""
    if k <= KC:
        return k
    per = -(-k // -(-k // KC))
    return min(KC, _ceil_to(per, 8))


@njit(**_OPTS)
def _chunk_rows(m, T):
    """Most rows of a chunk of _gemm_shared: at most MC, and a multiple of T chunks in all (1024
    rows on 2 threads: 12 chunks, not 11 of 96, where one thread idles for a chunk at the end of
    every depth block while nothing is slowing either). _gemm_shared deals the row panels out
    evenly over that many chunks (84 or 90 rows, not 11 x 90 + 34: the thread without the short
    chunk held the other ~5% of every depth block; per-thread cycle counts, docs/numba-tiled.md)."""
    per = -(-m // (T * -(-m // (T * MC))))
    return min(MC, _ceil_to(per, MR))


@njit(**_OPTS)
def _plan(A, ta, B, tb, C, k):
    """(nr_c, pa, pb, dot, kc, line) of the product C = op(A) . op(B): what is packed, the
    depth of a packed block and the cache line in elements.

    Packing costs about one copy per element of A (B) against n (m) multiply-adds per
    element, so A is packed only when C has PACK_A_COLS columns or more and B only when it
    has PACK_B_ROWS rows or more, must be transposed (the NT product) or has rows that are
    not 32-byte multiples (vector loads from them would straddle cache lines: the book's W,
    200-byte rows, cost the forward ~10%) in a product of PARALLEL_WORK or more (below it the
    copy, zero padded to whole zmm panels, cost more than the straddling: N=16, 50->10 float32
    forward 1.08x NumPy's time packed, 1.00-1.01x in place).
    """
    m, n = C.shape
    nr_c = _nr(C)
    pa = n >= PACK_A_COLS
    pb = (tb or m >= PACK_B_ROWS or ((B.shape[1] * B.itemsize) % 32 != 0 and m * n * k >= PARALLEL_WORK)
          or (m >= PACK_B_MIN_ROWS and min(k, KC) * n * B.itemsize > PACK_B_BYTES))
    dot = pb and not pa and not ta  # rows of A contiguous along k: a narrow last tile as dot products
    return nr_c, pa, pb, dot, _depth_step(k), ALIGN // C.itemsize  # whole cache lines keep blocks aligned


@njit(**_OPTS)
def _static_sizes(m, n, kc, T, nr_c, pa, pb, cols, line):
    """Elements of one task's A and B packing blocks for an m x n product on _gemm_parallel's
    static split (_task_bounds with ``cols``), each rounded up to a cache line of ``line``."""
    mt = 0  # the most rows a task owns: a column split gives every task all m rows
    for t in range(T):
        r0, r1, c0, c1 = _task_bounds(t, T, m, n, MR, nr_c, cols)
        mt = max(mt, _ceil_to(r1 - r0, MR))
    asz = _ceil_to(min(MC, _ceil_to(m, MR), mt) * kc, line) if pa else 0
    bsz = _ceil_to(kc * min(NC, _ceil_to(n, nr_c)), line) if pb else 0
    return asz, bsz


@njit(**_OPTS)
def _gemm(A, ta, B, tb, C, bias, has_bias, db, sum_db, k, threads, macro):
    """C = op(A) . op(B) (+ bias), serial or parallel by size; packing buffers sized here.

    threads: numba.get_num_threads() of the caller (read in Python: called in here it makes
    this function uncacheable, a ctypes pointer). One Numba call from Python per product: deciding and allocating here rather than in
    Python saved ~6 of the ~11 us a small product's call cost (a ctypes pointer read, dtype
    objects, Numba's dispatch of 17 arguments), ~18 us of the book layer's ~250 us step.
    Products below PARALLEL_WORK are called as _gemm_serial(..., None) instead.
    """
    m, n = C.shape
    T = 1 if (threads < 2 or m * n * k < PARALLEL_WORK) else threads
    if T == 1:
        _gemm_serial(A, ta, B, tb, C, bias, has_bias, db, sum_db, k, macro)
        return
    nr_c, pa, pb, dot, kc, line = _plan(A, ta, B, tb, C, k)
    if m * n * k >= SHARED_WORK and m >= T * MC:
        asz = _ceil_to(min(MC, _ceil_to(m, MR)) * kc, line) if pa else 0
        bsz = _ceil_to(kc * min(NC, _ceil_to(n, nr_c)), line)
        buf = _aligned_empty(bsz + T * asz, C)
        _gemm_shared(A, ta, B, tb, C, bias, has_bias, db, sum_db, k, kc, buf, asz, bsz, T, nr_c, pa, dot,
                     np.zeros(1, dtype=np.int64), _chunk_rows(m, T), macro)
    elif pb and not tb and not sum_db and m < T * MC and m <= k and k >= SPLITK_DEPTH * T:
        kt = min(KC, -(-k // T) + 8)  # the most depth of a task's block (_split_depth, _depth_step)
        asz = _ceil_to(min(MC, _ceil_to(m, MR)) * kt, line) if pa else 0
        bsz = _ceil_to(kt * min(NC, _ceil_to(n, nr_c)), line)
        buf = _aligned_empty(T * (asz + bsz), C)
        _gemm_parallel(A, ta, B, tb, C, bias, has_bias, db, sum_db, k, kc, buf, asz, bsz, T, nr_c, pa, pb, dot,
                       np.empty((T - 1, m, n), C.dtype), macro)
    else:
        asz, bsz = _static_sizes(m, n, kc, T, nr_c, pa, pb, tb and n > m, line)
        buf = _aligned_empty(T * (asz + bsz), C)
        _gemm_parallel(A, ta, B, tb, C, bias, has_bias, db, sum_db, k, kc, buf, asz, bsz, T, nr_c, pa, pb, dot,
                       np.empty((0, 0, 0), C.dtype), macro)


class NumbaTiledAffine(KernelImpl):
    name = "numba-tiled"
    description = ("packed, cache-blocked GEMM with a 6x2-vector FMA micro-kernel (LLVM IR intrinsic), "
                   "vector packing, dot/row-vector kernels for narrow last tiles; NN forward with fused "
                   "bias, NT dX, TN dW with fused db; prange over output blocks (row chunks from an "
                   "atomic counter for large products) above a work threshold, serial below")
    compile_options = {"parallel": True, "cache": _OPTS["cache"], "fastmath": sorted(_FASTMATH), "nogil": True,
                       "MR": MR, "NR": f"2 {'AVX-512' if VECTOR_BYTES == 64 else 'AVX2'} vectors", "KC": KC, "MC": MC, "NC": NC,
                       "parallel_work": PARALLEL_WORK, "shared_work": SHARED_WORK}
    jit = True

    def _forward(self, x, W, b):
        N, K = x.shape
        M = W.shape[1]
        y = np.empty((N, M), dtype=x.dtype)
        if N == 0 or M == 0:
            return y
        if K == 0:
            y[...] = b
            return y
        if N == 1 and K * M * x.itemsize > ROW_STREAM_BYTES:
            T = numba.get_num_threads()
            if T == 1 or K < 8 * T:  # one task: no parallel region
                _row_stream_serial(x, W, b, y)
            else:
                _row_stream(x, W, b, y, np.empty((T - 1, 1, M), dtype=x.dtype))
        elif N == 1:
            _row_nn(x, W, b, y)
        elif N * K * M < PARALLEL_WORK:  # serial anyway: not worth numba.get_num_threads()' 0.5 us
            _small_forward(x, W, b, y)
        else:
            _gemm(x, False, W, False, y, b, True, b, False, K, numba.get_num_threads(),
                  _macro_address(x.dtype))
        return y

    def _backward(self, x, W, dout):
        N, K = x.shape
        M = W.shape[1]
        dx = np.empty((N, K), dtype=x.dtype)
        dW = np.empty((K, M), dtype=x.dtype)
        db = np.empty(M, dtype=x.dtype)
        if N == 0 or M == 0 or K == 0:
            dx.fill(0)
            dW.fill(0)
            _colsum(dout, db)
            return dx, dW, db
        if N == 1:
            _row_backward(x, W, dout, dx, dW, db)
        else:
            # a layer too small for threads runs serially anyway: not worth asking for the count
            if N * K * M < PARALLEL_WORK:  # serial anyway (see _forward)
                _small_backward(x, W, dout, dx, dW, db)
            else:
                threads = numba.get_num_threads()
                macro = _macro_address(x.dtype)
                if threads > 1 and N * K * M < SHARED_WORK:  # both products on the static split: one region
                    _backward_pair(x, W, dout, dx, dW, db, threads, macro)
                else:
                    _gemm(dout, False, W, True, dx, db, False, db, False, M, threads, macro)
                    _gemm(x, True, dout, False, dW, db, False, db, True, N, threads, macro)
        return dx, dW, db
