"""Measure the numba-tiled targets side by side with NumPy (issue 6).

Compiles numba-tiled first (timed apart, never inside a sample), then for each target
samples the two kernels round-robin in this process (numba-tiled, numpy, numba-tiled, ...),
in rounds with fresh inputs, until the ratio's 95% interval is within 2% or the rounds run
out (affbench.timing.sample_rounds), and judges the median of the paired ratios with its
interval: PASS or MISS when the whole interval lies on one side of the limit, NEAR when it
straddles it. Each kernel runs with its own
thread pool at the target's thread count and the other pool held at 1
(affbench.threads.threads_for). One line per target: the measured ratio (or 1-vs-2-thread
speedup), the target, PASS/MISS, and GFLOP/s with % of the nominal 2-core peak
(2 x 16 FP64 / 32 FP32 FLOPs per cycle x 2.445 GHz; the boost clock is higher, so >100% is
possible). A line whose samples varied by more than the noise threshold says "noisy", and
other processes' CPU use during the measurement (affbench.load) is warned about at the end.
It reports; it is not a gate: the exit status is 0 even on a MISS.

--parts also times forward() and backward() on their own, in the same round-robin, and prints
them under each target: where the step's time goes, and which pass wins by how much.
"""

from __future__ import annotations

import argparse
import math
import sys

from .. import load, registry, warmup
from ..errors import UsageError
from ..reference import flops
from ..targets import BASELINE, SUBJECT, Outcome, Target, evaluate, peak_gflops, rate_text, select
from ..threads import backend_of, max_threads, threads_for
from ..intervals import DEFAULT_TARGET, Interval
from ..timing import NOISE_CV_THRESHOLD, Plan, Stats, Timed, precision, sample_rounds, summarize
from ..verify import make_inputs


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="fewer samples, and skip the 2048^3 cases")
    p.add_argument("--case", action="append", metavar="TEXT",
                   help="only targets whose case contains TEXT, not ending inside a number (e.g. 1024, book, N=1; repeatable)")
    p.add_argument("--samples", type=int, metavar="N",
                   help="samples per kernel per round (default 5, --quick 3); rounds: 5 to 8 (--quick 3 to 4), "
                        "stopping once the ratio's 95%% interval is within 2%%")
    p.add_argument("--parts", action="store_true",
                   help="also time forward() and backward() apart (same round-robin) and print them "
                        "per target")


def peak_note() -> str:
    from ..environment import cpu, peak_cores, peak_gflops as env_peak

    info = cpu()
    return env_peak(info, peak_cores(info))["how"]


def _compile(impl) -> float:
    """Every code path once per dtype (affbench.warmup); compile or cache-load seconds."""
    return sum(warmup.first_calls(impl, dt) for dt in ("float32", "float64"))


PASSES = ("step", "forward", "backward")


def _timed(impl, threads: int, x, W, b, d, pass_: str = "step") -> Timed:
    def step():
        impl.forward(x, W, b)
        impl.backward(x, W, d)

    call = {"step": step, "forward": lambda: impl.forward(x, W, b), "backward": lambda: impl.backward(x, W, d)}
    return Timed(call=call[pass_], context=lambda: threads_for(backend_of(impl), threads))


def measure(target: Target, plan: Plan, parts: bool = False) -> tuple[Outcome, list[str]]:
    """The target's outcome, and (with ``parts``) one line per pass: both kernels' forward()
    and backward() medians, sampled in the same round-robin as the steps."""
    subject = registry.get(SUBJECT)
    if target.kind == "ratio":
        pair = [(subject, target.threads), (registry.get(BASELINE), target.threads)]
    else:
        pair = [(subject, 1), (subject, target.threads)]
    passes = PASSES if parts else PASSES[:1]
    keys = [(p, i) for p in passes for i in range(len(pair))]
    cases: dict[tuple[str, int], Timed] = {}

    def fresh_inputs(_round: int = 0) -> None:  # a new address each round, as run does
        x, W, b, d = make_inputs(target.N, target.K, target.M, target.dtype)
        for p, i in keys:
            impl, n = pair[i]
            new = _timed(impl, n, x, W, b, d, p)
            if (p, i) in cases:
                cases[(p, i)].call = new.call
            else:
                cases[(p, i)] = new

    fresh_inputs()
    for p in passes:
        cases[(p, 0)].baseline = cases[(p, 1)]  # the ratio: numerator over denominator, paired
    sample_rounds(list(cases.values()), plan, between=fresh_inputs)
    for c in cases.values():
        if c.error is not None:
            raise c.error
    stats = {key: summarize(c.samples) for key, c in cases.items()}
    a, b_ = stats[("step", 0)], stats[("step", 1)]
    ratios = {p: precision(cases[(p, 0)]).ratio for p in passes}
    outcome = evaluate(target, a.median, b_.median, max(a.cv, b_.cv), ratios["step"])
    return outcome, [_part_line(target, p, stats[(p, 0)], stats[(p, 1)], ratios[p]) for p in passes[1:]]


def _part_line(target: Target, pass_: str, num: Stats, den: Stats, ratio: Interval | None = None) -> str:
    f = flops(pass_, target.N, target.K, target.M)
    a, b = target.labels

    def one(label: str, st: Stats) -> str:
        return f"{label} {st.median * 1e6:9.1f} us {rate_text(f / st.median / 1e9, target.dtype)}"

    noisy = max(num.cv, den.cv)
    what = "ratio" if target.kind == "ratio" else "speedup"  # 1-thread time / multi-thread time
    value = (f"{ratio.value:.3f} ({ratio.low:.3f}-{ratio.high:.3f})" if ratio is not None
             and math.isfinite(ratio.low) and math.isfinite(ratio.high) else f"{num.median / den.median:.3f}")
    return (f"    {pass_:<9} {one(a, num)}   {one(b, den)}   {what} {value}"
            + (f"  noisy (cv {100 * noisy:.0f}%)" if noisy > NOISE_CV_THRESHOLD else ""))


def execute(args: argparse.Namespace) -> int:
    targets = select(args.quick, args.case)
    if not targets:
        raise UsageError("--case matched no target; see affbench/targets.py for the table")
    need = max(t.threads for t in targets)
    if max_threads() < need:
        print(f"note: Numba's pool has {max_threads()} thread(s); targets ask for {need}", file=sys.stderr)
    if args.samples is not None and args.samples < 3:
        raise UsageError(f"--samples: {args.samples} is too few for a median; accepted: 3 or more")
    samples = args.samples or (3 if args.quick else 5)
    rounds = (3, 4) if args.quick else (5, 8)
    plan = Plan(min_sample_s=0.02, warmup_calls=1, min_samples=samples * rounds[0],
                max_samples=samples * rounds[1], budget_s=math.inf, target=DEFAULT_TARGET,
                min_rounds=rounds[0], max_rounds=rounds[1])

    subject = registry.get(SUBJECT)
    print(f"compiling {SUBJECT} ...", file=sys.stderr, flush=True)
    print(f"compile (first calls, both dtypes, all code paths): {_compile(subject):.2f} s")
    print(f"peak ({peak_note()}): "
          f"{peak_gflops('float64'):.1f} / {peak_gflops('float32'):.1f} GFLOP/s; "
          f"{samples} round-robin samples per kernel per round, {rounds[0]}-{rounds[1]} rounds; "
          "ratios: median of paired samples (95% interval)\n")
    misses = noisy = 0
    start = load.snapshot()
    for t in targets:
        out, part_lines = measure(t, plan, args.parts)
        misses += not out.passed
        noisy += out.noisy
        print(out.line(), flush=True)
        for line in part_lines:
            print(line, flush=True)
    warnings = load.assess(start, load.snapshot(), max_threads(), noisy, len(targets))
    print(f"\n{len(targets) - misses}/{len(targets)} targets met" + (" (a report, not a gate)" if misses else ""))
    if noisy:
        print(f"{noisy} line(s) noisy: their samples varied by more than {NOISE_CV_THRESHOLD:.0%} (cv); "
              "a ratio from them can be off either way, rerun on a quiet machine")
    for w in warnings:
        print(f"WARNING: {w}")
    return 0
