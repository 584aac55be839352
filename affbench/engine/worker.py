"""Rounds in worker processes: one fresh process samples one round of every pending group.

Why (measured, docs/measurement.md): within one process the rounds of a case agree with each
other better than two processes do. Small, microsecond calls in particular settle into a
per-process state (code and data placement) that lasts the whole process: two back-to-back
default runs called 3.6% of 662 unchanged cases different because each run's intervals, made
of rounds in one process, could not see that state. A fresh process per round puts it inside
the interval, as pyperf's worker processes do. A process costs about a second (imports and
loading the cached Numba kernels), paid once per round, not per case.

The parent (``runner``) keeps every decision: which cases run, their repeat counts, what
remains of their timeouts, when they stop. A worker only takes samples. The job and the
result are JSON files; the worker reports progress on stderr, one line per group.

Run by the parent as ``python -m affbench.engine.worker JOB RESULT``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

#: Printed by the worker after each group, read by the parent's progress bar.
PROGRESS_PREFIX = "affbench-worker-group "


class WorkerFailed(Exception):
    """The worker process died or wrote no result."""


# --------------------------------------------------------------------------- the job
def job_for(states: Sequence[Any], plan: Any, isolate_threads: bool, case_timeout_s: float | None) -> dict[str, Any]:
    """What a worker needs for one round of ``states`` (runner.GroupState): per group its
    size and the cases that take this round, each with its repeat count and what is left of
    its timeout."""
    from affbench.measure.timing import active

    groups = []
    for state in states:
        first = state.first
        todo = {id(t) for t in active([t for _, t, _ in state.cases])}
        cases = []
        for index, (case, timed, clock) in enumerate(state.cases):
            if id(timed) not in todo:
                continue
            remaining = None if case_timeout_s is None else case_timeout_s - clock.spent
            cases.append({"index": index, "impl": case.impl, "threads": case.threads, "repeats": timed.repeats,
                          "prime": timed.prime, "timeout_s": remaining})
        groups.append({"pass": first.pass_, "dtype": first.dtype, "batch": first.batch,
                       "in_features": first.in_features, "out_features": first.out_features, "cases": cases})
    return {"plan": asdict(plan), "isolate_threads": isolate_threads, "groups": groups}


def append_round(timed: Any, entry: dict[str, Any]) -> None:
    """Append one case's samples from a worker's round (as sample_round_robin would have)."""
    from affbench.engine.calls import CaseTimeout

    if entry["samples"]:
        timed.rounds.append(list(entry["samples"]))
        timed.samples = (timed.samples or []) + list(entry["samples"])
    if entry["error"] is not None:
        kind, message = entry["error"]
        timed.error = CaseTimeout() if kind == "CaseTimeout" else RuntimeError(f"{kind}: {message}")


def merge(states: Sequence[Any], result: dict[str, Any]) -> None:
    """Append a worker's round to the cases it sampled, and their time to their clocks."""
    for state, group in zip(states, result["groups"]):
        for entry in group["cases"]:
            _case, timed, clock = state.cases[entry["index"]]
            clock.spent += entry["spent_s"]
            append_round(timed, entry)


def run_round(states: Sequence[Any], plan: Any, isolate_threads: bool, case_timeout_s: float | None,
              scratch: Path, on_group: Callable[[int], None] = lambda i: None) -> None:
    """One round of ``states`` in a fresh process; merges its samples into the states.
    Raises WorkerFailed (with the worker's last words) if it dies."""
    merge(states, run_job(job_for(states, plan, isolate_threads, case_timeout_s), scratch, on_group))


def run_job(job: dict[str, Any], scratch: Path, on_group: Callable[[int], None] = lambda i: None) -> dict[str, Any]:
    """Run ``job`` (see job_for: a plan and groups of cases) in a fresh process and return its
    result: per group, per case, the round's samples, error and time spent. Raises
    WorkerFailed (with the worker's last words) if it dies."""
    scratch.mkdir(parents=True, exist_ok=True)
    job_path, result_path = scratch / "job.json", scratch / "result.json"
    result_path.unlink(missing_ok=True)
    job_path.write_text(json.dumps(job))
    proc = subprocess.Popen([sys.executable, "-m", "affbench.engine.worker", str(job_path), str(result_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    tail: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith(PROGRESS_PREFIX):
                on_group(int(line[len(PROGRESS_PREFIX):]))
            else:
                tail = (tail + [line.rstrip()])[-20:]
        proc.wait()
    except BaseException:  # Ctrl-C, SIGTERM: the worker goes with the parent
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0 or not result_path.exists():
        raise WorkerFailed(f"worker process exited with status {proc.returncode}: " + " | ".join(tail[-5:]))
    result = json.loads(result_path.read_text())
    for path in (job_path, result_path):
        path.unlink(missing_ok=True)
    try:
        scratch.rmdir()  # a run directory keeps only its documented files
    except OSError:
        pass
    return result


# --------------------------------------------------------------------------- the worker
def _sample_group(group: dict[str, Any], plan: Any, isolate: bool) -> dict[str, Any]:
    from affbench import registry
    from affbench.engine.calls import CaseClock, pass_call
    from affbench.measure import threads
    from affbench.measure.timing import Timed, sample_round_robin
    from affbench.verify import make_inputs

    x, W, b, dout = make_inputs(group["batch"], group["in_features"], group["out_features"], group["dtype"], seed=3)
    timed, clocks = [], []
    for c in group["cases"]:
        impl = registry.get(c["impl"])
        clock = CaseClock(threads.backend_of(impl), c["threads"], isolate, c["timeout_s"])
        clocks.append(clock)
        timed.append(Timed(call=pass_call(impl, group["pass"], x, W, b, dout), context=clock.context,
                           repeats=c["repeats"], prime=c["prime"]))
    sample_round_robin(timed, plan)
    out = []
    for c, t, clock in zip(group["cases"], timed, clocks):
        error = None if t.error is None else [type(t.error).__name__, str(t.error)]
        out.append({"index": c["index"], "samples": t.samples or [], "error": error, "spent_s": clock.spent})
    return {"cases": out}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m affbench.engine.worker JOB RESULT (run by `affbench run` and `affbench kernels`, not by hand)", file=sys.stderr)
        return 2
    from affbench.measure import malloc_env, pool_env  # noqa: F401  (first: thread-pool and allocator settings before NumPy loads)
    from affbench.measure.timing import Plan

    job = json.loads(Path(argv[0]).read_text())
    plan = Plan(**job["plan"])
    groups = []
    for i, group in enumerate(job["groups"]):
        groups.append(_sample_group(group, plan, job["isolate_threads"]))
        print(f"{PROGRESS_PREFIX}{i}", file=sys.stderr, flush=True)
    tmp = Path(argv[1]).with_suffix(".tmp")
    tmp.write_text(json.dumps({"groups": groups}))
    tmp.replace(argv[1])  # whole or absent: the parent never reads half a result
    return 0


if __name__ == "__main__":
    sys.exit(main())
