"""`python -m affbench train` end to end on tiny settings, its usage errors, the missing
scikit-learn path, and the training section of a run's report (`train --into`, `report`).

In process through affbench.cli.main with the working directory set to tmp_path, as the run
command's tests do."""

from __future__ import annotations

import csv
import sys

import pytest

from affbench import cli
from affbench.train import output

TINY = ["--network", "two-layer", "--impl", "numpy,numba-serial", "--batch", "10", "--iterations", "5",
        "--epochs", "1", "--rounds", "1", "--budget", "0.02", "--threads", "1"]


def without_sklearn(monkeypatch) -> None:
    """Make `import sklearn` fail, as on an install without the train extra."""
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sklearn", None)


def run_train(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli.main(["train", *args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_train_end_to_end(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sklearn")
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_train(capsys, *TINY, "--network", "two-layer,convnet-head")
    assert rc == 0, err
    run_dir = next((tmp_path / "reports").iterdir())
    assert run_dir.name.endswith("-train")
    for name in ("train.csv", "curves.csv", "env.json", "report.md", "figures/loss_vs_time.png",
                 "figures/step_breakdown.png"):
        assert (run_dir / name).is_file(), name
    # the printed table: a header and a line per implementation and network
    assert out.count("implementation  time per step") == 2
    for line in ("two-layer 784-50-10, batch 10, float64, 1 thread(s)", "convnet-head 4320-100-10",
                 "digits: 64-50-10", "digits: 120-100-10"):
        assert line in out
    assert "reference" in out and out.count(" agrees ") == 2 and "DISAGREES" not in out
    rows = list(csv.DictReader(open(run_dir / "train.csv")))
    assert [(r["network"], r["impl"]) for r in rows] == [("two-layer", "numpy"), ("two-layer", "numba-serial"),
                                                         ("convnet-head", "numpy"), ("convnet-head", "numba-serial")]
    for r in rows:
        assert float(r["median_s"]) > 0 and 0 < float(r["affine_share"]) < 1 and float(r["amdahl"]) > 1
        assert r["numba_threads"] == "1" and r["blas_threads"] == "1" and r["dtype"] == "float64"
        assert r["digits_accuracy"] == rows[0 if r["network"] == "two-layer" else 2]["digits_accuracy"]
    assert rows[1]["agrees"] == "True" and rows[1]["digits_agrees"] == "True" and rows[0]["agrees"] == ""
    curves = list(csv.DictReader(open(run_dir / "curves.csv")))
    assert {c["impl"] for c in curves} == {"numpy", "numba-serial", output.NUDGED}
    assert sum(1 for c in curves if c["network"] == "two-layer" and c["impl"] == "numpy") == 5 + 180
    md = (run_dir / "report.md").read_text()
    assert "| numba-serial |" in md and "figures/step_breakdown.png" in md
    # `report` rewrites a train directory's report from its files
    (run_dir / "report.md").unlink()
    assert cli.main(["report", str(run_dir)]) == 0 and (run_dir / "report.md").read_text() == md


def test_without_scikit_learn_train_stops_with_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    without_sklearn(monkeypatch)
    rc, out, err = run_train(capsys, *TINY)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("affbench train: error: ")
    assert 'pip install -e ".[train]"' in lines[0] and "--no-digits" in lines[0]
    assert not (tmp_path / "reports").exists(), "nothing is written before the check"


def test_without_scikit_learn_no_digits_runs_the_synthetic_part(tmp_path, monkeypatch, capsys):
    without_sklearn(monkeypatch)
    out_dir = tmp_path / "out"
    rc, out, err = run_train(capsys, *TINY, "--no-digits", "--out", str(out_dir))
    assert rc == 0, err
    rows = list(csv.DictReader(open(out_dir / "train.csv")))
    assert len(rows) == 2 and all(r["digits_accuracy"] == "" for r in rows)
    assert "digits" not in out.splitlines()[0]


BAD = [
    (["--network", "resnet"], "--network: unknown value(s) 'resnet'; accepted: two-layer, deep-mlp, convnet-head"),
    (["--impl", "fast"], "--impl: unknown value(s) 'fast'"),
    (["--dtype", "float16"], "--dtype: unknown value(s) 'float16'; accepted: float32, float64"),
    (["--dtype", "float32,float64"], "--dtype: one dtype per run"),
    (["--batch", "0"], "--batch: '0' is not a positive integer"),
    (["--iterations", "many"], "--iterations: 'many' is not a positive integer"),
    (["--epochs", "-1"], "--epochs: '-1' is not a positive integer"),
    (["--threads", "99"], "--threads: 99 is above"),
    (["--rounds", "3:1"], "--rounds: '3:1': MAX 1 is below MIN 3"),
    (["--budget", "soon"], "--budget: 'soon' is not a number"),
    (["--seed", "x"], "--seed: 'x' is not a non-negative integer"),
    (["--out", "a", "--into", "b"], "--out and --into: give one"),
    (["--into", "nowhere"], "--into: nowhere is not a run directory"),
    (["--impl", "naive", "--network", "deep-mlp"], "--impl: naive (pure Python) would take"),
]


@pytest.mark.parametrize("args, message", BAD)
def test_bad_options_name_the_option(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_train(capsys, *args)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "reports").exists()


def test_an_existing_out_directory_is_never_overwritten(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    rc, _, err = run_train(capsys, *TINY, "--out", str(tmp_path / "out"))
    assert rc == 2 and "exists and is not empty" in err
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_naive_runs_on_a_tiny_setting(tmp_path, capsys):
    rc, out, err = run_train(capsys, "--impl", "naive", "--network", "two-layer", "--batch", "2", "--iterations",
                             "3", "--no-digits", "--rounds", "1", "--budget", "0.01", "--threads", "1",
                             "--out", str(tmp_path / "out"))
    assert rc == 0, err
    assert "naive" in out and "agrees" in out


def test_into_a_run_directory_adds_a_training_section_to_its_report(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sklearn")
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    assert cli.main(["run", "--impl", "numpy", "--pass", "forward", "--dtype", "float64", "--batch", "1",
                     "--layer", "8:4", "--threads", "1", "--budget", "0.01", "--rounds", "1", "--no-progress",
                     "--no-workers", "--out", str(run_dir)]) == 0
    assert "Training" not in (run_dir / "report.md").read_text()
    rc, out, err = run_train(capsys, *TINY, "--into", str(run_dir))
    assert rc == 0, err
    assert (run_dir / "train" / "train.csv").is_file()
    md = (run_dir / "report.md").read_text()
    assert "## Training: the Affine layer inside a training step" in md
    assert "| numba-serial |" in md and "train/figures/loss_vs_time.png" in md
    assert "Training: the Affine layer" in (run_dir / "report.html").read_text()
    # `report` keeps the section when it rebuilds the run's report
    (run_dir / "report.md").unlink()
    assert cli.main(["report", str(run_dir)]) == 0
    assert "## Training" in (run_dir / "report.md").read_text()
    # a second --into refuses: the train directory is there
    rc, _, err = run_train(capsys, *TINY, "--into", str(run_dir))
    assert rc == 2 and "exists and is not empty" in err


def test_a_broken_train_directory_is_a_warning_in_the_run_report(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    assert cli.main(["run", "--impl", "numpy", "--pass", "forward", "--dtype", "float64", "--batch", "1",
                     "--layer", "8:4", "--threads", "1", "--budget", "0.01", "--rounds", "1", "--no-progress",
                     "--no-workers", "--no-report", "--out", str(run_dir)]) == 0
    (run_dir / "train").mkdir()
    (run_dir / "train" / "train.csv").write_text("what,is,this\n1,2,3\n")
    assert cli.main(["report", str(run_dir)]) == 0
    assert "not a train file" in (run_dir / "report.md").read_text()


def test_docs_list_every_train_column():
    from pathlib import Path

    docs = (Path(__file__).resolve().parent.parent / "docs" / "train.md").read_text()
    assert output.column_table() in docs, "regenerate the column table in docs/train.md (output.column_table())"
