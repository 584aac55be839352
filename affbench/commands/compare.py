"""Compare two runs case by case: B against A (above 1 = B slower).

Cases are matched by (impl, pass, dtype, batch, in_features, out_features, threads); cases in
only one run, or not measured in both (failed, skipped, extrapolated...), are listed, never
dropped. Each matched case's change comes with a 95% interval built from the intervals the two
runs recorded; the column 'measure' says of what:
  vs baseline  the ratio to the baseline (numpy), timed side by side: machine drift cancels
  vs others    numpy itself: the others' changes vs numpy, inverted; the one nearest no change,
               with the hull of their intervals (so called only when every other agrees)
  time         the median time (numpy with fewer than two others beside it, or rows without
               ratios): a drift of the whole machine moves it too
(see affbench/report/compare.py). A change is called only when its whole interval lies beyond
±--min-change. Then: the geometric mean change per implementation, and every env.json entry
that differs (CPU, versions, BLAS, threads...). Runs from different machines can be compared;
the environment differences say how far to trust the ratios.

Percentages: 10% or 0.1 (a bare number is a fraction; 1 or more is refused as ambiguous).

Exit status: 0, or 1 with --fail-above X when a slowdown is known to exceed X (the whole
interval of its change above 1 + X, e.g. 10%) or when no case was measured in both runs;
2 on a usage error (missing directory, unreadable results, a bad percentage).
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any, Mapping, TextIO

from affbench.commands.options import format_percent, parse_percent
from affbench.errors import UsageError
from affbench.measure.intervals import Interval
from affbench.registry import BASELINE
from affbench.report import fmt
from affbench.report.compare import DEFAULT_MIN_CHANGE, Comparison, compare_rows
from affbench.report.data import load_run
from affbench.store.results import ResultsError


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", metavar="A", help="the reference run directory (e.g. reports/<run-id>)")
    p.add_argument("b", metavar="B", help="the run to compare against A")
    default = format_percent(DEFAULT_MIN_CHANGE).replace("%", "%%")
    p.add_argument("--fail-above", metavar="PCT",
                   help="exit 1 when a slowdown is known to exceed PCT (the whole 95%% interval of its "
                        "change above 1 + PCT), or when no case was measured in both runs; e.g. 10%% or 0.1 "
                        "(a bare number is a fraction)")
    p.add_argument("--min-change", metavar="PCT", default=format_percent(DEFAULT_MIN_CHANGE),
                   help="call a case slower or faster only when the 95%% interval of its change lies wholly "
                        f"beyond this, e.g. 5%% or 0.05 (default {default}: two runs each aiming at +-2%% can "
                        "differ by ~2%% x sqrt(2) without either being wrong)")
    p.add_argument("--changed-only", action="store_true", help="list only the cases that changed significantly")


def _case_label(row: Mapping[str, Any]) -> list[str]:
    return [row["impl"], row["pass"], row["dtype"], str(row["batch"]), fmt.layer(row["in_features"], row["out_features"]),
            str(row["threads"])]


def _table(header: list[str], rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip(), file=out)


def print_comparison(cmp: Comparison, name_a: str, name_b: str, *, changed_only: bool = False,
                     out: TextIO | None = None) -> None:
    out = out if out is not None else sys.stdout
    print(f"A = {name_a}\nB = {name_b}\n"
          "change = B / A (> 1: B slower), 95% interval from the intervals both runs recorded, of what "
          "'measure' says:\n"
          f"  vs baseline: the ratio to {BASELINE}, timed side by side\n"
          f"  vs others:   {BASELINE} itself, from the other implementations' changes vs {BASELINE} (the one "
          "nearest 1; called only when all agree)\n"
          f"  time:        the median time ({BASELINE} with fewer than two others beside it)\n"
          f"called slower/faster only when the whole interval lies beyond ±{format_percent(cmp.min_change)}\n",
          file=out)
    cpu = [(k, a, b) for k, a, b in cmp.env_diff if k.startswith("cpu.")]
    if cpu:
        print("NOTE: the runs come from different machines ("
              + ", ".join(f"{k}: {_short(a, 40)} vs {_short(b, 40)}" for k, a, b in cpu[:2])
              + "): the ratios measure code and hardware together\n", file=out)
    if cmp.env_diff:
        print("environment differences (env.json):", file=out)
        _table(["key", "A", "B"], [[k, _short(a), _short(b)] for k, a, b in cmp.env_diff], out)
        print(file=out)
    else:
        print("environment: no differences in env.json (apart from run id, times and load)\n", file=out)

    shown = [c for c in cmp.cases if c.significant] if changed_only else cmp.cases
    print(f"cases: {len(cmp.cases)} compared"
          + (f", {len(shown)} changed significantly" if changed_only else ""), file=out)
    if shown:
        _table(["impl", "pass", "dtype", "N", "K→M", "thr", "A median", "B median", "time B/A (95%)",
                "measure", "change (95%)", "verdict"],
               [_case_label(c.a) + [fmt.seconds(c.a["median_s"]), fmt.seconds(c.b["median_s"]),
                                    _with_interval(c.time_change), c.measure, _with_interval(c.change),
                                    c.verdict.upper() if c.verdict in ("slower", "faster") else c.verdict]
                for c in shown], out)
    print(file=out)
    untested = cmp.untested()
    if untested:
        print(f"WARNING: {len(untested)} case(s) have no 95% interval (fewer than 6 samples, e.g. "
              f"{len(untested[0].a['samples_s'])} vs {len(untested[0].b['samples_s'])}); they are marked "
              "'untested': their changes are shown but neither confirmed nor cleared. Re-run with more samples.\n",
              file=out)

    geo = cmp.geomean_by_impl()
    if geo:
        print("geometric mean ratio B/A per implementation:", file=out)
        _table(["impl", "geomean B/A", "change", "cases", "slower", "faster"],
               [[impl, f"{g:.3f}", fmt.percent(g - 1), str(n), str(s), str(f)] for impl, (g, n, s, f) in geo.items()],
               out)
        print(file=out)
    for title, rows in ((f"only in A ({name_a})", cmp.only_a), (f"only in B ({name_b})", cmp.only_b)):
        if rows:
            print(f"{len(rows)} case(s) {title}:", file=out)
            _table(["impl", "pass", "dtype", "N", "K→M", "thr", "status"],
                   [_case_label(r) + [r["status"]] for r in rows], out)
            print(file=out)
    if cmp.not_comparable:
        print(f"{len(cmp.not_comparable)} case(s) in both runs but not measured in both (not compared):", file=out)
        _table(["impl", "pass", "dtype", "N", "K→M", "thr", "why"],
               [_case_label(a) + [why] for a, _b, why in cmp.not_comparable], out)
        print(file=out)


def _with_interval(iv: Interval) -> str:
    if not (math.isfinite(iv.low) and math.isfinite(iv.high)):
        return f"{iv.value:.3f} (—)"
    return f"{iv.value:.3f} ({iv.low:.3f}–{iv.high:.3f})"


def _short(v: Any, width: int = 60) -> str:
    s = "—" if v is None else str(v)
    return s if len(s) <= width else s[: width - 1] + "…"


def execute(args: argparse.Namespace) -> int:
    threshold = None if args.fail_above is None else parse_percent("--fail-above", args.fail_above)
    min_change = parse_percent("--min-change", args.min_change)
    try:
        run_a, run_b = load_run(args.a), load_run(args.b)
    except ResultsError as exc:
        raise UsageError(str(exc)) from None
    for w in run_a.warnings + run_b.warnings:
        print(f"warning: {w}", file=sys.stderr)
    cmp = compare_rows(run_a.rows, run_b.rows, env_a=run_a.env, env_b=run_b.env, min_change=min_change)
    print_comparison(cmp, f"{args.a} ({run_a.run_id})", f"{args.b} ({run_b.run_id})", changed_only=args.changed_only)
    if not cmp.cases:
        print("no case was measured in both runs: nothing to compare", file=sys.stderr)
    if threshold is not None:
        limit = format_percent(threshold)
        if not cmp.cases:
            print(f"FAIL: --fail-above {limit}: nothing was compared, so no slowdown can be ruled out",
                  file=sys.stderr)
            return 1
        bad = cmp.slowdowns_above(threshold)
        unsure = [c for c in cmp.untested() if c.ratio > 1.0 + threshold]
        if unsure:
            print(f"warning: {len(unsure)} untested case(s) (too few samples) are slower by more than "
                  f"{limit}, e.g. {unsure[0].a['case_id']} ×{unsure[0].ratio:.3f}; not counted by "
                  "--fail-above", file=sys.stderr)
        if bad:
            print(f"FAIL: {len(bad)} case(s) slower by more than {limit} (whole 95% interval), worst "
                  + ", ".join(f"{c.a['case_id']} ×{c.ratio:.3f}" for c in sorted(bad, key=lambda c: -c.ratio)[:5]),
                  file=sys.stderr)
            return 1
        print(f"ok: no slowdown known to exceed {limit}")
    return 0
