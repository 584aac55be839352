"""Regenerate the figures, report.md and report.html of a run from its results files alone.

Reads DIR/results.csv, DIR/env.json and (when present) DIR/verify.csv; writes report.md,
report.html (self-contained: figures embedded) and figures/*.png into DIR, or into --out.
Never writes results.csv, env.json or verify.csv. Needs neither Numba nor any kernel.
A run directory holding train/ (`train --into DIR`) gets a training section; a directory
written by `python -m affbench train` (train.csv) gets its report.md and figures rewritten.

--from-pytest-benchmark FILE.json first converts a pytest-benchmark file (from
`pytest tests/benchmarks --benchmark-enable --benchmark-autosave`) into a run directory of
the same results schema (--out, default reports/<file name>/), then reports on it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from affbench.engine.rundir import output_dir_problem
from affbench.errors import UsageError
from affbench.registry import BASELINE
from affbench.store.results import ResultsError

DEFAULT_DIR = Path("reports") / "latest"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR", nargs="?", default=str(DEFAULT_DIR),
                   help=f"run directory holding results.csv and env.json (default: {DEFAULT_DIR}, the newest run)")
    p.add_argument("--baseline", metavar="IMPL", default=None,
                   help="implementation the speedups are relative to (default: numpy)")
    p.add_argument("--out", metavar="OUTDIR", default=None,
                   help="write the report into OUTDIR instead of DIR")
    p.add_argument("--from-pytest-benchmark", metavar="FILE.json", default=None,
                   help="convert a pytest-benchmark JSON file into a run directory (--out, default "
                        "reports/<file name>/) and report on it")


def execute(args: argparse.Namespace) -> int:
    from affbench.report import ReportError, build_report

    if args.from_pytest_benchmark:
        args.dir, args.out = str(_convert(args)), None
    elif _is_train_dir(args.dir):
        return _train_report(args)
    elif args.dir == str(DEFAULT_DIR) and not Path(args.dir).exists() and not Path(args.dir).is_symlink():
        raise UsageError(f"{args.dir}: no such run directory (run `python -m affbench run` first, or name a run "
                         "directory: python -m affbench report reports/<run-id>)")
    if args.out and (problem := output_dir_problem(Path(args.out))) is not None:
        raise UsageError(f"--out {args.out}: {problem}")  # before reading the run or drawing a figure
    try:
        paths = build_report(args.dir, baseline=args.baseline or BASELINE, out_dir=args.out,
                             require_baseline=args.baseline is not None)
    except (ResultsError, ReportError) as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:  # a directory that cannot be created or written after all
        where = f"--out {args.out}" if args.out else str(exc.filename or args.dir)
        hint = "" if args.out else "; use --out"
        raise UsageError(f"{where}: cannot write the report there ({exc.strerror}){hint}") from None
    print(f"wrote {paths.markdown}")
    print(f"wrote {paths.html}")
    print(f"wrote {len(paths.figures)} figure(s) in {paths.markdown.parent / 'figures'}")
    for w in paths.warnings:
        print(f"warning: {w}")
    return 0


def _is_train_dir(directory: str) -> bool:
    from affbench.store.results import RESULTS_FILE
    from affbench.train.output import is_train_dir

    return is_train_dir(directory) and not (Path(directory) / RESULTS_FILE).exists()


def _train_report(args: argparse.Namespace) -> int:
    """A `train` directory: report.md and figures rewritten in place from its files."""
    from affbench.train import report as train_report

    if args.out or args.baseline:
        raise UsageError(f"{args.dir} is a train directory: its report is rewritten in place "
                         "(--out and --baseline apply to run directories)")
    try:
        path = train_report.write(args.dir)
    except ResultsError as exc:
        raise UsageError(str(exc)) from None
    print(f"wrote {path}")
    print(f"wrote figures in {path.parent / train_report.FIGURES_DIR}")
    return 0


def _convert(args: argparse.Namespace) -> Path:
    """The run directory made from a pytest-benchmark file; never an existing one."""
    from affbench.store.pytest_import import convert

    if args.dir != str(DEFAULT_DIR):
        raise UsageError("--from-pytest-benchmark: give the run directory to create with --out, not as DIR")
    src = Path(args.from_pytest_benchmark)
    out = Path(args.out) if args.out else Path("reports") / src.stem
    if (problem := output_dir_problem(out)) is not None:
        raise UsageError(f"--out {out}: {problem}")
    if out.is_dir() and any(out.iterdir()):
        raise UsageError(f"--out {out}: exists and is not empty (results are never overwritten)")
    try:
        convert(src, out)
    except ResultsError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write the run directory ({exc.strerror})") from None
    print(f"converted {src} -> {out}")
    return out
