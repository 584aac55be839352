"""The kernel-level contract (affbench.protocol) for every registered implementation:
results, dtypes, no input modification, no aliasing, and clear errors raised in Python
before any kernel runs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _support import IMPL_NAMES

from affbench import protocol, reference, registry
from affbench.protocol import MAX_ELEMENTS, KernelImpl, check_backward, check_forward

N, K, M = 3, 4, 5


def arrays(dtype="float64", n=N, k=K, m=M, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(s).astype(dtype) for s in ((n, k), (k, m), (m,), (n, m)))


@pytest.fixture
def guarded(impl, monkeypatch):
    """The implementation with its kernels replaced by a tripwire: validation must reject
    bad input before any kernel (Numba does no bounds checks) can run."""
    if isinstance(impl, KernelImpl):
        def tripwire(*args, **kwargs):
            raise AssertionError("the kernel ran on input that should have been refused")

        monkeypatch.setattr(impl, "_forward", tripwire)
        monkeypatch.setattr(impl, "_backward", tripwire)
    return impl


# --------------------------------------------------------------------------- valid input
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("b_shape", ["(M,)", "(1, M)"])
def test_contract(impl, dtype, b_shape):
    x, W, b, dout = arrays(dtype)
    if b_shape == "(1, M)":
        b = b.reshape(1, M)
    originals = [a.copy() for a in (x, W, b, dout)]
    y = impl.forward(x, W, b)
    grads = impl.backward(x, W, dout)
    assert isinstance(grads, tuple) and len(grads) == 3
    results = {"y": y, "dx": grads[0], "dW": grads[1], "db": grads[2]}
    shapes = {"y": (N, M), "dx": (N, K), "dW": (K, M), "db": (M,)}
    ref = dict(zip(results, (reference.forward(x, W, b), *reference.backward(x, W, dout))))
    rtol = 1e-5 if dtype == "float32" else 1e-12
    for q, got in results.items():
        assert type(got) is np.ndarray, q
        assert got.dtype == np.dtype(dtype), q
        assert got.shape == shapes[q], q
        np.testing.assert_allclose(got, ref[q], rtol=rtol, atol=rtol, err_msg=q)
        for a in (x, W, b, dout):
            assert not np.shares_memory(got, a), f"{q} aliases an input"
    for i, (qa, a) in enumerate(results.items()):
        for qb, c in list(results.items())[i + 1:]:
            assert not np.shares_memory(a, c), f"{qa} and {qb} share memory"
    for a, orig in zip((x, W, b, dout), originals):
        np.testing.assert_array_equal(a, orig)  # inputs never modified
    # new arrays each call: a second call does not hand back (or overwrite) the first results
    y2 = impl.forward(x, W, b)
    assert not np.shares_memory(y, y2)
    np.testing.assert_array_equal(y, results["y"])


def test_every_builtin_is_a_kernel_impl():
    for n in ("naive", "numpy", "numba-serial", "numba-prange"):
        assert isinstance(registry.get(n), KernelImpl)


@pytest.mark.parametrize("shape", [(0, K, M), (N, 0, M), (N, K, 0), (0, 0, 0), (1, 1, 1)])
def test_degenerate_shapes(impl, shape):
    n, k, m = shape
    x, W, b, dout = arrays("float64", n, k, m)
    y = impl.forward(x, W, b)
    dx, dW, db = impl.backward(x, W, dout)
    np.testing.assert_allclose(y, reference.forward(x, W, b), atol=1e-12)
    for got, ref in zip((dx, dW, db), reference.backward(x, W, dout)):
        assert got.shape == ref.shape and got.dtype == np.float64
        np.testing.assert_allclose(got, ref, atol=1e-12)


def test_zero_size_arrays_declaring_a_huge_axis_return_at_once(impl):
    """np.empty((0, 2**45)) costs nothing; a kernel looping over the 2**45 axis would hang."""
    H = 2**45
    x, W, b = np.empty((0, H)), np.empty((H, 0)), np.empty(0)
    assert impl.forward(x, W, b).shape == (0, 0)
    dx, dW, db = impl.backward(x, W, np.empty((0, 0)))
    assert (dx.shape, dW.shape, db.shape) == ((0, H), (H, 0), (0,))
    y = impl.forward(np.empty((H, 0)), np.empty((0, 0)), np.empty(0))
    assert y.shape == (H, 0)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_ndarray_subclasses_do_not_leak_into_results(impl):
    x, W, b, dout = arrays()
    outs = (impl.forward(np.asmatrix(x), np.asmatrix(W), b), *impl.backward(np.asmatrix(x), np.asmatrix(W), np.asmatrix(dout)))
    for got in outs:
        assert type(got) is np.ndarray
    assert outs[3].shape == (M,)


# --------------------------------------------------------------------------- bad input
def _fw(x=None, W=None, b=None, dtype="float64"):
    dx, dW, db, _ = arrays(dtype)
    return (dx if x is None else x, dW if W is None else W, db if b is None else b)


def _bw(x=None, W=None, dout=None, dtype="float64"):
    dx, dW, _, dd = arrays(dtype)
    return (dx if x is None else x, dW if W is None else W, dd if dout is None else dout)


Z = np.zeros
FORWARD_BAD = {
    "x 1-D": (_fw(x=Z(K)), ValueError, ["x", "(4,)", "2-D"]),
    "x 3-D": (_fw(x=Z((N, K, 1))), ValueError, ["x", "(3, 4, 1)"]),
    "x 0-d": (_fw(x=np.array(1.0)), ValueError, ["x", "()"]),
    "W 1-D": (_fw(W=Z(K)), ValueError, ["W", "(4,)"]),
    "W 3-D": (_fw(W=Z((K, M, 1))), ValueError, ["W", "(4, 5, 1)"]),
    "b 2-D (2, M)": (_fw(b=Z((2, M))), ValueError, ["b", "(2, 5)"]),
    "b 0-d": (_fw(b=np.array(1.0)), ValueError, ["b", "()"]),
    "b 3-D": (_fw(b=Z((1, 1, M))), ValueError, ["b", "(1, 1, 5)"]),
    "x/W do not chain": (_fw(x=Z((N, K + 1))), ValueError, ["x", "W", "(3, 5)", "(4, 5)"]),
    "b too long": (_fw(b=Z(M + 1)), ValueError, ["b", "(6,)", "(4, 5)"]),
    "b (1, M) too long": (_fw(b=Z((1, M + 1))), ValueError, ["b", "(1, 6)", "(4, 5)"]),
    "x float16": (_fw(x=Z((N, K), np.float16)), TypeError, ["x", "float16"]),
    "W int64": (_fw(W=Z((K, M), np.int64)), TypeError, ["W", "int64"]),
    "b complex": (_fw(b=Z(M, np.complex128)), TypeError, ["b", "complex128"]),
    "x object": (_fw(x=Z((N, K), object)), TypeError, ["x", "object"]),
    "x bool": (_fw(x=Z((N, K), bool)), TypeError, ["x", "bool"]),
    "x strings": (_fw(x=np.full((N, K), "a")), TypeError, ["x", "<U1"]),
    "x big-endian": (_fw(x=Z((N, K), ">f8")), TypeError, ["x", ">f8"]),
    "mixed x float32": (_fw(x=Z((N, K), np.float32)), TypeError, ["x=float32", "W=float64", "b=float64"]),
    "mixed b float32": (_fw(b=Z(M, np.float32)), TypeError, ["b=float32", "W=float64"]),
    "x list": (_fw(x=[[1.0] * K] * N), TypeError, ["x", "list"]),
    "W None": (_fw(W=None) and (arrays()[0], None, arrays()[2]), TypeError, ["W", "NoneType"]),
    "b scalar": (_fw(b=2.0), TypeError, ["b", "float"]),
    "x masked": (_fw(x=np.ma.zeros((N, K))), TypeError, ["x", "masked"]),
}
BACKWARD_BAD = {
    "x 1-D": (_bw(x=Z(K)), ValueError, ["x", "(4,)"]),
    "W 3-D": (_bw(W=Z((K, M, 1))), ValueError, ["W", "(4, 5, 1)"]),
    "dout 1-D": (_bw(dout=Z(M)), ValueError, ["dout", "(5,)"]),
    "dout 3-D": (_bw(dout=Z((N, M, 1))), ValueError, ["dout", "(3, 5, 1)"]),
    "dout wrong N": (_bw(dout=Z((N + 1, M))), ValueError, ["dout", "(4, 5)", "(3, 5)"]),
    "dout wrong M": (_bw(dout=Z((N, M + 1))), ValueError, ["dout", "(3, 6)", "(3, 5)"]),
    "dout transposed": (_bw(dout=Z((M, N))), ValueError, ["dout", "(5, 3)", "(3, 5)"]),
    "x/W do not chain": (_bw(W=Z((K + 1, M))), ValueError, ["x", "W", "(3, 4)", "(5, 5)"]),
    "dout float16": (_bw(dout=Z((N, M), np.float16)), TypeError, ["dout", "float16"]),
    "dout int32": (_bw(dout=Z((N, M), np.int32)), TypeError, ["dout", "int32"]),
    "W complex": (_bw(W=Z((K, M), np.complex64)), TypeError, ["W", "complex64"]),
    "mixed dout float32": (_bw(dout=Z((N, M), np.float32)), TypeError, ["dout=float32", "x=float64"]),
    "mixed x float32": (_bw(x=Z((N, K), np.float32)), TypeError, ["x=float32", "dout=float64"]),
    "dout tuple": (_bw(dout=((1.0,) * M,) * N), TypeError, ["dout", "tuple"]),
}


@pytest.mark.parametrize("pass_, case", [("forward", c) for c in FORWARD_BAD] + [("backward", c) for c in BACKWARD_BAD],
                         ids=lambda v: str(v))
def test_bad_input(guarded, pass_, case):
    args, exc, words = (FORWARD_BAD if pass_ == "forward" else BACKWARD_BAD)[case]
    with pytest.raises(exc) as info:
        getattr(guarded, pass_)(*args)
    msg = str(info.value)
    for w in words:
        assert w in msg, f"{w!r} missing from {msg!r}"


# --------------------------------------------------------------------------- huge declared sizes
H = 2**38  # any non-empty array with this axis needs ≥ 1 TiB


def test_huge_output_is_refused_before_allocating(guarded):
    x = np.broadcast_to(np.float64(1.0), (H, K))  # 2**40 logical elements, 8 bytes of memory
    W, b = np.ones((K, 2)), np.ones(2)
    with pytest.raises(ValueError) as info:
        guarded.forward(x, W, b)
    msg = str(info.value)
    assert "y" in msg and f"({H}, 2)" in msg and "memory" in msg
    with pytest.raises(ValueError, match="memory") as info:
        guarded.backward(x, W, np.broadcast_to(np.float64(1.0), (H, 2)))
    assert "dx" in str(info.value) and f"({H}, {K})" in str(info.value)


def test_huge_input_copy_is_refused(guarded):
    """A zero-stride x must be copied to be C-contiguous: that copy is refused too."""
    x = np.broadcast_to(np.float32(1.0), (2, H))
    W = np.broadcast_to(np.float32(1.0), (H, 2))
    with pytest.raises(ValueError, match="copy of x") as info:
        guarded.forward(x, W, np.ones(2, np.float32))
    assert str((2, H)) in str(info.value)


def test_more_elements_than_max_elements(guarded):
    x = np.broadcast_to(np.float64(0.0), (2**21, 2**20))
    assert x.size > MAX_ELEMENTS
    with pytest.raises(ValueError, match="above the limit") as info:
        guarded.forward(x, np.ones((2**20, 1)), np.ones(1))
    assert "x" in str(info.value)


def test_memory_check_uses_available_memory(guarded, monkeypatch):
    monkeypatch.setattr(protocol, "MEMORY_CHECK_BYTES", 0)
    monkeypatch.setattr(protocol, "available_memory", lambda: 10)
    x, W, b, dout = arrays()
    with pytest.raises(ValueError, match=r"forward would allocate .* but only 10 B of memory is available"):
        guarded.forward(x, W, b)
    with pytest.raises(ValueError, match=r"backward would allocate .*dW \(4, 5\) float64"):
        guarded.backward(x, W, dout)
    monkeypatch.setattr(protocol, "available_memory", lambda: None)  # unknown: no refusal
    monkeypatch.undo()


def test_available_memory_is_sane():
    avail = protocol.available_memory()
    assert avail is None or 0 < avail < 2**60


# --------------------------------------------------------------------------- what kernels receive
@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_check_forward_hands_kernels_clean_arrays():
    x, W, b, dout = arrays()
    ro = x.copy()
    ro.flags.writeable = False
    for xin in (np.asfortranarray(x), x[:, ::-1][:, ::-1], np.asmatrix(x), ro):
        cx, cW, cb = check_forward(xin, W, b.reshape(1, -1))
        for a in (cx, cW, cb):
            assert type(a) is np.ndarray and a.flags.c_contiguous and a.flags.writeable and a.flags.aligned
        assert cb.shape == (M,)
        np.testing.assert_array_equal(cx, x)
    cx, cW, cd = check_backward(x, W, dout)
    assert cx is x and cW is W and cd is dout  # no copy when none is needed


def test_read_only_inputs_compile_no_new_numba_signature():
    """Numba would compile a separate signature per read-only combination (~1 s inside a
    timed call); the protocol copies read-only inputs instead."""
    from implementations import numba_loops

    impl = registry.get("numba-serial")
    x, W, b, dout = arrays()
    impl.forward(x, W, b)
    impl.backward(x, W, dout)
    before = (len(numba_loops._forward_serial.signatures), len(numba_loops._backward_serial.signatures))
    for a in (x, W, b, dout):
        a.flags.writeable = False
    impl.forward(x, W, b)
    impl.backward(x, W, dout)
    after = (len(numba_loops._forward_serial.signatures), len(numba_loops._backward_serial.signatures))
    assert after == before


def test_all_registered_follow_the_protocol():
    for n in IMPL_NAMES:
        impl = registry.get(n)
        assert isinstance(impl, protocol.AffineImpl)
        assert callable(impl.forward) and callable(impl.backward)


# --------------------------------------------------------------------------- the fast path of the checks
def _variants():
    """Inputs of every kind the checks distinguish: plain ones take the fast path, the others
    must fall through to the full checks and come out exactly as before."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 4))
    W = rng.standard_normal((4, 3))
    b = rng.standard_normal(3)
    d = rng.standard_normal((5, 3))
    ro = W.copy()
    ro.flags.writeable = False
    yield "plain", (x, W, b), (x, W, d)
    yield "float32", (x.astype(np.float32), W.astype(np.float32), b.astype(np.float32)), \
        (x.astype(np.float32), W.astype(np.float32), d.astype(np.float32))
    yield "fortran", (np.asfortranarray(x), W, b), (x, np.asfortranarray(W), d)
    yield "read-only", (x, ro, b), (x, ro, d)
    yield "strided view", (x[:, ::1][::1], W[:, :], rng.standard_normal(6)[::2]), (x, W, rng.standard_normal((5, 6))[:, ::2])
    yield "b as (1, M)", (x, W, b[None, :]), (x, W, d)
    with warnings.catch_warnings():  # np.matrix is pending deprecation; it is exactly what is tested
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        yield "matrix", (np.asmatrix(x), W, b), (x, np.asmatrix(W), d)
    yield "big-endian", (x.astype(">f8"), W, b), (x, W, d.astype(">f8"))
    yield "mixed dtypes", (x, W.astype(np.float32), b), (x, W, d.astype(np.float32))
    yield "int", (x.astype(int), W, b), (x, W.astype(int), d)
    yield "shapes do not chain", (x, W.T.copy(), b), (x, W, d.T.copy())
    yield "wrong ndim", (x[0], W, b), (x, W[0], d)
    yield "list", ([[1.0]], W, b), (x, W, [[1.0]])
    yield "empty", (np.empty((0, 4)), W, b), (np.empty((0, 4)), W, np.empty((0, 3)))


def _outcome(fn, *args):
    try:
        return "ok", fn(*args)
    except (TypeError, ValueError) as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize("case", list(_variants()), ids=lambda c: c[0])
def test_fast_path_agrees_with_the_full_checks(case):
    from affbench import protocol

    _, fwd, bwd = case
    for fast, full, args in ((protocol.check_forward, protocol._check_forward_full, fwd),
                             (protocol.check_backward, protocol._check_backward_full, bwd)):
        got, want = _outcome(fast, *args), _outcome(full, *args)
        assert got[0] == want[0]
        if got[0] != "ok":
            assert got[1] == want[1]
            continue
        for g, w in zip(got[1], want[1]):
            assert type(g) is np.ndarray and g.dtype == w.dtype and g.shape == w.shape
            np.testing.assert_array_equal(g, w)
            assert g.flags.c_contiguous and g.flags.writeable
    if case[0] == "plain":  # no copies: the very same arrays come back
        assert all(a is b for a, b in zip(protocol.check_forward(*fwd), fwd))
