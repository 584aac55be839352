"""report with intervals: speedups from the recorded ratio intervals (inverted) or, for old
rows, from the two median intervals; ties in "Who wins where", tie cells of the heatmaps,
crossovers with their tie range, and a schema-1 run still producing a report."""

from __future__ import annotations

import csv
import math
import re

import pandas as pd
import pytest
from helpers.synthetic import make_run

from affbench import cli
from affbench.measure.intervals import Interval
from affbench.report import crossover, fmt, plots, sections, speedup, tables
from affbench.report.document import Table
from affbench.store import results

BAND = 0.02


def _row(impl: str, batch: int = 1, median: float = 10e-6, ratio: tuple[float, float, float] | None = None, *,
         pass_: str = "forward", status: str = "ok", ci: tuple[float, float] | None = None,
         samples: list[float] | None = None, k: int = 8, m: int = 4, threads: int = 1) -> dict:
    """One results row as read back (results._typed): every float column NaN unless given."""
    r = {c: math.nan for c in results.FLOAT_COLUMNS} | {c: None for c in results.INT_COLUMNS}
    r.update(schema_version=2, impl=impl, dtype="float64", batch=batch, in_features=k, out_features=m,
             threads=threads, status=status, median_s=median, noisy=False, samples_s=samples or [], error="")
    r["pass"] = pass_
    if ci:
        r["ci_low_s"], r["ci_high_s"] = ci
    if ratio:
        r["ratio"], r["ratio_low"], r["ratio_high"] = ratio
    return r


def _frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(results.COLUMNS))


# --------------------------------------------------------------------------- speedups

def test_speedup_is_the_inverted_recorded_ratio():
    df = _frame([_row("numpy", ci=(9e-6, 11e-6)), _row("numba-tiled", median=8e-6, ratio=(0.8, 0.75, 0.85))])
    (r,) = tables.speedups(df, "numpy", BAND).to_dict("records")
    assert r["source"] == "paired"
    assert r["speedup"] == pytest.approx(1 / 0.8)
    assert (r["speedup_low"], r["speedup_high"]) == pytest.approx((1 / 0.85, 1 / 0.75))
    assert r["verdict"] == "above" and not r["tie"]
    assert fmt.ratio_ci(r["speedup"], r["speedup_low"], r["speedup_high"]) == "1.25× (1.18–1.33)"
    assert speedup.speedup_interval(_row("x", ratio=(0.8, 0.75, 0.85)), _row("numpy"), "numpy")[0] \
        == Interval(0.8, 0.75, 0.85).inverse()


def test_rows_without_a_ratio_fall_back_to_the_medians():
    samples_b = [10e-6 * (1 + 0.01 * i) for i in range(-7, 8)]  # schema 1: no interval recorded
    samples_i = [5e-6 * (1 + 0.01 * i) for i in range(-7, 8)]
    df = _frame([_row("numpy", median=10e-6, samples=samples_b), _row("numba-tiled", median=5e-6, samples=samples_i)])
    (r,) = tables.speedups(df, "numpy", BAND).to_dict("records")
    assert r["source"] == "medians" and r["speedup"] == pytest.approx(2.0)
    assert r["speedup_low"] < 2.0 < r["speedup_high"]
    # a baseline the run did not pair with: the recorded ratio (to numpy) does not apply
    df = _frame([_row("numpy", ci=(9e-6, 11e-6), ratio=None),
                 _row("numba-prange", median=20e-6, ci=(19e-6, 21e-6), ratio=(2.0, 1.9, 2.1)),
                 _row("numba-tiled", median=5e-6, ci=(4.9e-6, 5.1e-6), ratio=(0.5, 0.49, 0.51))])
    r = tables.speedups(df, "numba-prange", BAND).set_index("impl")
    assert set(r["source"]) == {"medians"}
    assert r.loc["numba-tiled", "speedup"] == pytest.approx(4.0)


def test_no_interval_prints_a_dash_and_is_a_tie():
    df = _frame([_row("numpy"), _row("numba-tiled", median=5e-6)])  # no ci, no samples, no ratio
    (r,) = tables.speedups(df, "numpy", BAND).to_dict("records")
    assert r["speedup"] == pytest.approx(2.0) and math.isnan(r["speedup_low"])
    assert r["tie"]  # nothing says it is faster
    assert fmt.ratio_ci(r["speedup"], r["speedup_low"], r["speedup_high"]) == "2× (—)"


def test_tie_band_is_the_runs_precision_target():
    assert speedup.tie_band({"sweep": {"plan": {"target": 0.05}}}) == 0.05
    assert speedup.tie_band({}) == speedup.tie_band({"sweep": {"plan": None}}) == 0.02


# --------------------------------------------------------------------------- who wins where

def _winner(*impls: tuple[str, tuple[float, float, float]]) -> dict:
    rows = [_row("numpy", pass_="step", ci=(9e-6, 11e-6))]
    rows += [_row(name, median=10e-6 * r[0], pass_="step", ratio=r) for name, r in impls]
    (w,) = tables.winners(_frame(rows), "step", "float64", 1, "numpy", BAND).to_dict("records")
    return w


def test_who_wins_names_a_clear_winner_with_its_interval():
    w = _winner(("numba-tiled", (0.5, 0.48, 0.52)), ("numba-prange", (0.9, 0.88, 0.92)))
    assert w["tied"] == ["numba-tiled"]
    assert sections.winner_text(w, "numpy") == "numba-tiled 2.00× (1.92–2.08)"
    w = _winner(("numba-tiled", (1.2, 1.15, 1.25)))
    assert w["tied"] == ["numpy"] and sections.winner_text(w, "numpy") == "numpy"
    # a far slower case without an interval (too few samples) counts by its estimate: no tie
    w = _winner(("numba-tiled", (0.5, 0.48, 0.52)), ("naive", (400.0, math.nan, math.nan)))
    assert w["tied"] == ["numba-tiled"]


@pytest.mark.parametrize("impls, text", [
    # the interval of the fastest reaches over 1: tied with numpy
    ((("numba-tiled", (0.99, 0.95, 1.03)), ("numba-prange", (1.5, 1.4, 1.6))), "tie: numba-tiled, numpy"),
    # two implementations whose intervals overlap
    ((("numba-tiled", (0.5, 0.45, 0.55)), ("numba-prange", (0.52, 0.5, 0.54))), "tie: numba-tiled, numba-prange"),
    # intervals apart, but by less than the band: still a tie
    ((("numba-tiled", (0.5, 0.495, 0.505)), ("numba-prange", (0.51, 0.508, 0.512))),
     "tie: numba-tiled, numba-prange"),
])
def test_who_wins_says_tie(impls, text):
    assert sections.winner_text(_winner(*impls), "numpy") == text


def test_who_wins_section_states_the_rule_and_the_ties():
    rows = [_row("numpy", b, pass_="step", ci=(9e-6, 11e-6)) for b in (1, 64)]
    rows += [_row("numba-tiled", 1, 5e-6, (0.5, 0.48, 0.52), pass_="step"),
             _row("numba-tiled", 64, 10e-6, (1.0, 0.97, 1.03), pass_="step")]
    blocks = sections.summary_blocks(_frame(rows), "numpy", BAND)
    rule = blocks[1].text
    assert "widened by 2%" in rule and "*tie:*" in rule
    (table,) = [b for b in blocks if isinstance(b, Table)]
    assert table.rows == [["8→4", "numba-tiled 2.00× (1.92–2.08)", "tie: numba-tiled, numpy"]]


# --------------------------------------------------------------------------- heatmap

def test_heatmap_marks_the_cells_whose_interval_reaches_the_tie_band(tmp_path):
    rows = [_row("numpy", b, ci=(9.9e-6, 10.1e-6)) for b in (1, 4, 16)]
    rows += [_row("numba-tiled", 1, 5e-6, (0.5, 0.48, 0.52)),     # clearly faster
             _row("numba-tiled", 4, 10e-6, (1.0, 0.97, 1.04)),    # interval across 1: tie
             _row("numba-tiled", 16, 10e-6, (1.03, 1.01, 1.05))]  # clear of 1, not of the 2% band: tie
    rows.append(_row("numba-tiled", 16, 20e-6, status="extrapolated", k=16))  # predicted: no interval
    rows.append(_row("numpy", 16, 10e-6, ci=(9e-6, 11e-6), k=16))
    sp = tables.speedups(_frame(rows), "numpy", BAND)
    cells = plots.heatmap_cells(sp, [(8, 4), (16, 4)], [1, 4, 16])
    assert cells.tie.tolist() == [[False, True, True], [False, False, False]]
    assert cells.extrapolated.tolist() == [[False, False, False], [False, False, True]]
    assert cells.values[0, 0] == pytest.approx(2.0)
    assert plots.speedup_heatmap(sp, "numba-tiled", "numpy", tmp_path / "h.png", threads=1, band=BAND).exists()


# --------------------------------------------------------------------------- crossovers

def _group(batches: list[int], ratios: list[tuple[float, float, float]]) -> pd.DataFrame:
    rows = [_row("numpy", b, ci=(9.9e-6, 10.1e-6)) for b in batches]
    rows += [_row("numba-tiled", b, 10e-6 * r[0], r) for b, r in zip(batches, ratios)]
    return tables.speedups(_frame(rows), "numpy", BAND)


def test_crossover_is_reported_with_its_tie_range():
    sp = _group([4, 16, 64, 128], [(1.5, 1.45, 1.55), (1.3, 1.25, 1.35), (1.01, 0.97, 1.05), (0.7, 0.68, 0.72)])
    (c,) = crossover.find_crossovers(sp, BAND)
    assert (c.direction, c.batch_below, c.batch_above, c.tie_batches) == ("starts beating", 16, 128, (64,))
    assert 64 < c.batch_estimate < 128
    text = sections.crossover_text(c)
    assert text.startswith("starts beating between N=16 and N=128 (tie at N=64; N≈")
    assert "[16: 0.769× (0.741–0.800) → 128: 1.43× (1.39–1.47)]" in text
    assert crossover.win_summary(sp, band=BAND)["faster_at"].iloc[0] == "N = 128; tie at N = 64"


def test_crossover_after_ties_gives_the_smallest_batch_that_wins_clearly():
    sp = _group([1, 4, 16, 64], [(0.99, 0.9, 1.1), (0.97, 0.93, 1.01), (0.8, 0.78, 0.82), (0.6, 0.58, 0.62)])
    (c,) = crossover.find_crossovers(sp, BAND)
    assert (c.batch_below, c.batch_above, c.tie_batches) == (None, 16, (1, 4))
    assert sections.crossover_text(c).startswith("wins clearly from N=16 (tie at N=1, 4)")
    # a direct change between clear verdicts: the range is the two neighbouring batches
    sp = _group([1, 4], [(0.5, 0.48, 0.52), (1.5, 1.45, 1.55)])
    (c,) = crossover.find_crossovers(sp, BAND)
    assert c.tie_batches == () and sections.crossover_text(c).startswith("stops beating between N=1 and N=4 (N≈")


# --------------------------------------------------------------------------- schema 1

def test_schema_1_run_still_gets_a_report_with_intervals(tmp_path):
    run = make_run(tmp_path / "r", impls=("numpy", "numba-serial", "numba-tiled"), threads=(1,), batches=(1, 16, 256),
                   passes=("forward",), dtypes=("float64",), layers=((64, 32),), specials=False, verify=False)
    # rewrite it as schema 1 wrote it: without the interval columns
    missing = results.READABLE_VERSIONS[1]
    with open(run / results.RESULTS_FILE, newline="") as fh:
        old = list(csv.DictReader(fh))
    cols = [c for c in results.COLUMNS if c not in missing]
    with open(run / results.RESULTS_FILE, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows({**r, "schema_version": "1"} for r in old)
    env = results.read_env(run)
    env["schema_version"] = 1
    results.write_env(run, env)

    assert cli.main(["report", str(run)]) == 0
    md = (run / "report.md").read_text()
    who = md.split("## Who wins where")[1].split("## Environment")[0]
    assert re.search(r"numba-serial \d[\d.]*× \([\d.]+–[\d.]+\)", who), who
    speed = md.split("## Speedup over numpy")[1].split("## Crossover points")[0]
    assert re.search(r"\| \d[\d.]*× \([\d.]+–[\d.]+\) \|", speed), speed
    assert "stops beating between N=1 and N=16" in md
