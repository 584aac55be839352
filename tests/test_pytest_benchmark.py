"""The pytest-benchmark comparisons (tests/benchmarks) end to end, and the JSON converter."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from affbench.pytest_plugin import pytest_benchmark_update_machine_info
from affbench.store import results
from affbench.store.pytest_import import convert
from affbench.store.results import ResultsError

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
GOOD = "forward-float64-100x784x50-numpy"
BAD = "forward-float64-100x784x50-broken"


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    """One timed pytest-benchmark run in a subprocess: numpy (right) and 'broken' (wrong), on
    the book's layer, forward, float64, a few short rounds, saved with --benchmark-json."""
    out = tmp_path_factory.mktemp("pytest-benchmark") / "bench.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "pytest", "tests/benchmarks", "-p", "broken_impl_plugin", "-p", "no:cacheprovider",
           "-q", "-k", f"{GOOD} or {BAD}", "--benchmark-enable", f"--benchmark-json={out}", "--benchmark-save-data",
           "--benchmark-max-time=0.05", "--benchmark-min-rounds=3", "--benchmark-warmup=off"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return proc, out


@pytest.mark.slow
def test_wrong_kernel_fails_and_right_one_is_saved(bench_run):
    proc, out = bench_run
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text
    assert "1 failed, 1 passed" in text, text
    assert "broken forward float64 N=100 K=784 M=50 disagrees with the float64 reference" in text, text
    names = [b["name"] for b in json.loads(out.read_text())["benchmarks"]]
    assert names == [f"test_affine[{GOOD}]"]  # the wrong kernel's timings are not saved


@pytest.mark.slow
def test_saved_json_carries_machine_and_case_info(bench_run):
    _, out = bench_run
    data = json.loads(out.read_text())
    mi = data["machine_info"]
    import numba

    assert mi["numba"] == numba.__version__ and mi["llvmlite"]
    assert mi["numba_threading_layer"] in ("omp", "tbb", "workqueue")
    assert mi["numba_num_threads"] >= 1 and mi["affbench_threads"] >= 1
    assert any(lib.get("user_api") == "blas" and lib.get("internal_api") for lib in mi["blas"])
    assert "pytest" in data["commit_info"]["affbench_command"]
    (bench,) = data["benchmarks"]
    extra = bench["extra_info"]
    assert {k: extra[k] for k in ("impl", "pass", "dtype", "N", "K", "M")} == {
        "impl": "numpy", "pass": "forward", "dtype": "float64", "N": 100, "K": 784, "M": 50}
    assert extra["flops"] == 2 * 100 * 784 * 50 + 100 * 50
    assert extra["gflops"] == pytest.approx(extra["flops"] / bench["stats"]["median"] / 1e9)
    assert extra["threads"] == mi["affbench_threads"] and extra["blas_threads"] >= 1
    assert bench["group"] == "forward float64 N=100 K=784 M=50"


@pytest.mark.slow
def test_convert_saved_json(bench_run, tmp_path):
    _, out = bench_run
    run = convert(out, tmp_path / "run")
    assert run == tmp_path / "run"
    (row,) = results.read_rows(run).rows
    stats = json.loads(out.read_text())["benchmarks"][0]["stats"]
    assert (row["impl"], row["pass"], row["dtype"], row["batch"], row["in_features"], row["out_features"]) == (
        "numpy", "forward", "float64", 100, 784, 50)
    assert row["status"] == "ok" and row["threads"] >= 1 and row["numba_threads"] == 1
    assert row["median_s"] == stats["median"] and row["n_samples"] == stats["rounds"] >= 3
    assert row["repeats"] == stats["iterations"]
    assert row["iqr_s"] == pytest.approx(row["q3_s"] - row["q1_s"])
    assert row["cv"] == pytest.approx(stats["stddev"] / stats["mean"])
    assert row["gflops"] == pytest.approx(row["flops"] / row["median_s"] / 1e9)
    assert row["samples_s"] == pytest.approx(stats["data"])
    assert row["case_id"] == results.case_id("numpy", "forward", "float64", 100, 784, 50, row["threads"])
    env = results.read_env(run)
    for key in ("cpu", "python", "numpy", "numba", "llvmlite", "blas", "numba_threading_layer",
                "numba_num_threads", "git_commit", "command", "started_at"):
        assert env.get(key) not in (None, "", []), key
    assert env["cpu"]["logical_cores"] >= 1


# ----------------------------------------------------------------------------- converter only
def _bench(**extra) -> dict:
    stats = {"min": 1e-3, "max": 3e-3, "mean": 2e-3, "stddev": 5e-4, "rounds": 4, "median": 2e-3,
             "iqr": 1e-3, "q1": 1.5e-3, "q3": 2.5e-3, "iqr_outliers": 0, "stddev_outliers": 1,
             "outliers": "1;0", "ld15iqr": 1e-3, "hd15iqr": 3e-3, "ops": 500.0, "total": 8e-3,
             "iterations": 2}
    params = {"bench_impl": "numba-serial", "bench_pass": "step", "bench_dtype": "float32", "N": 7, "K": 5, "M": 3}
    return {"group": "g", "name": "test_affine[x]", "fullname": "t::test_affine[x]", "params": params,
            "param": "x", "extra_info": extra, "options": {}, "stats": stats}


def _write(tmp_path, data, name="0001_x.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_convert_from_params_without_data(tmp_path):
    other = dict(_bench(), params={"n": 1}, name="test_other", fullname="t::test_other")
    path = _write(tmp_path, {"machine_info": {"cpu": {"count": 2}, "affbench_threads": 2}, "commit_info": {},
                             "datetime": "2024-01-01", "version": "5.2.3", "benchmarks": [_bench(), other]})
    (row,) = results.read_rows(convert(path, tmp_path / "run")).rows
    assert (row["impl"], row["pass"], row["dtype"], row["batch"], row["threads"]) == ("numba-serial", "step",
                                                                                      "float32", 7, 2)
    assert row["case_id"] == "numba-serial|step|float32|7|5|3|2"
    assert row["flops"] == 6 * 7 * 5 * 3 + 2 * 7 * 3 and row["samples_s"] == [] and row["repeats"] == 2
    assert math.isnan(row["ci_low_s"]) and math.isnan(row["ci_high_s"])  # 4 rounds: too few for an interval
    assert row["noisy"] is True  # cv 0.25
    env = results.read_env(tmp_path / "run")
    assert env["pytest_benchmark"]["ignored"] == ["t::test_other"] and env["cpu"]["logical_cores"] == 2


def _many_rounds(median: float, rounds: int = 1000, **extra) -> dict:
    b = _bench(**extra)
    b["stats"] = dict(b["stats"], rounds=rounds, median=median, q1=0.9 * median, q3=1.1 * median, mean=median,
                      stddev=0.05 * median)
    return b


def test_convert_without_data_gives_the_quartile_notch_interval(tmp_path):
    path = _write(tmp_path, {"machine_info": {"affbench_threads": 2}, "commit_info": {},
                             "benchmarks": [_many_rounds(2e-3, rounds=400)]})
    (row,) = results.read_rows(convert(path, tmp_path / "run")).rows
    half = 1.58 * (0.2 * 2e-3) / 20  # 1.58 IQR / sqrt(400)
    assert row["ci_low_s"] == pytest.approx(2e-3 - half) and row["ci_high_s"] == pytest.approx(2e-3 + half)


def test_compare_two_converted_runs_without_data(tmp_path, capsys):
    from affbench import cli

    runs = []
    for i, median in enumerate((2e-3, 3e-3)):  # B 50% slower, far outside both notches
        src = _write(tmp_path, {"machine_info": {"affbench_threads": 2}, "commit_info": {},
                                "benchmarks": [_many_rounds(median)]}, f"000{i}_x.json")
        runs.append(convert(src, tmp_path / f"run{i}"))
    assert cli.main(["compare", str(runs[0]), str(runs[1]), "--fail-above", "10%"]) == 1
    assert "1 case(s) slower by more than 10%" in capsys.readouterr().err


def test_saved_data_longer_than_the_csv_field_limit_reads_back(tmp_path):
    b = _bench()
    b["stats"]["data"] = [1e-3 + i * 1e-9 for i in range(20000)]  # ~460 KB in one field, past csv's 128 KB
    path = _write(tmp_path, {"machine_info": {"affbench_threads": 2}, "commit_info": {}, "benchmarks": [b]})
    (row,) = results.read_rows(convert(path, tmp_path / "run")).rows
    assert len(row["samples_s"]) == 20000


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("{not json", "not valid JSON"),
    ([1, 2], "not a pytest-benchmark JSON file"),
    ({"results": []}, "not a pytest-benchmark JSON file"),
    ({"machine_info": {}, "benchmarks": []}, "no affbench benchmarks"),
    ({"machine_info": {}, "benchmarks": [dict(_bench(), params={}, name="test_x")]}, "no affbench benchmarks"),
    ({"machine_info": {}, "benchmarks": ["oops"]}, "benchmarks[0] is str"),
])
def test_convert_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "0002_bad.json" if content is None else _write(tmp_path, content, "0002_bad.json")
    with pytest.raises(ResultsError) as info:
        convert(path, tmp_path / "run")
    assert str(path) in str(info.value) and message in str(info.value)
    assert not (tmp_path / "run" / results.RESULTS_FILE).exists()


def test_convert_ignores_cases_without_a_thread_count(tmp_path):
    """Threads are part of a case's identity: a row without them could not be compared."""
    path = _write(tmp_path, {"machine_info": {}, "benchmarks": [_bench()]})
    with pytest.raises(ResultsError, match="no affbench benchmarks"):
        convert(path, tmp_path / "run")


def test_convert_refuses_a_run_directory_with_results(tmp_path):
    path = _write(tmp_path, {"machine_info": {"affbench_threads": 1}, "benchmarks": [_bench()]})
    convert(path, tmp_path / "run")
    with pytest.raises(ResultsError, match="already exists"):
        convert(path, tmp_path / "run")


def test_machine_info_hook_adds_numba_and_blas():
    info: dict = {"cpu": {}}
    pytest_benchmark_update_machine_info(None, info)
    for key in ("numba", "llvmlite", "numpy", "numba_threading_layer", "numba_num_threads", "blas"):
        assert key in info, key


def test_report_from_pytest_benchmark_cli(tmp_path, capsys):
    """`report --from-pytest-benchmark` converts, then reports, through the one results schema."""
    from affbench import cli

    src = _write(tmp_path, {"machine_info": {"affbench_threads": 2}, "commit_info": {}, "benchmarks": [_bench()],
                            "datetime": "2026-11-28T00:00:00", "version": "5.2.3"})
    out = tmp_path / "run"
    assert cli.main(["report", "--from-pytest-benchmark", str(src), "--out", str(out)]) == 0
    assert (out / "results.csv").exists() and (out / "report.md").exists() and (out / "report.html").exists()
    (row,) = results.read_rows(out).rows
    assert row["impl"] == "numba-serial" and row["pass"] == "step"
    # never over an existing run
    assert cli.main(["report", "--from-pytest-benchmark", str(src), "--out", str(out)]) == 2
    assert "never overwritten" in capsys.readouterr().err


def _pytest_benchmarks(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pytest", "tests/benchmarks", "-p", "no:cacheprovider", "-q", "-rs",
           "-k", "forward and float64 and numpy and (100x784x50 or 1024x1024x1024)", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_benchmark_only_times_as_pytest_benchmark_users_type_it():
    """`pytest tests/benchmarks --benchmark-only` (no --benchmark-enable) times the benchmarks,
    the large case included; with no benchmark option they run once, untimed."""
    timed = _pytest_benchmarks("--benchmark-only", "--benchmark-max-time=0.01", "--benchmark-min-rounds=1",
                               "--benchmark-warmup=off")
    text = timed.stdout + timed.stderr
    assert timed.returncode == 0, text
    assert "Can't have both" not in text
    assert "2 passed" in text and "Median" in text and "1024x1024x1024-numpy" in text, text

    untimed = _pytest_benchmarks()
    text = untimed.stdout + untimed.stderr
    assert untimed.returncode == 0, text
    assert "1 passed, 1 skipped" in text and "runs only with --benchmark-enable" in text, text
    assert "Median" not in text


def test_bad_affbench_threads_is_one_usage_line_before_any_benchmark():
    env = dict(os.environ, AFFBENCH_THREADS="99")
    proc = subprocess.run([sys.executable, "-m", "pytest", "tests/benchmarks", "-p", "no:cacheprovider", "-q",
                           "-k", "forward and float64 and numpy and 100x784x50", "--benchmark-enable"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4, out  # pytest's usage error, not a failure per test
    assert "ERROR: AFFBENCH_THREADS=99 is outside 1.." in out
    assert "Traceback" not in out and out.count("AFFBENCH_THREADS=99") == 1
