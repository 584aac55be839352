"""The two figures of a `train` run, drawn from train.csv and curves.csv alone (matplotlib's
Agg canvas through Figure, no pyplot, like affbench.report.plots):

1. ``loss_vs_time`` — loss against wall time of the synthetic-data loss curve, a panel per
   network, a line per implementation: what a faster step buys, read sideways.
2. ``step_breakdown`` — a stacked bar per implementation, a panel per network: the mean time
   of a step's parts (Affine forward, Affine backward, ReLU, softmax-with-loss, update, batch,
   Python between them), each bar labelled with its Affine share and Amdahl bound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from matplotlib.figure import Figure
from matplotlib.patches import Patch

from affbench.report.plots import DPI, style_map
from affbench.train.loop import PARTS
from affbench.train.output import NUDGED, part_column

#: Affine parts in strong colours, the rest in muted ones.
PART_COLOURS = {"affine forward": "#1f77b4", "affine backward": "#ff7f0e", "relu": "#9edae5",
                "softmax-with-loss": "#c5b0d5", "update": "#98df8a", "batch": "#dbdb8d", "other": "#c7c7c7"}


def _networks(rows: Sequence[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["network"] for r in rows))


def _impls(rows: Sequence[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["impl"] for r in rows))


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def loss_vs_time(rows: Sequence[dict[str, Any]], curves: Sequence[dict[str, Any]], path: Path) -> Path | None:
    networks = _networks(rows)
    impls = _impls(rows)
    styles = style_map(impls)
    synthetic = [c for c in curves if c["data"] == "synthetic" and c["impl"] != NUDGED]
    if not networks or not synthetic:
        return None
    fig = Figure(figsize=(4.2 * len(networks), 3.6), layout="constrained")
    axes = fig.subplots(1, len(networks), squeeze=False)[0]
    for ax, net in zip(axes, networks):
        sizes = next((r["layer_sizes"] for r in rows if r["network"] == net), "")
        for impl in impls:
            pts = sorted((c["step"], c["wall_s"], c["loss"]) for c in synthetic if c["network"] == net and c["impl"] == impl)
            if not pts:
                continue
            colour, marker = styles[impl]
            ax.plot([p[1] for p in pts], [p[2] for p in pts], color=colour, linewidth=1.5, label=impl)
            ax.plot([pts[-1][1]], [pts[-1][2]], color=colour, marker=marker, markersize=5)
        ax.set_title(f"{net} ({sizes})", fontsize=10)
        ax.set_xlabel("wall time (s)")
        ax.set_ylabel("training loss")
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Loss against wall time (synthetic MNIST-shaped data, same seed and weights)", fontsize=11)
    return _save(fig, path)


def step_breakdown(rows: Sequence[dict[str, Any]], path: Path) -> Path | None:
    networks = _networks(rows)
    timed = [r for r in rows if r.get(part_column("affine forward")) is not None]
    if not networks or not timed:
        return None
    fig = Figure(figsize=(4.2 * len(networks), 1.2 + 0.55 * len(_impls(rows))), layout="constrained")
    axes = fig.subplots(1, len(networks), squeeze=False)[0]
    for ax, net in zip(axes, networks):
        mine = [r for r in timed if r["network"] == net]
        labels = [r["impl"] for r in mine]
        left = [0.0] * len(mine)
        for part in PARTS:
            widths = [1e3 * (r.get(part_column(part)) or 0.0) for r in mine]
            ax.barh(labels, widths, left=left, color=PART_COLOURS[part], edgecolor="white", linewidth=0.5)
            left = [a + b for a, b in zip(left, widths)]
        for y, (r, end) in enumerate(zip(mine, left)):
            share, bound = r.get("affine_share"), r.get("amdahl")
            if share is not None and bound is not None:
                ax.text(end, y, f" {100 * share:.0f}% Affine, ≤{bound:.1f}×", va="center", fontsize=8)
        ax.set_xlim(0, max(left) * 1.6 if max(left) > 0 else 1)
        ax.invert_yaxis()
        ax.set_xlabel("mean time per step (ms)")
        ax.set_title(f"{net} ({mine[0]['layer_sizes']})" if mine else net, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    fig.legend(handles=[Patch(color=PART_COLOURS[p], label=p) for p in PARTS], loc="outside lower center",
               ncol=len(PARTS), fontsize=8)
    fig.suptitle("Where a training step's time goes (≤ n×: the Amdahl bound, an infinitely fast Affine)",
                 fontsize=11)
    return _save(fig, path)
