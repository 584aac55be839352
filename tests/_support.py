"""Helpers shared by the test modules and by the fuzz worker subprocess (not a test module).

* ``FUZZ_COUNTS``: how many inputs each fuzz test tried; tests/conftest.py prints the total.
* ``compare_with_reference``: verify's tolerance model, with NaN/Inf positions required to
  match NumPy's float64 reference exactly.
* the hypothesis strategies for the kernel-level and Affine-level fuzz cases, and the oracle
  that says whether a case must succeed or must raise ValueError/TypeError.
"""

from __future__ import annotations

import collections
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st

from affbench import reference, registry
from affbench.verify import normwise_error, tolerance

IMPL_NAMES = registry.names()
BUILTINS = ("naive", "numpy", "numba-serial", "numba-prange")


def is_jit(name: str) -> bool:
    """Numba-compiled: its fuzz cases run in a child process."""
    return bool(getattr(registry.get(name), "jit", False)) or "numba" in name

#: inputs tried per fuzz test (in-process and reported back by subprocess workers)
FUZZ_COUNTS: collections.Counter[str] = collections.Counter()

#: CI can ask for more (or fewer) examples: AFFBENCH_FUZZ_SCALE=4 pytest tests/test_fuzz.py
FUZZ_SCALE = float(os.environ.get("AFFBENCH_FUZZ_SCALE", "1"))


def n_examples(base: int) -> int:
    return max(1, int(base * FUZZ_SCALE))


QUANTITIES = ("y", "dx", "dW", "db")

#: dims this large are only ever declared (zero-size or zero-stride arrays); any non-empty array
#: or output with such an axis needs ≥ 1 TiB, so every implementation must refuse it.
HUGE_DIMS = (2**38, 2**40, 2**45)
HUGE = min(HUGE_DIMS)

#: an error message is "clear" when it names an argument or an output
ARG_NAME = re.compile(r"\b(x|W|b|dout|y|dx|dW|db)\b")


# --------------------------------------------------------------------------- comparison
def _finite64(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return np.where(np.isfinite(a), a, 0.0)


def scales(x, W, b, dout) -> dict[str, tuple[np.ndarray, int]]:
    """|X|·|W| (+|b|) for each output, computed on the finite entries only (an output that
    depends on a NaN or Inf is itself NaN or Inf and compared by position, not by size)."""
    ax, aW, ab, ad = (np.abs(_finite64(a)) for a in (x, W, b, dout))
    return {
        "y": (ax @ aW + ab.reshape(-1), ax.shape[1]),
        "dx": (ad @ aW.T, aW.shape[1]),
        "dW": (ax.T @ ad, ax.shape[0]),
        "db": (ad.sum(axis=0), ax.shape[0]),
    }


def compare_one(q: str, got: Any, ref: np.ndarray, scale: np.ndarray, n: int, dtype: np.dtype) -> None:
    """got must be an ndarray of ``dtype`` and ref's shape, NaN/±Inf exactly where the float64
    reference has them, and the finite rest within verify's tolerance."""
    assert isinstance(got, np.ndarray), f"{q} is {type(got).__name__}, not an ndarray"
    assert type(got) is np.ndarray, f"{q} is a {type(got).__name__}, not a plain ndarray"
    assert got.dtype == dtype, f"{q} has dtype {got.dtype}, expected {dtype}"
    assert got.shape == ref.shape, f"{q} has shape {got.shape}, expected {ref.shape}"
    if ref.size == 0:
        return
    g64 = got.astype(np.float64)
    ref_nan, got_nan = np.isnan(ref), np.isnan(g64)
    assert np.array_equal(ref_nan, got_nan), (
        f"{q}: NaN at {np.argwhere(got_nan ^ ref_nan)[:5].tolist()} differs from NumPy's (NaN must propagate)"
    )
    ref_inf = np.isinf(ref)
    assert np.array_equal(ref_inf, np.isinf(g64)) and np.array_equal(g64[ref_inf], ref[ref_inf]), (
        f"{q}: Inf entries differ from NumPy's"
    )
    fin = np.isfinite(ref)
    if fin.any():
        err = normwise_error(g64[fin], ref[fin], scale[fin])
        tol = tolerance(dtype, n)
        assert err <= tol, f"{q}: normwise error {err:.3e} > tolerance {tol:.3e} (n={n}, {dtype})"


def reference_results(x, W, b, dout) -> dict[str, np.ndarray]:
    with np.errstate(all="ignore"):
        return dict(zip(QUANTITIES, (reference.forward(x, W, b), *reference.backward(x, W, dout))))


def compare_with_reference(results: dict[str, Any], x, W, b, dout, dtype) -> None:
    """results: some of y, dx, dW, db (as returned by an implementation)."""
    ref = reference_results(x, W, b, dout)
    sc = scales(x, W, b, dout)
    for q, got in results.items():
        scale, n = sc[q]
        compare_one(q, got, ref[q], scale, n, np.dtype(dtype))


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """array_equal, NaN equal to NaN where the dtype has NaN."""
    return np.array_equal(a, b, equal_nan=a.dtype.kind in "fc" and b.dtype.kind in "fc")


# --------------------------------------------------------------------------- layouts
LAYOUTS = ("C", "F", "strided", "negative", "readonly")


def in_layout(a: np.ndarray, layout: str) -> np.ndarray:
    """The same values as ``a`` in another memory layout (never a zero-stride one)."""
    if layout == "C" or a.ndim == 0:
        out = np.array(a, order="C")
    elif layout == "F":
        out = np.array(a, order="F")
    elif layout == "strided":  # every other element of a wider array along the last axis
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1] + 1,), dtype=a.dtype)
        big[..., 1::2] = a
        out = big[..., 1::2]
    elif layout == "negative":  # a reversed view of reversed data: negative strides
        idx = (slice(None, None, -1),) * a.ndim
        out = np.array(a[idx], order="C")[idx]
    elif layout == "readonly":
        out = np.array(a)
        out.flags.writeable = False
    else:  # pragma: no cover
        raise ValueError(layout)
    assert same(out, a)
    return out


# --------------------------------------------------------------------------- fuzz cases
FLOAT_DTYPES = ("float32", "float64")
#: kernel-level dtypes other than the supported ones (each must be refused with TypeError)
OTHER_DTYPES = ("float16", "int32", "int64", "uint8", "bool", "complex128", "object", ">f8", "<U3")
AFFINE_OK_DTYPES = ("float32", "float64", ">f8", ">f4", "int8", "int64", "uint16", "bool")
AFFINE_BAD_DTYPES = ("float16", "complex64", "complex128", "object", "<U3", "S2", "datetime64[s]")


@dataclass
class Spec:
    """How to build one argument: a shape, a dtype, a layout and a value pattern."""

    shape: tuple[int, ...]
    dtype: str
    layout: str = "C"
    values: str = "normal"  # normal | nan | inf | mixed
    kind: str = "array"  # array | list | scalar | none

    def huge(self) -> bool:
        return any(d >= HUGE for d in self.shape)


def _values(shape, dtype: np.dtype, values: str, rng: np.random.Generator) -> np.ndarray:
    if dtype.kind == "O":
        return rng.integers(-3, 4, size=shape).astype(object)
    if dtype.kind in "US":
        return np.full(shape, "ab", dtype=dtype)
    if dtype.kind == "M":
        return np.zeros(shape, dtype=dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    if dtype.kind in "iu":
        return rng.integers(0 if dtype.kind == "u" else -3, 4, size=shape).astype(dtype)
    a = rng.standard_normal(shape) * 2
    if values != "normal" and a.ndim:
        specials = {"nan": [np.nan], "inf": [np.inf, -np.inf], "mixed": [np.nan, np.inf, -np.inf, 0.0]}[values]
        mask = rng.random(shape) < 0.2
        a[mask] = rng.choice(specials, size=int(mask.sum()))
    with np.errstate(all="ignore"):
        if dtype.kind == "c":
            a = a + 1j * a
        return a.astype(dtype)


def build(spec: Spec, rng: np.random.Generator) -> Any:
    dtype = np.dtype(spec.dtype)
    if spec.kind == "none":
        return None
    if spec.kind == "scalar":
        return 1.5
    if spec.kind == "list":
        return _values(spec.shape, np.dtype(np.float64), "normal", rng).tolist() if not spec.huge() else [1.0]
    if spec.huge():
        if 0 in spec.shape:  # a zero-size array may declare any axis; it costs nothing
            return np.empty(spec.shape, dtype=dtype)
        return np.broadcast_to(_values((), dtype, spec.values, rng), spec.shape)  # zero strides
    return in_layout(_values(spec.shape, dtype, spec.values, rng), spec.layout)


@st.composite
def dims(draw) -> tuple[int, int, int]:
    """(N, K, M): small, with zeros, and now and then one absurdly large declared axis."""
    small = st.integers(0, 6)
    n, k, m = draw(small), draw(small), draw(small)
    if draw(st.integers(0, 5)) == 0:
        axis = draw(st.integers(0, 2))
        huge = draw(st.sampled_from(HUGE_DIMS))
        n, k, m = [huge if i == axis else d for i, d in enumerate((n, k, m))]
    return n, k, m


@dataclass
class KernelCase:
    pass_: str  # forward | backward
    specs: dict[str, Spec]
    seed: int
    expect_error: bool = False
    notes: list[str] = field(default_factory=list)

    def build(self) -> dict[str, Any]:
        rng = np.random.default_rng(self.seed)
        return {name: build(s, rng) for name, s in self.specs.items()}


def _perturb_shape(draw, shape: tuple[int, ...]) -> tuple[int, ...]:
    how = draw(st.sampled_from(["off", "0-d", "1-d", "3-d"]))
    if how == "0-d":
        return ()
    if how == "1-d":
        return (draw(st.integers(0, 6)),)
    if how == "3-d":
        return (*shape, 2)
    lst = list(shape)
    axis = draw(st.integers(0, len(lst) - 1))
    lst[axis] = lst[axis] + 1 if lst[axis] < HUGE else 3
    return tuple(lst)


def kernel_valid(pass_: str, specs: dict[str, Spec]) -> bool:
    """The contract's oracle: must this call succeed (or be refused only for memory)?"""
    if any(s.kind != "array" for s in specs.values()):
        return False
    dtypes = {np.dtype(s.dtype) for s in specs.values()}
    if len(dtypes) != 1 or next(iter(dtypes)) not in (np.dtype("float32"), np.dtype("float64")):
        return False
    x, W = specs["x"].shape, specs["W"].shape
    if len(x) != 2 or len(W) != 2 or x[1] != W[0]:
        return False
    if pass_ == "forward":
        b = specs["b"].shape
        return (len(b) == 1 or (len(b) == 2 and b[0] == 1)) and b[-1] == W[1]
    return specs["dout"].shape == (x[0], W[1])


@st.composite
def kernel_cases(draw) -> KernelCase:
    """Arguments for impl.forward(x, W, b) or impl.backward(x, W, dout): mostly valid, with
    every kind of wrongness mixed in; the oracle decides whether an error is due."""
    pass_ = draw(st.sampled_from(["forward", "backward"]))
    N, K, M = draw(dims())
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    values = draw(st.sampled_from(["normal", "normal", "normal", "nan", "inf", "mixed"]))
    third = "b" if pass_ == "forward" else "dout"
    b_shape = draw(st.sampled_from([(M,), (1, M)]))
    shapes = {"x": (N, K), "W": (K, M), third: b_shape if third == "b" else (N, M)}
    specs: dict[str, Spec] = {}
    notes: list[str] = []
    for name, shape in shapes.items():
        s = Spec(shape, dtype, draw(st.sampled_from(LAYOUTS)), values)
        wrong = draw(st.integers(0, 19))
        if wrong == 0:  # a wrong shape or number of dimensions
            s.shape = _perturb_shape(draw, shape)
            notes.append(f"{name} shape {s.shape}")
        elif wrong == 1:  # another dtype (a supported one counts: then the dtypes are mixed)
            s.dtype = draw(st.sampled_from(OTHER_DTYPES + tuple(d for d in FLOAT_DTYPES if d != dtype)))
            notes.append(f"{name} dtype {s.dtype}")
        elif wrong == 2:
            s.kind = draw(st.sampled_from(["list", "scalar", "none"]))
            notes.append(f"{name} is a {s.kind}")
        specs[name] = s
    return KernelCase(pass_, specs, draw(st.integers(0, 2**32 - 1)), not kernel_valid(pass_, specs), notes)


def outputs_shapes(pass_: str, N: int, K: int, M: int) -> list[tuple[int, ...]]:
    return [(N, M)] if pass_ == "forward" else [(N, K), (K, M), (M,)]


def needs_terabytes(case: KernelCase) -> bool:
    """A valid case that must be refused: a non-empty array or output with a huge axis."""
    x = case.specs["x"]
    N, K = x.shape
    M = case.specs["W"].shape[1]
    shapes = [s.shape for s in case.specs.values()] + outputs_shapes(case.pass_, N, K, M)
    return any(0 not in sh and any(d >= HUGE for d in sh) for sh in shapes)


def run_kernel_case(impl, case: KernelCase) -> str:
    """Run one case against one implementation; assert the contract; return the outcome
    ('ok', 'refused', 'error'). Shared by the in-process fuzz and the subprocess worker."""
    args = case.build()
    names = list(case.specs)
    call = impl.forward if case.pass_ == "forward" else impl.backward
    must_refuse = not case.expect_error and needs_terabytes(case)
    before = {n: a.copy() for n, a in args.items() if isinstance(a, np.ndarray) and not case.specs[n].huge()}
    try:
        with np.errstate(all="ignore"):
            out = call(*(args[n] for n in names))
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        assert case.expect_error or must_refuse, f"{impl.name}.{case.pass_} refused a valid case: {exc!r}"
        assert "\n" not in msg.strip() and ARG_NAME.search(msg), f"unclear message: {msg!r}"
        if must_refuse and not case.expect_error:
            assert isinstance(exc, ValueError) and ("memory" in msg or "limit" in msg), msg
            return "refused"
        return "error"
    assert not case.expect_error, f"{impl.name}.{case.pass_} accepted a bad case ({case.notes})"
    assert not must_refuse, f"{impl.name}.{case.pass_} accepted a case needing terabytes"
    for n, a in before.items():
        assert same(args[n], a), f"{impl.name}.{case.pass_} modified its input {n}"
    x, W = args["x"], args["W"]
    dtype = x.dtype
    if case.pass_ == "forward":
        b = args["b"]
        dout = np.zeros((x.shape[0], W.shape[1]), dtype)
        results = {"y": out}
    else:
        dout = args["dout"]
        b = np.zeros(W.shape[1], dtype)
        assert isinstance(out, tuple) and len(out) == 3, f"backward returned {type(out).__name__}"
        results = dict(zip(("dx", "dW", "db"), out))
    if any(d >= HUGE for d in x.shape + W.shape):
        # zero-size arrays declaring a huge axis: check the shapes (the reference would have to
        # materialise nothing either, but keep the comparison cheap and obvious)
        N, K = x.shape
        M = W.shape[1]
        for (q, got), shape in zip(results.items(), outputs_shapes(case.pass_, N, K, M)):
            assert isinstance(got, np.ndarray) and got.shape == shape and got.dtype == dtype, (q, got)
        return "ok"
    compare_with_reference(results, x, W, b, dout, dtype)
    for q, got in results.items():
        for n, a in args.items():
            assert not (got.size and np.shares_memory(got, a)), f"{q} shares memory with input {n}"
    return "ok"


# --------------------------------------------------------------------------- Affine-level cases
def affine_dtype_ok(dtype: str) -> bool:
    dt = np.dtype(dtype)
    return dt.kind in "iub" or (dt.kind == "f" and dt.itemsize in (4, 8))


def affine_compute_dtype(*dtypes: str) -> np.dtype:
    mapped = [np.dtype(np.float64) if np.dtype(d).kind in "iub" else np.dtype(d).newbyteorder("=") for d in dtypes]
    return np.result_type(*mapped)


@dataclass
class AffineCase:
    specs: dict[str, Spec]  # x, W, b, dout
    seed: int

    def build(self) -> dict[str, Any]:
        rng = np.random.default_rng(self.seed)
        return {name: build(s, rng) for name, s in self.specs.items()}


def _x_shape(N: int, K: int, ndim: int) -> tuple[int, ...]:
    return {0: (), 1: (N,), 2: (N, K), 3: (N, 1, K), 4: (N, K, 1, 1)}[ndim]


@st.composite
def affine_cases(draw) -> AffineCase:
    N, K, M = draw(dims())
    ndim = draw(st.sampled_from([0, 1, 2, 2, 2, 3, 4]))
    if ndim == 1:
        K = 1
    def dtype_of(draw):
        roll = draw(st.integers(0, 11))
        if roll == 0:
            return draw(st.sampled_from(AFFINE_BAD_DTYPES))
        return draw(st.sampled_from(AFFINE_OK_DTYPES if roll < 4 else FLOAT_DTYPES))

    values = draw(st.sampled_from(["normal", "normal", "nan", "inf"]))
    shapes = {"x": _x_shape(N, K, ndim), "W": (K, M), "b": draw(st.sampled_from([(M,), (1, M)])), "dout": (N, M)}
    specs = {}
    for name, shape in shapes.items():
        if draw(st.integers(0, 14)) == 0 and shape:
            shape = _perturb_shape(draw, shape)
        specs[name] = Spec(shape, dtype_of(draw), draw(st.sampled_from(LAYOUTS)), values)
    return AffineCase(specs, draw(st.integers(0, 2**32 - 1)))


def _nonempty_huge(shape: tuple[int, ...]) -> bool:
    return 0 not in shape and any(d >= HUGE for d in shape)


def run_affine_case(impl_name: str, case: AffineCase) -> str:
    """Affine(W, b, impl).forward(x) then .backward(dout): the right result, or a clear
    ValueError/TypeError where the oracle says the inputs are wrong (or need terabytes)."""
    from affbench import Affine

    a = case.build()
    sp = case.specs
    x_s, W_s, b_s, d_s = sp["x"], sp["W"], sp["b"], sp["dout"]

    def expect_error(stage: str, why: str | None, call):
        try:
            with np.errstate(all="ignore"):
                out = call()
        except (ValueError, TypeError) as exc:
            msg = str(exc)
            assert why is not None, f"Affine[{impl_name}] {stage} refused a valid case: {exc!r}"
            assert ARG_NAME.search(msg) and "\n" not in msg.strip(), f"unclear message: {msg!r}"
            return None
        assert why is None, f"Affine[{impl_name}] {stage} accepted a bad case: {why}"
        return out

    # constructor
    M = W_s.shape[1] if len(W_s.shape) == 2 else None
    why = None
    if len(W_s.shape) != 2:
        why = f"W shape {W_s.shape}"
    elif b_s.shape not in ((M,), (1, M)):
        why = f"b shape {b_s.shape}"
    elif not (affine_dtype_ok(W_s.dtype) and affine_dtype_ok(b_s.dtype)):
        why = f"W/b dtypes {W_s.dtype} {b_s.dtype}"
    layer = expect_error("Affine()", why, lambda: Affine(a["W"], a["b"], impl=impl_name))
    if layer is None:
        return "error"
    # forward
    xs = x_s.shape
    why = None
    if len(xs) < 1:
        why = "0-d x"
    elif not affine_dtype_ok(x_s.dtype):
        why = f"x dtype {x_s.dtype}"
    elif int(np.prod(xs[1:], dtype=object)) != W_s.shape[0]:
        why = f"x shape {xs} vs W {W_s.shape}"
    else:
        N, K = xs[0], W_s.shape[0]
        if any(_nonempty_huge(s) for s in (xs, W_s.shape, b_s.shape, (N, M), (N, K), (K, M))):
            why = "needs terabytes"
    y = expect_error("forward", why, lambda: layer.forward(a["x"]))
    if y is None:
        return "error"
    dtype = affine_compute_dtype(x_s.dtype, W_s.dtype, b_s.dtype)
    N, K = xs[0], W_s.shape[0]
    x2 = np.asarray(a["x"]).reshape(N, K)
    if any(d >= HUGE for d in xs + W_s.shape):  # zero-size arrays declaring a huge axis
        assert y.shape == (N, M) and y.dtype == dtype
        return "ok"
    zeros_dout = np.zeros((N, M))
    compare_with_reference({"y": y}, x2, a["W"], a["b"], zeros_dout, dtype)
    # backward
    why = None
    if d_s.shape != (N, M):
        why = f"dout shape {d_s.shape}"
    elif not affine_dtype_ok(d_s.dtype):
        why = f"dout dtype {d_s.dtype}"
    dx = expect_error("backward", why, lambda: layer.backward(a["dout"]))
    if dx is None:
        return "error"
    assert isinstance(dx, np.ndarray) and dx.shape == xs, f"dx shape {getattr(dx, 'shape', dx)} != x shape {xs}"
    assert layer.db.shape == b_s.shape, f"db shape {layer.db.shape} != b shape {b_s.shape}"
    compare_with_reference(
        {"dx": dx.reshape(N, K), "dW": layer.dW, "db": layer.db.reshape(-1)},
        x2, a["W"], a["b"], np.asarray(a["dout"], dtype=np.float64), dtype,
    )
    return "ok"
