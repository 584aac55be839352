"""`python -m affbench run` option checking: every bad value exits 2 with one clear line on
stderr that names the option and what it accepts, no traceback, and nothing written.

Runs in-process through affbench.cli.main with the working directory set to tmp_path, so a
mistaken run could only ever write under tmp_path (and the test would see it).
"""

from __future__ import annotations

import argparse

import pytest

from affbench import cli, registry
from affbench.commands import run as run_cmd
from affbench.engine.sweep import PRESETS
from affbench.measure.threads import max_threads

GOOD = ["--impl", "numpy", "--pass", "forward", "--dtype", "float64", "--batch", "1", "--layer", "8:4",
        "--threads", "1", "--budget", "0.01", "--no-report", "--no-progress"]


def with_option(option: str, value: str) -> list[str]:
    """GOOD with ``option`` set to ``value`` (replacing its good value, or added)."""
    args = list(GOOD)
    if option in args:
        args[args.index(option) + 1] = value
    else:
        args += [option, value]
    return args


def run_bad(tmp_path, monkeypatch, capsys, args: list[str]) -> str:
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()
    rc = cli.main(["run", *args, "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert rc == 2, captured.err
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("affbench run: error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "something was written"
    assert not (tmp_path / "out").exists() and not (tmp_path / "reports").exists()
    return lines[0]


IMPLS = ", ".join(sorted([*registry.names(), *registry.unavailable()]))

#: (option, bad value, text the message must contain: the accepted values or their form)
BAD_VALUES = [
    ("--impl", "fast", f"accepted: {IMPLS}"),
    ("--impl", "numpy,nope", "'nope'"),
    ("--impl", ",", "accepted:"),
    ("--pass", "sideways", "accepted: forward, backward, step"),
    ("--dtype", "float16", "accepted: float32, float64"),
    ("--dtype", "float64,int8", "'int8'"),
    ("--preset", "huge", f"accepted: {', '.join(PRESETS)}"),
    ("--layer", "784x50", "K:M with two positive integers"),
    ("--layer", "784:", "K:M with two positive integers"),
    ("--layer", "0:5", "must be positive"),
    ("--layer", "a:b", "K:M with two positive integers"),
    ("--layer", "8:4,1:2:3", "K:M"),
    ("--batch", "0", "positive integer"),
    ("--batch", "-1", "positive integer"),
    ("--batch", "1.5", "positive integer"),
    ("--batch", "abc", "positive integer"),
    ("--batch", "1,,0", "positive integer"),
    ("--threads", "0", f"accepted: 1..{max_threads()} or 'all'"),
    ("--threads", "99", f"accepted: 1..{max_threads()} or 'all'"),
    ("--threads", "many", f"accepted: 1..{max_threads()} or 'all'"),
    ("--budget", "-1", "positive number of seconds"),
    ("--budget", "0", "positive number of seconds"),
    ("--budget", "inf", "positive number of seconds"),
    ("--max-case-s", "-2", "positive number of seconds"),
    ("--case-timeout", "0", "positive number of seconds"),
    ("--time-limit", "-5", "positive number of seconds"),
    ("--time-limit", "soon", "is not a number"),
    # a bare number is a fraction: 2 or more is not guessed to be percent
    ("--target", "2", "'2' is ambiguous: write 2% (a bare number is a fraction: 0.02 = 2%)"),
    ("--target", "1", "'1' is ambiguous: write 1%"),
    ("--target", "0", "'0' must be above 0% and below 100%"),
    ("--target", "0%", "'0%' must be above 0% and below 100%"),
    ("--target", "100%", "'100%' must be above 0% and below 100%"),
    ("--target", "-0.02", "must be above 0% and below 100%"),
    ("--target", "tight", "'tight' is not a percentage (write e.g. 2% or 0.02)"),
]


@pytest.mark.parametrize("option, value, accepted", BAD_VALUES,
                         ids=[f"{o}={v}" for o, v, _ in BAD_VALUES])
def test_bad_value_is_one_line_naming_the_option(tmp_path, monkeypatch, capsys, option, value, accepted):
    line = run_bad(tmp_path, monkeypatch, capsys, with_option(option, value))
    assert f"error: {option}:" in line
    assert accepted in line


@pytest.mark.parametrize("option", ["--impl", "--batch", "--layer", "--threads", "--dtype", "--pass"])
def test_empty_value_is_refused(tmp_path, monkeypatch, capsys, option):
    line = run_bad(tmp_path, monkeypatch, capsys, with_option(option, ""))
    assert f"error: {option}:" in line


def test_missing_config(tmp_path, monkeypatch, capsys):
    line = run_bad(tmp_path, monkeypatch, capsys, ["--config", "nope.toml", *GOOD])
    assert "--config: nope.toml: no such file" in line


def test_bad_toml_config(tmp_path, monkeypatch, capsys):
    (tmp_path / "bad.toml").write_text("batch = [1, 2\nimpl = 'numpy'\n")
    line = run_bad(tmp_path, monkeypatch, capsys, ["--config", "bad.toml", *GOOD])
    assert "--config: bad.toml: cannot read it as TOML" in line


def test_unreadable_config(tmp_path, monkeypatch, capsys):
    (tmp_path / "adir.toml").mkdir()
    line = run_bad(tmp_path, monkeypatch, capsys, ["--config", "adir.toml", *GOOD])
    assert "--config: adir.toml:" in line


def test_unknown_config_key(tmp_path, monkeypatch, capsys):
    (tmp_path / "typo.toml").write_text("batches = [1]\n")
    line = run_bad(tmp_path, monkeypatch, capsys, ["--config", "typo.toml", *GOOD])
    assert "--config: typo.toml: unknown key(s) batches; accepted:" in line
    assert "batch" in line.split("accepted:")[1]


@pytest.mark.parametrize("body, option", [
    ("batch = [0]\n", "--config sweep.toml: batch:"),  # named as the file's key, not the option
    ('layer = ["784x50"]\n', "--config sweep.toml: layer:"),
    ('impl = ["fast"]\n', "--config sweep.toml: impl:"),
    ("threads = [99]\n", "--config sweep.toml: threads:"),
    ("budget = -1\n", "--config sweep.toml: budget: -1 must be a positive number"),
    ('budget = "soon"\n', "--config sweep.toml: budget: 'soon' is not a number"),
    ("max_case_s = 0\n", "--config sweep.toml: max_case_s: 0"),
    ('case_timeout = "1m"\n', "--config sweep.toml: case_timeout: '1m' is not a number"),
    ("budget = true\n", "--config sweep.toml: budget: True is not a number"),
    ("min_samples = 0\n", "--config sweep.toml: min_samples"),
    ("min_samples = 9\nmax_samples = 3\n", "--config: min_samples 9 > max_samples 3"),
    ('target = "0%"\n', "--config sweep.toml: target: '0%' must be above 0% and below 100%"),
    ("target = 2\n", "--config sweep.toml: target: 2 is ambiguous: write 2% (a bare number is a fraction"),
    ("target = 0\n", "--config sweep.toml: target: 0 must be above 0% and below 100%"),
    ('target = "tight"\n', "--config sweep.toml: target: 'tight' is not a percentage"),
    ('rounds = "6:3"\n', "--config sweep.toml: rounds: '6:3': MAX 3 is below MIN 6"),
    ('rounds = "1:2:3"\n', "--config sweep.toml: rounds: '1:2:3' is not MIN or MIN:MAX"),
    ('rounds = "0"\n', "--config sweep.toml: rounds: '0' is not a positive integer"),
    ('preset = "fast"\n', "--config sweep.toml: preset: unknown preset 'fast'; accepted: quick"),
    ("layer = [[784, 50, 1]]\n", "--config sweep.toml: layer: [784, 50, 1] is a list inside the list"),
    ("batch = [[1, 2]]\n", "--config sweep.toml: batch: [1, 2] is a list inside the list"),
])
def test_bad_values_in_a_config_file(tmp_path, monkeypatch, capsys, body, option):
    (tmp_path / "sweep.toml").write_text(body)
    args = [a for a in GOOD]
    for opt in ("--impl", "--batch", "--layer", "--threads", "--budget"):  # let the file speak
        i = args.index(opt)
        del args[i:i + 2]
    line = run_bad(tmp_path, monkeypatch, capsys, ["--config", "sweep.toml", *args])
    assert option in line


def test_config_layer_as_a_pair(tmp_path):
    (tmp_path / "sweep.toml").write_text('layer = [[784, 50], "8:4"]\n')
    parser = argparse.ArgumentParser()
    run_cmd.configure(parser)
    _, sweep = run_cmd.build_sweep(parser.parse_args(["--config", str(tmp_path / "sweep.toml")]))
    assert sweep.layers == ((784, 50), (8, 4))


def test_config_then_command_line_override_the_preset(tmp_path):
    (tmp_path / "sweep.toml").write_text('preset = "quick"\nbatch = [2, 3]\nlayer = ["8:4"]\nbudget = 0.5\n'
                                         "min_samples = 2\nmax_samples = 4\ncase_timeout = 9\n")
    parser = argparse.ArgumentParser()
    run_cmd.configure(parser)
    args = parser.parse_args(["--config", str(tmp_path / "sweep.toml"), "--batch", "7", "--impl", "numpy"])
    name, sweep = run_cmd.build_sweep(args)
    quick = PRESETS["quick"][1]
    assert name == "quick"
    assert sweep.batches == (7,)  # command line over the file
    assert sweep.layers == ((8, 4),) and sweep.plan.budget_s == 0.5  # file over the preset
    assert (sweep.plan.min_samples, sweep.plan.max_samples, sweep.case_timeout_s) == (2, 4, 9.0)
    assert sweep.dtypes == quick.dtypes and sweep.max_case_s == quick.max_case_s  # preset where neither says
    assert sweep.impls == ("numpy",)


def test_target_and_rounds(tmp_path):
    (tmp_path / "sweep.toml").write_text('target = "5%"\nrounds = "3:4"\n')
    parser = argparse.ArgumentParser()
    run_cmd.configure(parser)
    _, sweep = run_cmd.build_sweep(parser.parse_args(["--config", str(tmp_path / "sweep.toml")]))
    assert (sweep.plan.target, sweep.plan.min_rounds, sweep.plan.max_rounds) == (0.05, 3, 4)
    _, sweep = run_cmd.build_sweep(parser.parse_args(["--config", str(tmp_path / "sweep.toml"),
                                                      "--target", "0.01", "--rounds", "6"]))
    assert (sweep.plan.target, sweep.plan.min_rounds, sweep.plan.max_rounds) == (0.01, 6, 6)
    for given, fraction in (("1.5%", 0.015), ("0.5", 0.5), ("99%", 0.99)):  # 0.5 is 50%, as a fraction
        _, sweep = run_cmd.build_sweep(parser.parse_args(["--target", given]))
        assert sweep.plan.target == pytest.approx(fraction)
    (tmp_path / "float.toml").write_text("target = 0.03\n")
    _, sweep = run_cmd.build_sweep(parser.parse_args(["--config", str(tmp_path / "float.toml")]))
    assert sweep.plan.target == pytest.approx(0.03)


@pytest.mark.parametrize("command, option", [("run", "--target"), ("compare", "--fail-above"),
                                             ("compare", "--min-change")])
def test_percentage_options_say_how_to_write_them(command, option, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    help_ = " ".join(capsys.readouterr().out.split())
    assert f"{option} PCT" in help_
    assert "e.g. 2% or 0.02" in help_ or "e.g. 10% or 0.1" in help_ or "e.g. 5% or 0.05" in help_


def test_time_limit(tmp_path):
    parser = argparse.ArgumentParser()
    run_cmd.configure(parser)
    _, sweep = run_cmd.build_sweep(parser.parse_args([]))
    assert sweep.time_limit_s == PRESETS["default"][1].time_limit_s and sweep.time_limit_s is not None
    _, sweep = run_cmd.build_sweep(parser.parse_args(["--time-limit", "none"]))
    assert sweep.time_limit_s is None
    (tmp_path / "sweep.toml").write_text("time_limit = 90\n")
    _, sweep = run_cmd.build_sweep(parser.parse_args(["--config", str(tmp_path / "sweep.toml")]))
    assert sweep.time_limit_s == 90.0
    _, sweep = run_cmd.build_sweep(parser.parse_args(["--config", str(tmp_path / "sweep.toml"), "--time-limit", "30"]))
    assert sweep.time_limit_s == 30.0


def test_argparse_level_mistakes_exit_2_without_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "--budget", "soon"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--budget" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [None, *__import__("affbench.cli", fromlist=["COMMANDS"]).COMMANDS])
def test_every_help_prints(command, capsys):
    """`--help` of the program and of each command renders (argparse formats help lazily: a
    stray % only fails when a user asks for help)."""
    from affbench import cli

    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"] if command else ["--help"])
    assert exit_.value.code == 0
    assert "usage: python -m affbench" in capsys.readouterr().out


def test_run_says_what_its_report_warns_of(tmp_path, capsys):
    # a run without the baseline has no speedups: the console says so, not only report.md
    out = tmp_path / "run"
    argv = ["run", "--impl", "naive", "--batch", "2", "--layer", "8:4", "--pass", "forward", "--dtype", "float64",
            "--threads", "1", "--budget", "0.01", "--rounds", "1", "--out", str(out), "--no-progress", "--no-workers"]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "warning: the baseline numpy has no timed rows in this run" in err
    wins = (out / "report.md").read_text().split("## Who wins where")[1].split("\n## ")[0]
    assert "`numpy` was not timed here, so there are no speedups" in wins
    assert "speedup over numpy" not in wins
