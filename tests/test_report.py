"""report: every section and figure, crossover detection, extrapolated rows marked, bad input."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers.synthetic import crossover_batch, make_run

from affbench import cli
from affbench.report import crossover, tables
from affbench.report.data import load_run
from affbench.report.document import column_table_markdown
from affbench.store import results

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ["Who wins where", "Warnings", "Environment", "Verification", "Results: forward pass", "Results: backward pass",
            "Speedup over numpy", "Crossover points", "Throughput (GFLOP/s)", "Thread scaling", "Compile times",
            "Noisy cases", "Extrapolated cases (predictions, not measurements)",
            "Failed, timed-out and skipped cases"]
FIGURES = ["time_vs_batch_forward.png", "time_vs_batch_backward.png", "gflops_vs_size.png",
           "speedup_heatmap_numba-serial.png", "speedup_heatmap_numba-prange.png", "speedup_heatmap_numba-tiled.png",
           "thread_scaling.png", "compile_times.png"]
RUN = dict(dtypes=("float64",), batches=(1, 4, 16, 64))


def _digest(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("run") / "r", **RUN)
    before = _digest(run)
    assert cli.main(["report", str(run)]) == 0
    return run, before


def test_every_section_and_figure(built):
    run, _ = built
    md = (run / "report.md").read_text()
    html = (run / "report.html").read_text()
    for s in SECTIONS:
        assert f"## {s}\n" in md, s
        assert f">{s}</h2>" in html.replace("&amp;", "&"), s
    for f in FIGURES:
        png = run / "figures" / f
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000, f
        assert f"](figures/{f})" in md
    # self-contained: every figure embedded, none linked
    assert html.count('src="data:image/png;base64,') == len(FIGURES)
    assert 'src="figures/' not in html
    # load warnings shown prominently, failed cases listed with their error
    assert "load average rose to 1.4" in md.split("## Environment")[0]
    assert 'class="warning"' in html
    assert "MemoryError: cannot allocate 128 MiB" in md and "exceeded the 60 s case budget" in md
    # text from the data is literal: 'N*K*M' in an error message does not turn italic
    assert "(time ~ N*K*M)" in html and "<em>K</em>" not in html


def test_figures_are_numbered_in_the_order_they_appear(built):
    # numbered by kind they read 1, 1, 3, 3, 3, 2, 4, 5 (two passes, three heatmaps)
    run, _ = built
    md = (run / "report.md").read_text()
    html = (run / "report.html").read_text()
    assert re.findall(r"^\*Figure (\d+)", md, re.M) == [str(i) for i in range(1, len(FIGURES) + 1)]
    assert re.findall(r"<figcaption>Figure (\d+)", html) == [str(i) for i in range(1, len(FIGURES) + 1)]
    assert "Figure {n}" not in md and "Figure {n}" not in html


def test_results_files_untouched(built):
    run, before = built
    after = _digest(run)
    for name in (results.RESULTS_FILE, results.ENV_FILE, results.VERIFY_FILE):
        assert after[name] == before[name]
    assert set(after) - set(before) == {"report.md", "report.html"}


def test_extrapolated_rows_marked(built):
    run, _ = built
    md = (run / "report.md").read_text()
    df = load_run(run).frame()
    ex = df[df["status"] == "extrapolated"]
    assert len(ex) > 0
    results_section = md.split("## Results: forward pass")[1].split("## Speedup")[0]
    rows = [l for l in results_section.splitlines() if l.startswith("| naive | float64 | 1 |")]
    extrap_batches = set(ex[(ex["pass"] == "forward") & (ex["threads"] == 1)]["batch"])
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        n, layer, median = int(cells[3]), cells[4], cells[5]
        predicted = layer == "512→256" and n in extrap_batches
        assert ("(extrapolated)" in median) == predicted, line
        assert median.startswith("*~") == predicted
    # measured implementations never carry the mark
    assert not any("(extrapolated)" in l for l in results_section.splitlines() if l.startswith("| numpy |"))
    html = (run / "report.html").read_text()
    assert '<tr class="pred"><td>naive</td>' in html
    assert "## Extrapolated cases" in md


def test_planted_crossover_found(built):
    run, _ = built
    sp = tables.speedups(load_run(run).frame(), "numpy")
    found = [c for c in crossover.find_crossovers(sp)
             if (c.impl, c.pass_, c.dtype, c.in_features, c.out_features, c.threads)
             == ("numba-serial", "forward", "float64", 64, 32, 1)]
    assert len(found) == 1
    c = found[0]
    truth = crossover_batch("numba-serial", "numpy", "forward", "float64", 64, 32, 1)  # ~10.4
    assert c.direction == "stops beating"
    assert (c.batch_below, c.batch_above) == (4, 16)
    assert c.batch_estimate == pytest.approx(truth, rel=0.3)
    assert not c.predicted
    md = (run / "report.md").read_text()
    assert "| numba-serial | forward | float64 | 64→32 | 1 | 1–64 | N ≤ 4 | stops beating between N=4 and N=16 (N≈" in md


def test_crossover_pure_functions():
    s = pd.Series([0.5, 0.8, 1.5, 2.0, 1.2, 0.9])
    sp = pd.DataFrame({"impl": "k", "pass": "forward", "dtype": "float64", "in_features": 8, "out_features": 8,
                       "threads": 1, "batch": [1, 2, 4, 8, 16, 32], "speedup": s, "speedup_low": s * 0.97,
                       "speedup_high": s * 1.03, "extrapolated": [False] * 5 + [True]})
    cs = crossover.find_crossovers(sp)
    assert [(c.direction, c.batch_below, c.batch_above, c.predicted) for c in cs] == [
        ("starts beating", 2, 4, False), ("stops beating", 16, 32, True)]
    assert crossover.win_summary(sp)["faster_at"].iloc[0] == "4 ≤ N ≤ 16"
    # s(N) = N / 3 is a straight line in log-log: the estimate is exact
    assert crossover.estimate(1, 1 / 3, 9, 3) == pytest.approx(3.0)


def test_degenerate_run_one_thread_one_batch_no_numba(tmp_path, capsys):
    run = make_run(tmp_path / "r", impls=("numpy",), threads=(1,), batches=(32,), passes=("forward",),
                   dtypes=("float64",), specials=False, verify=False,
                   env={"peak_gflops": None, "compile_s": {"numpy|float64": None},  # as the run engine writes them
                        "load": {"loadavg_start": 1.3896484375, "loadavg_end": 3.08, "warnings": []}})
    assert cli.main(["report", str(run)]) == 0
    md = (run / "report.md").read_text()
    assert "load average 1.39 at start, 3.08 at end" in md and "## Warnings" not in md
    assert "No thread scaling to show" in md and "No verify.csv" in md
    assert "Theoretical peak unknown" in md
    assert (run / "figures" / "thread_scaling.png").exists()


def test_out_dir_and_baseline(tmp_path, capsys):
    run = make_run(tmp_path / "r", impls=("numpy", "numba-serial", "numba-tiled"), threads=(1,), batches=(1, 8),
                   passes=("forward",), dtypes=("float64",), layers=((8, 8),), specials=False)
    before = _digest(run)
    out = tmp_path / "elsewhere"
    assert cli.main(["report", str(run), "--out", str(out), "--baseline", "numba-tiled"]) == 0
    md = (out / "report.md").read_text()
    assert "## Speedup over numba-tiled" in md and "speedup_heatmap_numba-serial.png" in md
    assert "speedup_heatmap_numba-tiled.png" not in md
    assert _digest(run) == before  # DIR only read
    assert cli.main(["report", str(run), "--out", str(out), "--baseline", "blas9000"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "blas9000" in err


def test_readme_lists_every_column():
    readme = (ROOT / "reports" / "README.md").read_text()
    assert column_table_markdown() in readme, "regenerate the column table in reports/README.md"
    for name in results.COLUMNS:
        assert f"| `{name}` |" in readme
    for f in ("time_vs_batch_", "gflops_vs_size.png", "speedup_heatmap_", "thread_scaling.png", "compile_times.png"):
        assert f in readme


def test_report_never_imports_numba(tmp_path):
    run = make_run(tmp_path / "r", impls=("numpy", "numba-tiled"), threads=(1,), batches=(1, 8), passes=("forward",),
                   dtypes=("float64",), layers=((8, 8),), specials=False)
    code = ("import sys; from affbench.cli import main; rc = main(['report', sys.argv[1]]); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('numba', 'llvmlite', 'implementations')]; "
            "assert rc == 0 and not bad, (rc, bad)")
    subprocess.run([sys.executable, "-c", code, str(run)], check=True, cwd=ROOT, capture_output=True)


# --------------------------------------------------------------------------- bad input

def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, (n, err)
    return err


@pytest.fixture
def good_run(tmp_path):
    return make_run(tmp_path / "r", impls=("numpy", "numba-serial"), threads=(1,), batches=(1, 8),
                    passes=("forward",), dtypes=("float64",), layers=((8, 8),), specials=False, verify=False)


def test_missing_directory(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path / "nope")]) == 2
    _one_line_error(capsys, str(tmp_path / "nope"), "no such run directory")


def test_default_latest_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["report"]) == 2
    _one_line_error(capsys, "reports/latest", "affbench run")


@pytest.mark.parametrize("sub", ["results.csv/x", "results.csv"])
def test_out_under_or_at_a_file_is_refused(good_run, capsys, sub):
    before = _digest(good_run)
    out = good_run / sub
    assert cli.main(["report", str(good_run), "--out", str(out)]) == 2
    _one_line_error(capsys, "--out", str(out), "is a file, not a directory")
    assert _digest(good_run) == before
    assert not (good_run / "figures").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_out_that_cannot_be_created_is_refused(good_run, capsys):
    assert cli.main(["report", str(good_run), "--out", "/proc/affbench-nope"]) == 2
    _one_line_error(capsys, "--out /proc/affbench-nope", "cannot write the report there")


def test_empty_directory(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["report", str(tmp_path / "empty")]) == 2
    _one_line_error(capsys, str(tmp_path / "empty" / "results.csv"), "empty")


def test_empty_results_csv(good_run, capsys):
    (good_run / "results.csv").write_text("")
    assert cli.main(["report", str(good_run)]) == 2
    _one_line_error(capsys, str(good_run / "results.csv"), "empty")


def test_header_only_results_csv(good_run, capsys):
    header = (good_run / "results.csv").read_text().splitlines()[0]
    (good_run / "results.csv").write_text(header + "\n")
    assert cli.main(["report", str(good_run)]) == 2
    _one_line_error(capsys, str(good_run / "results.csv"), "no result rows")


def test_wrong_schema_version(good_run, capsys):
    path = good_run / "results.csv"
    lines = path.read_text().splitlines(keepends=True)
    lines[1:] = ["99" + line[line.index(","):] for line in lines[1:]]
    path.write_text("".join(lines))
    assert cli.main(["report", str(good_run)]) == 2
    _one_line_error(capsys, str(path), "schema version '99'")


def test_wrong_env_schema_version(good_run, capsys):
    env = results.read_env(good_run)
    env["schema_version"] = 7
    results.write_env(good_run, env)
    assert cli.main(["report", str(good_run)]) == 2
    _one_line_error(capsys, str(good_run / "env.json"), "schema version 7")


def test_truncated_csv(good_run, capsys):
    path = good_run / "results.csv"
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = lines[2][: len(lines[2]) // 3] + "\n"  # a line cut short, followed by more rows
    path.write_text("".join(lines))
    assert cli.main(["report", str(good_run)]) == 2
    _one_line_error(capsys, str(path), "line 3", "truncated")
    assert cli.main(["compare", str(good_run), str(good_run)]) == 2
    _one_line_error(capsys, str(path))


def test_broken_env_json(good_run, capsys):
    (good_run / "env.json").write_text("{\"run_id\": ")
    assert cli.main(["report", str(good_run)]) == 2
    _one_line_error(capsys, str(good_run / "env.json"), "not valid JSON")


def test_torn_last_line_is_dropped_and_reported(good_run, capsys):
    path = good_run / "results.csv"
    data = path.read_bytes()
    path.write_bytes(data[:-40])  # an interrupted append: the last line has no newline
    assert cli.main(["report", str(good_run)]) == 0
    assert "last line was cut off" in (good_run / "report.md").read_text()
    assert path.read_bytes() == data[:-40]  # report repairs nothing on disk


def test_winners_names_the_fastest_measured_implementation():
    import pandas as pd

    from affbench.report import tables

    rows = [dict(impl=i, status=st, median_s=t, **{"pass": "step"}, dtype="float64", threads=2, batch=1,
                 in_features=8, out_features=4) for i, st, t in
            [("numpy", "ok", 2.0), ("numba-tiled", "ok", 1.0), ("naive", "extrapolated", 0.1)]]
    w = tables.winners(pd.DataFrame(rows), "step", "float64", 2, "numpy")
    (r,) = w.to_dict("records")
    assert r["impl"] == "numba-tiled" and r["speedup"] == 2.0  # the predicted 0.1 s never wins


def test_environment_table_names_the_allocator_and_openblas_settings():
    rows = dict(tables.env_summary({
        "openblas_thread_timeout": {"value": "20", "in_effect": False},
        "malloc": {"pinned": True, "mmap_threshold": 32 << 20, "trim_threshold": 64 << 20},
        "gomp_spincount": {"value": "10000", "in_effect": True},
    }))
    assert rows["GOMP_SPINCOUNT"] == "10000"
    assert rows["OPENBLAS_THREAD_TIMEOUT"] == "20 (set too late: not in effect)"
    assert rows["glibc malloc thresholds"] == "pinned: mmap above 32 MiB, trim above 64 MiB"
    rows = dict(tables.env_summary({"gomp_spincount": {"value": None, "in_effect": True, "omp_wait_policy": "active"}}))
    assert rows["GOMP_SPINCOUNT"] == "unset: OMP_WAIT_POLICY=active decides"
    rows = dict(tables.env_summary({"malloc": {"pinned": False, "why_not": "AFFBENCH_PIN_MALLOC=0"}}))
    assert rows["glibc malloc thresholds"] == "glibc's dynamic defaults (AFFBENCH_PIN_MALLOC=0)"
    # each setting once: the pool settings in their own rows, not again in the variables' list
    rows = dict(tables.env_summary({"env_vars": {"GOMP_SPINCOUNT": "10000", "OPENBLAS_THREAD_TIMEOUT": "20",
                                                 "OPENBLAS_CORETYPE": "Haswell"},
                                    "openblas_thread_timeout": {"value": "20", "in_effect": True},
                                    "gomp_spincount": {"value": "10000", "in_effect": True}}))
    assert rows["environment variables"] == "OPENBLAS_CORETYPE=Haswell"
    assert rows["GOMP_SPINCOUNT"] == "10000" and rows["OPENBLAS_THREAD_TIMEOUT"] == "20"


def test_environment_table_names_jax_threads_only_with_jax_installed():
    jt = {"threads": 2, "counts": {}}
    rows = dict(tables.env_summary({"peers": {"jax_threads": jt, "not_installed": {"jax": "jax: not installed"}}}))
    assert "JAX threads" not in rows
    rows = dict(tables.env_summary({"peers": {"jax": "0.4.30", "jax_threads": jt}}))
    assert rows["JAX threads"] == "2 in the main process"


@pytest.mark.parametrize("passes", [("step",), ("forward", "backward")])
def test_throughput_legend_stays_inside_the_figure(tmp_path, monkeypatch, passes):
    """The legend of the GFLOP/s figure fits its width (a one-pass run, like the default
    preset's, once cut its two-column legend off at both sides)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from affbench.report import plots

    run_dir = make_run(tmp_path / "r", passes=passes, dtypes=("float32", "float64"), batches=(1, 16))
    figures = {}
    real_save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.setdefault(path.name, fig) and real_save(fig, path))
    assert cli.main(["report", str(run_dir)]) == 0
    fig = figures["gflops_vs_size.png"]
    canvas = FigureCanvasAgg(fig)  # the report's figures have no canvas of their own (no pyplot)
    canvas.draw()
    box = fig.legends[0].get_window_extent(canvas.get_renderer())
    assert 0 <= box.x0 and box.x1 <= fig.bbox.width, (box, fig.bbox)
    assert 0 <= box.y0, box


def test_speedup_summary_is_ordered_by_impl_pass_and_dtype():
    # rows in the order cases ran (as the sweep interleaves them), summary in the report's order
    ran = [("numba-tiled", "step", "float64"), ("numba-tiled", "step", "float32"), ("naive", "backward", "float32"),
           ("naive", "forward", "float32"), ("numba-serial", "forward", "float64"), ("naive", "forward", "float64")]
    sp = pd.DataFrame([dict(impl=i, dtype=d, speedup=2.0, speedup_low=1.9, speedup_high=2.1, extrapolated=False,
                            **{"pass": p}) for i, p, d in ran])
    gm = tables.geomean_speedups(sp)
    assert list(zip(gm["impl"], gm["pass"], gm["dtype"])) == [
        ("naive", "forward", "float32"), ("naive", "forward", "float64"), ("naive", "backward", "float32"),
        ("numba-serial", "forward", "float64"), ("numba-tiled", "step", "float32"), ("numba-tiled", "step", "float64")]


def test_crossover_n_measured_leaves_out_predicted_batches():
    from affbench.report.crossover import batches_text

    assert batches_text([1, 16, 100, 1024], [False, False, False, True]) == "1–100 (+ N=1024 predicted)"
    assert batches_text([1, 16], [False, False]) == "1–16"
    assert batches_text([1024], [True]) == "none (+ N=1024 predicted)"
