"""Turn a pytest-benchmark JSON file into an affbench run directory (results.csv + env.json).

The JSON is what ``pytest tests/benchmarks --benchmark-enable --benchmark-autosave`` saves
(``.benchmarks/<machine>/NNNN_*.json``) or what ``--benchmark-json=FILE`` writes. The case
of each benchmark is read from its ``extra_info`` (impl, pass, dtype, N, K, M, threads, set
by tests/benchmarks/test_affine_bench.py), falling back to its ``params``; machine facts from
``machine_info`` (extended by :mod:`affbench.pytest_plugin`) and ``commit_info``.

pytest-benchmark's rounds become ``n_samples`` and its iterations per round ``repeats``;
``samples_s`` is filled only when the JSON holds the raw data (``--benchmark-save-data``).
Without it, the median's 95% interval (``ci_low_s``/``ci_high_s``) is the boxplot notch from
the quartiles, median ± 1.58·IQR/√rounds (McGill, Tukey and Larsen 1978), so the report and
compare can still judge the cases; with the raw data, the samples' own distribution-free interval.
Benchmarks that are not affbench cases (no impl/pass/dtype/N/K/M) are left out and listed
in env.json under ``pytest_benchmark.ignored``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from affbench import reference
from affbench.measure.timing import NOISE_CV_THRESHOLD
from affbench.store import results
from affbench.store.results import ResultsError, ResultsWriter
from affbench.version import __version__

#: cv above which a case is flagged noisy (the same value as affbench.measure.timing's default).

#: the boxplot notch: median ± NOTCH·IQR/√n is ~95% for the median (McGill, Tukey and Larsen 1978);
#: used from as many rounds as the samples' own interval needs (affbench.measure.intervals)
NOTCH = 1.58
NOTCH_MIN_ROUNDS = 6

#: extra_info key -> param names tried after it (test_affine_bench's parametrization).
_CASE_KEYS: dict[str, tuple[str, ...]] = {
    "impl": ("bench_impl", "impl"),
    "pass": ("bench_pass", "pass_", "pass"),
    "dtype": ("bench_dtype", "dtype"),
    "N": ("N",),
    "K": ("K",),
    "M": ("M",),
}


def _load(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ResultsError(f"{path}: no such file")
    if path.is_dir():
        raise ResultsError(f"{path}: is a directory, expected a pytest-benchmark JSON file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list) or "machine_info" not in data:
        keys = ", ".join(sorted(data)[:8]) if isinstance(data, dict) else type(data).__name__
        raise ResultsError(
            f"{path}: not a pytest-benchmark JSON file (expected 'machine_info' and a 'benchmarks' list; "
            f"found {keys or 'nothing'})")
    return data


def _case(bench: Mapping[str, Any]) -> dict[str, Any] | None:
    extra = bench.get("extra_info") or {}
    params = bench.get("params") or {}
    case: dict[str, Any] = {}
    for key, fallbacks in _CASE_KEYS.items():
        value = extra.get(key)
        for name in fallbacks:
            if value is None:
                value = params.get(name)
        if value is None:
            return None
        case[key] = value
    try:
        for key in ("N", "K", "M"):
            case[key] = int(case[key])
    except (TypeError, ValueError):
        return None
    return case


def _num(stats: Mapping[str, Any], key: str) -> float | None:
    value = stats.get(key)
    return float(value) if isinstance(value, (int, float)) else None


def _row(bench: Mapping[str, Any], case: Mapping[str, Any], finished_at: str | None,
         machine_info: Mapping[str, Any]) -> dict[str, Any]:
    extra = bench.get("extra_info") or {}
    stats = bench.get("stats") or {}
    N, K, M = case["N"], case["K"], case["M"]
    threads = extra.get("threads", machine_info.get("affbench_threads"))
    median, mean, std = _num(stats, "median"), _num(stats, "mean"), _num(stats, "stddev")
    q1, q3 = _num(stats, "q1"), _num(stats, "q3")
    flops = extra.get("flops")
    if flops is None:
        flops = reference.flops(case["pass"], N, K, M)
    cv = std / mean if std is not None and mean else None
    data = stats.get("data")
    rounds = stats.get("rounds")
    lo = hi = None
    if not (isinstance(data, list) and data) and None not in (median, q1, q3) and isinstance(rounds, int) \
            and rounds >= NOTCH_MIN_ROUNDS:
        half = NOTCH * (q3 - q1) / math.sqrt(rounds)
        lo, hi = max(median - half, 0.0), median + half
    return {
        "case_id": results.case_id(case["impl"], case["pass"], case["dtype"], N, K, M,
                                   "" if threads is None else threads),
        "impl": case["impl"],
        "pass": case["pass"],
        "dtype": case["dtype"],
        "batch": N,
        "in_features": K,
        "out_features": M,
        "threads": threads,
        "numba_threads": extra.get("numba_threads"),
        "blas_threads": extra.get("blas_threads"),
        "peer_threads": extra.get("peer_threads"),
        "status": "ok",
        "compile_s": extra.get("compile_s"),
        "repeats": stats.get("iterations"),
        "n_samples": stats.get("rounds"),
        "median_s": median,
        "ci_low_s": lo,
        "ci_high_s": hi,
        "q1_s": q1,
        "q3_s": q3,
        "iqr_s": _num(stats, "iqr") if "iqr" in stats else (q3 - q1 if q1 is not None and q3 is not None else None),
        "min_s": _num(stats, "min"),
        "mean_s": mean,
        "std_s": std,
        "cv": cv,
        "noisy": None if cv is None else cv > NOISE_CV_THRESHOLD,
        "flops": int(flops),
        "gflops": flops / median / 1e9 if median else None,
        "samples_s": [float(s) for s in data] if isinstance(data, list) and data else None,
        "finished_at": finished_at,
    }


def _env(path: Path, data: Mapping[str, Any], ignored: list[str]) -> dict[str, Any]:
    mi = data.get("machine_info") or {}
    ci = data.get("commit_info") or {}
    cpu = mi.get("cpu") or {}
    env: dict[str, Any] = {
        "run_id": path.stem,
        "source": "pytest-benchmark",
        "schema_version": results.SCHEMA_VERSION,
        "affbench_version": __version__,
        "cpu": {"model": cpu.get("brand_raw") or mi.get("processor") or None,
                "logical_cores": cpu.get("count"), "arch": cpu.get("arch_string_raw") or mi.get("machine")},
        "os": "-".join(str(mi[k]) for k in ("system", "release", "machine") if mi.get(k)) or None,
        "python": mi.get("python_version"),
        "finished_at": data.get("datetime"),
        "noise_cv_threshold": NOISE_CV_THRESHOLD,
        "pytest_benchmark": {"file": str(path), "version": data.get("version"), "ignored": ignored},
    }
    for key in ("numpy", "numba", "llvmlite", "blas", "numba_threading_layer", "numba_num_threads", "peers"):
        if key in mi:
            env[key] = mi[key]
    if ci.get("id"):
        env["git_commit"] = ci["id"]
        env["git_dirty"] = bool(ci.get("dirty"))
    if ci.get("affbench_command"):
        env["command"] = ci["affbench_command"]
    if ci.get("affbench_started_at"):
        env["started_at"] = ci["affbench_started_at"]
    return env


def convert(json_path: str | Path, out_dir: str | Path) -> Path:
    """Write ``results.csv`` and ``env.json`` for the pytest-benchmark JSON ``json_path`` into
    ``out_dir`` (created if needed; it must not hold a results.csv already). Returns out_dir.

    Raises :class:`affbench.store.results.ResultsError`, naming the file, when the JSON is missing,
    not valid JSON, not pytest-benchmark output, or holds no affbench benchmark.
    """
    path = Path(json_path)
    data = _load(path)
    rows, ignored = [], []
    for i, bench in enumerate(data["benchmarks"]):
        if not isinstance(bench, dict):
            raise ResultsError(f"{path}: benchmarks[{i}] is {type(bench).__name__}, expected an object")
        case = _case(bench)
        if case is None:
            ignored.append(str(bench.get("fullname") or bench.get("name") or f"benchmarks[{i}]"))
            continue
        if not isinstance(bench.get("stats"), dict):
            raise ResultsError(f"{path}: benchmark {bench.get('name')!r} has no stats")
        row = _row(bench, case, data.get("datetime"), data.get("machine_info") or {})
        if row["threads"] in (None, ""):  # a case's identity includes its thread count
            ignored.append(f"{bench.get('fullname') or bench.get('name')} (no thread count in extra_info "
                           "or machine_info.affbench_threads)")
            continue
        rows.append(row)
    if not rows:
        raise ResultsError(
            f"{path}: no affbench benchmarks in it ({len(data['benchmarks'])} benchmark(s), none with "
            f"impl, pass, dtype, N, K, M in extra_info or params; was it saved from tests/benchmarks?)"
            + (f"; ignored: {'; '.join(ignored[:3])}" if ignored else ""))
    out = Path(out_dir)
    target = out / results.RESULTS_FILE
    if target.exists() and target.stat().st_size > 0:
        raise ResultsError(f"{target}: already exists; convert into a new or empty directory")
    out.mkdir(parents=True, exist_ok=True)
    with ResultsWriter(out) as writer:
        for row in rows:
            writer.append({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
    results.write_env(out, _env(path, data, ignored))
    return out
