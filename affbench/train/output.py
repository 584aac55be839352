"""The files of a `train` run: train.csv (a row per network and implementation), curves.csv
(every loss curve, step by step), env.json; and reading them back for the report, which needs
nothing else (no kernel, no Numba, no scikit-learn).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from affbench.store.results import ResultsError
from affbench.train.loop import PARTS

if TYPE_CHECKING:  # the report reads these files without the training machinery
    from affbench.train.runner import NetworkResult, Settings

TRAIN_FILE = "train.csv"
CURVES_FILE = "curves.csv"
ENV_FILE = "env.json"
#: where `train --into RUN_DIR` writes, and where `report RUN_DIR` looks for a training section
SUBDIR = "train"
#: the curve of numpy with nudged outputs (affbench.train.agreement.NudgedNumpy), in curves.csv
NUDGED = "numpy (nudged)"


def part_column(part: str) -> str:
    return "part_" + part.replace(" ", "_").replace("-", "_") + "_s"


#: Every column of train.csv, with its meaning.
COLUMNS: dict[str, str] = {
    "network": "two-layer, deep-mlp or convnet-head (affbench.train.networks)",
    "layer_sizes": "the network's sizes at the timing shape, e.g. 784-50-10",
    "data": "the data set of the timing and the loss curve (MNIST-shaped synthetic)",
    "impl": "Affine implementation",
    "dtype": "float32 or float64",
    "batch": "samples per step",
    "threads": "threads asked for",
    "numba_threads": "Numba's pool size in effect while timed",
    "blas_threads": "BLAS pool size in effect while timed",
    "compile_s": "JIT compile (or cache load) seconds of the implementation, timed apart (affbench.engine.warmup)",
    "median_s": "median seconds per training step (batch, forward, backward, update)",
    "ci_low_s": "95% interval of median_s, low end",
    "ci_high_s": "95% interval of median_s, high end",
    "speedup": "numpy's step time / this one's, median of paired samples (above 1: faster)",
    "speedup_low": "95% interval of speedup, low end",
    "speedup_high": "95% interval of speedup, high end",
    "affine_share": "median fraction of a step spent in the Affine layers' forward and backward",
    "share_low": "95% interval of affine_share, low end",
    "share_high": "95% interval of affine_share, high end",
    "amdahl": "1 / (1 - affine_share): the best whole-step speedup an infinitely fast Affine could give",
    **{part_column(p): f"mean seconds per step in '{p}' (lapped steps)" for p in PARTS},
    "n_samples": "timing samples of the step",
    "rounds": "rounds the samples were taken in",
    "lapped_steps": "steps timed part by part for the shares",
    "stopped": "why sampling stopped (affbench.measure.timing.stop_reason)",
    "iterations": "steps of the loss curve",
    "final_loss": "loss of the curve's last step",
    "max_rel_diff": "largest relative loss difference from numpy's curve",
    "tolerance": "the agreement tolerance (affbench.train.agreement)",
    "tolerance_from": "which term set it: 'rounding' (2·tau(n)) or 'nudged numpy' (10 x numpy against its nudged run)",
    "agrees": "max_rel_diff <= tolerance (empty for numpy)",
    "digits_layer_sizes": "the network's sizes on digits",
    "digits_epochs": "epochs trained on digits",
    "digits_steps": "steps trained on digits",
    "digits_final_loss": "loss of the last digits step",
    "digits_max_rel_diff": "largest relative loss difference from numpy's digits curve",
    "digits_tolerance": "the agreement tolerance of the digits curve",
    "digits_agrees": "digits_max_rel_diff <= digits_tolerance (empty for numpy)",
    "digits_accuracy": "train accuracy on all 1797 digits after training",
    "samples_s": "every timing sample, seconds per step, space-separated",
    "error": "why the timing failed, or 'not timed: its loss curve disagrees with numpy's'",
}
CURVE_COLUMNS = ("network", "data", "impl", "step", "loss", "wall_s")


def rows_of(results: Iterable["NetworkResult"], settings: "Settings") -> list[dict[str, Any]]:
    rows = []
    for net in results:
        for name, r in net.impls.items():
            t = r.timing
            row: dict[str, Any] = {
                "network": net.spec.name, "layer_sizes": "-".join(map(str, net.layer_sizes)), "data": net.data,
                "impl": name, "dtype": settings.dtype, "batch": settings.batch, "threads": settings.thread_count,
                "compile_s": r.compile_s, "iterations": len(r.curve.losses),
                "final_loss": float(r.curve.losses[-1]) if len(r.curve.losses) else math.nan,
                "tolerance": net.tolerance.value, "tolerance_from": net.tolerance.source,
            }
            if r.curve.agreement is not None:
                row.update(max_rel_diff=r.curve.agreement.max_difference, agrees=r.curve.agreement.passed)
            if t is None:
                row["error"] = "not timed: its loss curve disagrees with numpy's"
            else:
                speedup = t.speedup
                row.update(
                    numba_threads=t.threads.numba_threads if t.threads else None,
                    blas_threads=t.threads.blas_threads if t.threads else None,
                    median_s=t.time.value, ci_low_s=t.time.low, ci_high_s=t.time.high,
                    speedup=speedup.value if speedup else 1.0, speedup_low=speedup.low if speedup else None,
                    speedup_high=speedup.high if speedup else None,
                    affine_share=t.share.value, share_low=t.share.low, share_high=t.share.high,
                    amdahl=t.amdahl.value, n_samples=len(t.samples), rounds=t.rounds, lapped_steps=t.lapped_steps,
                    stopped=t.stopped, samples_s=" ".join(f"{s:.6g}" for s in t.samples), error=t.error,
                    **{part_column(p): t.parts[p] for p in PARTS})
            d = r.digits
            if d is not None and net.digits_tolerance is not None:
                row.update(digits_layer_sizes="-".join(map(str, net.digits_layer_sizes or [])),
                           digits_epochs=net.digits_epochs, digits_steps=net.digits_steps,
                           digits_final_loss=float(d.losses[-1]) if len(d.losses) else math.nan,
                           digits_tolerance=net.digits_tolerance.value, digits_accuracy=d.accuracy)
                if d.agreement is not None:
                    row.update(digits_max_rel_diff=d.agreement.max_difference, digits_agrees=d.agreement.passed)
            rows.append(row)
    return rows


def curve_rows(results: Iterable["NetworkResult"]) -> list[dict[str, Any]]:
    """Every curve step by step, numpy's nudged runs (the agreement's envelope) among them."""
    out = []
    for net in results:
        runs = [(data, name, run) for name, r in net.impls.items()
                for data, run in (("synthetic", r.curve), ("digits", r.digits))]
        runs += [("synthetic", NUDGED, net.nudged), ("digits", NUDGED, net.digits_nudged)]
        for data, name, run in runs:
            if run is None:
                continue
            out += [{"network": net.spec.name, "data": data, "impl": name, "step": i, "loss": float(loss),
                     "wall_s": float(wall)} for i, (loss, wall) in enumerate(zip(run.losses, run.wall_s))]
    return out


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


def write(directory: Path, rows: list[dict[str, Any]], curves: list[dict[str, Any]], env: Mapping[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / TRAIN_FILE, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for row in rows:
            w.writerow([_cell(row.get(c)) for c in COLUMNS])
    with open(directory / CURVES_FILE, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CURVE_COLUMNS)
        for row in curves:
            w.writerow([_cell(row.get(c)) for c in CURVE_COLUMNS])
    (directory / ENV_FILE).write_text(json.dumps(env, indent=2, default=str) + "\n")


_TEXT = {"network", "layer_sizes", "data", "impl", "dtype", "stopped", "tolerance_from", "digits_layer_sizes",
         "samples_s", "error"}


def _typed(key: str, text: str) -> Any:
    if text == "":
        return None
    if key in _TEXT:
        return text
    if text in ("True", "False"):
        return text == "True"
    try:
        return int(text) if key in ("batch", "threads", "numba_threads", "blas_threads", "n_samples", "rounds",
                                    "lapped_steps", "iterations", "digits_epochs", "digits_steps", "step") else float(text)
    except ValueError:
        raise ResultsError(f"{key}: {text!r} is not a number") from None


def is_train_dir(directory: str | Path) -> bool:
    return (Path(directory) / TRAIN_FILE).is_file()


def read(directory: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """(train.csv rows, curves.csv rows, env.json) of a train directory, typed; ResultsError
    naming the file when one is missing or unreadable (env.json may be missing)."""
    d = Path(directory)

    def load(name: str, required: tuple[str, ...]) -> list[dict[str, Any]]:
        path = d / name
        try:
            with open(path, newline="") as fh:
                reader = csv.DictReader(fh)
                missing = [c for c in required if c not in (reader.fieldnames or [])]
                if missing:
                    raise ResultsError(f"{path}: not a train file (no column {', '.join(missing)})")
                raw = list(reader)
        except FileNotFoundError:
            raise ResultsError(f"{path}: no such file (a `python -m affbench train` directory holds {name})") from None
        try:
            return [{k: _typed(k, v or "") for k, v in row.items() if k is not None} for row in raw]
        except ResultsError as exc:
            raise ResultsError(f"{path}: {exc}") from None

    rows = load(TRAIN_FILE, ("network", "impl", "median_s"))
    curves = load(CURVES_FILE, CURVE_COLUMNS) if (d / CURVES_FILE).exists() else []
    try:
        env = json.loads((d / ENV_FILE).read_text())
    except (OSError, ValueError):
        env = {}
    return rows, curves, env


def column_table() -> str:
    """The train.csv column table of docs/train.md, generated from COLUMNS."""
    lines = ["| column | meaning |", "|---|---|"]
    lines += [f"| `{name}` | {meaning.replace('|', chr(92) + '|')} |" for name, meaning in COLUMNS.items()]
    return "\n".join(lines)
