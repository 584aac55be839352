"""Rounds in worker processes (affbench/engine/worker.py): a round taken in a fresh process lands in
the parent's cases exactly as an in-process round would, timeouts carry across, and a dead
worker costs a warning, not the run."""

from __future__ import annotations

from affbench import registry
from affbench.engine import calls, runner, worker
from affbench.engine.rundir import RunOptions
from affbench.engine.sweep import Case, Sweep
from affbench.measure.timing import Plan
from affbench.store.results import read_rows


def _engine(tmp_path, impls=("numpy", "numba-serial"), **plan):
    plan = Plan(**({"min_samples": 6, "max_samples": 12, "budget_s": 0.01, "min_rounds": 3, "max_rounds": 3} | plan))
    sweep = Sweep(plan=plan, case_timeout_s=30.0)
    return runner.Engine(RunOptions(sweep=sweep, report=False, progress=False), tmp_path, [],
                         {n: registry.get(n) for n in impls})


def _group():
    return [Case("numpy", "forward", "float64", 4, 16, 8, 1), Case("numba-serial", "forward", "float64", 4, 16, 8, 1)]


def test_a_worker_round_extends_each_case_like_an_in_process_round(tmp_path):
    engine = _engine(tmp_path)
    state = engine.prepare_group(_group(), lambda row: None)
    engine.visit(state)  # round 1 here: calibration, repeats
    repeats = [t.repeats for _, t, _ in state.cases]
    spent = [c.spent for _, _, c in state.cases]
    engine.visit_in_worker([state], lambda i: None)
    engine.visit_in_worker([state], lambda i: None)
    assert state.rounds == 3 and state.settled
    for (_, timed, clock), r, s in zip(state.cases, repeats, spent):
        assert timed.error is None and timed.repeats == r
        assert len(timed.rounds) == 3 and all(len(x) >= 2 for x in timed.rounds)
        assert timed.samples == [x for rnd in timed.rounds for x in rnd]
        assert clock.spent > s  # the worker's time counts against the case's timeout
    serial = state.cases[1][1]
    assert serial.baseline is state.cases[0][1]
    assert [len(x) for x in serial.rounds] == [len(x) for x in state.cases[0][1].rounds]  # pairs aligned
    assert not (tmp_path / ".worker").exists()  # scratch files removed


def test_a_timeout_in_a_worker_comes_back_as_a_timeout(tmp_path):
    engine = _engine(tmp_path)
    state = engine.prepare_group(_group(), lambda row: None)
    engine.visit(state)
    state.cases[1][2].spent = 30.0  # nothing left of numba-serial's --case-timeout
    engine.visit_in_worker([state], lambda i: None)
    assert isinstance(state.cases[1][1].error, calls.CaseTimeout)
    assert state.cases[0][1].error is None
    rows = []
    engine.finish_group(state, rows.append)
    assert [r["status"] for r in rows] == ["ok", "timeout"]


def test_a_dead_worker_falls_back_to_this_process(tmp_path, monkeypatch):
    def die(*args, **kwargs):
        raise worker.WorkerFailed("worker process exited with status -9")

    monkeypatch.setattr(worker, "run_round", die)
    engine = _engine(tmp_path)
    logged = []
    engine.log = logged.append
    state = engine.prepare_group(_group(), lambda row: None)
    engine.visit(state)
    engine.visit_in_worker([state], lambda i: None)
    assert state.rounds == 2 and engine.worker_failures == 1
    assert any("status -9" in line and "main process" in line for line in logged)


def test_run_records_where_rounds_ran(tmp_path):
    from affbench.store.results import read_env

    for workers in (True, False):
        out = tmp_path / f"run-{workers}"
        sweep = Sweep(impls=("numpy",), passes=("forward",), dtypes=("float64",), batches=(2,), layers=((8, 4),),
                      threads=(1,), plan=Plan(min_samples=6, max_samples=9, budget_s=0.001, min_rounds=3, max_rounds=3))
        _, status = runner.run(RunOptions(sweep=sweep, out=out, report=False, progress=False, workers=workers))
        assert status == 0
        (row,) = read_rows(out).rows
        assert row["status"] == "ok" and row["rounds"] == 3
        assert ("worker" in read_env(out)["rounds_in"]) is workers


def test_sigterm_during_a_worker_round_keeps_rows_and_leaves_no_worker(tmp_path, monkeypatch, capsys):
    import signal
    import subprocess
    import sys
    import time

    from affbench import cli

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "affbench", "run", "--impl", "numpy,numba-serial", "--pass", "forward",
           "--dtype", "float64", "--batch", "1,2,3,4,5,6", "--layer", "8:4,16:8", "--threads", "1",
           "--rounds", "3", "--budget", "0.3", "--time-limit", "none", "--out", str(out), "--no-report", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    job = out / ".worker" / "job.json"
    deadline = time.monotonic() + 120
    while not job.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert job.exists(), "no worker round started"
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=60)
    err = proc.stderr.read()
    assert rc == 128 + signal.SIGTERM and "interrupted by SIGTERM" in err and "Traceback" not in err, err
    leftover = subprocess.run(["pgrep", "-f", f"affbench.engine.worker {job}"], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""  # the worker went with its parent
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "--resume", str(out), "--no-report", "--no-progress"]) == 0
    rows = read_rows(out).rows
    assert len(rows) == 24 and len({r["case_id"] for r in rows}) == 24
    assert all(r["status"] == "ok" and r["rounds"] == 3 for r in rows)


def _kernels_target():
    from affbench.engine.targets import Target

    return Target("tiny", 4, 16, 8, "float64", "ratio", 1.0, threads=1)


def _kernels_plan() -> Plan:  # target 0: never precise, so every case takes all three rounds
    return Plan(min_sample_s=1e-4, min_samples=6, max_samples=30, budget_s=float("inf"), target=0.0,
                min_rounds=3, max_rounds=3)


def test_kernels_takes_rounds_after_the_first_in_worker_processes(monkeypatch):
    from affbench.commands import kernels

    jobs, real = [], worker.run_job

    def spy(job, scratch, on_group=lambda i: None):
        jobs.append(job)
        return real(job, scratch, on_group)

    monkeypatch.setattr(worker, "run_job", spy)
    m = kernels.prepare(_kernels_target(), parts=True)
    assert kernels.take_rounds([m], _kernels_plan()) == 0
    assert len(jobs) == 2  # rounds 2 and 3; round 1 (calibration) ran here
    for job in jobs:
        assert [g["pass"] for g in job["groups"]] == list(kernels.PASSES)
        for g in job["groups"]:
            assert [c["impl"] for c in g["cases"]] == ["numba-tiled", "numpy"]
            assert (g["batch"], g["in_features"], g["out_features"]) == (4, 16, 8)
    for (p, i), timed in m.cases.items():
        assert timed.error is None and len(timed.rounds) == 3
        sent = [c["repeats"] for job in jobs for g in job["groups"] if g["pass"] == p for c in g["cases"][i:i + 1]]
        assert sent == [timed.repeats, timed.repeats]  # calibrated once, here
    out, parts = kernels.outcome(m)
    assert out.interval is not None and len(parts) == 2


def test_kernels_retakes_a_failed_worker_round_in_process(monkeypatch, capsys):
    from affbench.commands import kernels

    def dead(job, scratch, on_group=lambda i: None):
        raise worker.WorkerFailed("worker process exited with status -9: ")

    monkeypatch.setattr(worker, "run_job", dead)
    m = kernels.prepare(_kernels_target())
    assert kernels.take_rounds([m], _kernels_plan()) == 2
    assert all(len(t.rounds) == 3 and t.error is None for t in m.timed)
    assert "this round runs in this process" in capsys.readouterr().err
