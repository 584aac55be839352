"""Verify, then time a sweep of cases and write reports/<run-id>/.

Every axis can be narrowed or widened from the command line or a TOML file (--config, same
keys as the options: impl, pass, dtype, batch, layer = ["784:50", ...], threads, preset,
budget, target, rounds, min_samples, max_samples, max_case_s, case_timeout, time_limit). Command-line
options override the file, the file overrides the preset.

Each case is sampled in rounds spread over the run (round 1 here, later rounds in fresh worker
processes) until the 95% intervals of its median and of its ratio to numpy are within --target,
or its budget runs out; groups still short of it get extra rounds while the run is within
--time-limit of its start. The intervals and the precision reached are stored with every row.

Writes results.csv (a row per case, appended as its group finishes), env.json, verify.csv, run.json
and the report; reports/latest points at the newest run. Ctrl-C or a kill keeps every
finished case: --resume DIR completes the run without redoing them.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from affbench import registry
from affbench.commands.options import choose, parse_percent, split_list
from affbench.engine import runner
from affbench.engine.sweep import (
    DTYPES,
    PASSES,
    PRESETS,
    Sweep,
    load_config,
    parse_layer,
    parse_positive_int,
    parse_threads,
    preset,
)
from affbench.errors import UsageError
from affbench.measure.threads import max_threads


def configure(p: argparse.ArgumentParser) -> None:
    presets = "; ".join(f"{n}: {d}" for n, (d, _) in PRESETS.items())
    p.add_argument("--preset", default=None, help=f"starting sweep (default: default). {presets}")
    p.add_argument("--config", metavar="FILE", help="read the sweep from a TOML file")
    p.add_argument("--impl", action="append", metavar="NAME[,NAME]", help="implementations (default: all registered)")
    p.add_argument("--pass", dest="passes", action="append", metavar="PASS", help=f"{', '.join(PASSES)}")
    p.add_argument("--dtype", action="append", metavar="DTYPE", help=f"{', '.join(DTYPES)}")
    p.add_argument("--batch", action="append", metavar="N[,N]", help="batch sizes (positive integers)")
    p.add_argument("--layer", action="append", metavar="K:M[,K:M]", help="layer sizes in_features:out_features, e.g. 784:50")
    p.add_argument("--threads", action="append", metavar="T[,T]", help="thread counts, integers or 'all' (default: 1,all)")
    p.add_argument("--budget", type=float, metavar="SECONDS",
                   help="sampling seconds per case over all its rounds; a case stops earlier once precise")
    p.add_argument("--target", metavar="PCT",
                   help="precision asked of every median and ratio: the 95%% interval's half-width, e.g. 2%% "
                        "or 0.02 (a bare number is a fraction); above 0%% and below 100%% "
                        "(sampling stops once reached, or when the budget is spent)")
    p.add_argument("--rounds", metavar="MIN[:MAX]",
                   help="visits of each case, spread over the run (precision is checked from MIN on)")
    p.add_argument("--max-case-s", type=float, metavar="SECONDS",
                   help="cases predicted to take longer are extrapolated, not run")
    p.add_argument("--time-limit", metavar="SECONDS",
                   help="groups still short of the target after their rounds get extra rounds, widest interval "
                        "first, while the run is within SECONDS of its start, compilation included (preset: "
                        "default 280, quick 50; 'none': no extra rounds); never cuts a group's planned rounds")
    p.add_argument("--case-timeout", type=float, metavar="SECONDS",
                   help="a case running longer is recorded as timed out and the sweep goes on")
    p.add_argument("--out", metavar="DIR", help="write the run here instead of reports/<run-id>/")
    p.add_argument("--resume", metavar="DIR", help="complete an interrupted run without redoing finished cases")
    p.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-workers", action="store_true",
                   help="take every round in this process instead of a fresh worker process per round "
                        "after the first (see docs/measurement.md for what that costs in reproducibility)")
    p.add_argument("--no-isolate-threads", action="store_true",
                   help="leave the idle pool (BLAS or Numba) at the case's thread count instead of 1")


def _positive_float(option: str, value: Any) -> float:
    if isinstance(value, bool):  # float(True) is 1.0: `budget = true` in a file is a mistake
        raise UsageError(f"{option}: {value!r} is not a number")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{option}: {value!r} is not a number") from None
    if not v > 0 or v == float("inf"):
        raise UsageError(f"{option}: {value!r} must be a positive number of seconds")
    return v


def _as_list(value: Any, where: str) -> list[str]:
    """A config value as the command line's strings; a layer may be written [784, 50] for "784:50"."""
    out = []
    for v in value if isinstance(value, list) else [value]:
        if isinstance(v, list):
            if where.endswith(": layer") and len(v) == 2 and all(type(n) is int for n in v):
                v = f"{v[0]}:{v[1]}"
            else:
                raise UsageError(f"{where}: {v!r} is a list inside the list; write one value per item"
                                 + (' (a layer as "K:M" or [K, M])' if where.endswith(": layer") else ""))
        out.append(str(v))
    return out


def build_sweep(args: argparse.Namespace) -> tuple[str, Sweep]:
    """Preset, then config file, then command line; every value checked before anything runs."""
    config = load_config(args.config) if args.config else {}
    name = args.preset or config.get("preset") or "default"
    try:
        sweep = preset(str(name))
    except UsageError as exc:  # a preset from the file is named as the file's key
        if args.preset or "preset" not in config:
            raise
        raise UsageError(str(exc).replace("--preset", f"--config {args.config}: preset", 1)) from None
    known_impls = sorted([*registry.names(), *registry.unavailable()])  # a declared peer is skipped, not refused
    limit = max_threads()

    def pick(cli_value, key):
        if cli_value:
            return cli_value
        return _as_list(config[key], f"--config {args.config}: {key}") if key in config else None

    def axis(cli_value, key, option, parse):
        """Parse one axis; a bad value from the file is named as the file's key, not the option."""
        values = pick(cli_value, key)
        try:
            return parse(values)
        except UsageError as exc:
            if cli_value or values is None:
                raise
            raise UsageError(str(exc).replace(option, f"--config {args.config}: {key}", 1)) from None

    changes: dict[str, Any] = {}
    if (v := axis(args.impl, "impl", "--impl", lambda x: choose("--impl", x, known_impls))) is not None:
        changes["impls"] = tuple(v)
    if (v := axis(args.passes, "pass", "--pass", lambda x: choose("--pass", x, PASSES))) is not None:
        changes["passes"] = tuple(v)
    if (v := axis(args.dtype, "dtype", "--dtype", lambda x: choose("--dtype", x, DTYPES))) is not None:
        changes["dtypes"] = tuple(v)

    def each(parse):
        return lambda x: None if (v := split_list(x)) is None else tuple(dict.fromkeys(parse(i) for i in v))

    if (v := axis(args.batch, "batch", "--batch", each(lambda b: parse_positive_int("--batch", b)))) is not None:
        changes["batches"] = v
    if (v := axis(args.layer, "layer", "--layer", each(parse_layer))) is not None:
        changes["layers"] = v
    if (v := axis(args.threads, "threads", "--threads", each(lambda t: parse_threads(t, limit)))) is not None:
        changes["threads"] = v
    for key, opt, attr in (("batches", "--batch", "batch"), ("layers", "--layer", "layer"),
                           ("threads", "--threads", "threads"), ("impls", "--impl", "impl")):
        if key in changes and not changes[key]:
            raise UsageError(f"{opt}: no value given")
    def scalar(cli_value: Any, key: str, option: str) -> tuple[Any, str]:
        """The value (the command line's over the file's) and how to name it in an error."""
        if cli_value is not None:
            return cli_value, option
        return config.get(key), f"--config {args.config}: {key}"

    plan = sweep.plan
    budget, name_ = scalar(args.budget, "budget", "--budget")
    if budget is not None:
        plan = replace(plan, budget_s=_positive_float(name_, budget))
    target, name_ = scalar(args.target, "target", "--target")
    if target is not None:
        plan = replace(plan, target=parse_percent(name_, target, positive=True, below_100=True))
    rounds, name_ = scalar(args.rounds, "rounds", "--rounds")
    if rounds is not None:
        lo, hi = parse_rounds(name_, rounds)
        plan = replace(plan, min_rounds=lo, max_rounds=hi)
    for key in ("min_samples", "max_samples"):
        if key in config:
            plan = replace(plan, **{key: parse_positive_int(f"--config {args.config}: {key}", config[key])})
    if plan.min_samples > plan.max_samples:
        raise UsageError(f"--config: min_samples {plan.min_samples} > max_samples {plan.max_samples}")
    changes["plan"] = plan
    max_case, name_ = scalar(args.max_case_s, "max_case_s", "--max-case-s")
    if max_case is not None:
        changes["max_case_s"] = _positive_float(name_, max_case)
    timeout, name_ = scalar(args.case_timeout, "case_timeout", "--case-timeout")
    if timeout is not None:
        changes["case_timeout_s"] = _positive_float(name_, timeout)
    limit_, name_ = scalar(args.time_limit, "time_limit", "--time-limit")
    if limit_ is not None:
        changes["time_limit_s"] = None if str(limit_).strip().lower() == "none" else _positive_float(name_, limit_)
    return str(name), replace(sweep, **changes)


def parse_rounds(option: str, text: Any) -> tuple[int, int]:
    """'3' -> (3, 3); '3:6' -> (3, 6)."""
    parts = str(text).split(":")
    if len(parts) > 2:
        raise UsageError(f"{option}: {text!r} is not MIN or MIN:MAX (e.g. 3:6)")
    lo = parse_positive_int(option, parts[0])
    hi = parse_positive_int(option, parts[-1])
    if hi < lo:
        raise UsageError(f"{option}: {text!r}: MAX {hi} is below MIN {lo}")
    return lo, hi


def execute(args: argparse.Namespace) -> int:
    name, sweep = build_sweep(args)
    if sweep.impls and not registry.split_available(sweep.impls)[0]:
        for info in registry.split_available(sweep.impls)[1]:
            print(f"skipped {info.message}", file=sys.stderr)
        print("nothing to run: every implementation asked for is not installed", file=sys.stderr)
        return 0
    if args.resume and args.out:
        raise UsageError("--resume and --out: give one (--resume writes into the directory it completes)")
    options = runner.RunOptions(
        sweep=sweep, preset=name, out=Path(args.out) if args.out else None,
        resume=Path(args.resume) if args.resume else None, isolate_threads=not args.no_isolate_threads,
        report=not args.no_report, progress=not args.no_progress and sys.stderr.isatty(),
        workers=not args.no_workers,
        command=["python", "-m", "affbench", *sys.argv[1:]],
    )
    run_dir, status = runner.run(options)
    if options.report and status < 128:  # not after an interruption (128 + signal): --resume finishes first
        write_report(run_dir)
    return status


def write_report(run_dir: Path) -> None:
    """The report from the files the run wrote; the results are safe whatever happens here."""
    try:
        from affbench.report import build_report

        paths = build_report(run_dir)
        print(f"report: {getattr(paths, 'markdown', '')} and {getattr(paths, 'html', '')}", file=sys.stderr)
        for w in getattr(paths, "warnings", []):  # what the report opens with (no baseline, noisy cases ...)
            if not w.startswith("machine load: "):  # the runner logged those as it finished
                print(f"warning: {w}", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - the results are safe; say why the report is not
        print(f"report could not be written ({type(exc).__name__}: {exc}); "
              f"try: python -m affbench report {run_dir}", file=sys.stderr)
