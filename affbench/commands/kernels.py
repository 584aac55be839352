"""Measure the numba-tiled targets side by side with NumPy (issue 6).

Compiles numba-tiled first (timed apart, never inside a sample), then for each target
samples the two kernels round-robin (numba-tiled, numpy, numba-tiled, ...) in rounds with
fresh inputs: round 1 in this process, every later round in one fresh worker process for all
targets still unsettled (as `run` does; --no-workers keeps them here), until the ratio's 95%
interval is within 2% or the rounds run out (affbench.measure.timing.should_stop), and judges the median of the paired ratios with its
interval: PASS or MISS when the whole interval lies on one side of the limit, NEAR when it
straddles it. Each kernel runs with its own
thread pool at the target's thread count and the other pool held at 1
(affbench.measure.threads.threads_for). One line per target: the measured ratio (or 1-vs-2-thread
speedup), the target, PASS/MISS, and GFLOP/s with % of the nominal 2-core peak
(cores x FMA FLOPs per cycle for the CPU's vector width x the nominal clock in /proc/cpuinfo:
166 FP64 / 332 FP32 GFLOP/s on the 2-core 2.596 GHz AVX-512 VM; the boost clock is higher, so
>100% is possible). A line whose samples varied by more than the noise threshold says "noisy", and
other processes' CPU use during the measurement (affbench.measure.load) is warned about at the end.
It reports; it is not a gate: the exit status is 0 even on a MISS.

--parts also times forward() and backward() on their own, in the same round-robin, and prints
them under each target: where the step's time goes, and which pass wins by how much.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from affbench import registry
from affbench.commands.options import choose
from affbench.engine import warmup, worker
from affbench.engine.calls import pass_call
from affbench.engine.targets import (
    BASELINE,
    GRID_LIMIT,
    SUBJECT,
    Outcome,
    Target,
    evaluate,
    grid,
    mentions,
    peak_gflops,
    rate_text,
    select,
)
from affbench.errors import UsageError
from affbench.measure import load
from affbench.measure.intervals import DEFAULT_TARGET, Interval
from affbench.measure.threads import backend_of, max_threads, threads_for
from affbench.measure.timing import (
    NOISE_CV_THRESHOLD,
    Plan,
    Stats,
    Timed,
    active,
    precision,
    round_plan,
    sample_round_robin,
    settle,
    summarize,
)
from affbench.reference import flops
from affbench.verify import make_inputs


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="fewer samples, and skip the 2048^3 cases")
    p.add_argument("--case", action="append", metavar="TEXT",
                   help="only targets whose case contains TEXT, not ending inside a number (e.g. 1024, book, N=1; repeatable)")
    p.add_argument("--samples", type=int, metavar="N",
                   help="samples per kernel per round (default 5, --quick 3); rounds: 5 to 8 (--quick 3 to 4), "
                        "stopping once the ratio's 95%% interval is within 2%%")
    p.add_argument("--grid", action="store_true",
                   help=f"instead of the targets, walk the default preset's grid (every layer, batch and dtype, "
                        f"at 1 and all threads) side by side and print the worst cells first: numba-tiled's "
                        f"time over NumPy's, judged against {GRID_LIMIT:g} (5 ms samples; --case TEXT keeps cells "
                        f"whose label contains every TEXT, e.g. --case 'N=16' --case t=2)")
    p.add_argument("--pass", dest="pass_", action="append", metavar="LIST",
                   help="with --grid: the passes to walk, comma-separated from forward, backward, step "
                        "(default: the default preset's, the step)")
    p.add_argument("--no-workers", action="store_true",
                   help="take every round in this process (rounds 2 and later run in fresh worker processes "
                        "by default, as in `run`: a process's lasting state then lands inside the interval)")
    p.add_argument("--sample-ms", type=float, metavar="MS",
                   help="each sample lasts at least MS milliseconds of back-to-back calls (default 20, "
                        "--grid 5; `run` takes 1): to see whether the sample length moves a ratio")
    p.add_argument("--parts", action="store_true",
                   help="also time forward() and backward() apart (same round-robin) and print them "
                        "per target")


def peak_note() -> str:
    from affbench.measure.environment import cpu, peak_cores
    from affbench.measure.environment import peak_gflops as env_peak

    info = cpu()
    return env_peak(info, peak_cores(info))["how"]


def _compile(impl) -> float:
    """Every code path once per dtype (affbench.engine.warmup); compile or cache-load seconds."""
    return sum(warmup.first_calls(impl, dt) for dt in ("float32", "float64"))


PASSES = ("step", "forward", "backward")


def _context(impl: Any, threads: int):
    """The kernel's own pool at ``threads``, the other pool held at 1."""
    return lambda: threads_for(backend_of(impl), threads)


@dataclass
class Measurement:
    """One target's cases: per pass, the numerator (index 0) and the denominator (index 1)."""

    target: Target
    pair: list[tuple[Any, int]]
    passes: tuple[str, ...]
    cases: dict[tuple[str, int], Timed] = field(default_factory=dict)

    @property
    def timed(self) -> list[Timed]:
        return list(self.cases.values())

    def fresh_inputs(self) -> None:
        """New inputs at a new address for an in-process round, as run does."""
        t = self.target
        x, W, b, d = make_inputs(t.N, t.K, t.M, t.dtype)
        for (p, i), c in self.cases.items():
            c.call = pass_call(self.pair[i][0], p, x, W, b, d)

    def release_inputs(self) -> None:
        for c in self.cases.values():
            c.call = _released


def _released() -> None:
    raise RuntimeError("internal: a target's inputs were released after its in-process round")


def prepare(target: Target, parts: bool = False) -> Measurement:
    subject = registry.get(SUBJECT)
    if target.kind == "ratio":
        pair = [(subject, target.threads), (registry.get(BASELINE), target.threads)]
    else:
        pair = [(subject, 1), (subject, target.threads)]
    m = Measurement(target, pair, PASSES if parts else (target.pass_,))
    for p in m.passes:
        for i, (impl, n) in enumerate(pair):
            m.cases[(p, i)] = Timed(call=_released, context=_context(impl, n))
        m.cases[(p, 0)].baseline = m.cases[(p, 1)]  # the ratio: numerator over denominator, paired
    return m


def _in_process_round(m: Measurement, per_round: Plan) -> None:
    m.fresh_inputs()
    sample_round_robin(active(m.timed), per_round)
    m.release_inputs()


def _job(todo: list[Measurement], per_round: Plan) -> tuple[dict[str, Any], list[list[Timed]]]:
    """A worker job (affbench/engine/worker.py) for one round of ``todo``: one group per target and
    pass; and, per group, the Timed each result entry belongs to."""
    groups, owners = [], []
    for m in todo:
        live = {id(c) for c in active(m.timed)}
        t = m.target
        for p in m.passes:
            cases, timed = [], []
            for i, (impl, n) in enumerate(m.pair):
                c = m.cases[(p, i)]
                if id(c) in live:
                    cases.append({"index": len(timed), "impl": impl.name, "threads": n, "repeats": c.repeats,
                                  "prime": c.prime, "timeout_s": None})
                    timed.append(c)
            if cases:
                groups.append({"pass": p, "dtype": t.dtype, "batch": t.N, "in_features": t.K,
                               "out_features": t.M, "cases": cases})
                owners.append(timed)
    return {"plan": asdict(per_round), "isolate_threads": True, "groups": groups}, owners


def take_rounds(measurements: list[Measurement], plan: Plan, workers: bool = True) -> int:
    """Every target's rounds until each settles (affbench.measure.timing.should_stop). Round 1 runs
    here (it calibrates the repeat counts); later rounds, one fresh worker process per round
    for all unsettled targets, so that a process's lasting state lands inside the interval
    (docs/measurement.md). Returns the number of worker failures (each round retaken here)."""
    per_round = round_plan(plan)
    failures = 0
    number = 1
    print(f"round 1 of {plan.min_rounds}-{plan.max_rounds}: {len(measurements)} target(s) in this process",
          file=sys.stderr, flush=True)
    for m in measurements:
        _in_process_round(m, per_round)
        settle(m.timed, plan)
    while todo := [m for m in measurements if active(m.timed)]:
        number += 1
        where = "a worker process" if workers else "this process"
        print(f"round {number}: {len(todo)} target(s) in {where}", file=sys.stderr, flush=True)
        done = False
        if workers:
            job, owners = _job(todo, per_round)
            try:
                with tempfile.TemporaryDirectory(prefix="affbench-kernels-") as scratch:
                    result = worker.run_job(job, Path(scratch) / "worker")
                for timed, group in zip(owners, result["groups"]):
                    for entry in group["cases"]:
                        worker.append_round(timed[entry["index"]], entry)
                done = True
            except worker.WorkerFailed as exc:
                failures += 1
                print(f"warning: {exc}; this round runs in this process", file=sys.stderr, flush=True)
        if not done:
            for m in todo:
                _in_process_round(m, per_round)
        for m in todo:
            settle(m.timed, plan)
    return failures


def outcome(m: Measurement) -> tuple[Outcome, list[str]]:
    """The target's outcome, and (with parts) one line per pass: both kernels' forward() and
    backward() medians, sampled in the same round-robin as the steps."""
    for c in m.timed:
        if c.error is not None:
            raise c.error
    stats = {key: summarize(c.samples) for key, c in m.cases.items()}
    main = m.target.pass_
    a, b_ = stats[(main, 0)], stats[(main, 1)]
    ratios = {p: precision(m.cases[(p, 0)]).ratio for p in m.passes}
    out = evaluate(m.target, a.median, b_.median, max(a.cv, b_.cv), ratios[main])
    return out, [_part_line(m.target, p, stats[(p, 0)], stats[(p, 1)], ratios[p]) for p in m.passes if p != main]


def measure(target: Target, plan: Plan, parts: bool = False, workers: bool = True) -> tuple[Outcome, list[str]]:
    """One target on its own (see take_rounds and outcome)."""
    m = prepare(target, parts)
    take_rounds([m], plan, workers)
    return outcome(m)


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


def _grid_targets(args: argparse.Namespace) -> list[Target]:
    from affbench.engine.sweep import preset

    passes = tuple(choose("--pass", args.pass_, PASSES) or preset("default").passes)
    chosen = grid(passes, tuple(sorted({1, max_threads()})))
    if args.case:
        chosen = [t for t in chosen if all(mentions(t.case, text) for text in args.case)]
    return chosen


def execute(args: argparse.Namespace) -> int:
    if args.grid and args.parts:
        raise UsageError("--parts and --grid: the grid has the pass as an axis already (use --pass)")
    if args.pass_ and not args.grid:
        raise UsageError("--pass applies to --grid only; the targets are steps (--parts adds the passes)")
    targets = _grid_targets(args) if args.grid else select(args.quick, args.case)
    if not targets:
        raise UsageError("--case matched no " + ("cell of the grid" if args.grid else
                                                 "target; see affbench/engine/targets.py for the table"))
    need = max(t.threads for t in targets)
    if max_threads() < need:
        print(f"note: Numba's pool has {max_threads()} thread(s); targets ask for {need}", file=sys.stderr)
    if args.samples is not None and args.samples < 3:
        raise UsageError(f"--samples: {args.samples} is too few for a median; accepted: 3 or more")
    samples = args.samples or (3 if args.quick else 5)
    rounds = (3, 4) if args.quick else (5, 8)
    if args.sample_ms is not None and not 0.01 <= args.sample_ms <= 1000:
        raise UsageError(f"--sample-ms: {args.sample_ms:g} is outside 0.01-1000 ms")
    sample_s = args.sample_ms / 1e3 if args.sample_ms is not None else (0.005 if args.grid else 0.02)
    plan = Plan(min_sample_s=sample_s, warmup_calls=1, min_samples=samples * rounds[0],
                max_samples=samples * rounds[1], budget_s=math.inf, target=DEFAULT_TARGET,
                min_rounds=rounds[0], max_rounds=rounds[1])

    subject = registry.get(SUBJECT)
    print(f"compiling {SUBJECT} ...", file=sys.stderr, flush=True)
    print(f"compile (first calls, both dtypes, all code paths): {_compile(subject):.2f} s")
    print(f"peak ({peak_note()}): "
          f"{peak_gflops('float64'):.1f} / {peak_gflops('float32'):.1f} GFLOP/s; "
          f"{samples} round-robin samples of {sample_s * 1e3:g} ms or more per kernel per round, "
          f"{rounds[0]}-{rounds[1]} rounds; "
          "ratios: median of paired samples (95% interval)\n")
    misses = noisy = 0
    start = load.snapshot()
    measurements = [prepare(t, args.parts) for t in targets]
    failures = take_rounds(measurements, plan, workers=not args.no_workers)
    print(file=sys.stderr)
    results = [outcome(m) for m in measurements]
    if args.grid:  # worst cells first: highest ratio of numba-tiled's time to NumPy's
        results.sort(key=lambda r: -r[0].value if math.isfinite(r[0].value) else -math.inf)
    width = max(19, *(len(t.case) for t in targets))
    for out, part_lines in results:
        misses += not out.passed
        noisy += out.noisy
        print(out.line(width), flush=True)
        for line in part_lines:
            print(line, flush=True)
    warnings = load.assess(start, load.snapshot(), max_threads(), noisy, len(targets))
    if args.grid:
        verdicts = [out.verdict for out, _ in results]
        print(f"\n{len(targets)} cells, numba-tiled/numpy at most {GRID_LIMIT:g}: {verdicts.count('PASS')} PASS "
              f"(interval at or below), {verdicts.count('NEAR')} NEAR (interval straddles), "
              f"{verdicts.count('MISS')} MISS (interval wholly above)")
    else:
        print(f"\n{len(targets) - misses}/{len(targets)} targets met" + (" (a report, not a gate)" if misses else ""))
    if noisy:
        print(f"{noisy} line(s) noisy: their samples varied by more than {NOISE_CV_THRESHOLD:.0%} (cv); "
              "a ratio from them can be off either way, rerun on a quiet machine")
    if failures:
        warnings.append(f"{failures} worker process(es) failed; their rounds were taken in this process")
    for w in warnings:
        print(f"WARNING: {w}")
    return 0
