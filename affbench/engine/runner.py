"""The benchmark engine behind `python -m affbench run`: verify, compile, time, write.

Order of work for one run:
1. compile every JIT implementation for each dtype, timing the first calls apart (compile_s);
2. verify the chosen implementations; one that fails is recorded as skipped, never timed;
3. time the cases, smallest work first; cases doing identical work (same pass, dtype and
   size) are sampled round-robin side by side; a row is appended and fsynced per case;
4. record the machine's load at the start and end.
The report is the command's next step (affbench/commands/run.py), not the engine's: it reads
only the files written here.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from affbench import registry
from affbench.engine import warmup, worker
from affbench.engine.calls import CaseClock, CaseTimeout, pass_call
from affbench.engine.rundir import DEFAULT_ROOT, RUN_FILE, RunOptions, locked, point_latest, prepare
from affbench.engine.sweep import Case, Sweep, expand
from affbench.measure import environment, load, threads
from affbench.measure.intervals import Interval
from affbench.measure.timing import (
    NOISE_CV_THRESHOLD,
    Plan,
    Timed,
    active,
    clock_resolution,
    is_noisy,
    precision,
    round_plan,
    sample_round_robin,
    settle,
    stop_reason,
    summarize,
)
from affbench.protocol import available_memory, format_bytes
from affbench.store import results
from affbench.verify import make_inputs, verify

#: Without a terminal, a progress line this often.
PROGRESS_EVERY_S = 15.0
#: The baseline is never extrapolated: every speedup and crossover is relative to it.
BASELINE = registry.BASELINE
#: Bytes per element of a nested Python list of floats (8-byte pointer + 24-byte float).
PY_FLOAT_BYTES = 32
#: A prediction reaches at most this factor in FLOPs beyond the case it rests on: a rate
#: measured on a tiny, overhead-bound case says little about one 10^4 times larger.
MAX_EXTRAPOLATION = 1000.0
#: What starting a worker process costs (imports, cached kernels): reserved before an extra round.
WORKER_START_S = 1.5
#: Extra rounds (beyond the plan's max_rounds) a run takes at most, however much time is left.
MAX_EXTRA_ROUNDS = 12
#: tracemalloc slows the allocation of Python objects 10-50x: calls slower than this are
#: not traced (their peak_mem_bytes stays empty).
MAX_TRACED_CALL_S = 0.02


class Interrupted(BaseException):
    """SIGTERM or SIGINT. A BaseException, like KeyboardInterrupt: the ``except Exception``
    that records a failing case (timing, verify, peak memory) must not record the signal as
    that case's error and carry on with the sweep."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """SIGTERM (and SIGINT) raise Interrupted, so finished rows are closed cleanly."""
    def handler(signum, frame):  # noqa: ARG001
        raise Interrupted(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# --------------------------------------------------------------------------- per-case pieces
def case_bytes(case: Case, slow: bool) -> int:
    """Memory one case needs: inputs (x, W, b, dout) and outputs (y, dx, dW, db)."""
    N, K, M = case.batch, case.in_features, case.out_features
    elements = 2 * (N * K + K * M + M + N * M)
    return elements * (PY_FLOAT_BYTES if slow else np.dtype(case.dtype).itemsize)


def peak_memory(call: Callable[[], object]) -> int:
    """Peak bytes allocated during one call above what was allocated before it.

    tracemalloc sees NumPy's allocations and, in Numba 0.68, Numba's too: its runtime (NRT)
    allocates through PyMem_RawMalloc, serial and prange code alike (tests/test_runner.py
    checks this). BLAS's per-thread buffers are allocated once at start-up and not counted.
    """
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        call()
        return max(0, tracemalloc.get_traced_memory()[1] - before)
    finally:
        if started:
            tracemalloc.stop()


def _released() -> None:
    raise RuntimeError("internal: a group's call was used between its rounds")


def _finite(v: float) -> float | None:
    return v if v is not None and math.isfinite(v) else None


@dataclass
class GroupState:
    """The cases of one group of identical work, between their rounds."""

    first: Case
    cases: list[tuple[Case, Timed, CaseClock]]
    rounds: int = 0

    @property
    def settled(self) -> bool:
        return all(t.settled or t.error is not None for _, t, _ in self.cases)

    def imprecise(self, target: float) -> list[Timed]:
        """The cases whose median or ratio is not yet within ``target``."""
        return [t for _, t, _ in self.cases if t.error is None and t.rounds and precision(t).worst > target]

    def widest(self) -> float:
        """The largest relative half-width among its cases: how much another round is worth."""
        widths = [precision(t).worst for _, t, _ in self.cases if t.error is None and t.rounds]
        return max(widths, default=0.0)

    def round_cost(self, plan: Plan) -> float:
        """Seconds its last round took, estimated from the samples: what another round costs."""
        total = 0.0
        for _, t, _ in self.cases:
            if t.error is None and t.rounds:
                last = t.rounds[-1]
                per_call = float(np.median(last))
                total += per_call * (len(last) * (max(t.repeats, 1) + t.prime) + plan.warmup_calls)
        return total


def choose_extra(held: Sequence["GroupState"], seconds: float, plan: Plan) -> list["GroupState"]:
    """The groups that take the next extra round: widest interval first, each while its
    estimated round still fits in ``seconds`` (a cheap group further down may fill the rest)."""
    chosen, cost = [], 0.0
    for state in sorted(held, key=lambda s: -s.widest()):
        c = state.round_cost(plan)
        if cost + c <= seconds:
            chosen.append(state)
            cost += c
    return chosen


# --------------------------------------------------------------------------- the engine
class Engine:
    def __init__(self, options: RunOptions, run_dir: Path, cases: list[Case], impls: dict[str, Any]) -> None:
        self.o = options
        self.run_dir = run_dir
        self.cases = cases
        self.impls = impls
        self.compile_s: dict[tuple[str, str], float] = {}
        # every measured (GFLOP/s, FLOPs, size) per (impl, pass, dtype, threads): predict()'s basis
        self.rates: dict[tuple[str, str, str, int], list[tuple[float, int, str]]] = {}
        self.counts = {s: 0 for s in results.STATUSES}
        # (impl, pass, dtype, threads) -> (FLOPs, size) of the smallest case that timed out
        self.timed_out: dict[tuple[str, str, str, int], tuple[int, str]] = {}
        self.noisy = 0
        self.worker_failures = 0
        self.log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)

    # -- phases ---------------------------------------------------------------------------
    def compile_all(self, dtypes: Sequence[str]) -> None:
        """Time the first calls of every JIT implementation (and of the peers, whose first call
        initialises the framework) apart from any sample."""
        for name, impl in self.impls.items():
            if not (getattr(impl, "jit", False) or getattr(impl, "slow_first_call", False)):
                continue
            for dt in dtypes:
                total = warmup.first_calls(impl, dt, threads.max_threads(), self.o.isolate_threads)
                self.compile_s[(name, dt)] = total
                self.log(f"compiled {name} {dt} in {total:.2f} s")

    def prepare_group(self, group: list[Case], write: Callable[[dict[str, Any]], None]) -> "GroupState | None":
        """Rows for the cases of a group that will not be timed (memory, an earlier timeout, a
        prediction); the others, ready for their rounds, paired with the group's baseline."""
        runnable: list[tuple[Case, Timed, CaseClock]] = []
        avail = available_memory()
        for case in group:
            impl = self.impls[case.impl]
            need = case_bytes(case, bool(getattr(impl, "slow", False)))
            if avail is not None and need > 0.8 * avail:
                write(self.row(case, "skipped", error=f"not enough memory: needs about {format_bytes(need)}, "
                                                      f"{format_bytes(avail)} available"))
                continue
            slower = self.timed_out.get((case.impl, case.pass_, case.dtype, case.threads))
            if slower is not None and case.flops >= slower[0]:
                write(self.row(case, "skipped", error=f"not run: the smaller case {slower[1]} of this "
                                                      "implementation already ran past --case-timeout"))
                continue
            predicted = self.predict(case)
            if predicted is not None:
                write(predicted)
                continue
            clock = CaseClock(threads.backend_of(impl), case.threads, self.o.isolate_threads, self.o.sweep.case_timeout_s)
            runnable.append((case, Timed(call=lambda: None, context=clock.context), clock))
        if not runnable:
            return None
        baselines = {case.threads: timed for case, timed, _ in runnable if case.impl == BASELINE}
        for case, timed, _ in runnable:
            if case.impl != BASELINE:
                timed.baseline = baselines.get(case.threads)
        return GroupState(group[0], runnable)

    def visit(self, state: "GroupState") -> None:
        """One round of a group: fresh inputs (a new address each round, so one unlucky
        alignment does not decide the median), then round-robin over its unsettled cases."""
        first = state.first
        x, W, b, dout = make_inputs(first.batch, first.in_features, first.out_features, first.dtype, seed=3)
        for case, timed, _ in state.cases:
            timed.call = pass_call(self.impls[case.impl], case.pass_, x, W, b, dout)
        todo = active([t for _, t, _ in state.cases])
        sample_round_robin(todo, round_plan(self.o.sweep.plan))
        for case, timed, _ in state.cases:  # later groups' predictions rest on the first round
            if isinstance(timed.error, CaseTimeout):
                self.learn(case, "timeout")
            elif state.rounds == 0 and timed.error is None and timed.samples:
                    median = float(np.median(timed.samples))
                    self.learn(case, "ok", case.flops / median / 1e9 if median > 0 else math.nan,
                               "in its first round")  # the case's own row pools every round: it may differ
        for _, timed, _ in state.cases:  # between rounds a group holds no arrays (a run has ~100 groups)
            timed.call = _released
        state.rounds += 1
        settle([t for _, t, _ in state.cases], self.o.sweep.plan)

    def visit_in_worker(self, states: list["GroupState"], on_group: Callable[[int], None]) -> None:
        """One round of every state in a fresh worker process (affbench/engine/worker.py). If the
        worker dies, the round is taken here instead, with a warning."""
        try:
            worker.run_round(states, round_plan(self.o.sweep.plan), self.o.isolate_threads,
                             self.o.sweep.case_timeout_s, self.run_dir / ".worker", on_group)
        except worker.WorkerFailed as exc:
            self.log(f"WARNING: {exc}; this round runs in the main process")
            self.worker_failures += 1
            for state in states:
                self.visit(state)
            return
        for state in states:
            state.rounds += 1
            for case, timed, _ in state.cases:
                if isinstance(timed.error, CaseTimeout):
                    self.learn(case, "timeout")
            settle([t for _, t, _ in state.cases], self.o.sweep.plan)

    def extra_rounds(self, held: list["GroupState"], deadline: float, write: Callable[[dict[str, Any]], None],
                     on_group: Callable[["GroupState"], None] = lambda s: None,
                     clock: Callable[[], float] = time.monotonic) -> int:
        """Rounds beyond ``max_rounds`` for the groups still short of the target, widest interval
        first, while the run's time allowance lasts; then their rows. Returns the rounds taken.

        The time a run may take is fixed by its preset, not by its cases: a machine that is
        quiet today settles most groups early, and what they leave is spent where the
        intervals are widest (mostly 2-thread calls and calls of 10 ms or more, whose samples
        jump by 20-50%: docs/measurement.md) instead of finishing early."""
        plan = self.o.sweep.plan
        taken = 0
        try:
            while held and taken < MAX_EXTRA_ROUNDS:
                chosen = choose_extra(held, deadline - clock() - WORKER_START_S, plan)
                if not chosen:
                    break
                for state in chosen:
                    for t in state.imprecise(plan.target):
                        t.settled = False
                if self.o.workers:
                    self.visit_in_worker(chosen, lambda i: on_group(chosen[i]))
                else:
                    for state in chosen:
                        self.visit(state)
                        on_group(state)
                taken += 1
                for state in chosen:
                    if not state.imprecise(plan.target):
                        held.remove(state)
                        self.finish_group(state, write)
        finally:  # interrupted or done: the rows of the groups still held are measurements too
            while held:
                self.finish_group(held.pop(0), write)
        return taken

    def time_group(self, group: list[Case], write: Callable[[dict[str, Any]], None]) -> None:
        """Every round of one group, back to back (the run spreads them out instead)."""
        state = self.prepare_group(group, write)
        while state is not None and not state.settled:
            self.visit(state)
        if state is not None:
            self.finish_group(state, write)

    def finish_group(self, state: "GroupState", write: Callable[[dict[str, Any]], None]) -> None:
        first = state.first  # inputs again, for the peak-memory call of finish()
        x, W, b, dout = make_inputs(first.batch, first.in_features, first.out_features, first.dtype, seed=3)
        for case, timed, clock in state.cases:
            timed.call = pass_call(self.impls[case.impl], case.pass_, x, W, b, dout)
            write(self.finish(case, timed, clock))

    def finish(self, case: Case, timed: Timed, clock: CaseClock) -> dict[str, Any]:
        if timed.error is not None:
            if isinstance(timed.error, CaseTimeout):
                self.learn(case, "timeout")
                return self.row(case, "timeout", error=f"ran past --case-timeout {self.o.sweep.case_timeout_s:g} s")
            return self.row(case, "failed", error=f"{type(timed.error).__name__}: {timed.error}")
        stats = summarize(timed.samples)
        noisy = is_noisy(stats)
        self.noisy += noisy
        mem = None
        # the peers allocate outside Python's allocator: tracemalloc would report their
        # NumPy-side copies only, a number that looks like a measurement and is not one
        if stats.median <= MAX_TRACED_CALL_S and getattr(self.impls[case.impl], "memory_visible", True):
            try:
                with clock.context():
                    mem = peak_memory(timed.call)
            except Exception:  # noqa: BLE001 - memory is secondary; the timing stands
                mem = None
        gflops = case.flops / stats.median / 1e9 if stats.median > 0 else math.nan
        state = clock.state
        p = precision(timed)
        ratio = p.ratio or Interval.unknown()
        return self.row(
            case, "ok", repeats=timed.repeats, n_samples=stats.n, median_s=stats.median, q1_s=stats.q1,
            q3_s=stats.q3, iqr_s=stats.iqr, min_s=stats.min, mean_s=stats.mean, std_s=stats.std, cv=stats.cv,
            noisy=noisy, gflops=gflops, peak_mem_bytes=mem, samples_s=timed.samples,
            rounds=len(timed.rounds), ci_low_s=_finite(p.median.low), ci_high_s=_finite(p.median.high),
            ci_rel=_finite(p.median.half_width),
            ratio=p.ratio.value if p.ratio else None, ratio_low=_finite(ratio.low), ratio_high=_finite(ratio.high),
            ratio_rel=_finite(ratio.half_width) if p.ratio else None,
            stopped=stop_reason(timed, self.o.sweep.plan),
            numba_threads=state.numba_threads if state else None,
            blas_threads=state.blas_threads if state else None,
            peer_threads=state.peer_threads if state else None,
        )

    def learn(self, case: Case, status: str, gflops: float = math.nan, when: str = "") -> None:
        """What later predictions rest on: measured rates, and the smallest case that timed out.
        when: which samples the rate is from, for the prediction's note (e.g. "in its first round")."""
        key = (case.impl, case.pass_, case.dtype, case.threads)
        where = f"N={case.batch} K={case.in_features} M={case.out_features}" + (f" {when}" if when else "")
        if status == "ok" and gflops > 0:
            self.rates.setdefault(key, []).append((gflops, case.flops, where))
        elif status == "timeout" and (key not in self.timed_out or case.flops < self.timed_out[key][0]):
            self.timed_out[key] = (case.flops, where)

    def learn_from_rows(self, rows: list[dict[str, Any]]) -> None:
        """A resumed run predicts from the cases its earlier sessions measured, as one
        uninterrupted run would have."""
        for r in rows:
            case = Case(r["impl"], r["pass"], r["dtype"], r["batch"], r["in_features"], r["out_features"], r["threads"])
            self.learn(case, r["status"], r["gflops"])

    def predict(self, case: Case) -> dict[str, Any] | None:
        """An extrapolated row when the case would take longer than max_case_s, else None.
        The baseline is always measured: every speedup and crossover is relative to it.

        The basis is the best rate measured at up to MAX_EXTRAPOLATION times fewer FLOPs: the
        best, because small sizes are overhead-bound and a prediction must not be pessimistic
        enough to skip a case that would have run in time; within that range, because a rate
        from a tiny case says little about one 10^4 times larger."""
        # Pure-Python code has no launch overhead to amortise: its rate is flat across sizes
        # (naive: 0.015-0.033 GFLOP/s from N=1 784->50 to N=128 2048^2), so any basis will do.
        flat = bool(getattr(self.impls.get(case.impl), "slow", False))
        if case.impl == BASELINE:
            return None
        known = [m for m in self.rates.get((case.impl, case.pass_, case.dtype, case.threads), ())
                 if m[0] > 0 and (flat or case.flops <= MAX_EXTRAPOLATION * m[1])]
        if not known:
            return None
        rate, _, where = max(known)
        per_call = case.flops / (rate * 1e9)
        plan = self.o.sweep.plan
        calls = plan.warmup_calls * plan.min_rounds + plan.min_samples + 1  # + calibration
        if per_call * calls <= self.o.sweep.max_case_s:
            return None
        return self.row(case, "extrapolated", median_s=per_call, gflops=rate, error=(
            f"not run: predicted {per_call:.3g} s per call x {calls} calls > max_case_s {self.o.sweep.max_case_s:g} s; "
            f"from {rate:.3g} GFLOP/s measured at {where}"))

    def row(self, case: Case, status: str, **values: Any) -> dict[str, Any]:
        self.counts[status] += 1
        return {
            "case_id": case.case_id, "impl": case.impl, "pass": case.pass_, "dtype": case.dtype,
            "batch": case.batch, "in_features": case.in_features, "out_features": case.out_features,
            "threads": case.threads, "status": status, "flops": case.flops,
            "compile_s": self.compile_s.get((case.impl, case.dtype)),
            "finished_at": environment.utc_now(), **values,
        }


# --------------------------------------------------------------------------- JAX's thread counts
#: Scratch directory (inside the run directory) of the child run for JAX cases at T threads.
JAX_CHILD_DIR = ".jax-threads-{threads}"


def plan_jax_threads(impls: dict[str, Any], cases: list[Case], todo: list[Case]) -> tuple[int | None, list[Case]]:
    """JAX's thread count for this process and the cases that need another one.

    XLA sizes its CPU pool once per process (affbench/measure/threads.py). Unless JAX already runs or
    AFFBENCH_JAX_THREADS says otherwise, this process (and its worker processes, which inherit
    the variable) takes the sweep's largest count; JAX cases at other counts are returned, to
    be measured in a child process started with theirs (run_jax_children)."""
    names = {n for n, impl in impls.items() if threads.backend_of(impl) == "jax"}
    if not names:
        return None, []
    if threads.jax_threads() is None and not os.environ.get(threads.JAX_THREADS_ENV, "").strip():
        os.environ[threads.JAX_THREADS_ENV] = str(max(c.threads for c in cases if c.impl in names))
    main = threads.planned_jax_threads()
    return main, [c for c in todo if c.impl in names and c.threads != main]


def run_jax_children(options: RunOptions, run_dir: Path, deferred: list[Case], write: Callable[[dict[str, Any]], None],
                     engine: "Engine") -> dict[str, str]:
    """Measure the deferred JAX cases, one child run per thread count: the same sweep restricted
    to the JAX implementations and the baseline at that count, in a fresh process whose JAX
    starts with it. The child's baseline is measured there, side by side, so each ratio pairs
    samples taken together; only the JAX rows are kept. Returns {threads: where they ran}."""
    where: dict[str, str] = {}
    for t in sorted({c.threads for c in deferred}):
        wanted = {c.case_id: c for c in deferred if c.threads == t}
        names = tuple(dict.fromkeys(c.impl for c in wanted.values()))
        child = run_dir / JAX_CHILD_DIR.format(threads=t)
        shutil.rmtree(child, ignore_errors=True)
        child.mkdir()
        impls = names + ((BASELINE,) if BASELINE in engine.impls else ())
        sweep = replace(options.sweep, impls=impls, threads=(t,))
        (child / RUN_FILE).write_text(json.dumps({"sweep": sweep.to_dict(), "preset": options.preset,
                                                  "isolate_threads": options.isolate_threads}))
        cmd = [sys.executable, "-m", "affbench", "run", "--resume", str(child), "--no-report", "--no-progress"]
        if not options.workers:
            cmd.append("--no-workers")
        engine.log(f"{', '.join(names)} at {t} thread(s): a child run with {threads.JAX_THREADS_ENV}={t} "
                   f"({len(wanted)} cases; XLA's pool size is fixed per process)")
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, **{threads.JAX_THREADS_ENV: str(t)}))
        tail: list[str] = []
        try:
            assert proc.stderr is not None
            for line in proc.stderr:
                tail = (tail + [line.rstrip()])[-20:]
                if line.startswith(("progress:", "WARNING", "verification FAILED", "done:")):
                    engine.log(f"  [{t} thread(s)] {line.rstrip()}")
            proc.wait()
        except BaseException:  # Ctrl-C, SIGTERM: the child goes with the parent
            proc.kill()
            proc.wait()
            raise
        rows = results.read_rows(child).rows if (child / results.RESULTS_FILE).exists() else []
        got = {r["case_id"]: r for r in rows if r["case_id"] in wanted}
        for cid, case in wanted.items():
            row = got.get(cid)
            if row is None:
                write(engine.row(case, "failed", error=f"the child run for {t} thread(s) exited with status "
                                                       f"{proc.returncode} without this case: " + " | ".join(tail[-3:])))
                continue
            engine.counts[row["status"]] += 1
            if row["status"] == "ok":
                engine.noisy += bool(row["noisy"])
            write({k: v for k, v in row.items() if k in results.COLUMNS and k != "schema_version"})
        where[str(t)] = (f"a child process (affbench run with {threads.JAX_THREADS_ENV}={t}); ratios against the "
                         f"baseline measured there, side by side")
        shutil.rmtree(child, ignore_errors=True)
    return where


# --------------------------------------------------------------------------- entry point
def _groups(cases: list[Case]) -> list[list[Case]]:
    groups: dict[tuple, list[Case]] = {}
    for c in cases:
        groups.setdefault(c.size_key, []).append(c)
    return list(groups.values())


def _label(case: Case) -> str:
    return f"{case.pass_} {case.dtype} N={case.batch} {case.in_features}->{case.out_features}"


def _select_impls(sweep: Sweep) -> tuple[dict[str, Any], list[registry.Unavailable]]:
    """The implementations to run, and the declared ones skipped because they are not installed
    (asked for by name, or, for a sweep of every implementation, all of them)."""
    names, missing = registry.split_available(list(sweep.impls) if sweep.impls else registry.unavailable())
    if not sweep.impls:
        names = registry.names()
    return {n: registry.get(n) for n in names}, missing


def run(options: RunOptions) -> tuple[Path, int]:
    """Run (or resume) a sweep. Returns the run directory and the exit status."""
    run_dir, options = prepare(options)
    if options.resume is None and run_dir.parent.resolve() == DEFAULT_ROOT.resolve():
        point_latest(run_dir)
    with locked(run_dir), signals_as_exceptions():
        try:
            return run_dir, _run_locked(options, run_dir)
        except Interrupted as exc:
            # a signal outside the timing loop (setting up, the end-of-run load check, the
            # or a second Ctrl-C while the first is handled): the rows are on disk
            print(f"\ninterrupted by {exc}; finished cases are kept in {run_dir}; "
                  f"finish with: python -m affbench run --resume {run_dir}", file=sys.stderr)
            return run_dir, 130 if exc.signum == signal.SIGINT else 128 + exc.signum


#: env.json keys that must match between the sessions of one resumed run.
SESSION_MUST_MATCH = ("git_commit", "numpy", "numba", "llvmlite", "python", "affbench_version")


def session_env(run_dir: Path, options: RunOptions, log: Callable[[str], None]) -> dict[str, Any]:
    """env.json for this session. A resumed run keeps what its first session recorded, appends
    this session to ``sessions``, and warns when the code or libraries changed in between."""
    now = environment.collect(options.command)
    session = {"started_at": environment.utc_now(), "command": now["command"], "git_commit": now.get("git_commit")}
    env: dict[str, Any] = {}
    if options.resume is not None and (run_dir / results.ENV_FILE).exists():
        try:
            env = results.read_env(run_dir)
        except results.ResultsError:
            env = {}
    if not env:
        env = dict(now)
        env["clock_resolution_s"] = clock_resolution()
        env.update(run_id=run_dir.name, preset=options.preset, schema_version=results.SCHEMA_VERSION,
                   started_at=session["started_at"], noise_cv_threshold=NOISE_CV_THRESHOLD,
                   isolate_threads=options.isolate_threads, sweep=options.sweep.to_dict(), sessions=[],
                   rounds_in=("the main process for round 1, then one fresh worker process per round"
                              if options.workers else "the main process"))
    else:
        env.setdefault("sessions", [{"started_at": env.get("started_at"), "command": env.get("command"),
                                     "git_commit": env.get("git_commit")}])
        changed = [k for k in SESSION_MUST_MATCH if env.get(k) != now.get(k)]
        if changed:
            msg = ("resumed with different " + ", ".join(f"{k} ({env.get(k)} -> {now.get(k)})" for k in changed)
                   + ": this run mixes two setups")
            log(f"WARNING: {msg}")
            env.setdefault("load", {}).setdefault("warnings", []).append(msg)
    env["sessions"].append(session)
    return env


def _run_locked(options: RunOptions, run_dir: Path) -> int:
    from tqdm import tqdm

    sweep = options.sweep
    impls, missing = _select_impls(sweep)
    cases = expand(sweep, impls, threads.max_threads())
    previous = results.read_rows(run_dir).rows if (run_dir / results.RESULTS_FILE).exists() else []
    done = {r["case_id"] for r in previous}
    todo = [c for c in cases if c.case_id not in done]
    jax_main, deferred = plan_jax_threads(impls, cases, todo)
    if deferred:  # measured in child processes after the others (run_jax_children)
        later = {c.case_id for c in deferred}
        todo = [c for c in todo if c.case_id not in later]
    session_start = time.monotonic()  # the time limit counts compilation and verification too
    deadline = None if sweep.time_limit_s is None else session_start + sweep.time_limit_s
    engine = Engine(options, run_dir, cases, impls)
    engine.learn_from_rows(previous)
    log = engine.log
    log(f"affbench run: {len(cases)} cases ({len(done)} already done) -> {run_dir}")
    for info in missing:
        log(f"skipped {info.message}")

    env = session_env(run_dir, options, log)
    env["not_installed"] = {info.name: info.message for info in missing}
    results.write_env(run_dir, env)
    if not env["openblas_thread_timeout"]["in_effect"]:
        log("WARNING: NumPy was imported before affbench, so OPENBLAS_THREAD_TIMEOUT was not applied: "
            "OpenBLAS workers may spin into the next Numba kernel (see affbench/measure/pool_env.py)")
    if not env.get("gomp_spincount", {}).get("in_effect", True):
        log("WARNING: Numba's OpenMP pool started before affbench was imported, so GOMP_SPINCOUNT was not applied: "
            "its workers may spin ~9 ms into the next kernel (see affbench/measure/pool_env.py)")
    if not env.get("malloc", {}).get("pinned"):
        log(f"note: glibc malloc thresholds not pinned ({env.get('malloc', {}).get('why_not')}): a pass's allocations "
            "may page-fault or not depending on earlier cases (see affbench/measure/malloc_env.py)")
    start_load = load.snapshot()

    writer = results.ResultsWriter(run_dir)
    status = 0
    try:
        engine.compile_all(sweep.dtypes if todo else ())
        report = verify(list(impls), sweep.dtypes, progress=lambda s: log(f"verifying {s} ..."))
        report.write_csv(run_dir / results.VERIFY_FILE)
        failed = set(report.failed_impls())
        if failed:
            log(f"verification FAILED for {', '.join(sorted(failed))}: not timed (see {run_dir / results.VERIFY_FILE})")
            status = 1
        env["verify_failed"] = sorted(failed)
        env["numba_threading_layer"] = environment.software()["numba_threading_layer"]
        env.setdefault("peers", environment.peers())["jax_threads"] = threads.jax_status()  # JAX may run now
        env["compile_s"] = {f"{k[0]}|{k[1]}": v for k, v in engine.compile_s.items()} or env.get("compile_s", {})

        groups = _groups(todo)
        rounds = max(1, sweep.plan.min_rounds)
        # progress counts group rounds: rows are written only when a group has all its rounds
        bar = tqdm(total=len(groups) * rounds, unit="round", disable=not options.progress,
                   dynamic_ncols=True, file=sys.stderr)
        t_start, last = time.monotonic(), [time.monotonic()]
        visited = [0]  # tqdm stops counting when disabled: count here

        def progress_line() -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY_S:  # the total grows with extra rounds: no "last" line
                last[0] = now
                log(f"progress: {visited[0]}/{bar.total} group rounds, {sum(engine.counts.values())}/{len(todo)} "
                    f"cases written, {now - t_start:.0f} s")

        def write(row: dict[str, Any]) -> None:
            writer.append(row)

        def step(label: str) -> None:
            visited[0] += 1
            bar.update(1)
            bar.set_postfix_str(label, refresh=False)
            if not options.progress:  # no terminal (CI, a pipe): a plain line now and then
                progress_line()

        held: list[GroupState] = []  # out of rounds but imprecise: extra rounds if time allows
        try:
            # round 1 of every group, smallest first, then the later rounds of the groups that
            # still need them: a group's rounds lie a whole pass apart, so a slow window of the
            # machine lands on one of its rounds, inside its interval, not on all of them
            pending: list[GroupState] = []
            for group in groups:
                ok = [c for c in group if c.impl not in failed]
                for c in group:
                    if c.impl in failed:
                        write(engine.row(c, "skipped", error="failed verification (see verify.csv)"))
                state = engine.prepare_group(ok, write) if ok else None
                if state is None:
                    bar.total -= rounds
                    continue
                engine.visit(state)
                step(f"round 1: {_label(state.first)}")
                if state.settled and state.rounds >= rounds:
                    if deadline is not None and state.imprecise(sweep.plan.target):
                        held.append(state)
                    else:
                        engine.finish_group(state, write)
                else:
                    pending.append(state)
            number = 1
            while pending:
                if deadline is not None and time.monotonic() >= deadline:
                    # past the time limit: rounds after min_rounds are precision's request, not the
                    # plan's, so a group that has its planned rounds stops here (the limit keeps a
                    # slow or busy machine's run near it instead of adding up to max_rounds)
                    cut = [state for state in pending if state.rounds >= rounds]
                    for state in cut:
                        for _, timed, _ in state.cases:
                            timed.settled = True
                        engine.finish_group(state, write)
                    if cut:
                        log(f"time limit ({sweep.time_limit_s:g} s) reached: {len(cut)} group(s) stopped after "
                            f"their planned {rounds} rounds")
                    pending = [state for state in pending if state.rounds < rounds]
                    if not pending:
                        break
                number += 1
                extra = sum(1 for state in pending if state.rounds >= rounds)
                bar.total += extra  # past min_rounds: precision asked for another round
                if options.workers:
                    engine.visit_in_worker(pending, lambda i: step(f"round {number} (worker): "
                                                                    f"{_label(pending[i].first)}"))
                else:
                    for state in pending:
                        engine.visit(state)
                        step(f"round {number}: {_label(state.first)}")
                later: list[GroupState] = []
                for state in pending:
                    if not state.settled:
                        later.append(state)
                    elif deadline is not None and state.imprecise(sweep.plan.target):
                        held.append(state)  # extra rounds if the run's time allows (extra_rounds)
                    else:
                        engine.finish_group(state, write)
                pending = later
            if held:
                assert deadline is not None
                taken = engine.extra_rounds(held, deadline, write, lambda s: (
                    setattr(bar, "total", bar.total + 1), step(f"extra round: {_label(s.first)}")))
                log(f"{taken} extra round(s) for the least precise groups within the time limit "
                    f"({sweep.time_limit_s:g} s)")
        finally:
            bar.close()
            while held:  # interrupted before their extra rounds: their planned rounds are done, keep them
                engine.finish_group(held.pop(0), write)
        if deferred:
            counts = run_jax_children(options, run_dir, deferred, write, engine)
            env.setdefault("peers", environment.peers()).setdefault("jax_threads", {})["counts"] = {
                str(jax_main): "this process", **counts}
    except Interrupted as exc:
        log(f"\ninterrupted by {exc}: {sum(engine.counts.values())} case(s) of this session kept in {run_dir}; "
            f"finish with: python -m affbench run --resume {run_dir}")
        return 130 if exc.signum == signal.SIGINT else 128 + exc.signum
    finally:
        writer.close()
        end_load = load.snapshot()
        measured = engine.counts["ok"]
        warnings = load.assess(start_load, end_load, environment.usable_cores(), engine.noisy, measured)
        earlier = (env.get("load") or {}).get("warnings", []) if options.resume else []
        env.update(finished_at=environment.utc_now(), load={
            "calibration_start_s": start_load["calibration_s"], "calibration_end_s": end_load["calibration_s"],
            "loadavg_start": start_load["loadavg"], "loadavg_end": end_load["loadavg"],
            "background_cores_start": start_load.get("background_cores"),
            "background_cores_end": end_load.get("background_cores"),
            "background_cores_run": load.run_background_cores(start_load, end_load),
            "warnings": earlier + [w for w in warnings if w not in earlier]})
        env["sessions"][-1].update(finished_at=env["finished_at"], cases=sum(engine.counts.values()),
                                   load_warnings=warnings, worker_failures=engine.worker_failures)
        results.write_env(run_dir, env)
        for w in warnings:
            log(f"WARNING: {w}")

    counts = ", ".join(f"{v} {k}" for k, v in engine.counts.items() if v)
    log(f"done: {counts or 'nothing to do'}; results in {run_dir / results.RESULTS_FILE}")
    return status
