"""What the report says, in order: turns a loaded run, its tables and figures into document blocks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from affbench.measure.intervals import DEFAULT_TARGET
from affbench.report import crossover, fmt, tables
from affbench.report.data import Run
from affbench.report.document import FIGURE, Block, Bullets, Heading, Image, Para, Table, Warning
from affbench.store import results

EXTRAP_NOTE = ("Rows marked *~ … (extrapolated)* are **predictions** from smaller measured sizes, not "
               "measurements; the `error` column of results.csv says what each prediction was based on.")


def _thr(t: Any) -> str:
    return "—" if t is None or (isinstance(t, float) and math.isnan(t)) else str(int(t))


def _layer(r: Mapping[str, Any]) -> str:
    return fmt.layer(int(r["in_features"]), int(r["out_features"]))


def _maybe_pred(text: str, pred: bool) -> str:
    return f"*~{text} (extrapolated)*" if pred else text


def warnings_for(run: Run, df: pd.DataFrame, baseline: str, baseline_present: bool) -> list[str]:
    out: list[str] = []
    load = run.env.get("load")
    if isinstance(load, Mapping):
        for w in load.get("warnings") or []:
            out.append(f"machine load: {fmt.lit(w)}")
    vf = run.env.get("verify_failed")
    if vf:
        out.append(f"verification failed for {fmt.lit(', '.join(map(str, vf)))}: their times are not trustworthy "
                   "(see Verification)")
    out.extend(fmt.lit(w) for w in run.warnings)
    if not baseline_present:
        out.append(f"the baseline `{baseline}` has no timed rows in this run: no speedups or crossovers "
                   "(choose another with --baseline)")
    n_noisy = int(((df["status"] == "ok") & (df["noisy"] == True)).sum())  # noqa: E712
    if n_noisy and not any("noisy" in w for w in out):  # the run may have said so already
        thr = run.env.get("noise_cv_threshold")
        out.append(f"{n_noisy} case(s) are noisy (cv above {thr if thr is not None else 'the noise threshold'}): "
                   "see Noisy cases")
    n_bad = int(df["status"].isin(tables.PROBLEM_STATUSES).sum())
    if n_bad:
        out.append(f"{n_bad} case(s) failed, timed out or were skipped: see the list at the end")
    return out


def environment_blocks(run: Run) -> list[Block]:
    blocks: list[Block] = [Heading("Environment")]
    rows = tables.env_summary(run.env)
    if not rows:
        blocks.append(Para("*No environment recorded (env.json missing or empty).*"))
    else:
        blocks.append(Table(["", "value"], [[a, fmt.lit(b)] for a, b in rows]))
    return blocks


def verification_blocks(run: Run) -> list[Block]:
    blocks: list[Block] = [Heading("Verification")]
    vs = tables.verify_summary(run.verify)
    if vs is None:
        blocks.append(Para("*No verify.csv in this run directory: verification results are not available here* "
                           "(`python -m affbench verify` checks the implementations)."))
        return blocks
    if vs.empty:
        blocks.append(Para("*verify.csv holds no checks.*"))
        return blocks
    blocks.append(Para("Every implementation against the float64 reference before timing; error/tolerance ≤ 1 "
                       "passes (see affbench/verify.py for the tolerance model)."))
    rows = [[r.impl, r.dtype, str(r.checks), ("**" + str(r.failed) + "**") if r.failed else "0",
             f"{r.worst_ratio:.2g}", "**FAILED**" if r.failed else "passed", fmt.lit(r.first_failure or "")]
            for r in vs.itertuples()]
    blocks.append(Table(["impl", "dtype", "checks", "failed", "worst error / tolerance", "result", "first failure"],
                        rows))
    return blocks


def pass_blocks(df: pd.DataFrame, pass_: str, baseline: str, figure: Path | None, threads: int | None) -> list[Block]:
    blocks: list[Block] = [Heading(f"Results: {pass_} pass")]
    if figure:
        blocks.append(Image(figure, f"{FIGURE} ({pass_}): median time per call vs batch size, one panel per layer "
                                    f"size and dtype, at {threads} thread(s); the band is the IQR of the samples; "
                                    "hollow markers on dashed lines are extrapolated (predicted) times."))
    pt = tables.pass_table(df, pass_, baseline)
    rows, marked = [], set()
    for i, r in enumerate(pt.to_dict("records")):
        pred = bool(r["extrapolated"])
        note = []
        if pred:
            note.append("extrapolated: " + fmt.lit(r["error"] or "predicted"))
            marked.add(i)
        if r["noisy"] and not pred:
            note.append(f"noisy (cv {r['cv']:.2f})")
        rows.append([r["impl"], r["dtype"], _thr(r["threads"]), str(r["batch"]), _layer(r),
                     _maybe_pred(fmt.seconds(r["median_s"]), pred),
                     "—" if pred else fmt.seconds_range(r["ci_low_s"], r["ci_high_s"]),
                     "—" if pred else fmt.seconds(r["iqr_s"]),
                     _maybe_pred(fmt.number(r["gflops"]), pred), "; ".join(note)])
    caption = ("Median time per call with its 95% interval (distribution-free, widened by the drift between "
               "rounds; from the samples for runs that did not record one), spread (IQR = q3 − q1 of the samples) "
               "and GFLOP/s.")
    if marked:
        caption += " " + EXTRAP_NOTE
    header = ["impl", "dtype", "threads", "N", "K→M", "median", "95% interval", "IQR", "GFLOP/s", "note"]
    blocks.append(Table(header, rows, caption=caption, marked_rows=marked))
    return blocks


def _speedup_text(v: float, low: float, high: float, pred: bool) -> str:
    """'1.08× (1.05–1.11)'; a prediction has no interval and says so."""
    return _maybe_pred(fmt.ratio(v), True) if pred else fmt.ratio_ci(v, low, high)


def speedup_blocks(sp: pd.DataFrame, baseline: str, impls: list[str], passes: list[str],
                   heatmaps: dict[str, Path], band: float = DEFAULT_TARGET) -> list[Block]:
    blocks: list[Block] = [Heading(f"Speedup over {baseline}")]
    if sp.empty:
        blocks.append(Para(f"*No speedups: `{baseline}` has no timed case matching another implementation.*"))
        return blocks
    paired = bool((sp["source"] == "paired").any())
    blocks.append(Para(
        f"Speedup = {baseline} time / implementation time on the same case (pass, dtype, N, K, M, threads), "
        f"with its 95% interval in brackets: `1.08× (1.05–1.11)`. Above 1: faster than {baseline}. "
        + (f"It is 1 / the ratio the run measured from samples paired with {baseline} in each round (drift "
           "cancels); cases without one use the two medians, the interval from both median intervals. "
           if paired else "It is the ratio of the two medians, the interval from both median intervals. ")
        + f"A speedup whose interval reaches into 1 ± {band:.0%} (the run's precision target) is a tie. "
        "*(—)*: no interval (a prediction, or fewer than 6 samples)."))
    gm = tables.geomean_speedups(sp)
    if not gm.empty:
        blocks.append(Table(["impl", "pass", "dtype", "geometric mean (95% interval)", "min", "max", "cases"],
                            [[r.impl, r[2], r.dtype, fmt.ratio_ci(r.geomean, r.geomean_low, r.geomean_high),
                              fmt.ratio(r.min), fmt.ratio(r.max), str(r.cases)] for r in gm.itertuples()],
                            caption="Summary over measured cases (extrapolated ones left out); the interval of "
                                    "the geometric mean adds the cases' log half-widths in quadrature, min and "
                                    "max are the range over cases."))
    others = [i for i in impls if i != baseline and i in set(sp["impl"])]
    for pass_ in passes:
        pv = tables.speedup_pivot(sp, pass_, others)
        if pv.empty:
            continue
        rows, marked = [], set()
        for i, r in enumerate(pv.to_dict("records")):
            cells = []
            for impl in others:
                v = r[impl]
                if v is None:
                    cells.append("—")
                else:
                    cells.append(_speedup_text(v.speedup, v.low, v.high, v.extrapolated))
                    if v.extrapolated:
                        marked.add(i)
            rows.append([r["dtype"], _thr(r["threads"]), _layer(r), str(r["batch"]), *cells])
        cap = f"{pass_} pass: speedup of each implementation over {baseline}, with its 95% interval."
        if marked:
            cap += " Values marked *~ (extrapolated)* involve a predicted time and have no interval."
        blocks.append(Table(["dtype", "threads", "K→M", "N", *others], rows, caption=cap, marked_rows=marked))
    for impl, path in heatmaps.items():
        ties = bool(sp[sp["impl"] == impl]["tie"].any())
        blocks.append(Image(path, f"{FIGURE} ({impl}): speedup of {impl} over {baseline} across batch size × layer "
                                  "size (blue: faster, red: slower; hatched ~cells: extrapolated"
                                  + (f"; dotted ≈cells: tie, the 95% interval reaches into 1 ± {band:.0%}"
                                     if ties else "") + ")."))
    return blocks


def _batches(ns: tuple[int, ...]) -> str:
    return ", ".join(str(n) for n in ns)


def crossover_text(c: crossover.Crossover) -> str:
    """One crossover in words, with the range of batch sizes it may lie in."""
    ci = lambda iv: fmt.ratio_ci(iv.value, iv.low, iv.high)  # noqa: E731
    ties = f"tie at N={_batches(c.tie_batches)}" if c.tie_batches else ""
    if c.batch_below is None:  # ties from the smallest batch, then a clear win
        text = f"wins clearly from N={c.batch_above} ({ties}) [{c.batch_above}: {ci(c.speedup_above)}]"
    elif c.batch_above is None:  # a clear win, then ties to the largest batch
        text = f"wins clearly up to N={c.batch_below}, then {ties} [{c.batch_below}: {ci(c.speedup_below)}]"
    else:
        notes = [x for x in (ties, f"N≈{c.batch_estimate:.3g} interpolated" if math.isfinite(c.batch_estimate)
                             else "") if x]
        text = (f"{c.direction} between N={c.batch_below} and N={c.batch_above}"
                + (f" ({'; '.join(notes)})" if notes else "")
                + f" [{c.batch_below}: {ci(c.speedup_below)} → {c.batch_above}: {ci(c.speedup_above)}]")
    return text + (" *(extrapolated)*" if c.predicted else "")


def crossover_blocks(sp: pd.DataFrame, baseline: str, impls: list[str], band: float = DEFAULT_TARGET,
                     peers: list[str] = ()) -> list[Block]:
    blocks: list[Block] = [Heading("Crossover points")]
    compared = ([i for i in impls if i.startswith("numba") or i in peers]
                or [i for i in impls if i != baseline])
    ws = crossover.win_summary(sp, compared, band)
    if ws.empty:
        blocks.append(Para(f"*No crossover analysis: no Numba implementation or peer has cases matched with "
                           f"{baseline}.*"))
        return blocks
    blocks.append(Para(
        f"For each layer size, dtype, pass and thread count: the batch sizes N at which each implementation "
        f"**clearly** beats {baseline} (its speedup's 95% interval lies wholly above 1 + {band:.0%}), where it "
        f"ties (the interval reaches into 1 ± {band:.0%}), and where that changes. A crossover lies somewhere "
        "between the last clear verdict on one side and the first on the other: that range is given, with the "
        "tied batch sizes in it and the speedups at both ends. *N≈* is only a point guess inside the range, "
        "interpolated in log-log; the wider the range, the less the measurement says about where the "
        "crossover is. *wins clearly from N=…* (*up to N=…*): it ties at every smaller (larger) N measured, so "
        "where it starts (stops) winning is not resolved beyond that."))
    rows, marked = [], set()
    for i, r in enumerate(ws.to_dict("records")):
        cs = r["crossovers"]
        text = "; ".join(crossover_text(c) for c in cs) or "—"
        if any(c.predicted for c in cs):
            marked.add(i)
        rows.append([r["impl"], r["pass"], r["dtype"], _layer(r), _thr(r["threads"]), r["batches"], r["faster_at"],
                     text])
    blocks.append(Table(["impl", "pass", "dtype", "K→M", "threads", "N measured", f"faster than {baseline} at",
                         "crossovers (as N grows)"], rows, marked_rows=marked))
    return blocks


def throughput_blocks(df: pd.DataFrame, env: Mapping[str, Any], figure: Path | None) -> list[Block]:
    blocks: list[Block] = [Heading("Throughput (GFLOP/s)")]
    if figure:
        blocks.append(Image(figure, f"{FIGURE}: GFLOP/s vs problem size N·K·M, with the best measured BLAS rate and "
                                    "the machine's theoretical peak; hollow markers are extrapolated."))
    peak = env.get("peak_gflops")
    if isinstance(peak, Mapping) and peak:
        blocks.append(Para("Theoretical peak: " + ", ".join(
            f"{k} {v:.1f} GFLOP/s" for k, v in peak.items() if isinstance(v, (int, float)))
            + (f" — derived as: {peak['how']}." if peak.get("how") else ".")))
    else:
        blocks.append(Para("*Theoretical peak unknown: env.json has no peak_gflops.*"))
    br = tables.best_rates(df)
    if not br.empty:
        pk = peak if isinstance(peak, Mapping) else {}
        rows = []
        for r in br.to_dict("records"):
            p = pk.get(r["dtype"])
            rows.append([r["impl"], r["dtype"], fmt.number(r["gflops"]),
                         f"{r['gflops'] / p:.0%}" if isinstance(p, (int, float)) and p > 0 else "—",
                         f"{r['pass']} N={r['batch']} {_layer(r)} {_thr(r['threads'])} thr"])
        blocks.append(Table(["impl", "dtype", "best GFLOP/s", "of peak", "reached at"], rows,
                            caption="Best measured rate per implementation and dtype."))
    return blocks


def scaling_blocks(df: pd.DataFrame, figure: Path | None) -> list[Block]:
    blocks: list[Block] = [Heading("Thread scaling")]
    ts = tables.thread_scaling(df)
    if figure:
        blocks.append(Image(figure, f"{FIGURE}: speedup over the smallest thread count and parallel efficiency, "
                                    "geometric mean over each implementation's measured cases."))
    if ts.empty:
        counts = sorted(set(int(t) for t in df[df["status"] == "ok"]["threads"]))
        blocks.append(Para(f"*No thread scaling to show: measured thread counts {counts or 'none'}; scaling needs "
                           "an implementation measured at two or more thread counts on the same case.*"))
        return blocks
    blocks.append(Table(["impl", "dtype", "threads", "speedup (geomean)", "range", "efficiency", "cases"],
                        [[r.impl, r.dtype, str(r.threads), fmt.ratio(r.speedup),
                          f"{fmt.ratio(r.min)} – {fmt.ratio(r.max)}", f"{r.efficiency:.0%}", str(r.cases)]
                         for r in ts.itertuples()],
                        caption="Speedup relative to the same case at the smallest thread count."))
    return blocks


def compile_blocks(df: pd.DataFrame, baseline: str, figure: Path | None) -> list[Block]:
    blocks: list[Block] = [Heading("Compile times")]
    ct = tables.compile_table(df, baseline)
    if ct.empty:
        blocks.append(Para("*No compile times recorded.*"))
        return blocks
    blocks.append(Table(["impl", "dtype", "first call (compile or cache load)"],
                        [[r.impl, r.dtype, fmt.seconds(r.compile_s) + (" (varies between rows)" if r.differs else "")]
                         for r in ct.itertuples()],
                        caption="The first call of each (implementation, dtype) in the run: JIT compilation or a "
                                "cache load (Numba, JAX), or a framework's lazy initialisation (PyTorch; importing "
                                "it is not counted). It is never part of any timing sample."))
    if figure:
        blocks.append(Image(figure, f"{FIGURE}: first-call (JIT compile) time per implementation and dtype."))
    return blocks


def noisy_blocks(df: pd.DataFrame, env: Mapping[str, Any]) -> list[Block]:
    nt = tables.noisy_table(df)
    blocks: list[Block] = [Heading("Noisy cases")]
    thr = env.get("noise_cv_threshold")
    if nt.empty:
        blocks.append(Para(f"No noisy case (cv ≤ {thr if thr is not None else 'threshold'} everywhere)."))
        return blocks
    blocks.append(Table(["impl", "pass", "dtype", "N", "K→M", "threads", "median", "IQR", "cv", "samples"],
                        [[r["impl"], r["pass"], r["dtype"], str(r["batch"]), _layer(r), _thr(r["threads"]),
                          fmt.seconds(r["median_s"]), fmt.seconds(r["iqr_s"]), f"{r['cv']:.2f}",
                          "—" if pd.isna(r["n_samples"]) else str(int(r["n_samples"]))]
                         for r in nt.to_dict("records")],
                        caption=f"Cases whose coefficient of variation exceeds the noise threshold "
                                f"({thr if thr is not None else 'from env.json'}): treat their medians with care, "
                                "re-run them on a quiet machine."))
    return blocks


def extrapolated_blocks(df: pd.DataFrame) -> list[Block]:
    et = tables.extrapolated_table(df)
    if et.empty:
        return []
    return [Heading("Extrapolated cases (predictions, not measurements)"),
            Table(["impl", "pass", "dtype", "N", "K→M", "threads", "predicted median", "predicted GFLOP/s", "based on"],
                  [[r["impl"], r["pass"], r["dtype"], str(r["batch"]), _layer(r), _thr(r["threads"]),
                    _maybe_pred(fmt.seconds(r["median_s"]), True), _maybe_pred(fmt.number(r["gflops"]), True),
                    fmt.lit(r["error"] or "—")] for r in et.to_dict("records")],
                  caption=EXTRAP_NOTE, marked_rows=set(range(len(et))))]


def problem_blocks(df: pd.DataFrame) -> list[Block]:
    pt = tables.problems_table(df)
    blocks: list[Block] = [Heading("Failed, timed-out and skipped cases")]
    if pt.empty:
        blocks.append(Para("None: every case was measured (or extrapolated)."))
        return blocks
    blocks.append(Table(["status", "impl", "pass", "dtype", "N", "K→M", "threads", "error"],
                        [[f"**{r['status']}**", r["impl"], r["pass"], r["dtype"], str(r["batch"]), _layer(r),
                          _thr(r["threads"]), fmt.lit(r["error"] or "—")] for r in pt.to_dict("records")]))
    return blocks


def training_blocks(run: Run) -> list[Block]:
    """The training section, when the run directory holds a `train --into` directory."""
    from affbench.train import output
    from affbench.train import report as train_report

    train_dir = run.directory / output.SUBDIR
    if not output.is_train_dir(train_dir):
        return []
    try:
        return train_report.section_blocks(train_dir)
    except results.ResultsError as exc:
        return [Heading("Training: the Affine layer inside a training step"), Warning(fmt.lit(str(exc)))]


def regenerate_blocks(run: Run) -> list[Block]:
    d = str(run.directory).replace("`", "'")
    return [Heading("Regenerating and comparing"),
            Bullets([f"`python -m affbench report {d}` rebuilds this report from results.csv and "
                     "env.json alone (`--baseline IMPL` for another baseline, `--out DIR` to write elsewhere).",
                     f"`python -m affbench compare {d} OTHER_RUN` compares two runs case by case.",
                     "reports/README.md explains every column and figure."])]


def winner_text(r: Mapping[str, Any], baseline: str) -> str:
    """One cell of "Who wins where": the clear winner with its speedup, or the tie."""
    tied = list(r["tied"])
    if len(tied) > 1:
        return "tie: " + ", ".join(tied)
    if r["impl"] == baseline or math.isnan(r["speedup"]):
        return str(r["impl"])
    return f"{r['impl']} {fmt.ratio_ci(r['speedup'], r['speedup_low'], r['speedup_high'])}"


def summary_blocks(df: pd.DataFrame, baseline: str, band: float = DEFAULT_TARGET) -> list[Block]:
    """Who wins where, first: the fastest measured implementation per layer and batch size, or
    the tie when the intervals cannot tell the fastest apart."""
    threads = tables.main_threads(df)
    passes = [p for p in ("step", "forward", "backward") if p in set(df["pass"])]
    if threads is None or not passes:
        return []
    pass_ = passes[0]
    measured = df[(df["status"] == "ok") & (df["pass"] == pass_) & (df["threads"] == threads)]
    blocks: list[Block] = [Heading("Who wins where"),
                           _winner_rule(pass_, threads, baseline, band, baseline in set(measured["impl"]))]
    for dtype in [d for d in ("float32", "float64") if d in set(df["dtype"])]:
        w = tables.winners(df, pass_, dtype, threads, baseline, band)
        if w.empty:
            continue
        batches = sorted(w["batch"].unique())
        rows = []
        for (k, m), g in w.groupby(["in_features", "out_features"], sort=False):
            cells = {int(r["batch"]): winner_text(r, baseline) for r in g.to_dict("records")}
            rows.append([f"{k}→{m}", *[cells.get(int(b), "") for b in batches]])
        blocks.append(Table(["K→M", *[f"N={int(b)}" for b in batches]], rows, caption=f"{dtype}"))
    return blocks


def _winner_rule(pass_: str, threads: int, baseline: str, band: float, with_baseline: bool) -> Para:
    """How "Who wins where" decides: on ratios to the baseline, or on times where it was not timed."""
    head = f"The fastest **measured** implementation for each layer and batch size ({pass_} pass, {threads} thread(s))"
    if not with_baseline:
        return Para(
            f"{head}. `{baseline}` was not timed here, so there are no speedups: the lowest median time wins only "
            f"if its 95% interval, widened by {band:.0%} (the run's precision target), stays clear below the "
            "interval of every other implementation; otherwise the cell says *tie:* and lists every implementation "
            "it cannot be told apart from. Predicted (extrapolated) times never win here.")
    return Para(
        f"{head}, with its speedup over {baseline} and that speedup's 95% interval. "
        f"Rule: each implementation's time / {baseline}'s time is taken with its 95% interval ({baseline} itself "
        f"is exactly 1); the lowest wins only if its interval, widened by {band:.0%} (the run's precision "
        "target), stays clear below the interval of every other implementation. Otherwise the cell says "
        f"*tie:* and lists every implementation it cannot be told apart from, fastest estimate first ({baseline} "
        "among them when it ties); a time without an interval (fewer than 6 samples) counts by its estimate "
        "alone, and its speedup shows *(—)*. Predicted (extrapolated) times never win here; the sections below "
        "give every number.")
