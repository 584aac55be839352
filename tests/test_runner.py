"""The benchmark engine end to end: a real run's files, interruption (SIGTERM, kill -9) and
resume, the run lock, extrapolation, memory measurement and limits, failing and timed-out
cases, and the noisy-machine warning (issues 3 and 7).

Runs are tiny (sizes like 8x4, budgets of 10 ms) so the whole module takes seconds. The
interruption tests need a real process to signal; everything else runs in-process.
"""

from __future__ import annotations

import csv
from dataclasses import replace
import json
import math
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numba
import numpy as np
import pytest

from affbench import cli, registry
from affbench.engine import calls, rundir, runner
from affbench.engine.sweep import Case, Sweep, expand
from affbench.measure import load
from affbench.measure.threads import max_threads
from affbench.measure.timing import Plan
from affbench.protocol import KernelImpl
from affbench.store import results
from affbench.store.results import COLUMNS, STATUSES, read_rows

REPO = Path(__file__).resolve().parent.parent
TINY = ["--impl", "numpy,numba-serial", "--pass", "forward", "--dtype", "float64", "--batch", "1,4",
        "--layer", "8:4", "--threads", "1", "--no-report", "--no-progress", "--budget", "0.01"]
#: 32 cases of a few milliseconds each: long enough (a few seconds) to be interrupted mid-run
LONG = ["--impl", "naive,numpy", "--pass", "forward", "--dtype", "float64", "--batch", "1,2,3,4,5,6,7,8",
        "--layer", "8:4,16:8", "--threads", "1", "--no-report", "--no-progress", "--budget", "0.05",
        "--rounds", "1"]  # one round: rows arrive group by group (test_worker.py interrupts a worker round)


def affbench_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "affbench", "run", *args]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def expected_case_ids(run_dir: Path) -> set[str]:
    sweep = Sweep.from_dict(json.loads((run_dir / rundir.RUN_FILE).read_text())["sweep"])
    impls = {n: registry.get(n) for n in sweep.impls}
    return {c.case_id for c in expand(sweep, impls, max_threads())}


def csv_rows(run_dir: Path) -> int:
    try:
        data = (run_dir / results.RESULTS_FILE).read_bytes()
    except FileNotFoundError:
        return 0
    return max(0, data.count(b"\n") - 1)


def wait_for_rows(proc: subprocess.Popen, run_dir: Path, n: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = csv_rows(run_dir)
        if rows >= n:
            return rows
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before {n} rows were written")
        time.sleep(0.01)
    pytest.fail(f"no {n} rows in {timeout} s")


def check_complete(run_dir: Path, before: list[dict]) -> list[dict]:
    """Every case exactly once, the rows finished before the interruption kept unchanged."""
    loaded = read_rows(run_dir)
    assert not loaded.dropped_torn_line
    ids = [r["case_id"] for r in loaded.rows]
    assert len(ids) == len(set(ids)), "a case was written twice"
    assert set(ids) == expected_case_ids(run_dir), "a case is missing"
    kept = {r["case_id"]: r for r in loaded.rows}
    for r in before:
        assert kept[r["case_id"]]["median_s"] == r["median_s"]
        assert kept[r["case_id"]]["finished_at"] == r["finished_at"]
    assert loaded.rows[: len(before)] == before  # appended after them, never rewritten
    return loaded.rows


# --------------------------------------------------------------------------- a real run
def test_tiny_run_writes_the_documented_files(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(affbench_cmd(*TINY, "--out", str(out)), cwd=tmp_path, env=child_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert {p.name for p in out.iterdir()} >= {"results.csv", "env.json", "verify.csv", "run.json"}

    with open(out / "results.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert header == list(COLUMNS)
    rows = read_rows(out).rows
    assert sorted(r["case_id"] for r in rows) == sorted(
        f"{impl}|forward|float64|{n}|8|4|1" for impl in ("numpy", "numba-serial") for n in (1, 4))
    for r in rows:
        assert r["status"] == "ok" and r["status"] in STATUSES
        assert r["schema_version"] == results.SCHEMA_VERSION
        assert r["repeats"] >= 1 and r["n_samples"] >= 3 and len(r["samples_s"]) == r["n_samples"]
        assert 0 < r["min_s"] <= r["q1_s"] <= r["median_s"] <= r["q3_s"]
        assert r["iqr_s"] == pytest.approx(r["q3_s"] - r["q1_s"])
        assert r["median_s"] == pytest.approx(float(np.median(r["samples_s"])))
        assert r["gflops"] == pytest.approx(r["flops"] / r["median_s"] / 1e9)
        assert r["flops"] == 2 * r["batch"] * 8 * 4 + r["batch"] * 4
        assert r["numba_threads"] == 1 and r["blas_threads"] == 1
        assert r["peak_mem_bytes"] is not None and r["peak_mem_bytes"] >= 0
        assert r["error"] == "" and r["finished_at"]
        if r["impl"] == "numba-serial":
            assert r["compile_s"] >= 0  # timed apart from the samples
        else:
            assert np.isnan(r["compile_s"])

    env = json.loads((out / "env.json").read_text())
    for key in ("cpu", "numba", "blas", "git_commit", "command", "load", "numpy", "started_at", "finished_at",
                "sweep", "noise_cv_threshold", "compile_s", "verify_failed"):
        assert key in env, key
    assert env["cpu"]["logical_cores"] >= 1
    assert env["numba"] == numba.__version__
    assert isinstance(env["blas"], list)
    assert "run" in env["command"] and "--impl numpy,numba-serial" in env["command"]
    assert env["git_commit"] is None or len(env["git_commit"].split("-")[0]) == 40
    assert env["verify_failed"] == []
    assert env["openblas_thread_timeout"]["value"] and "pinned" in env["malloc"]
    assert env["gomp_spincount"]["value"] == os.environ["GOMP_SPINCOUNT"] and env["gomp_spincount"]["in_effect"]
    loadinfo = env["load"]
    for key in ("calibration_start_s", "calibration_end_s", "loadavg_start", "loadavg_end",
                "background_cores_start", "background_cores_end", "background_cores_run", "warnings"):
        assert key in loadinfo, key
    assert loadinfo["calibration_start_s"] > 0 and isinstance(loadinfo["warnings"], list)

    with open(out / "verify.csv", newline="") as fh:
        checks = list(csv.DictReader(fh))
    assert {c["impl"] for c in checks} == {"numpy", "numba-serial"}
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["sweep"]["impls"] == ["numpy", "numba-serial"]
    assert not (tmp_path / "reports").exists()  # --out: nothing under reports/


# --------------------------------------------------------------------------- interruption and resume
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "kill-9"])
def test_interrupted_run_resumes_without_losing_or_repeating_a_case(tmp_path, monkeypatch, capsys, sig):
    out = tmp_path / "run"
    log = open(tmp_path / "stderr.txt", "w+")
    proc = subprocess.Popen(affbench_cmd(*LONG, "--out", str(out)), cwd=tmp_path, env=child_env(),
                            stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_for_rows(proc, out, 3)
        time.sleep(0.04)  # into the next group's sampling (each group samples for ~0.1 s)
        proc.send_signal(sig)
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log.seek(0)
    stderr = log.read()
    log.close()
    total = len(expected_case_ids(out))
    before = read_rows(out)  # the file parses after the interruption
    assert 3 <= len(before.rows) < total, "the run was not interrupted in the middle"
    assert all(r["status"] == "ok" for r in before.rows), [r["error"] for r in before.rows]
    if sig == signal.SIGTERM:
        assert rc == 128 + signal.SIGTERM, stderr
        assert "interrupted by SIGTERM" in stderr and f"--resume {out}" in stderr
        assert "Traceback" not in stderr
        assert not before.dropped_torn_line
    else:
        assert rc == -signal.SIGKILL
        # a kill can land in the middle of a write: simulate that torn last line
        with open(out / results.RESULTS_FILE, "ab") as fh:
            fh.write(b"1,naive|forward|float64|8|16|8|1,naive,forw")
        assert read_rows(out).dropped_torn_line

    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert cli.main(["run", "--resume", str(out), "--no-report", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"({len(before.rows)} already done)" in err
    check_complete(out, before.rows)


def test_a_signal_during_the_end_of_run_check_is_handled_too(tmp_path, monkeypatch, capsys):
    """A second Ctrl-C (or a SIGTERM) while the end-of-run load check runs: no traceback,
    the exit status says which signal, the finished rows are kept and resume has nothing to redo."""
    real_snapshot = load.snapshot
    calls = []

    def snapshot():
        calls.append(1)
        if len(calls) == 2:  # the end-of-run snapshot
            raise runner.Interrupted(signal.SIGINT)
        return real_snapshot()

    monkeypatch.setattr(load, "snapshot", snapshot)
    sweep = Sweep(impls=("numpy",), passes=("forward",), dtypes=("float64",), batches=(1, 2), layers=((8, 4),),
                  threads=(1,), plan=Plan(min_samples=2, max_samples=2, budget_s=0.001))
    run_dir, status = runner.run(runner.RunOptions(sweep=sweep, out=tmp_path / "run", report=False, progress=False))
    assert status == 130
    err = capsys.readouterr().err
    assert "interrupted by SIGINT" in err and f"--resume {run_dir}" in err
    assert [r["status"] for r in read_rows(run_dir).rows] == ["ok", "ok"]


def test_resume_refused_while_another_process_holds_the_lock(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    rundir.prepare(runner.RunOptions(sweep=Sweep(impls=("numpy",), passes=("forward",), dtypes=("float64",),
                                                 batches=(1,), layers=((8, 4),), threads=(1,)), out=out))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time\n"
         "f = open(sys.argv[1], 'w'); fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
         str(out / rundir.LOCK_FILE)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.chdir(tmp_path)
        rc = cli.main(["run", "--resume", str(out), "--no-report", "--no-progress"])
        err = capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert rc == 2
    assert err.strip().splitlines() == [f"affbench run: error: {out}: another affbench run is writing this directory"]
    assert not (out / results.RESULTS_FILE).exists() and not (out / results.ENV_FILE).exists()


def test_resume_checks_its_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    assert cli.main(["run", "--resume", str(tmp_path / "empty")]) == 2
    assert "is not an affbench run directory" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / rundir.RUN_FILE).write_text("{not json")
    assert cli.main(["run", "--resume", str(bad)]) == 2
    assert "unreadable" in capsys.readouterr().err
    assert cli.main(["run", "--resume", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "--resume and --out" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "empty"]


def test_resume_after_a_kill_before_the_header_was_complete(tmp_path):
    """kill -9 between creating results.csv and finishing its header: nothing had finished."""
    out = tmp_path / "run"
    opts = runner.RunOptions(sweep=Sweep(impls=("numpy",), passes=("forward",), dtypes=("float64",),
                                         batches=(1,), layers=((8, 4),), threads=(1,)), out=out)
    rundir.prepare(opts)
    (out / results.RESULTS_FILE).write_bytes(b"schema_version,case_id,im")
    d, resumed = rundir.prepare(runner.RunOptions(sweep=Sweep(), resume=out))
    assert d == out and resumed.sweep == opts.sweep
    assert not (out / results.RESULTS_FILE).exists()


def test_out_must_be_new_or_empty(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert cli.main(["run", *TINY, "--out", str(out)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


#: the smallest sweep: a bad --out must be refused before even this is verified or timed
SMALLEST = ["--impl", "numpy", "--batch", "2", "--layer", "8:4", "--pass", "forward", "--dtype", "float64",
            "--threads", "1", "--budget", "0.01", "--rounds", "1", "--no-report", "--no-progress", "--no-workers"]


def _refused_before_timing(monkeypatch, capsys, out: Path, *needles: str) -> None:
    def no_work(*a, **k):
        raise AssertionError("a refused --out must not verify or time anything")

    monkeypatch.setattr(runner, "_run_locked", no_work)
    assert cli.main(["run", *SMALLEST, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for n in ("--out", str(out), *needles):
        assert n in err, (n, err)


def test_out_that_is_a_file_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "somefile"
    out.write_text("mine")
    _refused_before_timing(monkeypatch, capsys, out, "is a file, not a directory")
    assert out.read_text() == "mine"
    assert not (tmp_path / "reports").exists()


def test_out_under_a_file_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "somefile").write_text("mine")
    _refused_before_timing(monkeypatch, capsys, tmp_path / "somefile" / "run", str(tmp_path / "somefile"),
                           "is a file, not a directory")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_out_that_cannot_be_created_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _refused_before_timing(monkeypatch, capsys, Path("/proc/affbench-nope"), "cannot create")


# --------------------------------------------------------------------------- extrapolation
def engine_for(sweep: Sweep, tmp_path: Path) -> runner.Engine:
    return runner.Engine(runner.RunOptions(sweep=sweep, report=False, progress=False), tmp_path, [], {})


def test_predict_from_a_seeded_rate():
    sweep = Sweep(max_case_s=1.0, plan=Plan(warmup_calls=1, min_samples=5))
    engine = engine_for(sweep, Path("."))
    basis = Case("naive", "forward", "float64", 1, 64, 64, 1)
    key = ("naive", "forward", "float64", 1)
    engine.rates[key] = [(0.01, basis.flops, "N=1 K=64 M=64")]
    big = Case("naive", "forward", "float64", 100, 784, 50, 1)
    row = engine.predict(big)
    per_call = big.flops / 0.01e9  # 0.78 s per call; x 7 calls = 5.5 s > 1 s
    assert row is not None
    assert row["status"] == "extrapolated" and row["case_id"] == big.case_id
    assert row["median_s"] == pytest.approx(per_call)
    assert row["gflops"] == 0.01
    assert "predicted" in row["error"] and "x 7 calls > max_case_s 1 s" in row["error"]
    assert "from 0.01 GFLOP/s measured at N=1 K=64 M=64" in row["error"]
    assert engine.counts["extrapolated"] == 1

    # small enough to run: no prediction; another thread count or pass: nothing known
    assert engine.predict(Case("naive", "forward", "float64", 1, 8, 4, 1)) is None
    assert engine.predict(Case("naive", "forward", "float64", 100, 784, 50, 2)) is None
    assert engine.predict(Case("naive", "backward", "float64", 100, 784, 50, 1)) is None
    # too far beyond its basis (more than MAX_EXTRAPOLATION x its FLOPs): measured, not guessed
    engine.rates[key] = [(0.01, big.flops / runner.MAX_EXTRAPOLATION / 2, "N=1 K=8 M=4")]
    assert engine.predict(big) is None
    # ... unless another measured size is close enough: the best rate within range is the basis
    engine.rates[key].append((0.005, big.flops / 10, "N=10 K=784 M=50"))
    engine.rates[key].append((0.02, big.flops / runner.MAX_EXTRAPOLATION / 3, "N=1 K=4 M=4"))
    assert "from 0.005 GFLOP/s measured at N=10 K=784 M=50" in engine.predict(big)["error"]
    # exactly at the limit still runs
    edge = Case("naive", "forward", "float64", 1, 8, 4, 1)
    engine.rates[key] = [(edge.flops * 7 / 1e9, edge.flops, "N=1")]
    assert engine.predict(edge) is None


def test_first_round_records_every_measured_size(tmp_path):
    """A group's first round feeds predict(): every measured GFLOP/s per (impl, pass, dtype,
    threads), before the group's later rounds, so later (bigger) groups can be predicted."""
    from affbench import registry

    sweep = Sweep(plan=Plan(min_samples=2, max_samples=4, budget_s=0.001, min_rounds=2, max_rounds=3))
    engine = runner.Engine(runner.RunOptions(sweep=sweep, report=False, progress=False), tmp_path, [],
                           {"numpy": registry.get("numpy")})
    small = Case("numpy", "forward", "float64", 1, 8, 4, 1)
    bigger = Case("numpy", "forward", "float64", 4, 8, 4, 1)
    for case in (small, bigger):
        state = engine.prepare_group([case], lambda row: None)
        engine.visit(state)
        assert state.rounds == 1 and not state.settled  # min_rounds=2: not yet
    rates = engine.rates[("numpy", "forward", "float64", 1)]
    assert [(flops, where) for _, flops, where in rates] == [(small.flops, "N=1 K=8 M=4 in its first round"),
                                                             (bigger.flops, "N=4 K=8 M=4 in its first round")]
    assert all(rate > 0 for rate, _, _ in rates)


def test_extrapolation_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    rc = cli.main(["run", "--impl", "naive", "--pass", "forward", "--dtype", "float64", "--batch", "1,64",
                   "--layer", "64:64", "--threads", "1", "--max-case-s", "0.005", "--budget", "0.01",
                   "--out", str(out), "--no-report", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    rows = {r["batch"]: r for r in read_rows(out).rows}
    assert rows[1]["status"] == "ok"
    big = rows[64]
    assert big["status"] == "extrapolated"
    assert "measured at N=1 K=64 M=64 in its first round" in big["error"] and "max_case_s 0.005 s" in big["error"]
    # the basis is the small case's first round (later groups are planned before its last
    # round), close to but not exactly its final median
    assert big["gflops"] == pytest.approx(rows[1]["gflops"], rel=0.5)
    assert big["median_s"] == pytest.approx(big["flops"] / (big["gflops"] * 1e9))
    assert big["n_samples"] is None and big["samples_s"] == []


# --------------------------------------------------------------------------- memory
@numba.njit
def _njit_alloc(n):
    a = np.empty(n)
    for i in range(n):
        a[i] = i
    return a[n - 1]


@numba.njit(parallel=True)
def _prange_alloc(n, m):
    s = np.zeros(m)
    for i in numba.prange(m):
        a = np.empty(n)  # allocated by each worker thread, inside the parallel loop
        for j in range(n):
            a[j] = i + j
        s[i] = a[n - 1] + a[0]
    return s.sum()


def test_peak_memory_sees_numpy_njit_and_prange_allocations():
    n = 1_000_000  # 8 MB of float64
    _njit_alloc(10), _prange_alloc(10, 2)  # compile outside the measurement
    assert not tracemalloc.is_tracing()
    assert runner.peak_memory(lambda: np.ones(n).sum()) >= 8 * n
    assert runner.peak_memory(lambda: _njit_alloc(n)) >= 8 * n
    assert runner.peak_memory(lambda: _prange_alloc(n, 4)) >= 8 * n
    assert runner.peak_memory(lambda: None) < 4096
    assert runner.peak_memory(lambda: _njit_alloc(1000)) < 8 * n // 100  # sizes, not noise
    assert not tracemalloc.is_tracing()  # left as it was


def test_a_case_too_big_for_free_memory_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "available_memory", lambda: 1000)
    sweep = Sweep(impls=("numpy",), passes=("forward",), dtypes=("float64",), batches=(4,), layers=((8, 4),),
                  threads=(1,), plan=Plan(min_samples=2, max_samples=2, budget_s=0.001))
    cases = [Case("numpy", "forward", "float64", 4, 8, 4, 1)]
    engine = runner.Engine(runner.RunOptions(sweep=sweep), tmp_path, cases, {"numpy": registry.get("numpy")})
    rows: list[dict] = []
    engine.time_group(cases, rows.append)
    assert [r["status"] for r in rows] == ["skipped"]
    need = runner.case_bytes(cases[0], slow=False)
    assert rows[0]["error"] == f"not enough memory: needs about {need / 1024:.1f} KiB, 1000 B available"

    monkeypatch.setattr(runner, "available_memory", lambda: None)  # unknown: run it
    rows.clear()
    engine.time_group(cases, rows.append)
    assert [r["status"] for r in rows] == ["ok"]


# --------------------------------------------------------------------------- failing and slow cases
class RaisesForOneShape(KernelImpl):
    name = "test-raises"
    description = "test only: correct, but raises for N=3, K=8"

    def _forward(self, x, W, b):
        if x.shape[0] == 3 and x.shape[1] == 8:
            raise ValueError("cannot do N=3 K=8")
        return x @ W + b

    def _backward(self, x, W, dout):
        return dout @ W.T, x.T @ dout, dout.sum(axis=0)


class SlowForOneShape(KernelImpl):
    name = "test-slow"
    description = "test only: correct, but a pure-Python busy loop of 1.5 s for N=3, K=8"
    slow = True

    def _forward(self, x, W, b):
        if x.shape[0] == 3 and x.shape[1] == 8:
            end = time.perf_counter() + 1.5  # bounded: a broken timeout fails the test, never hangs it
            while time.perf_counter() < end:
                pass
        return x @ W + b

    def _backward(self, x, W, dout):
        return dout @ W.T, x.T @ dout, dout.sum(axis=0)


@pytest.fixture
def faulty_impls():
    for cls in (RaisesForOneShape, SlowForOneShape):
        registry.register(cls, replace=True)
    yield
    for cls in (RaisesForOneShape, SlowForOneShape):
        registry.unregister(cls.name)


def test_a_raising_case_fails_a_slow_one_times_out_and_the_sweep_goes_on(tmp_path, faulty_impls, capsys):
    sweep = Sweep(impls=("test-raises", "test-slow", "numpy"), passes=("forward",), dtypes=("float64",),
                  batches=(1, 3, 5), layers=((8, 4),), threads=(1,),
                  plan=Plan(min_samples=3, max_samples=5, budget_s=0.01), max_case_s=100.0, case_timeout_s=0.3)
    t0 = time.perf_counter()
    run_dir, status = runner.run(runner.RunOptions(sweep=sweep, out=tmp_path / "run", report=False, progress=False))
    elapsed = time.perf_counter() - t0
    assert status == 0
    rows = {(r["impl"], r["batch"]): r for r in read_rows(run_dir).rows}
    assert len(rows) == 9
    failed = rows[("test-raises", 3)]
    assert failed["status"] == "failed" and failed["error"] == "ValueError: cannot do N=3 K=8"
    timed_out = rows[("test-slow", 3)]
    assert timed_out["status"] == "timeout" and timed_out["error"] == "ran past --case-timeout 0.3 s"
    assert np.isnan(timed_out["median_s"]) and np.isnan(failed["median_s"])
    # a larger case of what timed out is not attempted: it would only time out again
    after = rows[("test-slow", 5)]
    assert after["status"] == "skipped" and "N=3 K=8 M=4" in after["error"]
    others = {k: r["status"] for k, r in rows.items() if k not in {("test-raises", 3), ("test-slow", 3), ("test-slow", 5)}}
    assert set(others.values()) == {"ok"}, others  # including N=5, timed after the failures
    assert elapsed < 20  # the 1.5 s call was cut at 0.3 s, not sampled
    err = capsys.readouterr().err
    assert "done: 6 ok, 1 skipped, 1 failed, 1 timeout" in err


def test_a_case_that_fails_verification_is_skipped_not_timed(tmp_path, capsys):
    class WrongBias(KernelImpl):
        name = "test-wrong"

        def _forward(self, x, W, b):
            return x @ W

        def _backward(self, x, W, dout):
            return dout @ W.T, x.T @ dout, dout.sum(axis=0)

    registry.register(WrongBias, replace=True)
    try:
        sweep = Sweep(impls=("test-wrong",), passes=("forward",), dtypes=("float64",), batches=(2,),
                      layers=((8, 4),), threads=(1,), plan=Plan(min_samples=2, max_samples=2, budget_s=0.001))
        run_dir, status = runner.run(runner.RunOptions(sweep=sweep, out=tmp_path / "run", report=False,
                                                       progress=False))
    finally:
        registry.unregister("test-wrong")
    assert status == 1
    (row,) = read_rows(run_dir).rows
    assert row["status"] == "skipped" and "failed verification" in row["error"]
    assert json.loads((run_dir / "env.json").read_text())["verify_failed"] == ["test-wrong"]
    assert "verification FAILED for test-wrong" in capsys.readouterr().err


# --------------------------------------------------------------------------- noisy machine
BURNER = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end:\n    pass\n"


def test_a_run_under_background_load_carries_the_noisy_machine_warning(tmp_path, monkeypatch, capsys):
    # two on this 2-core machine (shared/FACTS.md); one per core elsewhere, so the load is heavy anywhere
    burners = [subprocess.Popen([sys.executable, "-c", BURNER]) for _ in range(max(2, len(os.sched_getaffinity(0))))]
    try:
        time.sleep(0.3)  # let them start burning
        monkeypatch.chdir(tmp_path)
        out = tmp_path / "run"
        rc = cli.main(["run", "--impl", "numpy", "--pass", "forward", "--dtype", "float64", "--batch", "1,4",
                       "--layer", "8:4", "--threads", "1", "--budget", "0.01", "--out", str(out),
                       "--no-report", "--no-progress"])
    finally:
        for b in burners:
            b.kill()
        for b in burners:
            b.wait()
    err = capsys.readouterr().err
    assert rc == 0, err
    loadinfo = json.loads((out / "env.json").read_text())["load"]
    assert loadinfo["warnings"], loadinfo
    cores = len(os.sched_getaffinity(0))
    # two busy neighbours are seen at once, whatever the (lagging) load average says
    assert loadinfo["background_cores_start"] > load.BACKGROUND_PER_CORE_LIMIT * cores, loadinfo
    assert any("other processes used" in w for w in loadinfo["warnings"])
    assert "WARNING: " in err
    for w in loadinfo["warnings"]:
        assert f"WARNING: {w}" in err  # the terminal shows every warning the report will


def test_the_report_shows_the_load_warnings(tmp_path):
    from affbench.report.data import load_run
    from affbench.report.sections import warnings_for

    out = tmp_path / "run"
    out.mkdir()
    with results.ResultsWriter(out) as w:
        w.append({"case_id": "numpy|forward|float64|1|8|4|1", "impl": "numpy", "pass": "forward",
                  "dtype": "float64", "batch": 1, "in_features": 8, "out_features": 4, "threads": 1,
                  "status": "ok", "median_s": 1e-5, "samples_s": [1e-5]})
    results.write_env(out, {"load": {"warnings": ["other processes used 1.50 of 2 cores on average during the run"]}})
    run = load_run(out)
    shown = warnings_for(run, run.frame(), "numpy", True)
    assert any("other processes used 1.50 of 2 cores" in w for w in shown)


# --------------------------------------------------------------------------- load.assess
def snap(calibration=1e-4, loadavg=0.1, background=0.0, busy=100.0, own=10.0, wall=1000.0):
    return {"calibration_s": calibration, "loadavg": loadavg, "at": 0.0, "background_cores": background,
            "counters": {"busy_s": busy, "own_s": own, "wall_s": wall}}


def test_assess_quiet_machine_has_no_warnings():
    start = snap()
    end = snap(calibration=1.1e-4, busy=110.0, own=19.0, wall=1010.0)  # others: 1 s in 10 s = 0.1 core
    assert load.assess(start, end, cores=2, noisy_cases=1, measured_cases=10) == []
    assert load.run_background_cores(start, end) == pytest.approx(0.1)


def test_assess_load_average_only_without_cpu_counters():
    """The load average includes this run's own threads: used only where /proc/stat is missing."""
    no_counters = {"calibration_s": 1e-4, "loadavg": 1.5, "at": 0.0}
    w = load.assess(no_counters, dict(no_counters, loadavg=3.0), cores=2)
    assert w == ["load average 1.50 at the start of the run on 2 cores: other processes were competing for the CPU"]
    # with the direct measurement at hand, a high load average (ours) says nothing
    assert load.assess(snap(loadavg=1.5), snap(loadavg=3.0, wall=1010, busy=100, own=10), cores=2) == []


@pytest.mark.parametrize("ratio, warned", [(1.5, True), (0.6, True), (1.2, False), (0.8, False)])
def test_assess_calibration_drift(ratio, warned):
    w = load.assess(snap(calibration=1e-4), snap(calibration=ratio * 1e-4, wall=1010, busy=100, own=10), cores=2)
    assert bool(w) == warned
    if warned:
        assert f"{ratio - 1:+.0%} slower" in w[0]


def test_assess_background_cpu_in_the_snapshots_and_over_the_run():
    w = load.assess(snap(background=1.3), snap(background=0.0, wall=1010, busy=100, own=10), cores=2)
    assert w == ["other processes used 1.30 of 2 cores while the calibration kernel ran at the start of the run"]
    w = load.assess(snap(), snap(background=0.7, wall=1010, busy=100, own=10), cores=2)
    assert len(w) == 1 and "at the end of the run" in w[0]
    assert load.assess(snap(), snap(background=0.4, wall=1010, busy=100, own=10), cores=2) == []
    # over the run: 20 s busy, 5 s of it ours, in 10 s: others averaged 1.5 cores
    w = load.assess(snap(), snap(busy=120.0, own=15.0, wall=1010.0), cores=2)
    assert w == ["other processes used 1.50 of 2 cores on average during the run"]


def test_assess_noisy_share():
    quiet_end = snap(wall=1010, busy=100, own=10)
    assert load.assess(snap(), quiet_end, cores=2, noisy_cases=5, measured_cases=10) == [
        "5 of 10 measured cases are noisy (coefficient of variation above the threshold)"]
    assert load.assess(snap(), quiet_end, cores=2, noisy_cases=4, measured_cases=10) == []
    assert load.assess(snap(), quiet_end, cores=2, noisy_cases=0, measured_cases=0) == []


def test_assess_partial_and_old_snapshots():
    assert load.assess(snap(background=1.9), None, cores=2)[0].startswith("other processes used 1.90")
    old = {"calibration_s": 1e-4, "loadavg": None, "at": 0.0}  # no counters (no /proc/stat)
    assert load.assess(old, dict(old, calibration_s=3e-4), cores=2) == [
        "the calibration kernel ran +200% slower at the end than at the start: the machine's speed changed during the run"]
    assert load.assess({}, {}, cores=2) == []


def test_background_cores_arithmetic():
    a = {"busy_s": 10.0, "own_s": 1.0, "wall_s": 0.0}
    assert load.background_cores(a, {"busy_s": 14.0, "own_s": 2.0, "wall_s": 2.0}) == pytest.approx(1.5)
    assert load.background_cores(a, {"busy_s": 10.0, "own_s": 3.0, "wall_s": 2.0}) == 0.0  # clipped, never negative
    assert load.background_cores(a, dict(a)) is None  # no time passed
    assert load.background_cores(None, a) is None and load.background_cores(a, None) is None


def test_cpu_counters_on_this_machine():
    c = load.cpu_counters()
    if not Path("/proc/stat").exists():
        assert c is None
        return
    assert c["busy_s"] > 0 and c["own_s"] > 0
    t_end = time.process_time() + 0.05
    while time.process_time() < t_end:  # burn 50 ms of our own CPU: not background
        pass
    c2 = load.cpu_counters()
    assert c2["own_s"] - c["own_s"] >= 0.04
    assert c2["busy_s"] >= c["busy_s"]


def test_the_baseline_is_never_extrapolated(tmp_path):
    engine = engine_for(Sweep(max_case_s=1e-9), tmp_path)
    case = Case(runner.BASELINE, "step", "float64", 1024, 2048, 2048, 1)
    engine.rates[(runner.BASELINE, "step", "float64", 1)] = [(1.0, case.flops, "N=1024 K=2048 M=2048")]
    assert engine.predict(case) is None


def test_pure_python_rate_is_flat_so_any_basis_predicts(tmp_path):
    from affbench import registry

    engine = runner.Engine(runner.RunOptions(sweep=Sweep(max_case_s=1.0), report=False, progress=False),
                           tmp_path, [], {"naive": registry.get("naive")})
    big = Case("naive", "step", "float64", 1024, 2048, 2048, 1)
    engine.rates[("naive", "step", "float64", 1)] = [(0.03, big.flops / runner.MAX_EXTRAPOLATION / 100, "N=1 K=50 M=10")]
    row = engine.predict(big)
    assert row is not None and row["status"] == "extrapolated" and "N=1 K=50 M=10" in row["error"]


def test_a_timeout_skips_larger_cases_of_the_same_kind(tmp_path):
    from affbench import registry
    from affbench.measure.timing import Timed

    impls = {"naive": registry.get("naive")}
    engine = runner.Engine(runner.RunOptions(sweep=Sweep(case_timeout_s=5.0), report=False, progress=False),
                           tmp_path, [], impls)
    small = Case("naive", "forward", "float64", 4, 8, 4, 1)
    clock = calls.CaseClock("python", 1, True, 5.0)
    row = engine.finish(small, Timed(call=lambda: None, error=calls.CaseTimeout()), clock)
    assert row["status"] == "timeout"
    written = []
    engine.time_group([Case("naive", "forward", "float64", 8, 8, 4, 1)], written.append)
    (skipped,) = written
    assert skipped["status"] == "skipped" and "N=4 K=8 M=4" in skipped["error"] and "case-timeout" in skipped["error"]


# --------------------------------------------------------------------------- resuming as one run
def _tiny_sweep(**kw) -> Sweep:
    base = dict(impls=("numpy", "naive"), passes=("forward",), dtypes=("float64",), batches=(1, 2, 64),
                layers=((16, 8),), threads=(1,), plan=Plan(min_samples=2, max_samples=2, budget_s=0.001))
    base.update(kw)
    return Sweep(**base)


def test_resume_through_the_latest_link(tmp_path, monkeypatch, capsys):
    """`--resume reports/latest` works on the run the link points at and leaves the link alone."""
    monkeypatch.chdir(tmp_path)
    run_dir, status = runner.run(runner.RunOptions(sweep=_tiny_sweep(), preset="t", report=False, progress=False))
    assert status == 0
    latest = tmp_path / "reports" / "latest"
    assert latest.is_symlink() and latest.resolve() == run_dir.resolve()
    rows = read_rows(run_dir).rows
    # drop the last row, as if the run had been interrupted before it
    lines = (run_dir / results.RESULTS_FILE).read_text().splitlines(keepends=True)
    (run_dir / results.RESULTS_FILE).write_text("".join(lines[:-1]))
    capsys.readouterr()
    assert cli.main(["run", "--resume", "reports/latest", "--no-report", "--no-progress"]) == 0
    assert latest.is_symlink() and latest.resolve() == run_dir.resolve()
    assert sorted(r["case_id"] for r in read_rows(run_dir).rows) == sorted(r["case_id"] for r in rows)
    env = results.read_env(run_dir)
    assert len(env["sessions"]) == 2 and env["sessions"][0]["started_at"] <= env["sessions"][1]["started_at"]
    assert env["run_id"] == run_dir.name


def test_a_resumed_run_predicts_from_earlier_sessions(tmp_path):
    """Extrapolation after a resume rests on the rates the earlier session measured, exactly as
    in one uninterrupted run; a case that timed out earlier still stops larger ones."""
    engine = engine_for(Sweep(max_case_s=1.0), tmp_path)
    small = Case("numba-serial", "step", "float64", 16, 64, 64, 1)
    big = Case("numba-serial", "step", "float64", 64, 512, 512, 1)  # 256x the FLOPs; 0.2 s per call
    row = {"impl": small.impl, "pass": small.pass_, "dtype": small.dtype, "batch": small.batch,
           "in_features": small.in_features, "out_features": small.out_features, "threads": 1}
    engine.learn_from_rows([dict(row, status="ok", gflops=0.5), dict(row, batch=2, status="timeout", gflops=math.nan)])
    assert engine.predict(big)["status"] == "extrapolated"
    assert engine.timed_out[("numba-serial", "step", "float64", 1)][1] == "N=2 K=64 M=64"
    assert engine.rates[("numba-serial", "step", "float64", 1)] == [(0.5, small.flops, "N=16 K=64 M=64")]


# --------------------------------------------------------------------------- the time limit
def _extra_sweep(time_limit_s):
    # a target no 2-round case reaches: every group ends its planned rounds imprecise
    return Sweep(impls=("numpy", "numba-serial"), passes=("forward",), dtypes=("float64",), batches=(1, 4),
                 layers=((8, 4),), threads=(1,), time_limit_s=time_limit_s,
                 plan=Plan(min_samples=2, max_samples=60, budget_s=0.02, min_rounds=2, max_rounds=2, target=1e-9))


@pytest.mark.parametrize("workers", [False, True])
def test_imprecise_groups_get_extra_rounds_within_the_time_limit(tmp_path, capsys, workers):
    run_dir, status = runner.run(runner.RunOptions(sweep=_extra_sweep(300.0), out=tmp_path / "run", report=False,
                                                   progress=False, workers=workers))
    assert status == 0
    rows = read_rows(run_dir).rows
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    # far from the limit, so every group takes every extra round the engine allows
    assert {r["rounds"] for r in rows} == {2 + runner.MAX_EXTRA_ROUNDS}
    assert {r["stopped"] for r in rows} == {"time_limit"}
    assert f"{runner.MAX_EXTRA_ROUNDS} extra round(s)" in capsys.readouterr().err


def test_without_a_time_limit_a_group_stops_at_max_rounds(tmp_path):
    run_dir, status = runner.run(runner.RunOptions(sweep=_extra_sweep(None), out=tmp_path / "run", report=False,
                                                   progress=False, workers=False))
    rows = read_rows(run_dir).rows
    assert status == 0 and {r["rounds"] for r in rows} == {2}
    assert {r["stopped"] for r in rows} <= {"max_rounds", "budget"}


def test_a_spent_time_limit_adds_no_round_and_loses_no_row(tmp_path):
    run_dir, status = runner.run(runner.RunOptions(sweep=_extra_sweep(1e-3), out=tmp_path / "run", report=False,
                                                   progress=False, workers=False))
    rows = read_rows(run_dir).rows
    assert status == 0 and len(rows) == 4 and {r["rounds"] for r in rows} == {2}


def test_past_the_time_limit_a_group_stops_at_its_planned_rounds(tmp_path, capsys):
    """Rounds between min_rounds and max_rounds are asked for by precision: once the time limit
    has passed, a group that has its min_rounds takes no more, and says why."""
    sweep = _extra_sweep(1e-3)
    sweep = replace(sweep, plan=replace(sweep.plan, max_rounds=5))
    run_dir, status = runner.run(runner.RunOptions(sweep=sweep, out=tmp_path / "run", report=False,
                                                   progress=False, workers=False))
    rows = read_rows(run_dir).rows
    assert status == 0 and len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    assert {r["rounds"] for r in rows} == {2}
    assert {r["stopped"] for r in rows} == {"time_limit"}
    assert "time limit (0.001 s) reached: 2 group(s) stopped after their planned 2 rounds" in capsys.readouterr().err
    # without the limit the same sweep runs on towards max_rounds (the target is out of reach)
    run_dir, _ = runner.run(runner.RunOptions(sweep=replace(sweep, time_limit_s=None), out=tmp_path / "free",
                                              report=False, progress=False, workers=False))
    assert {r["rounds"] for r in read_rows(run_dir).rows} != {2}


def test_extra_rounds_stop_at_the_deadline_and_write_every_held_group(tmp_path):
    """A fake clock: each extra round costs 10 s of it; a deadline 21 s away leaves room for
    two (after two, 1 s is left, less than the worker's start reserved); the groups are
    written all the same."""
    sweep = _extra_sweep(21.0)
    impls = {n: registry.get(n) for n in sweep.impls}
    engine = runner.Engine(runner.RunOptions(sweep=sweep, report=False, progress=False, workers=False), tmp_path,
                           [], impls)
    held = []
    for batch in (1, 4):
        state = engine.prepare_group([c for c in expand(sweep, impls, 1) if c.batch == batch], lambda row: None)
        while not state.settled:
            engine.visit(state)
        held.append(state)
    now = [0.0]
    visits = []

    def clock():
        return now[0]

    def on_group(state):
        visits.append(state.first.batch)
        now[0] += 5.0
    rows = []
    taken = engine.extra_rounds(held, 21.0, rows.append, on_group, clock=clock)
    assert taken == 2 and sorted(visits) == [1, 1, 4, 4]
    assert len(rows) == 4 and {r["rounds"] for r in rows} == {4} and not held


class _Held:
    def __init__(self, name, width, cost):
        self.name, self.width, self.cost = name, width, cost

    def widest(self):
        return self.width

    def round_cost(self, plan):
        return self.cost


def test_extra_rounds_go_to_the_widest_intervals_that_fit():
    groups = [_Held("narrow", 0.03, 1.0), _Held("wide", 0.30, 6.0), _Held("wider", 0.40, 5.0),
              _Held("cheap", 0.05, 0.5)]
    chosen = runner.choose_extra(groups, 11.2, Plan())
    assert [g.name for g in chosen] == ["wider", "wide"]  # 11 s; neither narrow (12 s) nor cheap (11.5 s) fits
    chosen = runner.choose_extra(groups, 7.0, Plan())
    assert [g.name for g in chosen] == ["wider", "cheap", "narrow"]  # "wide" does not fit after "wider"
    assert runner.choose_extra(groups, 0.1, Plan()) == []


def test_a_signal_before_the_extra_rounds_keeps_the_groups_waiting_for_them(tmp_path, monkeypatch, capsys):
    """A group whose planned rounds are done waits, unwritten, for the extra rounds; SIGTERM
    before they start must still write it (resume then skips it), like any finished case."""
    visits = []
    real_visit = runner.Engine.visit

    def visit(self, state):
        visits.append(state.first.batch)
        if len(visits) == 2:  # the second group's round: the first has its one round and is held
            raise runner.Interrupted(signal.SIGTERM)
        real_visit(self, state)

    monkeypatch.setattr(runner.Engine, "visit", visit)
    sweep = _extra_sweep(300.0)
    sweep = replace(sweep, plan=replace(sweep.plan, min_rounds=1, max_rounds=1))
    run_dir, status = runner.run(runner.RunOptions(sweep=sweep, out=tmp_path / "run", report=False,
                                                   progress=False, workers=False))
    assert status == 128 + signal.SIGTERM
    rows = read_rows(run_dir).rows
    assert visits == [1, 4]
    assert {(r["batch"], r["rounds"], r["status"]) for r in rows} == {(1, 1, "ok")} and len(rows) == 2
