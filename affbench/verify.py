"""Cross-validation: every implementation against the float64 reference, before any timing.

The tolerance model
-------------------
Each output is a sum of ``n`` products (n = K for y, M for dx, N for dW and db). Rounding a
sum of n terms in any order (sequential, blocked, pairwise, FMA, fastmath-reassociated)
obeys |ŷ - y| ≤ γ_n |X||W| with γ_n ≈ n·u in the worst case; for errors of random sign it
is ≈ √n·u (Higham & Mary, 2019). We measure the *normwise* error

    error = max|ŷ - y_ref| / max(|X|·|W| + |b|)        (|·| elementwise, · the product)

and accept it when error ≤ C·√(n+1)·(eps(dtype) + eps(float64)), with C = 8:

* the +1 counts the bias (or the final rounding to the output dtype);
* eps(float64) pays for the reference's own rounding (it matters only for float64);
* C = 8 makes the bound rigorous, not just probable, for n ≤ 63: there n·u ≤ 8·√n·u, so
  even adversarial data (all terms of one sign, where errors do not cancel) stays inside.
  Above that it is the probabilistic bound with a margin of 8: random data measured here
  sits near 1·u, so a kernel that drops or doubles a term (an error of order 1) fails by
  many orders of magnitude.

float64's tolerance is ~5e8 times tighter than float32's, as it should be.

Where the arithmetic is exact (small integer-valued inputs: every product and partial sum
is an integer below 2**24) every correct implementation must return *bit-identical*
results, whatever its summation order; that is checked separately.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from affbench import reference, registry
from affbench.protocol import AffineImpl

C_TOLERANCE = 8.0
QUANTITIES = ("y", "dx", "dW", "db")
DTYPES = ("float32", "float64")

#: (N, K, M): the edge cases and a few real ones. 0 and 1 on every axis, primes, sizes that
#: are not multiples of any tile, and the book's layer.
SHAPES: tuple[tuple[int, int, int], ...] = (
    (1, 1, 1),
    (0, 5, 3),
    (4, 0, 3),
    (3, 5, 0),
    (1, 784, 50),
    (7, 1, 11),
    (1, 13, 1),
    (7, 13, 11),
    (17, 31, 19),
    (64, 64, 64),
    (33, 65, 129),
    (100, 784, 50),
    (61, 257, 67),
    (128, 300, 96),
)

#: Pure-Python implementations are checked only where they finish in about a second.
SLOW_WORK_LIMIT = 150_000  # N*K*M


@dataclass
class Check:
    impl: str
    dtype: str
    case: str
    quantity: str  # y, dx, dW, db, exact, contract
    error: float  # normwise error; NaN for yes/no checks
    tolerance: float
    passed: bool
    detail: str = ""


@dataclass
class VerifyReport:
    checks: list[Check] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    gradient_check: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.checks)

    def failed_impls(self) -> list[str]:
        return sorted({c.impl for c in self.checks if not c.passed})

    def passed(self, impl: str) -> bool:
        return impl not in self.failed_impls()

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per (implementation, dtype, quantity): the worst case by error/tolerance."""
        rows: dict[tuple[str, str, str], dict[str, Any]] = {}
        for c in self.checks:
            key = (c.impl, c.dtype, c.quantity)
            ratio = _ratio(c)
            row = rows.get(key)
            if row is None:
                rows[key] = row = {"implementation": c.impl, "dtype": c.dtype, "quantity": c.quantity,
                                   "cases": 0, "max_error": c.error, "tolerance": c.tolerance,
                                   "worst_case": c.case, "passed": True, "_ratio": ratio}
            row["cases"] += 1
            row["passed"] = row["passed"] and c.passed
            if ratio > row["_ratio"]:
                row.update(max_error=c.error, tolerance=c.tolerance, worst_case=c.case, _ratio=ratio)
        return [{k: v for k, v in r.items() if k != "_ratio"} for r in rows.values()]

    def table(self) -> str:
        head = (f"{'implementation':<16} {'dtype':<8} {'quantity':<9} {'cases':>5} {'max error':>10} "
                f"{'tolerance':>10}  result  closest to its tolerance")
        lines = [head, "-" * len(head)]
        for r in self.summary_rows():
            err = "-" if math.isnan(r["max_error"]) else f"{r['max_error']:.2e}"
            tol = "-" if math.isnan(r["tolerance"]) else f"{r['tolerance']:.2e}"
            lines.append(
                f"{r['implementation']:<16} {r['dtype']:<8} {r['quantity']:<9} {r['cases']:>5} "
                f"{err:>10} {tol:>10}  {'pass' if r['passed'] else 'FAIL':<6}  {_worst(r)}"
            )
        return "\n".join(lines)

    def write_csv(self, path: str | Path) -> None:
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(Check.__dataclass_fields__))
            w.writeheader()
            for c in self.checks:
                w.writerow(asdict(c))


def _worst(row: dict[str, Any]) -> str:
    """The case to look at: the one nearest its tolerance, or for yes/no checks the failing one."""
    if math.isnan(row["max_error"]) and row["passed"]:
        return "-"
    return row["worst_case"]


def _ratio(c: Check) -> float:
    if math.isnan(c.error) or math.isnan(c.tolerance):
        return 0.0 if c.passed else math.inf
    return c.error / c.tolerance if c.tolerance > 0 else (0.0 if c.error == 0 else math.inf)


def tolerance(dtype: np.dtype | str, n: int) -> float:
    """Accepted normwise error for a sum of n products in ``dtype`` (see the module doc)."""
    u = float(np.finfo(np.dtype(dtype)).eps) + float(np.finfo(np.float64).eps)
    return C_TOLERANCE * math.sqrt(n + 1) * u


def normwise_error(got: np.ndarray, ref: np.ndarray, scale: np.ndarray) -> float:
    """max|got - ref| / max(scale); the scale is |X|·|W| (+|b|) for the same output."""
    if ref.size == 0:
        return 0.0
    diff = np.abs(np.asarray(got, dtype=np.float64) - ref)
    if np.isnan(diff).any():
        return math.inf
    denom = max(float(np.max(scale)), np.finfo(np.float64).tiny)
    return float(np.max(diff)) / denom


def error_scales(x, W, b, dout) -> dict[str, tuple[np.ndarray, int]]:
    ax, aW, ab, ad = (np.abs(np.asarray(a, dtype=np.float64)) for a in (x, W, b, dout))
    N, K = ax.shape
    M = aW.shape[1]
    return {
        "y": (ax @ aW + ab.reshape(-1), K),
        "dx": (ad @ aW.T, M),
        "dW": (ax.T @ ad, N),
        "db": (ad.sum(axis=0), N),
    }


def make_inputs(N: int, K: int, M: int, dtype: str, seed: int = 0, integers: bool = False):
    """x, W, b, dout with standard-normal entries (or small integers, for exact arithmetic)."""
    rng = np.random.default_rng(seed)
    if integers:
        draw = lambda *s: rng.integers(-3, 4, size=s).astype(dtype)  # noqa: E731
    else:
        draw = lambda *s: rng.standard_normal(s).astype(dtype)  # noqa: E731
    return draw(N, K), draw(K, M), draw(M), draw(N, M)


def _layouts(x, W, b, dout):
    """The same values in other memory layouts: kernels must not care."""
    yield "C-order", x, W, b, dout
    yield "Fortran-order", np.asfortranarray(x), np.asfortranarray(W), b, np.asfortranarray(dout)

    def strided(a):  # every other column of a wider array: a non-contiguous view
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
        big[..., ::2] = a
        return big[..., ::2]

    yield "non-contiguous", strided(x), strided(W), strided(b), strided(dout)
    yield "b as (1, M)", x, W, b.reshape(1, -1), dout


def _label(N, K, M, layout="C-order"):
    return f"N={N} K={K} M={M}" + ("" if layout == "C-order" else f" [{layout}]")


def check_case(impl: AffineImpl, x, W, b, dout, case: str) -> list[Check]:
    """Run one implementation on one set of inputs; every check it must pass."""
    dtype = np.dtype(x.dtype)
    name, dt = impl.name, dtype.name
    out: list[Check] = []

    def contract(ok: bool, detail: str) -> None:
        out.append(Check(name, dt, case, "contract", math.nan, math.nan, ok, "" if ok else detail))

    before = [a.copy() for a in (x, W, b, dout)]
    try:
        y = impl.forward(x, W, b)
        grads = impl.backward(x, W, dout)
    except Exception as exc:  # a crash is a failure to record, not a reason to stop verifying
        contract(False, f"raised {type(exc).__name__}: {exc}")
        return out
    unchanged = all(np.array_equal(a, c, equal_nan=True) for a, c in zip((x, W, b, dout), before))
    contract(unchanged, "an input was modified")

    N, K = x.shape
    M = W.shape[1]
    expected = {"y": (N, M), "dx": (N, K), "dW": (K, M), "db": (M,)}
    if not (isinstance(grads, tuple) and len(grads) == 3):
        contract(False, f"backward returned {type(grads).__name__}, expected a tuple (dx, dW, db)")
        return out
    results = dict(zip(QUANTITIES, (y, *grads)))
    for q, arr in results.items():
        if not isinstance(arr, np.ndarray):
            contract(False, f"{q} is {type(arr).__name__}, not an ndarray")
            return out
        if arr.shape != expected[q] or arr.dtype != dtype:
            contract(False, f"{q} has shape {arr.shape} dtype {arr.dtype}, expected {expected[q]} {dtype}")
            return out
    for q, arr in results.items():
        for src_name, src in (("x", x), ("W", W), ("b", b), ("dout", dout)):
            if arr.size and np.shares_memory(arr, src):
                contract(False, f"{q} shares memory with input {src_name}")
                return out
    outs = list(results.items())
    for i, (qa, a) in enumerate(outs):
        for qb, bb in outs[i + 1:]:
            if a.size and bb.size and np.shares_memory(a, bb):
                contract(False, f"{qa} and {qb} share memory")
                return out

    ref = dict(zip(QUANTITIES, (reference.forward(x, W, b), *reference.backward(x, W, dout))))
    for q, (scale, n) in error_scales(x, W, b, dout).items():
        err = normwise_error(results[q], ref[q], scale)
        tol = tolerance(dtype, n)
        out.append(Check(name, dt, case, q, err, tol, err <= tol))
    return out


def check_exact(impl: AffineImpl, N: int, K: int, M: int, dtype: str) -> Check:
    """On small integers the arithmetic is exact: results must equal the reference bit for bit."""
    x, W, b, dout = make_inputs(N, K, M, dtype, seed=1, integers=True)
    case = _label(N, K, M) + " [integers]"
    try:
        got = (impl.forward(x, W, b), *impl.backward(x, W, dout))
    except Exception as exc:
        return Check(impl.name, dtype, case, "exact", math.nan, math.nan, False, f"raised {type(exc).__name__}: {exc}")
    ref = (reference.forward(x, W, b), *reference.backward(x, W, dout))
    bad = [q for q, g, r in zip(QUANTITIES, got, ref)
           if not (isinstance(g, np.ndarray) and g.shape == r.shape and np.array_equal(g, r.astype(dtype)))]
    return Check(impl.name, dtype, case, "exact", math.nan, math.nan, not bad,
                 f"not bit-identical: {', '.join(bad)}" if bad else "")


def _check_nd(impl: AffineImpl, dtype: str) -> list[Check]:
    """An N-d input through the book's layer: flattened, and dx reshaped back."""
    from affbench.layer import Affine

    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 2, 3, 4)).astype(dtype)
    W = rng.standard_normal((24, 5)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    dout = rng.standard_normal((6, 5)).astype(dtype)
    case = "Affine N-d x (6, 2, 3, 4)"
    try:
        layer = Affine(W, b, impl=impl.name)
        y = layer.forward(x)
        dx = layer.backward(dout)
    except Exception as exc:
        return [Check(impl.name, dtype, case, "contract", math.nan, math.nan, False,
                      f"raised {type(exc).__name__}: {exc}")]
    got_all = {"y": y, "dx": dx, "dW": layer.dW, "db": layer.db}
    expected = {"y": (6, 5), "dx": x.shape, "dW": W.shape, "db": b.shape}
    for q, arr in got_all.items():  # a broken kernel must be reported, not crash verify
        if not isinstance(arr, np.ndarray) or arr.shape != expected[q]:
            what = f"shape {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
            return [Check(impl.name, dtype, case, "contract", math.nan, math.nan, False,
                          f"{q} is {what}; expected shape {expected[q]}")]
    x2 = x.reshape(6, -1)
    checks = []
    scales = error_scales(x2, W, b, dout)
    ref = dict(zip(QUANTITIES, (reference.forward(x2, W, b), *reference.backward(x2, W, dout))))
    for q, got in zip(QUANTITIES, (y, dx.reshape(6, -1), layer.dW, layer.db)):
        scale, n = scales[q]
        err = normwise_error(got, ref[q], scale)
        tol = tolerance(dtype, n)
        checks.append(Check(impl.name, dtype, case, q, err, tol, err <= tol))
    return checks


def verify(
    impl_names: Sequence[str] | None = None,
    dtypes: Iterable[str] = DTYPES,
    shapes: Sequence[tuple[int, int, int]] = SHAPES,
    progress: Callable[[str], None] | None = None,
) -> VerifyReport:
    """Check the named implementations (default: all) on every dtype × shape × layout."""
    names = list(impl_names) if impl_names is not None else registry.names()
    report = VerifyReport(gradient_check=reference.gradient_check())
    layout_shape = (17, 31, 19)
    for name in names:
        impl = registry.get(name)
        slow = bool(getattr(impl, "slow", False))
        for dt in dtypes:
            if progress:
                progress(f"{name} {dt}")
            for N, K, M in shapes:
                if slow and N * K * M > SLOW_WORK_LIMIT:
                    report.skipped.append(f"{name} {dt} {_label(N, K, M)} (pure Python; work above {SLOW_WORK_LIMIT})")
                    continue
                x, W, b, dout = make_inputs(N, K, M, dt)
                layouts = _layouts(x, W, b, dout) if (N, K, M) == layout_shape else [("C-order", x, W, b, dout)]
                for layout, *arrays in layouts:
                    report.checks.extend(check_case(impl, *arrays, case=_label(N, K, M, layout)))
            for N, K, M in ((1, 1, 1), (5, 7, 3), (33, 65, 17)):
                report.checks.append(check_exact(impl, N, K, M, dt))
            report.checks.extend(_check_nd(impl, dt))
    return report
