"""Reports from a results directory: tables, crossover points, figures, report.md and report.html.

Reads only the results files (results.csv, env.json, verify.csv): it never imports a kernel
or Numba, so a report can be made on a machine without them. Writes only report.md,
report.html and figures/*.png — never a results file.

Modules: ``data`` (loading, with clear errors), ``speedup`` (speedups with their 95% intervals
and the tie verdicts), ``tables`` and ``crossover`` (pure functions on the results DataFrame),
``plots`` (the figures), ``sections`` (what the report says) and ``document`` (Markdown and
HTML rendering).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from affbench.registry import BASELINE
from affbench.store import results

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
FIGURES_DIR = "figures"
#: The only names build_report ever writes (figures go under FIGURES_DIR).
OUTPUT_NAMES = (REPORT_MD, REPORT_HTML, FIGURES_DIR)


class ReportError(Exception):
    """The report cannot be made as asked (e.g. an unknown --baseline); the message says why."""


class ReportPaths(NamedTuple):
    markdown: Path
    html: Path
    figures: list[Path]
    warnings: list[str]


def build_report(run_dir: str | Path, baseline: str = BASELINE, out_dir: str | Path | None = None, *,
                 require_baseline: bool = False) -> ReportPaths:
    """Write report.md, report.html and figures/*.png for the run in ``run_dir``.

    ``out_dir`` defaults to ``run_dir``. With ``require_baseline`` an absent baseline is an
    error (ReportError); otherwise the report is made without speedups and says why.
    Raises results.ResultsError for an unreadable run directory.
    """
    from affbench.report import fmt, plots, sections, speedup, tables
    from affbench.report.data import load_run
    from affbench.report.document import Heading, Para, Warning, number_figures, to_html, to_markdown

    run = load_run(run_dir)
    df = run.frame()
    impls_present = list(dict.fromkeys(df["impl"]))
    timed = tables.timed(df)
    baseline_present = bool((timed["impl"] == baseline).any())
    if require_baseline and not baseline_present:
        raise ReportError(f"--baseline {baseline!r}: no timed case of that implementation in "
                          f"{run.directory / results.RESULTS_FILE}; implementations present: {', '.join(impls_present)}")
    out = Path(out_dir) if out_dir is not None else run.directory
    if out.exists() and not out.is_dir():
        raise ReportError(f"{out}: exists and is not a directory")
    fig_dir = out / FIGURES_DIR
    fig_dir.mkdir(parents=True, exist_ok=True)

    impls = tables.impl_order(impls_present, baseline)
    passes = tables.pass_order(timed["pass"].unique())
    threads = tables.main_threads(df)
    band = speedup.tie_band(run.env)  # differences within the run's precision target are ties
    sp = tables.speedups(df if baseline_present else df.iloc[0:0], baseline, band)

    figures: list[Path] = []

    def keep(p: Path | None) -> Path | None:
        if p is not None:
            figures.append(p)
        return p

    fig_time = {p: keep(plots.time_vs_batch(df, p, fig_dir / f"time_vs_batch_{_safe(p)}.png", impls=impls,
                                            threads=threads)) for p in passes}
    fig_gflops = keep(plots.gflops_vs_size(df, run.env, fig_dir / "gflops_vs_size.png", impls=impls, threads=threads,
                                           blas_impl="numpy" if "numpy" in impls_present else baseline))
    peers = tables.peer_impls(df)
    # the kernels and the peers, each against the baseline (naive is slow everywhere)
    heat_impls = [i for i in impls if i != baseline and (i.startswith("numba") or i in peers)]
    heatmaps = {}
    for impl in heat_impls:
        p = keep(plots.speedup_heatmap(sp, impl, baseline, fig_dir / f"speedup_heatmap_{_safe(impl)}.png",
                                       threads=threads, band=band))
        if p:
            heatmaps[impl] = p
    fig_scaling = keep(plots.thread_scaling(df, fig_dir / "thread_scaling.png", impls=impls))
    fig_compile = keep(plots.compile_times(df, fig_dir / "compile_times.png", impls=impls))

    title = f"affbench report: {run.run_id}"
    blocks: list = [Heading(title, 1),
                    Para(f"Run directory `{str(run.directory).replace('`', chr(39))}` · {len(df)} cases "
                         f"({', '.join(f'{n} {s}' for s, n in df['status'].value_counts().items())}) · "
                         f"baseline `{baseline}` · generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC "
                         "from results.csv and env.json")]
    warns = sections.warnings_for(run, df, baseline, baseline_present)
    if warns:
        blocks.append(Heading("Warnings"))
        blocks += [Warning(w) for w in warns]
    blocks += sections.summary_blocks(df, baseline, band)
    blocks += sections.environment_blocks(run)
    blocks += sections.verification_blocks(run)
    for p in passes:
        blocks += sections.pass_blocks(df, p, baseline, fig_time[p], threads)
    blocks += sections.speedup_blocks(sp, baseline, impls, passes, heatmaps, band)
    if baseline_present and not heat_impls:
        blocks.append(Para("*No Numba implementation in this run: no speedup heatmaps.*"))
    blocks += sections.crossover_blocks(sp, baseline, impls, band, peers=peers)
    blocks += sections.throughput_blocks(df, run.env, fig_gflops)
    blocks += sections.scaling_blocks(df, fig_scaling)
    blocks += sections.compile_blocks(df, baseline, fig_compile)
    blocks += sections.noisy_blocks(df, run.env)
    blocks += sections.extrapolated_blocks(df)
    blocks += sections.problem_blocks(df)
    blocks += sections.training_blocks(run)
    blocks += sections.regenerate_blocks(run)

    blocks = number_figures(blocks)
    md_path, html_path = out / REPORT_MD, out / REPORT_HTML
    _write(md_path, to_markdown(blocks, out))
    _write(html_path, to_html(blocks, title))
    return ReportPaths(md_path, html_path, figures, [fmt.plain(w) for w in warns])


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def _write(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a report."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
