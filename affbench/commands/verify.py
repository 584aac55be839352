"""Cross-validate implementations against the float64 reference.

Every implementation x dtype x a grid of shapes (N, K or M of 0 and 1, primes, the book's
784->50 layer), memory layouts (Fortran order, non-contiguous views, b as (1, M)), N-d
input through the Affine layer, and small-integer inputs where results must be
bit-identical. Tolerances: normwise error <= 8*sqrt(n+1)*(eps(dtype)+eps(float64)), where n
is the length of each sum (see affbench/verify.py). Exit status 1 when anything fails.
"""

from __future__ import annotations

import argparse
import sys

from affbench import registry
from affbench.commands.options import choose
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


def execute(args: argparse.Namespace) -> int:
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
    if args.csv:
        report.write_csv(args.csv)
    if not report.ok:
        print("\nFAILED:", file=sys.stderr)
        for c in report.failures():
            what = c.detail or f"error {c.error:.2e} > tolerance {c.tolerance:.2e}"
            print(f"  {c.impl} {c.dtype} {c.quantity} on {c.case}: {what}", file=sys.stderr)
        print(f"failing implementation(s): {', '.join(report.failed_impls())}", file=sys.stderr)
        return 1
    print("\nall checks passed")
    return 0
