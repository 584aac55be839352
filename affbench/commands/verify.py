"""Cross-validate implementations against the float64 reference.

Every implementation x dtype x a grid of shapes (N, K or M of 0 and 1, primes, the book's
784->50 layer), memory layouts (Fortran order, non-contiguous views, b as (1, M)), N-d
input through the Affine layer, and small-integer inputs where results must be
bit-identical. Tolerances: normwise error <= 8*sqrt(n+1)*(eps(dtype)+eps(float64)), where n
is the length of each sum (see affbench/verify.py). Exit status 1 when anything fails; 2 for a
usage error (--csv FILE is checked before verifying) or, all checks passed, when FILE could not
be written after all.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from affbench import registry
from affbench.commands.options import choose
from affbench.errors import UsageError
from affbench.verify import DTYPES, VerifyReport, verify


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--impl", action="append", metavar="NAME[,NAME]",
                   help="implementations to check (default: all registered; see `list`)")
    p.add_argument("--dtype", action="append", metavar="DTYPE", help="float32 and/or float64 (default: both)")
    p.add_argument("--csv", metavar="FILE", help="also write every individual check to FILE")


def print_report(report: VerifyReport, file=None) -> None:
    file = file or sys.stdout  # looked up at call time: stdout may be redirected
    print(report.table(), file=file)
    gc = report.gradient_check
    if gc:
        print("\nreference gradients vs central finite differences (float64, h=1e-4), mean |diff|: "
              + ", ".join(f"{k} {v:.1e}" for k, v in gc.items()), file=file)
    if report.skipped:
        print(f"\nskipped {len(report.skipped)} slow case(s), e.g. {report.skipped[0]}", file=file)


def check_csv_path(path: str) -> None:
    """Refuse a --csv FILE that could not be written, before the verification runs (a minute)."""
    p = Path(path)
    parent = p.parent
    try:
        if p.is_dir():
            raise UsageError(f"--csv {path}: is a directory; give a file name, e.g. --csv {p / 'verify.csv'}")
        if not parent.is_dir():
            what = "is not a directory" if parent.exists() else "does not exist"
            raise UsageError(f"--csv {path}: cannot write there: {parent} {what}")
        if p.exists():
            if not os.access(p, os.W_OK):
                raise UsageError(f"--csv {path}: the file is not writable")
        elif not os.access(parent, os.W_OK | os.X_OK):
            raise UsageError(f"--csv {path}: cannot write there: {parent} is not writable")
    except OSError as exc:  # e.g. a parent without search permission
        raise UsageError(f"--csv {path}: cannot be checked ({exc.strerror})") from None


def execute(args: argparse.Namespace) -> int:
    if args.csv:
        check_csv_path(args.csv)
    chosen = choose("--impl", args.impl, sorted([*registry.names(), *registry.unavailable()]))
    impls, missing = registry.split_available(chosen if chosen is not None else registry.unavailable())
    if chosen is None:
        impls = None  # every installed implementation
    dtypes = choose("--dtype", args.dtype, DTYPES) or list(DTYPES)
    for info in missing:  # declared but not installed: skipped, never a failure
        print(f"skipped {info.message}", file=sys.stderr)
    if impls is not None and not impls:
        print("nothing to verify: every implementation asked for is not installed", file=sys.stderr)
        return 0
    report = verify(impls, dtypes, progress=lambda s: print(f"verifying {s} ...", file=sys.stderr))
    print_report(report)
    csv_failed = False
    if args.csv:
        try:
            report.write_csv(args.csv)
        except OSError as exc:  # checked before verifying, yet the write failed (disk full, removed directory)
            print(f"affbench verify: error: --csv {args.csv}: could not write the checks ({exc.strerror})",
                  file=sys.stderr)
            csv_failed = True
    if not report.ok:
        print("\nFAILED:", file=sys.stderr)
        for c in report.failures():
            what = c.detail or f"error {c.error:.2e} > tolerance {c.tolerance:.2e}"
            print(f"  {c.impl} {c.dtype} {c.quantity} on {c.case}: {what}", file=sys.stderr)
        print(f"failing implementation(s): {', '.join(report.failed_impls())}", file=sys.stderr)
        return 1
    print("\nall checks passed")
    return 2 if csv_failed else 0
