"""What a `train` run says: the terminal table, report.md of a train directory, and the
training section `python -m affbench report` adds to a run's report when the run directory
holds a train/ directory (``train --into RUN_DIR``). Reads the files only (affbench.train.output).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from affbench.report import fmt
from affbench.report.document import Block, Bullets, Heading, Image, Para, Table, Warning, to_markdown
from affbench.train import figures
from affbench.train.output import read

REPORT_MD = "report.md"
FIGURES_DIR = "figures"
HEADER = ["implementation", "time per step (95% interval)", "speedup vs numpy", "Affine share",
          "Amdahl bound", "final loss", "loss vs numpy (tolerance)", "digits accuracy"]


def _finite(*vals: Any) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals)


def _time(r: dict[str, Any]) -> str:
    if r.get("error"):
        return f"failed: {r['error']}"
    if not _finite(r.get("median_s")):
        return "—"
    return f"{fmt.seconds(r['median_s'])} ({fmt.seconds_range(r.get('ci_low_s'), r.get('ci_high_s'))})"


def _speedup(r: dict[str, Any]) -> str:
    if r["impl"] == "numpy":
        return "baseline"
    return fmt.ratio_ci(r.get("speedup"), r.get("speedup_low"), r.get("speedup_high")).replace("×", "x")


def _share(r: dict[str, Any]) -> str:
    v, lo, hi = r.get("affine_share"), r.get("share_low"), r.get("share_high")
    if not _finite(v):
        return "—"
    if _finite(lo, hi):
        return f"{100 * v:.0f}% ({100 * lo:.0f}–{100 * min(hi, 1.0):.0f}%)"
    return f"{100 * v:.0f}%"


def _amdahl(r: dict[str, Any]) -> str:
    v = r.get("amdahl")
    return f"≤ {v:.1f}x" if _finite(v) else "—"


def _agreement(r: dict[str, Any], prefix: str = "") -> str:
    diff, tol, ok = r.get(prefix + "max_rel_diff"), r.get(prefix + "tolerance"), r.get(prefix + "agrees")
    if r["impl"] == "numpy":
        return "reference"
    if ok is None or not _finite(tol):
        return "—"
    return f"{diff:.1e} {'≤' if ok else '>'} {tol:.1e} {'agrees' if ok else 'DISAGREES'}"


def _accuracy(r: dict[str, Any]) -> str:
    acc = r.get("digits_accuracy")
    if not _finite(acc):
        return "—"
    text = f"{100 * acc:.1f}%"
    if r["impl"] != "numpy" and r.get("digits_agrees") is False:
        text += " (loss DISAGREES)"
    return text


def table_rows(rows: Sequence[dict[str, Any]], network: str) -> list[list[str]]:
    return [[r["impl"], _time(r), _speedup(r), _share(r), _amdahl(r),
             f"{r['final_loss']:.5f}" if _finite(r.get("final_loss")) else "—", _agreement(r), _accuracy(r)]
            for r in rows if r["network"] == network]


def caption(rows: Sequence[dict[str, Any]], network: str) -> str:
    r = next(r for r in rows if r["network"] == network)
    text = (f"{network} {r['layer_sizes']}, batch {r['batch']}, {r['dtype']}, {r['threads']} thread(s); "
            f"loss after {r['iterations']} steps on {r['data']}")
    if r.get("digits_layer_sizes"):
        text += (f"; digits: {r['digits_layer_sizes']}, {r['digits_epochs']} epoch(s) ({r['digits_steps']} steps), "
                 f"train accuracy")
    return text


def networks(rows: Sequence[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["network"] for r in rows))


def terminal(rows: Sequence[dict[str, Any]]) -> str:
    """The table as plain text, one block per network."""
    out = []
    for net in networks(rows):
        body = table_rows(rows, net)
        widths = [max(len(h), *(len(c) for c in col)) for h, col in zip(HEADER, zip(*body))]
        out.append(caption(rows, net))
        for line in [HEADER, *body]:
            out.append("  " + "  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())
        out.append("")
    return "\n".join(out)


def disagreements(rows: Sequence[dict[str, Any]]) -> list[str]:
    out = []
    for r in rows:
        for prefix, what in (("", "synthetic"), ("digits_", "digits")):
            if r.get(prefix + "agrees") is False:
                out.append(f"{r['network']} / {r['impl']}: the {what} loss curve is {r[prefix + 'max_rel_diff']:.2e} "
                           f"from numpy's, beyond the tolerance {r[prefix + 'tolerance']:.2e}")
    return out


def blocks(rows: Sequence[dict[str, Any]], env: dict[str, Any], loss_fig: Path | None, bar_fig: Path | None,
           level: int = 2) -> list[Block]:
    """The tables, the figures and what they mean, as report blocks under headings of ``level``."""
    out: list[Block] = []
    for w in disagreements(rows):
        out.append(Warning(fmt.lit(w)))
    for w in env.get("warnings", []):
        out.append(Warning(fmt.lit(w)))
    for net in networks(rows):
        out.append(Table(HEADER, table_rows(rows, net), caption=f"**{fmt.lit(caption(rows, net))}**"))
    compile_s = {r["impl"]: r.get("compile_s") for r in rows}
    out.append(Bullets([
        "Time per step: one training step (draw a batch, forward, softmax-with-loss, backward, update), median "
        "with its 95% interval, sampled round-robin with numpy in rounds (affbench.measure.timing); the speedup is the "
        "median of paired samples. Compile time is measured apart: "
        + ", ".join(f"{k} {fmt.seconds(v)}" for k, v in compile_s.items() if _finite(v)) + ".",
        "Affine share: the fraction of a step in the Affine layers' forward and backward, from steps timed part "
        "by part in the same rotation; Amdahl bound: 1 / (1 − share), the whole-step speedup an infinitely fast "
        "Affine would give.",
        "Loss vs numpy: the largest relative difference between the implementation's loss curve and numpy's "
        "(same seed, weights and batches) against the tolerance max(2·τ(n), 10·E) of "
        "affbench/train/agreement.py (τ: verify's per-product bound; E: numpy against numpy whose every "
        "Affine output is nudged by one rounding error).",
    ]))
    if loss_fig is not None:
        out.append(Image(loss_fig, "Loss against wall time, synthetic data"))
    if bar_fig is not None:
        out.append(Image(bar_fig, "Where a step's time goes (mean of the lapped steps)"))
    return out


def draw(directory: Path, rows: Sequence[dict[str, Any]], curves: Sequence[dict[str, Any]]) -> tuple[Path | None, Path | None]:
    fig_dir = directory / FIGURES_DIR
    return (figures.loss_vs_time(rows, curves, fig_dir / "loss_vs_time.png"),
            figures.step_breakdown(rows, fig_dir / "step_breakdown.png"))


def write(directory: str | Path) -> Path:
    """(Re)write report.md and the figures of a train directory from its files."""
    d = Path(directory)
    rows, curves, env = read(d)
    loss_fig, bar_fig = draw(d, rows, curves)
    head: list[Block] = [Heading(f"affbench train: {d.resolve().name}", 1),
                         Para(f"`{str(env.get('command') or 'python -m affbench train').replace('`', chr(39))}` · "
                              f"{env.get('started_at', '?')} · machine load and settings in env.json")]
    text = to_markdown(head + blocks(rows, env, loss_fig, bar_fig), d)
    path = d / REPORT_MD
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def section_blocks(train_dir: Path) -> list[Block]:
    """The training section of a run report: the train directory's tables and figures."""
    rows, curves, env = read(train_dir)
    loss_fig, bar_fig = draw(train_dir, rows, curves)
    return [Heading("Training: the Affine layer inside a training step"),
            Para(f"From `{fmt.lit(str(train_dir))}` (`python -m affbench train`); docs/train.md explains it.")] \
        + blocks(rows, env, loss_fig, bar_fig)
