"""The report's tables as pure functions on the results DataFrame (``Run.frame()``).

Nothing here formats or draws; ``document.py`` turns these frames into Markdown and HTML.
Extrapolated rows (status == "extrapolated") are predictions: every frame that can hold one
carries a boolean ``extrapolated`` column so the document can mark it.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd

from affbench.measure.intervals import DEFAULT_TARGET, Interval
from affbench.report import speedup
from affbench.store.results import time_interval

#: A case's shape and settings, without the implementation.
SHAPE_COLUMNS = ["pass", "dtype", "batch", "in_features", "out_features", "threads"]
TIMED_STATUSES = ("ok", "extrapolated")
PROBLEM_STATUSES = ("failed", "timeout", "skipped")
PASS_ORDER = ("forward", "backward", "step")
CANONICAL_IMPLS = ("numpy", "naive", "numba-serial", "numba-prange", "numba-tiled", "torch", "torch-ops", "jax")


def peer_impls(df: pd.DataFrame) -> list[str]:
    """The peers of a run (PyTorch, JAX, or a plug-in with a pool of its own): the
    implementations whose rows record a ``peer_threads`` count. Read from the results, so the
    report needs no kernel imported."""
    if "peer_threads" not in df.columns:
        return []
    return list(dict.fromkeys(df.loc[df["peer_threads"].notna(), "impl"]))


def impl_order(impls: Iterable[str], baseline: str | None = None) -> list[str]:
    """Implementations in a stable order: baseline first, then the built-ins, then the rest."""
    impls = list(dict.fromkeys(impls))
    rank = {name: i for i, name in enumerate(CANONICAL_IMPLS)}
    ordered = sorted(impls, key=lambda n: (n != baseline, rank.get(n, len(rank)), n))
    return ordered


def pass_order(passes: Iterable[str]) -> list[str]:
    passes = list(dict.fromkeys(passes))
    return sorted(passes, key=lambda p: (PASS_ORDER.index(p) if p in PASS_ORDER else len(PASS_ORDER), p))


def timed(df: pd.DataFrame) -> pd.DataFrame:
    """Rows with a time: measured (ok) and extrapolated, with an ``extrapolated`` flag."""
    out = df[df["status"].isin(TIMED_STATUSES)].copy()
    out["extrapolated"] = out["status"] == "extrapolated"
    return out


def main_threads(df: pd.DataFrame) -> int | None:
    """The thread count figures show by default: the largest one in the run."""
    t = timed(df)["threads"].dropna()
    return int(t.max()) if len(t) else None


def select_threads(df: pd.DataFrame, threads: int | None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Rows at ``threads`` for each implementation; an implementation that never ran at that
    count (a serial kernel run only at 1 thread) keeps its own largest count instead.
    Returns the rows and {impl: thread count used} for the implementations that differ."""
    if threads is None or df.empty:
        return df, {}
    parts, other = [], {}
    for impl, g in df.groupby("impl", sort=False):
        if (g["threads"] == threads).any():
            parts.append(g[g["threads"] == threads])
        else:
            t = int(g["threads"].max())
            other[str(impl)] = t
            parts.append(g[g["threads"] == t])
    return pd.concat(parts) if parts else df.iloc[0:0], other


def pass_table(df: pd.DataFrame, pass_: str, baseline: str | None = None) -> pd.DataFrame:
    """Median time with its 95% interval (``ci_low_s``/``ci_high_s``, from the samples for
    schema-1 rows), IQR and GFLOP/s of every timed case of one pass."""
    t = timed(df)
    t = t[t["pass"] == pass_]
    ivs = [time_interval(r) for r in t.to_dict("records")]
    t = t.assign(ci_low_s=[_end(iv.low) for iv in ivs], ci_high_s=[_end(iv.high) for iv in ivs])
    cols = ["impl", "dtype", "threads", "batch", "in_features", "out_features", "median_s", "ci_low_s", "ci_high_s",
            "iqr_s", "cv", "gflops", "noisy", "extrapolated", "n_samples", "error"]
    order = {n: i for i, n in enumerate(impl_order(t["impl"], baseline))}
    t = t.assign(_o=t["impl"].map(order))
    return t.sort_values(["dtype", "in_features", "out_features", "threads", "batch", "_o"])[cols].reset_index(drop=True)


SPEEDUP_COLUMNS = ["impl", *SHAPE_COLUMNS, "speedup", "speedup_low", "speedup_high", "verdict", "tie", "source",
                   "extrapolated", "median_s", "base_median_s"]


def speedups(df: pd.DataFrame, baseline: str, band: float = DEFAULT_TARGET) -> pd.DataFrame:
    """Speedup of every implementation over ``baseline`` on the same case (same pass, dtype,
    N, K, M and thread count), with its 95% interval [speedup_low, speedup_high].

    From the ratio the run recorded (paired samples) where there is one, else baseline median /
    impl median (``speedup.speedup_interval``; ``source`` says which). ``verdict`` is
    'above' / 'below' / 'tie' against the band ``band`` around 1; ``tie`` is True for a
    *measured* case whose interval reaches into that band (predictions have no interval).
    ``extrapolated`` is True when either side is a prediction. Empty when the baseline has no
    timed rows."""
    t = timed(df)
    base = t[t["impl"] == baseline]
    if base.empty:
        return pd.DataFrame(columns=SPEEDUP_COLUMNS)
    base_by_case = {tuple(r[c] for c in SHAPE_COLUMNS): r for r in base.to_dict("records")}
    rows = []
    for r in t[t["impl"] != baseline].to_dict("records"):
        b = base_by_case.get(tuple(r[c] for c in SHAPE_COLUMNS))
        if b is None:
            continue
        predicted = bool(r["extrapolated"] or b["extrapolated"])
        iv, source = speedup.speedup_interval(r, b, baseline)
        if predicted:  # a predicted time has no interval: only its point estimate is shown
            iv = Interval.unknown(float(b["median_s"]) / float(r["median_s"]) if r["median_s"] else math.nan)
            source = "predicted"
        v = speedup.verdict(iv, band, predicted)
        rows.append({"impl": r["impl"], **{c: r[c] for c in SHAPE_COLUMNS}, "speedup": iv.value,
                     "speedup_low": _end(iv.low), "speedup_high": _end(iv.high),
                     "verdict": v, "tie": v == "tie" and not predicted, "source": source,
                     "extrapolated": predicted, "median_s": r["median_s"], "base_median_s": b["median_s"]})
    return pd.DataFrame(rows, columns=SPEEDUP_COLUMNS)


def _end(x: float) -> float:
    """An interval end for a frame: NaN where unknown (infinite, or 0 from inverting infinity)."""
    return float(x) if math.isfinite(x) and x > 0 else math.nan


def interval_of(r: Mapping[str, Any]) -> Interval:
    """A row of ``speedups`` as an Interval (unknown ends are infinite)."""
    lo, hi = r.get("speedup_low"), r.get("speedup_high")
    ok = lambda x: x is not None and isinstance(x, (int, float)) and math.isfinite(x)  # noqa: E731
    return Interval(float(r["speedup"]), float(lo) if ok(lo) else -math.inf, float(hi) if ok(hi) else math.inf)


class Cell(NamedTuple):
    """One speedup cell of a table: the value, its interval, and how to mark it."""
    speedup: float
    low: float
    high: float
    extrapolated: bool
    tie: bool


def speedup_pivot(sp: pd.DataFrame, pass_: str, impls: Sequence[str]) -> pd.DataFrame:
    """One row per (dtype, threads, K, M, N), one column per implementation, cells ``Cell``
    (or None where the implementation has no matched case)."""
    s = sp[sp["pass"] == pass_]
    keys = ["dtype", "threads", "in_features", "out_features", "batch"]
    rows = []
    for key, g in s.groupby(keys, sort=True):
        row = dict(zip(keys, key))
        for impl in impls:
            hit = g[g["impl"] == impl].to_dict("records")
            row[impl] = Cell(float(hit[0]["speedup"]), float(hit[0]["speedup_low"]), float(hit[0]["speedup_high"]),
                             bool(hit[0]["extrapolated"]), bool(hit[0]["tie"])) if hit else None
        rows.append(row)
    return pd.DataFrame(rows, columns=keys + list(impls))


def geomean_speedups(sp: pd.DataFrame) -> pd.DataFrame:
    """Geometric mean speedup per (impl, pass, dtype) over measured cases, with its interval
    (``speedup.geomean_interval``) and the range over cases; ordered by implementation (impl_order),
    pass (pass_order), then dtype."""
    s = sp[~sp["extrapolated"].astype(bool) & (sp["speedup"] > 0)]
    rows = []
    for (impl, pass_, dtype), g in s.groupby(["impl", "pass", "dtype"], sort=False):
        v = g["speedup"].to_numpy(dtype=float)
        gm = speedup.geomean_interval([interval_of(r) for r in g.to_dict("records")])
        rows.append({"impl": impl, "pass": pass_, "dtype": dtype, "geomean": gm.value,
                     "geomean_low": _end(gm.low), "geomean_high": _end(gm.high),
                     "min": float(v.min()), "max": float(v.max()), "cases": len(v)})
    out = pd.DataFrame(rows, columns=["impl", "pass", "dtype", "geomean", "geomean_low", "geomean_high", "min",
                                      "max", "cases"])
    # the report's usual order (implementations, then passes, then dtypes), not the order cases ran in
    impl_rank = {n: i for i, n in enumerate(impl_order(out["impl"]))}
    pass_rank = {p: i for i, p in enumerate(pass_order(out["pass"]))}
    key = [(impl_rank[r["impl"]], pass_rank[r["pass"]], r["dtype"]) for r in rows]
    return out.iloc[sorted(range(len(rows)), key=key.__getitem__)].reset_index(drop=True)


def compile_table(df: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """compile_s per (impl, dtype): the first call's time in this run (one value per pair)."""
    c = df[np.isfinite(df["compile_s"].astype(float))]
    rows = []
    for (impl, dtype), g in c.groupby(["impl", "dtype"], sort=False):
        v = g["compile_s"].astype(float)
        rows.append({"impl": impl, "dtype": dtype, "compile_s": float(v.iloc[0]),
                     "differs": bool(v.max() > v.min() * 1.0001)})
    out = pd.DataFrame(rows, columns=["impl", "dtype", "compile_s", "differs"])
    order = {n: i for i, n in enumerate(impl_order(out["impl"], baseline))}
    return out.assign(_o=out["impl"].map(order)).sort_values(["_o", "dtype"]).drop(columns="_o").reset_index(drop=True)


def noisy_table(df: pd.DataFrame) -> pd.DataFrame:
    n = df[(df["status"] == "ok") & (df["noisy"] == True)]  # noqa: E712
    return n.sort_values("cv", ascending=False)[["impl", *SHAPE_COLUMNS, "median_s", "iqr_s", "cv", "n_samples"]] \
        .reset_index(drop=True)


def problems_table(df: pd.DataFrame) -> pd.DataFrame:
    p = df[df["status"].isin(PROBLEM_STATUSES)]
    return p[["status", "impl", *SHAPE_COLUMNS, "error"]].reset_index(drop=True)


def extrapolated_table(df: pd.DataFrame) -> pd.DataFrame:
    e = df[df["status"] == "extrapolated"]
    return e[["impl", *SHAPE_COLUMNS, "median_s", "gflops", "error"]].reset_index(drop=True)


def best_rates(df: pd.DataFrame) -> pd.DataFrame:
    """The best measured GFLOP/s per (impl, dtype) and the case that reached it."""
    t = df[(df["status"] == "ok") & np.isfinite(df["gflops"].astype(float))]
    if t.empty:
        return pd.DataFrame(columns=["impl", "dtype", "gflops", "pass", "batch", "in_features", "out_features", "threads"])
    idx = t.groupby(["impl", "dtype"], sort=False)["gflops"].idxmax()
    return t.loc[idx, ["impl", "dtype", "gflops", "pass", "batch", "in_features", "out_features", "threads"]] \
        .reset_index(drop=True)


def thread_scaling(df: pd.DataFrame) -> pd.DataFrame:
    """Speedup over the smallest thread count of the same case, per (impl, dtype, threads):
    geometric mean over every measured shape (all passes), its range, and the parallel
    efficiency speedup / (threads / smallest threads). Only implementations measured at two or
    more thread counts appear."""
    t = df[df["status"] == "ok"]
    rows = []
    for (impl, dtype), g in t.groupby(["impl", "dtype"], sort=False):
        counts = sorted(int(x) for x in g["threads"].unique())
        if len(counts) < 2:
            continue
        t0 = counts[0]
        shape = ["pass", "batch", "in_features", "out_features"]
        base = g[g["threads"] == t0][shape + ["median_s"]]
        for thr in counts:
            m = g[g["threads"] == thr][shape + ["median_s"]].merge(base, on=shape, suffixes=("", "_0"))
            v = (m["median_s_0"] / m["median_s"]).to_numpy(dtype=float)
            v = v[np.isfinite(v) & (v > 0)]
            if not v.size:
                continue
            gm = float(np.exp(np.log(v).mean()))
            rows.append({"impl": impl, "dtype": dtype, "threads": thr, "base_threads": t0, "speedup": gm,
                         "min": float(v.min()), "max": float(v.max()), "efficiency": gm / (thr / t0),
                         "cases": int(v.size)})
    return pd.DataFrame(rows, columns=["impl", "dtype", "threads", "base_threads", "speedup", "min", "max",
                                       "efficiency", "cases"])


def verify_summary(checks: Sequence[Mapping[str, Any]] | None) -> pd.DataFrame | None:
    """Per (impl, dtype): number of checks, failures, worst error / tolerance, first failure."""
    if checks is None:
        return None
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for c in checks:
        r = rows.setdefault((c["impl"], c["dtype"]), {"impl": c["impl"], "dtype": c["dtype"], "checks": 0,
                                                      "failed": 0, "worst_ratio": 0.0, "first_failure": ""})
        r["checks"] += 1
        err, tol = c["error"], c["tolerance"]
        if not c["passed"]:
            r["failed"] += 1
            if not r["first_failure"]:
                r["first_failure"] = f"{c['quantity']} on {c['case']}: " + (
                    c.get("detail") or f"error {err:.2e} > tolerance {tol:.2e}")
        if not (math.isnan(err) or math.isnan(tol)) and tol > 0:
            r["worst_ratio"] = max(r["worst_ratio"], err / tol)
    return pd.DataFrame(list(rows.values()), columns=["impl", "dtype", "checks", "failed", "worst_ratio",
                                                      "first_failure"])


def env_summary(env: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs for the environment table; missing entries are left out."""
    def get(*path: str) -> Any:
        v: Any = env
        for p in path:
            if not isinstance(v, Mapping):
                return None
            v = v.get(p)
        return v

    out: list[tuple[str, str]] = []

    def add(label: str, value: Any) -> None:
        if value is not None and value != "" and value != [] and value != {}:
            out.append((label, str(value)))

    add("run id", get("run_id"))
    add("command", get("command"))
    add("preset", get("preset"))
    add("started / finished", " → ".join(str(x) for x in (get("started_at"), get("finished_at")) if x) or None)
    add("affbench", get("affbench_version"))
    add("git commit", get("git_commit"))
    cpu = get("cpu") or {}
    if isinstance(cpu, Mapping) and cpu:
        flags = [f for f in ("avx2", "fma", "avx512") if cpu.get(f)]
        cores = ", ".join(f"{cpu[k]} {k.split('_')[0]}" for k in ("physical_cores", "logical_cores") if cpu.get(k))
        add("CPU", " · ".join(str(x) for x in (cpu.get("model"), cores or None,
                                                f"{cpu['nominal_ghz']} GHz nominal" if cpu.get("nominal_ghz") else None,
                                                "+".join(f.upper() for f in flags) or None) if x))
    peak = get("peak_gflops")
    if isinstance(peak, Mapping) and peak:
        vals = ", ".join(f"{k} {peak[k]:.1f}" if isinstance(peak[k], (int, float)) else f"{k} {peak[k]}"
                         for k in ("float32", "float64") if k in peak)
        add("theoretical peak GFLOP/s", vals + (f" ({peak['how']})" if peak.get("how") else ""))
    add("OS", get("os"))
    add("Python", get("python"))
    versions = ", ".join(f"{k} {env[k]}" for k in ("numpy", "numba", "llvmlite") if env.get(k))
    add("versions", versions or None)
    peers = get("peers")
    if isinstance(peers, Mapping) and peers:
        add("peers", ", ".join(f"{k} {peers[k]}" for k in ("torch", "jax", "jaxlib") if peers.get(k)) or None)
        jt = peers.get("jax_threads")
        if peers.get("jax") and isinstance(jt, Mapping) and jt.get("threads") is not None:  # not without JAX
            counts = jt.get("counts") or {}
            add("JAX threads", f"{jt['threads']} in the main process" + (f" ({jt['how']})" if jt.get("how") else "")
                + "".join(f"; {t} in {where}" for t, where in counts.items() if str(t) != str(jt["threads"])))
        missing = peers.get("not_installed")
        if isinstance(missing, Mapping) and missing:
            add("not installed", "; ".join(str(v) for v in missing.values()))
    blas = get("blas")
    if isinstance(blas, list) and blas:
        add("BLAS", "; ".join(_blas_text(b) for b in blas if isinstance(b, Mapping)))
    add("Numba threading layer", get("numba_threading_layer"))
    add("Numba threads (NUMBA_NUM_THREADS)", get("numba_num_threads"))
    ot = get("openblas_thread_timeout")
    gs = get("gomp_spincount")
    # the two pool settings get rows of their own below (with whether they took effect)
    own_row = {k for k, v in (("OPENBLAS_THREAD_TIMEOUT", ot), ("GOMP_SPINCOUNT", gs)) if isinstance(v, Mapping) and v}
    ev = get("env_vars")
    if isinstance(ev, Mapping) and set(ev) - own_row:
        add("environment variables", ", ".join(f"{k}={'(unset)' if v is None else v}" for k, v in ev.items()
                                               if k not in own_row))
    if isinstance(ot, Mapping) and ot:
        add("OPENBLAS_THREAD_TIMEOUT", f"{ot.get('value')}" + ("" if ot.get("in_effect", True) else " (set too late: not in effect)"))
    if isinstance(gs, Mapping) and gs:
        text = (f"unset: OMP_WAIT_POLICY={gs['omp_wait_policy']} decides" if gs.get("value") is None
                and gs.get("omp_wait_policy") else f"{gs.get('value')}")
        add("GOMP_SPINCOUNT", text + ("" if gs.get("in_effect", True) else " (set too late: not in effect)"))
    heap = get("malloc")
    if isinstance(heap, Mapping) and heap:
        add("glibc malloc thresholds", f"pinned: mmap above {heap.get('mmap_threshold', 0) >> 20} MiB, trim above "
            f"{heap.get('trim_threshold', 0) >> 20} MiB" if heap.get("pinned")
            else f"glibc's dynamic defaults ({heap.get('why_not')})")
    add("noise threshold (cv)", get("noise_cv_threshold"))
    load = get("load")
    if isinstance(load, Mapping) and load:
        parts = []
        if load.get("loadavg_start") is not None or load.get("loadavg_end") is not None:
            parts.append(f"load average {_load(load.get('loadavg_start'))} at start, {_load(load.get('loadavg_end'))} at end")
        if load.get("calibration_start_s") is not None:
            parts.append(f"calibration loop {_secs(load.get('calibration_start_s'))} at start, "
                         f"{_secs(load.get('calibration_end_s'))} at end")
        add("machine load", "; ".join(parts) or None)
    vf = get("verify_failed")
    if vf is not None:
        out.append(("verification failures", ", ".join(map(str, vf)) if vf else "none"))
    return out


def _load(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "/".join(f"{x:.2f}" if isinstance(x, (int, float)) else str(x) for x in v)
    if isinstance(v, (int, float)):
        return f"{v:.2f}"
    return "?" if v is None else str(v)


def _secs(v: Any) -> str:
    from affbench.report.fmt import seconds

    return seconds(v) if isinstance(v, (int, float)) else ("?" if v is None else str(v))


def _blas_text(b: Mapping[str, Any]) -> str:
    parts = [str(b.get("internal_api") or b.get("user_api") or "?")]
    if b.get("version"):
        parts.append(str(b["version"]))
    extra = [f"{k} {b[k]}" for k in ("num_threads", "threading_layer", "architecture") if b.get(k) is not None]
    return " ".join(parts) + (f" ({', '.join(extra)})" if extra else "")


def winners(df: pd.DataFrame, pass_: str, dtype: str, threads: int, baseline: str,
            band: float = DEFAULT_TARGET) -> pd.DataFrame:
    """Fastest *measured* implementation per (layer, batch) of one pass, dtype and thread count,
    and every implementation tied with it (``speedup.rank``: ratios to the baseline compared
    by their 95% intervals widened by ``band``; times when the baseline was not measured).

    Columns: impl (the lowest estimate), tied (list: impl first; one name = a clear winner),
    speedup, speedup_low, speedup_high (impl over the baseline; NaN without a baseline)."""
    t = df[(df["status"] == "ok") & (df["pass"] == pass_) & (df["dtype"] == dtype) & (df["threads"] == threads)]
    rows = []
    for (k, m, n), g in t.groupby(["in_features", "out_features", "batch"], sort=True):
        recs = g.to_dict("records")
        base = next((r for r in recs if r["impl"] == baseline), None)
        if base is not None:
            entries = [(r["impl"], speedup.ratio_to_baseline(r, base, baseline)[0]) for r in recs]
        else:
            entries = [(r["impl"], time_interval(r)) for r in recs]
        best, tied = speedup.rank(entries, band)
        sp = dict(entries)[best].inverse() if base is not None else Interval(math.nan, math.nan, math.nan)
        rows.append({"in_features": k, "out_features": m, "batch": n, "impl": best, "tied": tied,
                     "speedup": sp.value, "speedup_low": _end(sp.low), "speedup_high": _end(sp.high)})
    return pd.DataFrame(rows, columns=["in_features", "out_features", "batch", "impl", "tied", "speedup",
                                       "speedup_low", "speedup_high"])
