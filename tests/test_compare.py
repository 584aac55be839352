"""compare: the statistics (checked against reference values), matching, and the command."""

from __future__ import annotations

import math

import numpy as np
import pytest

from affbench import cli
from affbench.compare import (bootstrap_ratio_ci, compare_rows, env_differences, geometric_mean, mann_whitney_u, min_p_value,
                              parse_threshold)
from affbench.report.data import load_run
from helpers.synthetic import make_run

SMALL = dict(impls=("numpy", "numba-serial", "numba-tiled"), dtypes=("float64",), batches=(1, 16, 256),
             passes=("forward", "backward"), specials=False, verify=False)


# Reference values: scipy.stats.mannwhitneyu(a, b, method="asymptotic", use_continuity=True),
# computed once; scipy is not a dependency of affbench.
@pytest.mark.parametrize("a, b, u, p", [
    ([1, 2, 3], [4, 5, 6], 0.0, 0.08085559837005224),
    ([1.0, 2.0, 2.0, 3.0, 5.0], [2.0, 3.0, 3.0, 4.0, 6.0, 7.0], 7.0, 0.16304505585423734),  # ties
    ([0.9, 1.1, 1.0, 1.05, 0.95, 1.2, 1.0], [1.3, 1.25, 1.1, 1.4, 1.0, 1.35], 5.5, 0.030948989790008933),
])
def test_mann_whitney_matches_reference(a, b, u, p):
    got_u, got_p = mann_whitney_u(a, b)
    assert got_u == u
    assert got_p == pytest.approx(p, rel=1e-9)
    # symmetric in the order of the samples
    assert mann_whitney_u(b, a)[1] == pytest.approx(p, rel=1e-9)


def test_min_p_value():
    assert min_p_value(3, 3) == pytest.approx(0.08085559837005224)  # 3 vs 3 can never reach 0.05
    assert min_p_value(5, 5) < 0.05


def test_mann_whitney_degenerate():
    assert mann_whitney_u([1.0, 1.0], [1.0, 1.0, 1.0])[1] == 1.0
    assert math.isnan(mann_whitney_u([], [1.0])[1])


def test_bootstrap_interval_covers_true_ratio():
    rng = np.random.default_rng(5)
    a = rng.lognormal(0, 0.02, 20)
    b = 1.2 * rng.lognormal(0, 0.02, 20)
    lo, hi = bootstrap_ratio_ci(a, b)
    assert lo < 1.2 < hi and lo > 1.1
    assert bootstrap_ratio_ci(a, b) == (lo, hi)  # seeded: reproducible


def test_geometric_mean_and_threshold():
    assert geometric_mean([2.0, 0.5, float("nan")]) == pytest.approx(1.0)
    assert parse_threshold("10%") == pytest.approx(0.10)
    assert parse_threshold("0.1") == pytest.approx(0.10)
    assert parse_threshold("10") == pytest.approx(0.10)
    with pytest.raises(ValueError):
        parse_threshold("ten")


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
    assert "too few samples" in out and "untested" in err
