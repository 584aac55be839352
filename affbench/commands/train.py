"""The Affine layer inside real training: the book's networks trained end to end.

For each network (TwoLayerNet 784-50-10, a deeper MLP 784-1024-1024-10, SimpleConvNet's two
Affine layers on pooled maps 30x12x12-100-10; batch 100) and each implementation: the loss
curve over --iterations steps on MNIST-shaped synthetic data from the same seed and weights,
checked against numpy's (tolerance in affbench/train/agreement.py); the time per step with its
95% interval, sampled side by side with numpy; the share of the step spent in the Affine
layers and the Amdahl bound 1/(1-share); then training on scikit-learn's digits and the train
accuracy. Compile time is measured apart, never inside a timing.

Writes reports/<stamp>-train/ (or --out DIR, or RUN_DIR/train with --into RUN_DIR, whose run
report then gets a training section): train.csv, curves.csv, env.json, report.md, figures/.
Exit status 1 when an implementation's loss disagrees with numpy's, 2 on a usage error
(scikit-learn missing without --no-digits included).

Defaults: numpy and numba-tiled, float64 (the book's dtype; one Numba compile, ~25 s cold),
all threads. `--impl all` adds numba-serial and numba-prange (slow on the deep MLP); the
pure-Python naive is run only when named, and only on settings small enough to finish.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from affbench import registry
from affbench.commands.options import choose, split_list
from affbench.commands.run import _positive_float, parse_rounds
from affbench.engine.rundir import DEFAULT_ROOT, new_run_dir
from affbench.engine.sweep import DTYPES, parse_positive_int, parse_threads
from affbench.errors import UsageError
from affbench.measure import environment, load
from affbench.measure.threads import max_threads
from affbench.store import results

#: naive is refused when its predicted share of the run is longer than this
NAIVE_LIMIT_S = 60.0


def configure(p: argparse.ArgumentParser) -> None:
    from affbench.train.networks import NETWORKS
    from affbench.train.runner import DEFAULT_IMPLS, DEFAULT_PLAN

    nets = ", ".join(f"{n} ({s.description})" for n, s in NETWORKS.items())
    p.add_argument("--network", action="append", metavar="NAME[,NAME]", help=f"networks (default: all): {nets}")
    p.add_argument("--impl", action="append", metavar="NAME[,NAME]",
                   help=f"implementations (default: {','.join(DEFAULT_IMPLS)}; 'all': every one but naive; "
                        "numpy is always added as the baseline)")
    p.add_argument("--dtype", default="float64", metavar="DTYPE", help=f"{', '.join(DTYPES)} (default: float64)")
    p.add_argument("--threads", default="all", metavar="T", help="threads of the implementation's pool: 1.. or 'all' (default)")
    p.add_argument("--batch", default="100", metavar="N", help="samples per step (default: 100, the book's)")
    p.add_argument("--iterations", default="100", metavar="N", help="steps of each loss curve (default: 100)")
    p.add_argument("--epochs", default=None, metavar="N",
                   help="epochs on digits before the accuracy (default: each network's own, 30 or 3)")
    p.add_argument("--no-digits", action="store_true",
                   help="leave out the digits part (it needs scikit-learn: pip install -e \".[train]\")")
    p.add_argument("--seed", default="0", metavar="N", help="seed of the weights, data and batches (default: 0)")
    p.add_argument("--rounds", default=f"{DEFAULT_PLAN.min_rounds}:{DEFAULT_PLAN.max_rounds}", metavar="MIN[:MAX]",
                   help="timing rounds, precision checked from MIN on (default: %(default)s)")
    p.add_argument("--budget", default=str(DEFAULT_PLAN.budget_s), metavar="SECONDS",
                   help="timing seconds per implementation and network over all rounds (default: %(default)s)")
    p.add_argument("--out", metavar="DIR", help="write here instead of reports/<stamp>-train/")
    p.add_argument("--into", metavar="RUN_DIR",
                   help="write into RUN_DIR/train/ and rebuild that run's report with a training section")


def _non_negative_int(option: str, text: str) -> int:
    if not str(text).strip().isdigit():
        raise UsageError(f"{option}: {text!r} is not a non-negative integer")
    return int(str(text).strip())


def settings_from(args: argparse.Namespace):
    """Every option checked (UsageError naming it) before anything runs."""
    from affbench.train.networks import NETWORKS
    from affbench.train.runner import DEFAULT_IMPLS, DEFAULT_PLAN, Settings

    nets = choose("--network", args.network, NETWORKS) or list(NETWORKS)
    known = registry.names()
    wanted = split_list(args.impl)
    if wanted is not None and wanted == ["all"]:
        impls = [n for n in known if n != "naive"]
    else:
        impls = choose("--impl", args.impl, known) or list(DEFAULT_IMPLS)
    impls = ["numpy", *[i for i in impls if i != "numpy"]]
    dtype = (choose("--dtype", [args.dtype], DTYPES) or ["float64"])
    if len(dtype) != 1:
        raise UsageError(f"--dtype: one dtype per run, got {', '.join(dtype)}")
    threads = parse_threads(args.threads, max_threads())
    lo, hi = parse_rounds("--rounds", args.rounds)
    plan = replace(DEFAULT_PLAN, min_rounds=lo, max_rounds=hi, budget_s=_positive_float("--budget", args.budget))
    epochs = parse_positive_int("--epochs", args.epochs) if args.epochs is not None else None
    return Settings(networks=tuple(nets), impls=tuple(impls), dtype=dtype[0],
                    threads=0 if threads == "all" else int(threads), batch=parse_positive_int("--batch", args.batch),
                    iterations=parse_positive_int("--iterations", args.iterations), epochs=epochs,
                    digits=not args.no_digits, seed=_non_negative_int("--seed", args.seed), plan=plan)


def _out_dir(args: argparse.Namespace) -> Path | None:
    """Where to write, checked (nothing created yet); None: a new reports/<stamp>-train/."""
    from affbench.train.output import SUBDIR

    if args.out and args.into:
        raise UsageError("--out and --into: give one")
    if args.into:
        run_dir = Path(args.into)
        if not (run_dir / results.RESULTS_FILE).is_file():
            raise UsageError(f"--into: {run_dir} is not a run directory (no {results.RESULTS_FILE}); "
                             "make one with `python -m affbench run`")
        d = run_dir / SUBDIR
    elif args.out:
        d = Path(args.out)
    else:
        return None
    option = "--into" if args.into else "--out"
    if d.exists() and (not d.is_dir() or any(d.iterdir())):
        raise UsageError(f"{option}: {d} exists and is not empty (results are never overwritten)")
    return d


def execute(args: argparse.Namespace) -> int:
    from affbench.train import data, output, report
    from affbench.train.runner import predicted_naive_s, run

    settings = settings_from(args)
    if "naive" in settings.impls:
        need = predicted_naive_s(settings)
        if need > NAIVE_LIMIT_S:
            raise UsageError(f"--impl: naive (pure Python) would take ~{need:.0f} s on these settings (predicted from "
                             f"its ~0.02 GFLOP/s); it is allowed only below {NAIVE_LIMIT_S:.0f} s, e.g. "
                             "--network two-layer --batch 2 --iterations 10 --no-digits")
    out = _out_dir(args)
    if settings.digits:  # after the options, so a mistake in them is named first
        try:
            data.sklearn_datasets()
        except data.MissingExtra as exc:
            raise UsageError(f"{exc} (or pass --no-digits to run the synthetic timing part alone)") from None
    if out is None:
        out = new_run_dir(DEFAULT_ROOT, "train")
    else:
        out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    started = environment.utc_now()
    start_load = load.snapshot()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:5.0f} s] {msg}", file=sys.stderr, flush=True)

    compile_s, nets = run(settings, log)
    end_load = load.snapshot()
    env = environment.collect(["python", "-m", "affbench", *sys.argv[1:]])
    env.update(started_at=started, finished_at=environment.utc_now(), wall_s=time.perf_counter() - t0,
               settings={"networks": list(settings.networks), "impls": list(settings.impls), "dtype": settings.dtype,
                         "threads": settings.thread_count, "batch": settings.batch, "iterations": settings.iterations,
                         "epochs": settings.epochs, "digits": settings.digits, "seed": settings.seed,
                         "synthetic_samples": settings.samples, "plan": vars(settings.plan)},
               compile_s=compile_s, load_start=start_load, load_end=end_load,
               warnings=load.assess(start_load, end_load, environment.usable_cores()))
    rows = output.rows_of(nets, settings)
    output.write(out, rows, output.curve_rows(nets), env)
    md = report.write(out)
    print(report.terminal(rows))
    print("compile (first calls, timed apart): " + ", ".join(f"{k} {v:.2f} s" for k, v in compile_s.items()))
    for w in env["warnings"]:
        print(f"WARNING: {w}")
    print(f"wrote {out / output.TRAIN_FILE}, {out / output.CURVES_FILE}, {md} and figures in {out / report.FIGURES_DIR}")
    if args.into:
        from affbench.report import build_report

        paths = build_report(Path(args.into))
        print(f"rebuilt {paths.markdown} and {paths.html} with a training section")
    bad = report.disagreements(rows)
    for line in bad:
        print(f"DISAGREES: {line}")
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 1 if bad else 0
