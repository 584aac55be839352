"""Regenerate the figures, report.md and report.html of a run from its results files alone.

Reads DIR/results.csv, DIR/env.json and (when present) DIR/verify.csv; writes report.md,
report.html (self-contained: figures embedded) and figures/*.png into DIR, or into --out.
Never writes results.csv, env.json or verify.csv. Needs neither Numba nor any kernel.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError
from ..results import ResultsError

DEFAULT_DIR = Path("reports") / "latest"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR", nargs="?", default=str(DEFAULT_DIR),
                   help=f"run directory holding results.csv and env.json (default: {DEFAULT_DIR}, the newest run)")
    p.add_argument("--baseline", metavar="IMPL", default=None,
                   help="implementation the speedups are relative to (default: numpy)")
    p.add_argument("--out", metavar="OUTDIR", default=None,
                   help="write the report into OUTDIR instead of DIR")


def execute(args: argparse.Namespace) -> int:
    from ..report import build_report, ReportError

    if args.dir == str(DEFAULT_DIR) and not Path(args.dir).exists() and not Path(args.dir).is_symlink():
        raise UsageError(f"{args.dir}: no such run directory (run `python -m affbench run` first, or name a run "
                         "directory: python -m affbench report reports/<run-id>)")
    try:
        paths = build_report(args.dir, baseline=args.baseline or "numpy", out_dir=args.out,
                             require_baseline=args.baseline is not None)
    except (ResultsError, ReportError) as exc:
        raise UsageError(str(exc)) from None
    except PermissionError as exc:
        raise UsageError(f"{exc.filename}: cannot write the report there ({exc.strerror}); use --out") from None
    print(f"wrote {paths.markdown}")
    print(f"wrote {paths.html}")
    print(f"wrote {len(paths.figures)} figure(s) in {paths.markdown.parent / 'figures'}")
    for w in paths.warnings:
        print(f"warning: {w}")
    return 0
