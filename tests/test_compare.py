"""compare: the statistics (checked against reference values), matching, and the command."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers.synthetic import make_run

from affbench import cli
from affbench.commands.options import format_percent, parse_percent
from affbench.errors import UsageError
from affbench.report.compare import compare_case, compare_rows, env_differences, geometric_mean
from affbench.report.data import load_run

SMALL = dict(impls=("numpy", "numba-serial", "numba-tiled"), dtypes=("float64",), batches=(1, 16, 256),
             passes=("forward", "backward"), specials=False, verify=False)


def _row(impl, median, lo, hi, ratio=None, rlo=None, rhi=None, samples=(1.0,) * 8):
    return {"impl": impl, "median_s": median, "ci_low_s": lo, "ci_high_s": hi, "ratio": ratio,
            "ratio_low": rlo, "ratio_high": rhi, "samples_s": list(samples), "status": "ok"}


def test_drift_that_hits_every_implementation_is_not_a_change():
    """Run B on a machine 30% slower throughout: numpy's time changes (and is called slower:
    its own interval cannot know about a shift of the whole run), but an implementation's ratio
    to numpy, measured side by side, does not move."""
    a = _row("numba-tiled", 1.0e-3, 0.98e-3, 1.02e-3, 1.10, 1.08, 1.12)
    b = _row("numba-tiled", 1.3e-3, 1.27e-3, 1.33e-3, 1.11, 1.09, 1.13)
    c = compare_case(("numba-tiled",), a, b)
    assert c.measure == "vs baseline" and c.verdict == "same"
    assert c.time_change.value == pytest.approx(1.3) and c.time_change.low > 1.2
    base = compare_case(("numpy",), _row("numpy", 1e-3, 0.98e-3, 1.02e-3), _row("numpy", 1.3e-3, 1.27e-3, 1.33e-3))
    assert base.measure == "time" and base.verdict == "slower"


def test_a_fifteen_percent_slowdown_with_3_percent_intervals_is_called():
    a = _row("x", 1e-3, 1e-3, 1e-3, 1.00, 0.97, 1.03)
    b = _row("x", 1e-3, 1e-3, 1e-3, 1.15, 1.15 * 0.97, 1.15 * 1.03)
    c = compare_case(("x",), a, b)
    assert c.verdict == "slower" and c.ratio == pytest.approx(1.15)
    # the same change measured with +-10% intervals cannot be told from noise
    wide = compare_case(("x",), _row("x", 1e-3, 1e-3, 1e-3, 1.0, 0.9, 1.1), _row("x", 1e-3, 1e-3, 1e-3, 1.15, 1.03, 1.27))
    assert wide.verdict == "same"


def test_min_change_band():
    a = _row("x", 1e-3, 1e-3, 1e-3, 1.00, 0.995, 1.005)
    b = _row("x", 1e-3, 1e-3, 1e-3, 1.03, 1.025, 1.035)
    assert compare_case(("x",), a, b, min_change=0.02).verdict == "slower"
    assert compare_case(("x",), a, b, min_change=0.05).verdict == "same"


def test_schema_1_rows_use_the_interval_of_their_samples():
    rng = np.random.default_rng(0)
    a = {"impl": "numpy", "median_s": 1.0, "samples_s": list(rng.normal(1.0, 0.01, 30)), "status": "ok"}
    b = {"impl": "numpy", "median_s": 1.2, "samples_s": list(rng.normal(1.2, 0.01, 30)), "status": "ok"}
    c = compare_case(("numpy",), a, b)
    assert c.measure == "time" and c.verdict == "slower" and c.time_change.half_width < 0.03


def test_geometric_mean_and_threshold():
    assert geometric_mean([2.0, 0.5, float("nan")]) == pytest.approx(1.0)
    assert parse_percent("--x", "10%") == pytest.approx(0.10)
    assert parse_percent("--x", "0.1") == pytest.approx(0.10)  # a bare number is a fraction
    assert parse_percent("--x", "0.5") == pytest.approx(0.50)
    assert parse_percent("--x", "1.5%") == pytest.approx(0.015)
    assert parse_percent("--x", "0") == 0.0 and parse_percent("--x", "150%") == pytest.approx(1.5)
    # a bare 1 or more is refused, never guessed at (it used to be 1% for 1 but 50% for 0.5)
    for bare in ("1", "10", "2.5"):
        with pytest.raises(UsageError, match=rf"^--x: '{bare}' is ambiguous: write {bare}% \(a bare number is a fraction"):
            parse_percent("--x", bare)
    with pytest.raises(UsageError, match=r"^--x: '10' is ambiguous: write 10% \(a bare number is a fraction: 0.1 = 10%\)$"):
        parse_percent("--x", "10")
    for bad in ("ten", "", "%", "nan", "inf%"):
        with pytest.raises(UsageError, match=r"is not a percentage \(write e.g. 2% or 0.02\)"):
            parse_percent("--x", bad)
    with pytest.raises(UsageError, match="'-1%' must be 0% or more"):
        parse_percent("--x", "-1%")
    assert (format_percent(0.015), format_percent(0.1), format_percent(0.03), format_percent(0.07)) == \
        ("1.5%", "10%", "3%", "7%")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    a = make_run(root / "a", seed=1, **SMALL)
    same = make_run(root / "same", seed=2, **SMALL)
    slow = make_run(root / "slow", seed=3, slowdown={"numba-tiled": 1.2}, env={"numba": "0.69.0"}, **SMALL)
    return a, same, slow


def test_flags_injected_slowdown_and_ignores_noise(runs):
    a, same, slow = (load_run(p) for p in runs)
    cmp = compare_rows(a.rows, slow.rows, env_a=a.env, env_b=slow.env)
    tiled = [c for c in cmp.cases if c.impl == "numba-tiled"]
    assert tiled and all(c.verdict == "slower" for c in tiled)
    assert all(1.12 < c.ratio < 1.28 for c in tiled)
    geo = cmp.geomean_by_impl()
    assert geo["numba-tiled"][0] == pytest.approx(1.2, rel=0.02)
    assert geo["numpy"][0] == pytest.approx(1.0, abs=0.02)
    assert {c.impl for c in cmp.slowdowns_above(0.10)} == {"numba-tiled"}
    assert ("numba", "0.68.1", "0.69.0") in cmp.env_diff

    noise = compare_rows(a.rows, same.rows)
    assert not noise.slowdowns_above(0.10)
    # 2% noise: chance "significant" verdicts stay rare, and never large
    assert sum(c.significant for c in noise.cases) <= 0.15 * len(noise.cases)
    assert all(abs(c.ratio - 1) < 0.05 for c in noise.cases)


def test_cli_fail_above(runs, capsys):
    a, same, slow = runs
    assert cli.main(["compare", str(a), str(slow), "--fail-above", "10%"]) == 1
    out, err = capsys.readouterr()
    assert "SLOWER" in out and "numba-tiled" in err and "numba" in out  # env difference printed
    assert cli.main(["compare", str(a), str(same), "--fail-above", "10%"]) == 0
    out, _ = capsys.readouterr()
    assert "geometric mean ratio" in out
    assert cli.main(["compare", str(a), str(slow)]) == 0  # no gate: report only


def test_cli_threshold_is_printed_as_given(runs, capsys):
    a, same, slow = runs
    assert cli.main(["compare", str(a), str(slow), "--fail-above", "1.5%"]) == 1
    out, err = capsys.readouterr()
    assert "slower by more than 1.5% (whole" in err  # was rounded to "2%"
    assert cli.main(["compare", str(a), str(same), "--fail-above", "50%", "--min-change", "0.025"]) == 0
    out, _ = capsys.readouterr()
    assert "ok: no slowdown known to exceed 50%" in out and "lies beyond ±2.5%" in out


@pytest.mark.parametrize("option", ["--fail-above", "--min-change"])
@pytest.mark.parametrize("value", ["10", "1"])
def test_cli_bare_number_of_1_or_more_is_refused(runs, capsys, option, value):
    a = runs[0]
    assert cli.main(["compare", str(a), str(a), option, value]) == 2
    out, err = capsys.readouterr()
    assert f"error: {option}: '{value}' is ambiguous: write {value}% (a bare number is a fraction" in err
    assert not out


def test_no_common_case_fails_the_gate(tmp_path, capsys):
    a = make_run(tmp_path / "a", seed=1, **{**SMALL, "batches": (1,)})
    b = make_run(tmp_path / "b", seed=2, **{**SMALL, "batches": (256,)})
    assert cli.main(["compare", str(a), str(b), "--fail-above", "10%"]) == 1
    out, err = capsys.readouterr()
    assert "FAIL: --fail-above 10%: nothing was compared, so no slowdown can be ruled out" in err
    assert "ok:" not in out and "ok:" not in err
    assert cli.main(["compare", str(a), str(b)]) == 0  # no gate: report only
    assert "nothing to compare" in capsys.readouterr().err


def test_cases_in_one_run_only_are_listed(tmp_path, capsys):
    a = make_run(tmp_path / "a", seed=1, **{**SMALL, "batches": (1, 16)})
    b = make_run(tmp_path / "b", seed=2, **{**SMALL, "batches": (16, 256), "impls": ("numpy", "numba-tiled")})
    ra, rb = load_run(a), load_run(b)
    cmp = compare_rows(ra.rows, rb.rows)
    assert {r["batch"] for r in cmp.only_a} == {1, 16}
    assert all(r["batch"] == 1 or r["impl"] == "numba-serial" for r in cmp.only_a)
    assert {r["batch"] for r in cmp.only_b} == {256}
    assert len(cmp.cases) + len(cmp.only_a) == len(ra.rows)
    assert len(cmp.cases) + len(cmp.only_b) == len(rb.rows)
    assert cli.main(["compare", str(a), str(b)]) == 0
    out, _ = capsys.readouterr()
    assert f"{len(cmp.only_a)} case(s) only in A" in out and f"{len(cmp.only_b)} case(s) only in B" in out


def test_not_measured_cases_are_listed_not_compared(tmp_path):
    a = make_run(tmp_path / "a", seed=1, impls=("numpy", "naive"), dtypes=("float64",), batches=(1, 64),
                 layers=((512, 256),), threads=(1,), passes=("forward",), specials=True)
    ra = load_run(a)
    cmp = compare_rows(ra.rows, ra.rows)
    whys = [why for _a, _b, why in cmp.not_comparable]
    assert any("extrapolated" in w for w in whys) and any("failed" in w for w in whys)
    assert all(c.a["status"] == "ok" for c in cmp.cases)


def test_env_differences_ignores_volatile_keys():
    a = {"run_id": "x", "started_at": "t0", "load": {"loadavg_start": [1, 2, 3]}, "cpu": {"model": "A"},
         "blas": [{"num_threads": 2}]}
    b = {"run_id": "y", "started_at": "t1", "load": {"loadavg_start": [3, 2, 1]}, "cpu": {"model": "B"},
         "blas": [{"num_threads": 1}], "numba": "0.68"}
    diff = {k: (x, y) for k, x, y in env_differences(a, b)}
    assert diff == {"cpu.model": ("A", "B"), "blas[0].num_threads": (2, 1), "numba": (None, "0.68")}


def test_compare_bad_input(tmp_path, runs, capsys):
    a = runs[0]
    assert cli.main(["compare", str(a), str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope" in err and "no such run directory" in err
    assert cli.main(["compare", str(a), str(a), "--fail-above", "lots"]) == 2
    assert "--fail-above" in capsys.readouterr().err


def test_too_few_samples_are_untested_not_same(tmp_path, capsys):
    small = {**SMALL, "impls": ("numpy", "numba-tiled"), "n_samples": 3}
    a = make_run(tmp_path / "a", seed=1, **small)
    b = make_run(tmp_path / "b", seed=2, slowdown={"numba-tiled": 1.5}, **small)
    cmp = compare_rows(load_run(a).rows, load_run(b).rows)
    assert cmp.cases and all(c.verdict == "untested" for c in cmp.cases)
    assert cli.main(["compare", str(a), str(b), "--fail-above", "10%"]) == 0
    out, err = capsys.readouterr()
    assert "fewer than 6 samples" in out and "untested" in err


def _group(impl_ratios, scale):
    """Rows of one group: numpy plus others with the given ratios to numpy (+-2%), all times
    multiplied by ``scale`` (the machine's state during the run)."""
    rows = [dict(_row("numpy", 1e-3 * scale, 0.98e-3 * scale, 1.02e-3 * scale), **_KEY, impl="numpy")]
    for impl, q in impl_ratios.items():
        rows.append(dict(_row(impl, q * 1e-3 * scale, q * 0.98e-3 * scale, q * 1.02e-3 * scale, q, q * 0.98, q * 1.02),
                         **_KEY, impl=impl))
    return rows


_KEY = {"pass": "step", "dtype": "float64", "batch": 16, "in_features": 256, "out_features": 256, "threads": 1}


def test_baseline_judged_by_its_standing_against_the_others():
    # the whole machine 35% slower in B: nothing changed
    a = _group({"numba-tiled": 1.1, "numba-serial": 5.0, "numba-prange": 2.0}, 1.0)
    b = _group({"numba-tiled": 1.1, "numba-serial": 5.0, "numba-prange": 2.0}, 1.35)
    cmp = compare_rows(a, b)
    base = next(c for c in cmp.cases if c.impl == "numpy")
    assert base.measure == "vs others" and base.verdict == "same"
    assert not cmp.slowdowns_above(0.10) and not any(c.significant for c in cmp.cases)
    # numpy itself 15% slower in B: every other ratio to it drops by 1/1.15
    b = _group({"numba-tiled": 1.1 / 1.15, "numba-serial": 5.0 / 1.15, "numba-prange": 2.0 / 1.15}, 1.15)
    cmp = compare_rows(a, b)
    base = next(c for c in cmp.cases if c.impl == "numpy")
    assert base.verdict == "slower" and base.ratio == pytest.approx(1.15)
    # one of the others really 15% slower: only its own verdict moves, numpy's does not
    for others in ({"numba-tiled": 1.1, "numba-serial": 5.0, "numba-prange": 2.0}, {"numba-tiled": 1.1, "numba-prange": 2.0}):
        changed = dict(others, **{"numba-tiled": 1.1 * 1.15})
        cmp = compare_rows(_group(others, 1.0), _group(changed, 1.2))
        verdicts = {c.impl: c.verdict for c in cmp.cases}
        assert verdicts.pop("numba-tiled") == "slower"
        assert set(verdicts.values()) == {"same"}, verdicts
    # two others moving opposite ways: no agreement, numpy is not called either way
    cmp = compare_rows(_group({"numba-tiled": 1.1, "numba-prange": 2.0}, 1.0),
                       _group({"numba-tiled": 1.1 * 1.15, "numba-prange": 2.0 / 1.15}, 1.0))
    assert next(c for c in cmp.cases if c.impl == "numpy").verdict == "same"
    # one other only: the standing cannot tell which one moved; numpy keeps its time
    one = compare_rows(_group({"numba-tiled": 1.1}, 1.0), _group({"numba-tiled": 1.1}, 1.0))
    assert next(c for c in one.cases if c.impl == "numpy").measure == "time"


def test_legend_explains_every_measure_shown():
    """The header names each value of the 'measure' column and says what it is the change of
    (numpy's rows show 'vs others' where at least two others were timed beside it)."""
    import io

    from affbench.commands.compare import print_comparison

    three = {"numba-tiled": 1.1, "numba-serial": 5.0, "numba-prange": 2.0}
    rows_a = _group(three, 1.0) + [dict(r, batch=1) for r in _group({"numba-tiled": 1.1}, 1.0)]
    rows_b = _group(three, 1.2) + [dict(r, batch=1) for r in _group({"numba-tiled": 1.1}, 1.2)]
    cmp = compare_rows(rows_a, rows_b)
    assert {c.measure for c in cmp.cases} == {"vs baseline", "vs others", "time"}
    out = io.StringIO()
    print_comparison(cmp, "a", "b", out=out)
    legend = out.getvalue().split("cases:")[0]
    assert "  vs baseline: the ratio to numpy" in legend
    assert "  vs others:   numpy itself, from the other implementations' changes" in legend
    assert "  time:        the median time (numpy with fewer than two others beside it)" in legend
    assert "lies beyond ±3%" in legend
