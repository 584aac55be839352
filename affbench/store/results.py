"""The results schema (versioned), appending rows as cases finish, resuming, and loading.

A run directory holds ``results.csv`` (one row per case), ``env.json`` and ``verify.csv``.
It is the only thing ``report`` and ``compare`` read. Rows are appended and flushed to disk
one by one, so an interrupted run keeps every finished case; a torn last line (a kill in the
middle of a write) is detected and dropped on load, never silently misread.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from affbench.measure.intervals import Interval, median_interval

SCHEMA_VERSION = 3
#: Older layouts this version still reads; columns they lack are read as empty.
READABLE_VERSIONS = {1: ("rounds", "ci_low_s", "ci_high_s", "ci_rel", "ratio", "ratio_low", "ratio_high",
                         "ratio_rel", "stopped", "peer_threads"),
                     2: ("peer_threads",)}
RESULTS_FILE = "results.csv"
ENV_FILE = "env.json"
VERIFY_FILE = "verify.csv"

#: Every column, in file order, with its meaning. reports/README.md is written from this.
COLUMNS: dict[str, str] = {
    "schema_version": "version of this column layout (affbench.store.results.SCHEMA_VERSION)",
    "case_id": "stable identity of the case: impl|pass|dtype|N|K|M|threads; equal across runs",
    "impl": "implementation name (see `python -m affbench list`)",
    "pass": "forward, backward, or step (forward then backward)",
    "dtype": "float32 or float64",
    "batch": "N, rows of x (batch size)",
    "in_features": "K, columns of x and rows of W",
    "out_features": "M, columns of W",
    "threads": "threads requested for the case",
    "numba_threads": "numba.get_num_threads() in effect while the case was timed",
    "blas_threads": "BLAS pool size in effect while the case was timed (threadpoolctl)",
    "peer_threads": "a peer's own pool while the case was timed: torch.get_num_threads(), or the size of JAX's XLA CPU pool (fixed when JAX started; docs/peers.md); empty for the other implementations",
    "status": "ok (measured), extrapolated (predicted, not run), skipped, failed, or timeout",
    "compile_s": "JIT compile (or cache load) seconds for this (impl, dtype): first calls minus second calls, summed over affbench.engine.warmup's probe sizes, timed before verification; never part of any sample. For torch, the framework's lazy initialisation on its first calls (nothing is compiled); importing a framework is never counted",
    "repeats": "calls per sample: enough for one sample to last well above the timer resolution",
    "n_samples": "number of samples taken",
    "median_s": "median seconds per call (per pass)",
    "q1_s": "first quartile of seconds per call",
    "q3_s": "third quartile of seconds per call",
    "iqr_s": "q3_s - q1_s",
    "min_s": "fastest sample, seconds per call",
    "mean_s": "mean seconds per call",
    "std_s": "standard deviation of seconds per call",
    "cv": "coefficient of variation, std_s / mean_s",
    "noisy": "True when cv exceeds the noise threshold stored in env.json (noise_cv_threshold)",
    "flops": "FLOPs of one call: forward 2NKM+NM, backward 4NKM+NM, step their sum",
    "gflops": "flops / median_s / 1e9 (for extrapolated rows: the predicted rate)",
    "peak_mem_bytes": "peak bytes allocated during one call above its inputs (NumPy and Numba allocations alike); empty for calls slower than 20 ms, which tracemalloc would slow too much, and for the peers (torch, jax), whose allocators tracemalloc cannot see",
    "rounds": "visits of the case, spread over the run; samples_s holds them one after another",
    "ci_low_s": "low end of the 95% interval of median_s: distribution-free within rounds, widened by the spread of the round medians (affbench.measure.intervals)",
    "ci_high_s": "high end of the 95% interval of median_s",
    "ci_rel": "achieved precision of median_s: the interval's larger half-width relative to median_s (0.02 = +-2%)",
    "ratio": "this case's time / the baseline's (numpy, same work and threads), the median of samples paired within a round-robin rotation; empty for the baseline; below 1 is faster",
    "ratio_low": "low end of the 95% interval of ratio",
    "ratio_high": "high end of the 95% interval of ratio",
    "ratio_rel": "achieved precision of ratio, relative half-width like ci_rel",
    "stopped": "why sampling stopped: precise (every interval within the plan's target), budget, max_samples, max_rounds, "
               "or time_limit (extra rounds beyond max_rounds until the run's time limit)",
    "samples_s": "every sample, seconds per call, space-separated (for compare's statistics)",
    "error": "why a case failed, timed out or was skipped; for extrapolated rows, what the prediction was based on",
    "finished_at": "UTC time the case finished (ISO 8601)",
}

#: Columns that identify a case across runs.
KEY_COLUMNS = ("impl", "pass", "dtype", "batch", "in_features", "out_features", "threads")
STATUSES = ("ok", "extrapolated", "skipped", "failed", "timeout")
INT_COLUMNS = ("schema_version", "batch", "in_features", "out_features", "threads", "numba_threads",
               "blas_threads", "peer_threads", "repeats", "n_samples", "flops", "peak_mem_bytes", "rounds")
FLOAT_COLUMNS = ("compile_s", "median_s", "q1_s", "q3_s", "iqr_s", "min_s", "mean_s", "std_s", "cv", "gflops",
                 "ci_low_s", "ci_high_s", "ci_rel", "ratio", "ratio_low", "ratio_high", "ratio_rel")


class ResultsError(Exception):
    """A results directory or file that cannot be read; the message names the file and why."""


def case_id(impl: str, pass_: str, dtype: str, batch: int, in_features: int, out_features: int, threads: int) -> str:
    return f"{impl}|{pass_}|{dtype}|{batch}|{in_features}|{out_features}|{threads}"


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    if isinstance(value, (list, tuple)):
        return " ".join(repr(float(v)) for v in value)
    return str(value)


class ResultsWriter:
    """Appends rows to results.csv, one flushed and fsynced line per finished case."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / RESULTS_FILE
        new = not self.path.exists() or self.path.stat().st_size == 0
        if not new:
            _repair_torn_tail(self.path)
        self._fh = open(self.path, "a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._fh, fieldnames=list(COLUMNS), extrasaction="raise")
        if new:
            self._writer.writeheader()
            self._sync()

    def append(self, row: Mapping[str, Any]) -> None:
        full = {col: _fmt(row.get(col)) for col in COLUMNS}
        full["schema_version"] = str(SCHEMA_VERSION)
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown result column(s): {', '.join(sorted(unknown))}")
        self._writer.writerow(full)
        self._sync()

    def _sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "ResultsWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _repair_torn_tail(path: Path) -> None:
    """Drop a last line without its newline: a write cut off by a kill."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(path, "r+b") as fh:
            fh.truncate(cut)


@dataclass
class Loaded:
    rows: list[dict[str, Any]]
    dropped_torn_line: bool = False


def read_rows(path: str | Path) -> Loaded:
    """Parse results.csv into typed dicts. Raises ResultsError naming the file and the fault."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.exists():
        raise ResultsError(f"{path}: no such results file")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise ResultsError(f"{path}: the results file is empty")
    # samples_s of a converted pytest-benchmark run (--benchmark-save-data) can hold 10^5 samples,
    # past the csv module's 128 KB default field limit
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    torn = not text.endswith("\n")
    if torn:
        text = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    if "schema_version" not in header:
        raise ResultsError(f"{path}: not an affbench results file (no schema_version column; header: {', '.join(header[:6])}...)")
    rows: list[dict[str, Any]] = []
    readable = {str(SCHEMA_VERSION): ()} | {str(v): cols for v, cols in READABLE_VERSIONS.items()}
    for lineno, raw in enumerate(reader, start=2):
        version = raw.get("schema_version")
        if version not in readable:
            raise ResultsError(
                f"{path}: line {lineno} has schema version {version!r}; this affbench reads versions "
                f"{', '.join(sorted(readable))} (re-run with the affbench version that wrote it, or re-run the benchmark)"
            )
        if None in raw or any(raw.get(c) is None for c in header):
            raise ResultsError(f"{path}: line {lineno} has the wrong number of fields (truncated or corrupted)")
        missing = [c for c in COLUMNS if c not in header and c not in readable[version]]
        if missing:
            raise ResultsError(f"{path}: columns missing for schema version {version}: {', '.join(missing)}")
        raw = {c: raw.get(c, "") for c in COLUMNS} | {"schema_version": version}
        try:
            rows.append(_typed(raw))
        except ValueError as exc:
            raise ResultsError(f"{path}: line {lineno}: {exc}") from None
    return Loaded(rows, dropped_torn_line=torn)


def _typed(raw: Mapping[str, str]) -> dict[str, Any]:
    row: dict[str, Any] = dict(raw)
    for c in INT_COLUMNS:
        row[c] = int(raw[c]) if raw[c] != "" else None
    for c in FLOAT_COLUMNS:
        row[c] = float(raw[c]) if raw[c] != "" else math.nan
    row["noisy"] = raw["noisy"] == "True"
    row["samples_s"] = [float(s) for s in raw["samples_s"].split()] if raw["samples_s"] else []
    if row["status"] not in STATUSES:
        raise ValueError(f"unknown status {row['status']!r}")
    return row


# --------------------------------------------------------------------------- intervals of a row
def _finite(v: Any) -> bool:  # a real number, not NaN/inf/None/bool
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def time_interval(row: Mapping[str, Any]) -> Interval:
    """The median time with its recorded interval, else the distribution-free interval of the
    samples (schema 1), else an unknown interval (a prediction has none)."""
    med = row.get("median_s")
    med = float(med) if _finite(med) else math.nan
    lo, hi = row.get("ci_low_s"), row.get("ci_high_s")
    if _finite(lo) and _finite(hi):
        return Interval(med, float(lo), float(hi))
    samples = row.get("samples_s")
    if isinstance(samples, (list, tuple)) and len(samples) and row.get("status", "ok") == "ok":
        iv = median_interval(samples)
        return Interval(med, iv.low, iv.high) if _finite(med) else iv
    return Interval.unknown(med)


def recorded_ratio(row: Mapping[str, Any]) -> Interval | None:
    """time / numpy time as the run recorded it (paired samples), or None when it did not."""
    r = row.get("ratio")
    if not _finite(r) or r <= 0:
        return None
    lo, hi = row.get("ratio_low"), row.get("ratio_high")
    if _finite(lo) and _finite(hi):
        return Interval(float(r), float(lo), float(hi))
    return Interval.unknown(float(r))


def write_env(directory: str | Path, env: Mapping[str, Any]) -> None:
    Path(directory, ENV_FILE).write_text(json.dumps(env, indent=2, sort_keys=True, default=str) + "\n")


def read_env(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / ENV_FILE
    if not path.exists():
        raise ResultsError(f"{path}: no env.json in this run directory")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not valid JSON ({exc})") from None
