"""Run-to-run comparison: matching cases, significance tests, and what changed in the environment.

Pure functions on the rows of two results files (``affbench.results.read_rows``) and two
env.json dicts; no kernel, no Numba, no clock. The command is ``affbench/commands/compare.py``.

Statistics
----------
For every case present in both runs with status ``ok`` in both, we compare the per-call
samples (``samples_s``):

* ``ratio`` = median(B) / median(A): above 1 means B is slower;
* a two-sided Mann–Whitney U test (normal approximation with tie correction and continuity
  correction) on the two sets of samples: it asks whether one run's samples tend to be larger,
  without assuming normality — timings are skewed and have outliers;
* a percentile bootstrap 95% interval on the ratio of medians (resampling each run's samples
  with replacement, a fixed seed so the output is reproducible).

A difference is *significant* when p < alpha and the bootstrap interval excludes 1. With too
few samples (3 against 3) no p-value can reach alpha: such cases are "untested", never "same". With
many cases, about alpha of the unchanged ones still come out "significant" by chance; the
``--fail-above`` gate therefore also needs the slowdown to exceed a threshold, which noise of
a few percent does not reach.

Extrapolated rows are predictions, not measurements: they are never compared, only listed.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .results import KEY_COLUMNS

DEFAULT_ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 2000
#: env.json keys that differ between any two runs and say nothing about the machine.
VOLATILE_ENV_KEYS = ("run_id", "started_at", "finished_at", "load.", "compile_s.", "command", "sessions")


# --------------------------------------------------------------------------- statistics

def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided Mann–Whitney U test. Returns (U of ``a``, p-value).

    Normal approximation with the tie correction of the variance and a continuity correction
    of 0.5. With fewer than one sample on either side, p is NaN; when every value ties, p = 1.
    """
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    n1, n2 = x.size, y.size
    if n1 == 0 or n2 == 0:
        return math.nan, math.nan
    both = np.concatenate([x, y])
    ranks = _average_ranks(both)
    u1 = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2.0)
    n = n1 + n2
    _, counts = np.unique(both, return_counts=True)
    tie_term = float(((counts.astype(float) ** 3) - counts).sum())
    var = n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        return u1, 1.0
    mu = n1 * n2 / 2.0
    diff = u1 - mu
    z = (abs(diff) - 0.5) / math.sqrt(var)
    z = max(z, 0.0)
    p = math.erfc(z / math.sqrt(2.0))
    return u1, min(1.0, p)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties getting the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    ranks = np.empty(values.size, dtype=float)
    # boundaries of runs of equal values
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    ends = np.r_[starts[1:], values.size]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + 1 + e) / 2.0  # mean of ranks s+1 .. e
    return ranks


def min_p_value(n1: int, n2: int) -> float:
    """The smallest p-value mann_whitney_u can return for samples of sizes n1 and n2 (complete
    separation, no ties): below alpha only with enough samples (3 vs 3 gives 0.08)."""
    if n1 < 1 or n2 < 1:
        return math.nan
    return mann_whitney_u(range(n1), range(n1, n1 + n2))[1]


def bootstrap_ratio_ci(
    a: Sequence[float], b: Sequence[float], *, level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval for median(b) / median(a)."""
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.size == 0 or y.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    mx = np.median(x[rng.integers(0, x.size, size=(resamples, x.size))], axis=1)
    my = np.median(y[rng.integers(0, y.size, size=(resamples, y.size))], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = my / mx
    lo, hi = np.nanpercentile(ratios, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(lo), float(hi)


def geometric_mean(values: Iterable[float]) -> float:
    v = np.asarray([x for x in values if x > 0 and math.isfinite(x)], dtype=float)
    return float(np.exp(np.log(v).mean())) if v.size else math.nan


# --------------------------------------------------------------------------- matching

def case_key(row: Mapping[str, Any]) -> tuple:
    return tuple(row[c] for c in KEY_COLUMNS)


@dataclass
class CaseComparison:
    key: tuple
    a: Mapping[str, Any]
    b: Mapping[str, Any]
    ratio: float  # median B / median A
    ci_low: float
    ci_high: float
    p_value: float
    significant: bool
    #: False when the samples are too few for the test ever to reach alpha (e.g. 3 against 3:
    #: the smallest two-sided p-value is 0.08); such a case can be neither confirmed nor cleared
    testable: bool = True

    @property
    def impl(self) -> str:
        return self.key[0]

    @property
    def verdict(self) -> str:
        if not self.testable:
            return "untested"
        if not self.significant:
            return "same"
        return "slower" if self.ratio > 1 else "faster"


@dataclass
class Comparison:
    cases: list[CaseComparison] = field(default_factory=list)
    only_a: list[Mapping[str, Any]] = field(default_factory=list)
    only_b: list[Mapping[str, Any]] = field(default_factory=list)
    #: in both runs, but not measured in both (failed, skipped, timeout, extrapolated, no samples)
    not_comparable: list[tuple[Mapping[str, Any], Mapping[str, Any], str]] = field(default_factory=list)
    env_diff: list[tuple[str, Any, Any]] = field(default_factory=list)
    alpha: float = DEFAULT_ALPHA

    def untested(self) -> list[CaseComparison]:
        return [c for c in self.cases if not c.testable]

    def geomean_by_impl(self) -> dict[str, tuple[float, int, int, int]]:
        """impl -> (geometric mean ratio B/A, cases, significantly slower, significantly faster)."""
        out: dict[str, tuple[float, int, int, int]] = {}
        for impl in dict.fromkeys(c.impl for c in self.cases):
            cs = [c for c in self.cases if c.impl == impl]
            out[impl] = (geometric_mean(c.ratio for c in cs), len(cs),
                         sum(c.verdict == "slower" for c in cs), sum(c.verdict == "faster" for c in cs))
        return out

    def slowdowns_above(self, threshold: float) -> list[CaseComparison]:
        """Significant slowdowns with ratio > 1 + threshold."""
        return [c for c in self.cases if c.verdict == "slower" and c.ratio > 1.0 + threshold]


def compare_rows(
    rows_a: Sequence[Mapping[str, Any]], rows_b: Sequence[Mapping[str, Any]], *,
    env_a: Mapping[str, Any] | None = None, env_b: Mapping[str, Any] | None = None,
    alpha: float = DEFAULT_ALPHA, resamples: int = BOOTSTRAP_RESAMPLES,
) -> Comparison:
    """Match the cases of two runs by KEY_COLUMNS and compare each."""
    a_by = {case_key(r): r for r in rows_a}
    b_by = {case_key(r): r for r in rows_b}
    out = Comparison(alpha=alpha)
    for key, ra in a_by.items():
        rb = b_by.get(key)
        if rb is None:
            out.only_a.append(ra)
            continue
        why = _why_not_comparable(ra, rb)
        if why:
            out.not_comparable.append((ra, rb, why))
            continue
        sa, sb = ra["samples_s"], rb["samples_s"]
        ratio = rb["median_s"] / ra["median_s"] if ra["median_s"] > 0 else math.nan
        testable = min_p_value(len(sa), len(sb)) < alpha
        if len(sa) >= 2 and len(sb) >= 2:
            _, p = mann_whitney_u(sa, sb)
            lo, hi = bootstrap_ratio_ci(sa, sb, resamples=resamples, seed=zlib.crc32(repr(key).encode()))
        else:
            p, lo, hi = math.nan, math.nan, math.nan
        significant = bool(testable and p < alpha and not (lo <= 1.0 <= hi))
        out.cases.append(CaseComparison(key, ra, rb, ratio, lo, hi, p, significant, testable))
    out.only_b = [r for k, r in b_by.items() if k not in a_by]
    out.env_diff = env_differences(env_a or {}, env_b or {})
    return out


def _why_not_comparable(ra: Mapping[str, Any], rb: Mapping[str, Any]) -> str:
    sa, sb = ra["status"], rb["status"]
    if sa != "ok" or sb != "ok":
        return f"status {sa} in A, {sb} in B"
    if not (ra["median_s"] > 0 and rb["median_s"] > 0):
        return "no median time"
    if not ra["samples_s"] or not rb["samples_s"]:
        return "no samples"
    return ""


# --------------------------------------------------------------------------- environments

def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{'cpu': {'model': x}} -> {'cpu.model': x}; lists of dicts get [i] indices."""
    out: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for k in sorted(obj, key=str):
            out.update(flatten(obj[k], f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, list) and any(isinstance(v, (Mapping, list)) for v in obj):
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}[{i}]"))
    else:
        out[prefix] = obj
    return out


def env_differences(env_a: Mapping[str, Any], env_b: Mapping[str, Any], *,
                    ignore: Sequence[str] = VOLATILE_ENV_KEYS) -> list[tuple[str, Any, Any]]:
    """(key, value in A, value in B) for every flattened env.json key that differs.

    Keys missing on one side show as None. Keys that differ between any two runs (run_id,
    timestamps, the load measurements) are left out: ``ignore`` holds exact keys or prefixes
    ending in '.'.
    """
    fa, fb = flatten(env_a), flatten(env_b)

    def ignored(k: str) -> bool:
        return any(k == i or (i.endswith(".") and k.startswith(i)) for i in ignore)

    keys = [k for k in dict.fromkeys([*fa, *fb]) if not ignored(k)]
    return [(k, fa.get(k), fb.get(k)) for k in keys if fa.get(k) != fb.get(k)]


def parse_threshold(text: str) -> float:
    """'10%' -> 0.10, '0.1' -> 0.10, '10' -> 0.10 (a bare number above 1 is read as percent)."""
    t = text.strip()
    try:
        if t.endswith("%"):
            value = float(t[:-1]) / 100.0
        else:
            value = float(t)
            if value >= 1.0:
                value /= 100.0
    except ValueError:
        raise ValueError(f"not a threshold: {text!r} (write e.g. 10% or 0.1)") from None
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"threshold must be a non-negative percentage, got {text!r}")
    return value
