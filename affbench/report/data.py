"""Loading a run directory for report and compare: results.csv, env.json and verify.csv.

Everything a user can get wrong (a missing or empty directory, an empty or truncated
results.csv, a file from another schema version, broken JSON) raises
:class:`affbench.store.results.ResultsError` with a message that names the file and the fault.
Problems that still leave something to report (no env.json, an unreadable verify.csv, a torn
last line dropped) become ``warnings`` on the loaded run instead.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from affbench.store import results
from affbench.store.results import ResultsError

VERIFY_COLUMNS = ("impl", "dtype", "case", "quantity", "error", "tolerance", "passed", "detail")


@dataclass
class Run:
    directory: Path
    rows: list[dict[str, Any]]
    env: dict[str, Any]
    verify: list[dict[str, Any]] | None  # None when the run has no verify.csv
    warnings: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return str(self.env.get("run_id") or self.directory.resolve().name)

    def frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows, columns=list(results.COLUMNS))


def resolve_dir(path: str | Path) -> Path:
    """The run directory for ``path`` (a directory, a symlink to one, or its results.csv)."""
    p = Path(path)
    if p.is_file() and p.name == results.RESULTS_FILE:
        return p.parent
    if not p.exists():
        hint = " (a broken link: its run directory was removed)" if p.is_symlink() else ""
        raise ResultsError(f"{p}: no such run directory{hint}")
    if not p.is_dir():
        raise ResultsError(f"{p}: not a run directory (expected a directory holding {results.RESULTS_FILE})")
    if p.is_symlink():  # reports/latest: name the run itself, which the link will stop pointing at
        target = p.resolve()
        try:
            return target.relative_to(Path.cwd())
        except ValueError:
            return target
    return p


def load_run(path: str | Path) -> Run:
    directory = resolve_dir(path)
    csv_path = directory / results.RESULTS_FILE
    if not csv_path.exists():
        why = "the directory is empty" if not any(directory.iterdir()) else "not an affbench run directory?"
        raise ResultsError(f"{csv_path}: no such results file ({why})")
    loaded = results.read_rows(csv_path)
    warnings: list[str] = []
    if loaded.dropped_torn_line:
        warnings.append(f"{csv_path}: the last line was cut off (an interrupted write) and was ignored")
    if not loaded.rows:
        raise ResultsError(f"{csv_path}: no result rows (only the header; did the run finish any case?)")
    env_path = directory / results.ENV_FILE
    if env_path.exists():
        env = results.read_env(directory)
        if not isinstance(env, dict):
            raise ResultsError(f"{env_path}: expected a JSON object, found {type(env).__name__}")
        version = env.get("schema_version")
        readable = sorted({results.SCHEMA_VERSION, *results.READABLE_VERSIONS})  # old runs still get a report
        if version is not None and str(version) not in {str(v) for v in readable}:
            raise ResultsError(f"{env_path}: schema version {version!r}; this affbench reads versions "
                               f"{', '.join(map(str, readable))}")
    else:
        env = {}
        warnings.append(f"{env_path}: missing; the environment of this run is unknown")
    verify = _read_verify(directory / results.VERIFY_FILE, warnings)
    return Run(directory, loaded.rows, env, verify, warnings)


def _read_verify(path: Path, warnings: list[str]) -> list[dict[str, Any]] | None:
    if not path.exists():
        return None
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in VERIFY_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                warnings.append(f"{path}: unreadable (columns missing: {', '.join(missing)}); verification not shown")
                return None
            out = []
            for raw in reader:
                if any(raw.get(c) is None for c in VERIFY_COLUMNS):
                    warnings.append(f"{path}: line {reader.line_num} is truncated; verification shown without it")
                    continue
                out.append({**raw, "error": _float(raw["error"]), "tolerance": _float(raw["tolerance"]),
                            "passed": raw["passed"].strip().lower() in ("true", "1", "yes")})
            return out
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        warnings.append(f"{path}: unreadable ({exc}); verification not shown")
        return None


def _float(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan
