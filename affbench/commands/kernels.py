"""Measure the numba-tiled targets side by side with NumPy (issue 6).

Compiles numba-tiled first (timed apart, never inside a sample), then for each target
samples the two kernels round-robin in this process (numba-tiled, numpy, numba-tiled, ...)
and compares medians of the step time (forward + backward). Each kernel runs with its own
thread pool at the target's thread count and the other pool held at 1
(affbench.threads.threads_for). One line per target: the measured ratio (or 1-vs-2-thread
speedup), the target, PASS/MISS, and GFLOP/s with % of the nominal 2-core peak
(2 x 16 FP64 / 32 FP32 FLOPs per cycle x 2.445 GHz; the boost clock is higher, so >100% is
possible). A line whose samples varied by more than the noise threshold says "noisy", and
other processes' CPU use during the measurement (affbench.load) is warned about at the end.
It reports; it is not a gate: the exit status is 0 even on a MISS.
"""

from __future__ import annotations

import argparse
import sys


from .. import load, registry, warmup
from ..errors import UsageError
from ..targets import BASELINE, SUBJECT, Outcome, Target, evaluate, peak_gflops, select
from ..threads import backend_of, max_threads, threads_for
from ..timing import NOISE_CV_THRESHOLD, Plan, Timed, sample_round_robin, summarize
from ..verify import make_inputs


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="fewer samples, and skip the 2048^3 cases")
    p.add_argument("--case", action="append", metavar="TEXT",
                   help="only targets whose case contains TEXT, not ending inside a number (e.g. 1024, book, N=1; repeatable)")
    p.add_argument("--samples", type=int, metavar="N", help="samples per kernel (default 7, --quick 3)")


def peak_note() -> str:
    from ..environment import cpu, peak_cores, peak_gflops as env_peak

    info = cpu()
    return env_peak(info, peak_cores(info))["how"]


def _compile(impl) -> float:
    """Every code path once per dtype (affbench.warmup); compile or cache-load seconds."""
    return sum(warmup.first_calls(impl, dt) for dt in ("float32", "float64"))


def _timed(impl, threads: int, x, W, b, d) -> Timed:
    def step():
        impl.forward(x, W, b)
        impl.backward(x, W, d)

    return Timed(call=step, context=lambda: threads_for(backend_of(impl), threads))


def measure(target: Target, plan: Plan) -> Outcome:
    subject = registry.get(SUBJECT)
    x, W, b, d = make_inputs(target.N, target.K, target.M, target.dtype)
    if target.kind == "ratio":
        cases = [_timed(subject, target.threads, x, W, b, d),
                 _timed(registry.get(BASELINE), target.threads, x, W, b, d)]
    else:
        cases = [_timed(subject, 1, x, W, b, d), _timed(subject, target.threads, x, W, b, d)]
    sample_round_robin(cases, plan)
    for c in cases:
        if c.error is not None:
            raise c.error
    stats = [summarize(c.samples) for c in cases]
    return evaluate(target, stats[0].median, stats[1].median, max(st.cv for st in stats))


def execute(args: argparse.Namespace) -> int:
    targets = select(args.quick, args.case)
    if not targets:
        raise UsageError("--case matched no target; see affbench/targets.py for the table")
    need = max(t.threads for t in targets)
    if max_threads() < need:
        print(f"note: Numba's pool has {max_threads()} thread(s); targets ask for {need}", file=sys.stderr)
    if args.samples is not None and args.samples < 3:
        raise UsageError(f"--samples: {args.samples} is too few for a median; accepted: 3 or more")
    samples = args.samples or (3 if args.quick else 7)
    plan = Plan(min_sample_s=0.02, warmup_calls=1, min_samples=samples, max_samples=samples,
                budget_s=0.0)

    subject = registry.get(SUBJECT)
    print(f"compiling {SUBJECT} ...", file=sys.stderr, flush=True)
    print(f"compile (first calls, both dtypes, all code paths): {_compile(subject):.2f} s")
    print(f"peak ({peak_note()}): "
          f"{peak_gflops('float64'):.1f} / {peak_gflops('float32'):.1f} GFLOP/s; "
          f"medians of {samples} round-robin samples per kernel\n")
    misses = noisy = 0
    start = load.snapshot()
    for t in targets:
        out = measure(t, plan)
        misses += not out.passed
        noisy += out.noisy
        print(out.line(), flush=True)
    warnings = load.assess(start, load.snapshot(), max_threads(), noisy, len(targets))
    print(f"\n{len(targets) - misses}/{len(targets)} targets met" + (" (a report, not a gate)" if misses else ""))
    if noisy:
        print(f"{noisy} line(s) noisy: their samples varied by more than {NOISE_CV_THRESHOLD:.0%} (cv); "
              "a ratio from them can be off either way, rerun on a quiet machine")
    for w in warnings:
        print(f"WARNING: {w}")
    return 0
