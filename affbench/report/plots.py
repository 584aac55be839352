"""The report's figures (PNG, matplotlib's Agg canvas; no pyplot, no global backend change).

1. ``time_vs_batch``  — median time vs batch size, a line per implementation, a panel per
   layer size (K→M) and dtype, the IQR as a band; one figure per pass.
2. ``gflops_vs_size`` — GFLOP/s vs N·K·M, with the best measured BLAS rate and the machine's
   theoretical peak (env.json peak_gflops) as horizontal lines.
3. ``speedup_heatmap`` — speedup over the baseline across batch × layer size, one figure per
   Numba implementation.
4. ``thread_scaling`` — speedup and parallel efficiency vs threads.
5. ``compile_times`` — first-call (JIT compile) time per implementation and dtype.

Extrapolated points (predictions) are drawn hollow and joined by dashed lines, never like
measurements. Every function returns the path it wrote, or None when there was nothing to
draw (the caller says why in the report); a figure whose data is degenerate (one thread count)
is still written, saying so in place of the plot.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from affbench.measure.intervals import DEFAULT_TARGET
from affbench.report import fmt, tables

DPI = 110
_PALETTE = ["#000000", "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
            "#bcbd22", "#7f7f7f"]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "*"]


def style_map(impls: Sequence[str]) -> dict[str, tuple[str, str]]:
    """impl -> (colour, marker), stable across all figures of one report."""
    return {impl: (_PALETTE[i % len(_PALETTE)], _MARKERS[i % len(_MARKERS)]) for i, impl in enumerate(impls)}


def _time_formatter():
    return FuncFormatter(lambda v, _pos: fmt.seconds(v) if v > 0 else "0")


def _time_axis(ax, values, label: str) -> None:
    """Log scale with '10 µs'-style ticks when the times span a decade; otherwise a linear
    axis in one unit named in the label (so close ticks stay distinct)."""
    if _spans_decades(values):
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(_time_formatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_ylabel(label)
        return
    v = [x for x in values if x == x and x > 0]
    top = max(v) if v else 1.0
    unit, scale = next(((u, sc) for u, sc in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)) if top >= sc), ("ns", 1e-9))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _p: f"{y / scale:g}"))
    ax.set_ylabel(f"{label} ({unit})")


def _adjust(fig: Figure, *, left: float, right: float, top: float, bottom: float, wspace: float, hspace: float) -> None:
    """Fixed margins in inches: much faster than tight_layout, which renders the figure once
    more to measure it (a report draws dozens of log-axis panels on a small machine)."""
    w, h = fig.get_figwidth(), fig.get_figheight()
    fig.subplots_adjust(left=left / w, right=1 - right / w, top=1 - top / h, bottom=bottom / h,
                        wspace=wspace, hspace=hspace)


def _no_minor_ticks(ax) -> None:
    from matplotlib.ticker import NullLocator

    if ax.get_xscale() == "log":
        ax.xaxis.set_minor_locator(NullLocator())
    if ax.get_yscale() == "log":
        ax.yaxis.set_minor_locator(NullLocator())


def _pow10(v: float, _pos: Any = None) -> str:
    """Tick label without mathtext (fast): 1e+06 -> '1e6', 1000 -> '1000'."""
    if v <= 0:
        return "0"
    e = math.log10(v)
    if abs(e - round(e)) < 1e-9 and abs(e) >= 4:
        return f"1e{int(round(e))}"
    return f"{v:g}"


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def _spans_decades(values: Sequence[float]) -> bool:
    v = [x for x in values if x is not None and x > 0 and math.isfinite(x)]
    return len(v) > 1 and max(v) / min(v) >= 10


def _layers(df: pd.DataFrame) -> list[tuple[int, int]]:
    pairs = {(int(k), int(m)) for k, m in zip(df["in_features"], df["out_features"])}
    return sorted(pairs, key=lambda p: (p[0] * p[1], p))


def _message_figure(path: Path, title: str, message: str) -> Path:
    fig = Figure(figsize=(7, 2.6))
    ax = fig.add_subplot()
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=11,
            bbox=dict(boxstyle="round", facecolor="#fff3cd", edgecolor="#c9a227"))
    return _save(fig, path)


def _draw_series(ax, x, y, extrap, color, marker, label) -> None:
    """Solid line + filled markers between measured points; dashed + hollow where a point is
    extrapolated."""
    x, y, extrap = np.asarray(x, float), np.asarray(y, float), np.asarray(extrap, bool)
    meas = ~extrap
    ax.plot(x[meas], y[meas], color=color, marker=marker, markersize=4.5, linewidth=1.6, label=label,
            linestyle="-" if meas.sum() > 1 else "none")
    for i in range(len(x) - 1):
        if extrap[i] or extrap[i + 1]:
            ax.plot(x[i:i + 2], y[i:i + 2], color=color, linestyle=(0, (4, 3)), linewidth=1.3)
    if extrap.any():
        ax.plot(x[extrap], y[extrap], linestyle="none", marker=marker, markersize=6, markerfacecolor="white",
                markeredgecolor=color, markeredgewidth=1.4)


def _legend_extras(any_extrap: bool, band: bool) -> list[Any]:
    extras: list[Any] = []
    if band:
        extras.append(Patch(facecolor="0.6", alpha=0.3, label="IQR (q1–q3 of samples)"))
    if any_extrap:
        extras.append(Line2D([], [], color="0.3", linestyle=(0, (4, 3)), marker="o", markerfacecolor="white",
                             label="extrapolated (predicted, not measured)"))
    return extras


# --------------------------------------------------------------------------- 1. time vs batch

def time_vs_batch(df: pd.DataFrame, pass_: str, path: Path, *, impls: Sequence[str], threads: int | None) -> Path | None:
    t = tables.timed(df)
    t = t[t["pass"] == pass_]
    t, other = tables.select_threads(t, threads)
    if t.empty:
        return None
    styles = style_map(impls)
    layers = _layers(t)
    dtypes = sorted(t["dtype"].unique())
    panels = [(dtype, layer) for dtype in dtypes for layer in layers]
    ncol = min(4, len(layers))
    nrow = math.ceil(len(panels) / ncol)
    fig = Figure(figsize=(max(5.0, 3.9 * ncol), 3.4 * nrow + 0.9))
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    log_x = _spans_decades(t["batch"])
    any_extrap = bool(t["extrapolated"].any())
    for idx, (dtype, (k, m)) in enumerate(panels):
            ax = axes[idx // ncol][idx % ncol]
            sub = t[(t["dtype"] == dtype) & (t["in_features"] == k) & (t["out_features"] == m)]
            for impl in impls:
                g = sub[sub["impl"] == impl].sort_values("batch")
                if g.empty:
                    continue
                color, marker = styles[impl]
                ok = g[~g["extrapolated"]]
                if len(ok) and ok["q1_s"].notna().any():
                    ax.fill_between(ok["batch"], ok["q1_s"], ok["q3_s"], color=color, alpha=0.2, linewidth=0)
                _draw_series(ax, g["batch"], g["median_s"], g["extrapolated"], color, marker, impl)
            if log_x:
                ax.set_xscale("log", base=2)
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
            ax.set_title(f"layer {fmt.layer(k, m)}, {dtype}", fontsize=10)
            ax.set_xlabel("batch size N (rows of x)")
            _time_axis(ax, sub["median_s"], "median time per call")
            _no_minor_ticks(ax)
            ax.grid(True, which="major", alpha=0.3)
    handles = [Line2D([], [], color=styles[i][0], marker=styles[i][1], label=i + (f" ({other[i]} thr)" if i in other else ""))
               for i in impls if i in set(t["impl"])]
    handles += _legend_extras(any_extrap, band=True)
    thr_text = f"{threads} thread{'s' if threads != 1 else ''}" if threads is not None else ""
    fig.suptitle(f"{pass_} pass: median time per call vs batch size ({thr_text}; lower is better)", fontsize=12)
    ncol = max(1, min(4, len(handles), int(fig.get_figwidth() // 2.6)))
    nlines = math.ceil(len(handles) / ncol)
    height = fig.get_figheight()
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=9, bbox_to_anchor=(0.5, 0.05 / height),
               frameon=False)
    _adjust(fig, left=0.85, right=0.2, top=0.85, bottom=0.8 + 0.22 * nlines, wspace=0.38, hspace=0.5)
    return _save(fig, path)


# --------------------------------------------------------------------------- 2. GFLOP/s vs size

def gflops_vs_size(df: pd.DataFrame, env: Mapping[str, Any], path: Path, *, impls: Sequence[str],
                   threads: int | None, blas_impl: str = "numpy") -> Path | None:
    t = tables.timed(df)
    t = t[np.isfinite(t["gflops"].astype(float)) & (t["gflops"] > 0)]
    t, other = tables.select_threads(t, threads)
    if t.empty:
        return None
    styles = style_map(impls)
    dtypes = sorted(t["dtype"].unique())
    passes = tables.pass_order(t["pass"].unique())
    peak = env.get("peak_gflops") if isinstance(env.get("peak_gflops"), Mapping) else {}
    all_ok = df[(df["status"] == "ok") & (df["impl"] == blas_impl)]
    fig = Figure(figsize=(max(5.5, 4.6 * len(passes)), 3.7 * len(dtypes) + 1.2))
    axes = fig.subplots(len(dtypes), len(passes), squeeze=False)
    any_extrap = bool(t["extrapolated"].any())
    for r, dtype in enumerate(dtypes):
        best_blas = all_ok[all_ok["dtype"] == dtype]["gflops"].max() if len(all_ok) else math.nan
        pk = peak.get(dtype) if isinstance(peak.get(dtype), (int, float)) else None
        for c, pass_ in enumerate(passes):
            ax = axes[r][c]
            sub = t[(t["dtype"] == dtype) & (t["pass"] == pass_)]
            for impl in impls:
                g = sub[sub["impl"] == impl]
                if g.empty:
                    continue
                color, marker = styles[impl]
                size = (g["batch"] * g["in_features"] * g["out_features"]).astype(float)
                ok = ~g["extrapolated"].to_numpy(bool)
                ax.scatter(size[ok], g["gflops"][ok], color=color, marker=marker, s=22, alpha=0.85)
                if (~ok).any():
                    ax.scatter(size[~ok], g["gflops"][~ok], facecolors="white", edgecolors=color, marker=marker,
                               s=30, linewidths=1.3)
            if best_blas == best_blas:
                ax.axhline(best_blas, color="0.25", linestyle="--", linewidth=1.1)
            if pk:
                ax.axhline(pk, color="#b22222", linestyle=":", linewidth=1.5)
            ax.set_xscale("log")
            if _spans_decades(sub["gflops"]) or pk:
                ax.set_yscale("log")
            ax.set_title(f"{pass_} pass, {dtype}", fontsize=10)
            ax.set_xlabel("problem size N·K·M (multiply-adds per forward)")
            ax.set_ylabel("GFLOP/s (10⁹ FLOP per second)")
            ax.grid(True, which="major", alpha=0.3)
            ax.xaxis.set_major_locator(LogLocator(base=10))
            ax.xaxis.set_major_formatter(FuncFormatter(_pow10))
            ax.xaxis.set_minor_formatter(NullFormatter())
            if ax.get_yscale() == "log":
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
            _no_minor_ticks(ax)
    handles = [Line2D([], [], color=styles[i][0], marker=styles[i][1], linestyle="none",
                      label=i + (f" ({other[i]} thr)" if i in other else "")) for i in impls if i in set(t["impl"])]
    rates = []
    for dtype in dtypes:
        b = all_ok[all_ok["dtype"] == dtype]["gflops"].max() if len(all_ok) else math.nan
        if b == b:
            rates.append(f"{dtype} {b:.1f}")
    if rates:
        handles.append(Line2D([], [], color="0.25", linestyle="--",
                              label=f"best measured {blas_impl} (any pass/threads): " + ", ".join(rates)))
    pk_text = [f"{d} {peak[d]:.1f}" for d in dtypes if isinstance(peak.get(d), (int, float))]
    if pk_text:
        handles.append(Line2D([], [], color="#b22222", linestyle=":", linewidth=1.5,
                              label="theoretical peak, all cores: " + ", ".join(pk_text)))
    handles += _legend_extras(any_extrap, band=False)
    how = peak.get("how") if pk_text else None
    note = (f"Peak derived as: {how}" if how else "Theoretical peak: " + (
        "derivation not recorded in env.json" if pk_text else "unknown (env.json has no peak_gflops)"))
    thr_text = f"{threads} thread{'s' if threads != 1 else ''}" if threads is not None else ""
    fig.suptitle(f"Throughput vs problem size ({thr_text}; higher is better)", fontsize=12)
    # one column under a single pass: two columns of these labels are wider than its 5.5 inches
    # (the legend was cut off at both sides); the figure grows by the legend's extra lines
    ncol = 2 if len(passes) > 1 else 1
    nlines = math.ceil(len(handles) / ncol)
    fig.set_figheight(fig.get_figheight() + 0.2 * (nlines - math.ceil(len(handles) / 2)))
    height = fig.get_figheight()
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=8.5, bbox_to_anchor=(0.5, 0.3 / height),
               frameon=False)
    fig.text(0.5, 0.05 / height, note, ha="center", va="bottom", fontsize=8, style="italic", wrap=True)
    _adjust(fig, left=0.85, right=0.2, top=0.75, bottom=0.95 + 0.2 * nlines, wspace=0.3, hspace=0.45)
    return _save(fig, path)


# --------------------------------------------------------------------------- 3. speedup heatmap

class HeatCells(NamedTuple):
    """The grid of one heatmap panel (layers × batches): speedups and which cells get marked."""
    values: np.ndarray  # speedup, NaN where not measured
    extrapolated: np.ndarray  # a predicted time: hatched
    tie: np.ndarray  # a measured speedup whose interval reaches into the tie band: dotted frame


def heatmap_cells(sub: pd.DataFrame, layers: Sequence[tuple[int, int]], batches: Sequence[int]) -> HeatCells:
    """Lay the rows of ``tables.speedups`` for one pass and dtype out on the grid. A cell is
    marked a tie from the frame's ``tie`` column (measured, interval reaching into the band
    around 1); a predicted cell is never a tie: it has no interval and is hatched instead."""
    grid = np.full((len(layers), len(batches)), np.nan)
    ext = np.zeros_like(grid, dtype=bool)
    tie = np.zeros_like(grid, dtype=bool)
    for row in sub.to_dict("records"):
        i = layers.index((int(row["in_features"]), int(row["out_features"])))
        j = batches.index(int(row["batch"]))
        grid[i, j] = row["speedup"]
        ext[i, j] = bool(row["extrapolated"])
        tie[i, j] = bool(row.get("tie", False)) and not ext[i, j]
    return HeatCells(grid, ext, tie)


def speedup_heatmap(sp: pd.DataFrame, impl: str, baseline: str, path: Path, *, threads: int | None,
                    band: float = DEFAULT_TARGET) -> Path | None:
    s = sp[sp["impl"] == impl]
    if s.empty:
        return None
    if threads is not None and (s["threads"] == threads).any():
        thr = threads
    else:
        thr = int(s["threads"].max())
    s = s[s["threads"] == thr]
    passes = tables.pass_order(s["pass"].unique())
    dtypes = sorted(s["dtype"].unique())
    layers = _layers(s)
    batches = sorted(int(b) for b in s["batch"].unique())
    vals = np.log2(s["speedup"].clip(lower=1e-6).to_numpy(float))
    lim = max(1.0, float(np.nanmax(np.abs(vals))) if vals.size else 1.0)
    lim = min(lim, 10.0)
    cw = max(0.55, 0.3 + 0.07 * 6)
    fig = Figure(figsize=(max(5.0, len(dtypes) * (1.6 + cw * len(batches))) + 1.2,
                          len(passes) * (1.3 + 0.45 * len(layers)) + 1.0), layout="constrained")
    axes = fig.subplots(len(passes), len(dtypes), squeeze=False)
    im = None
    any_extrap = any_tie = False
    for r, pass_ in enumerate(passes):
        for c, dtype in enumerate(dtypes):
            ax = axes[r][c]
            cells = heatmap_cells(s[(s["pass"] == pass_) & (s["dtype"] == dtype)], layers, batches)
            grid, ext, tie = cells.values, cells.extrapolated, cells.tie
            logg = np.log2(np.where(grid > 0, grid, np.nan))
            im = ax.imshow(np.ma.masked_invalid(logg), cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto",
                           origin="lower")
            ax.set_facecolor("0.85")
            for i in range(len(layers)):
                for j in range(len(batches)):
                    v = grid[i, j]
                    if not np.isfinite(v):
                        ax.text(j, i, "—", ha="center", va="center", fontsize=7, color="0.4")
                        continue
                    dark = abs(math.log2(v)) > lim * 0.6
                    mark = "~" if ext[i, j] else "≈" if tie[i, j] else ""
                    label = mark + (f"{v:.2g}×" if v < 10 else f"{v:.0f}×")
                    ax.text(j, i, label, ha="center", va="center", fontsize=7,
                            color="white" if dark else "black", style="italic" if ext[i, j] else "normal")
                    if ext[i, j]:
                        any_extrap = True
                        ax.add_patch(_hatch_rect(j, i))
                    elif tie[i, j]:
                        any_tie = True
                        ax.add_patch(_tie_rect(j, i, "white" if dark else "0.15"))
            ax.set_xticks(range(len(batches)), [str(b) for b in batches], fontsize=8)
            ax.set_yticks(range(len(layers)), [fmt.layer(k, m) for k, m in layers], fontsize=8)
            if r == len(passes) - 1:
                ax.set_xlabel("batch size N")
            if c == 0:
                ax.set_ylabel("layer K→M")
            ax.set_title(f"{pass_}, {dtype}", fontsize=10)
    if im is not None:
        cb = fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.9)
        ticks = [t for t in range(-int(lim), int(lim) + 1)]
        cb.set_ticks(ticks)
        cb.set_ticklabels([f"{2.0 ** t:.3g}×" for t in ticks])
        cb.set_label(f"speedup over {baseline} (log scale; >1 = {impl} faster)")
    note = f"{impl} vs {baseline}, {thr} thread{'s' if thr != 1 else ''}; cell = {baseline} time / {impl} time"
    if any_extrap:
        note += "; hatched ~cells use an extrapolated (predicted) time"
    if any_tie:
        note += f"; dotted ≈cells: tie, the 95% interval reaches into 1 ± {band:.0%}"
    fig.suptitle(f"Speedup of {impl} over {baseline}", fontsize=12)
    fig.get_layout_engine().set(h_pad=0.08)
    fig.supxlabel(note, fontsize=8, style="italic")
    return _save(fig, path)


def _hatch_rect(j: int, i: int):
    from matplotlib.patches import Rectangle

    return Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="0.35", linewidth=0)


def _tie_rect(j: int, i: int, color: str):
    """A dotted frame inside the cell: unlike the extrapolated hatch, it leaves the value legible."""
    from matplotlib.patches import Rectangle

    return Rectangle((j - 0.42, i - 0.4), 0.84, 0.8, fill=False, edgecolor=color, linewidth=1.1,
                     linestyle=(0, (1, 1.5)))


# --------------------------------------------------------------------------- 4. thread scaling

def thread_scaling(df: pd.DataFrame, path: Path, *, impls: Sequence[str]) -> Path:
    ts = tables.thread_scaling(df)
    counts = sorted(int(x) for x in df[df["status"] == "ok"]["threads"].unique())
    if ts.empty:
        if len(counts) <= 1:
            msg = (f"This run measured a single thread count ({counts[0] if counts else 'none'}): "
                   "there is no thread scaling to show.\nRun a sweep over threads (e.g. --threads 1,2) to see it.")
        else:
            msg = ("No implementation was measured at two or more thread counts on the same case:\n"
                   "there is no thread scaling to show.")
        return _message_figure(path, "Thread scaling", msg)
    styles = style_map(impls)
    fig = Figure(figsize=(11, 4.4))
    ax_s, ax_e = fig.subplots(1, 2)
    tmax = int(ts["threads"].max())
    t0 = int(ts["base_threads"].min())
    xs = np.array(sorted(set(ts["threads"])))
    ax_s.plot(xs, xs / t0, color="0.5", linestyle=":", label="ideal (linear)")
    ax_e.axhline(1.0, color="0.5", linestyle=":")
    dstyles = {"float64": "-", "float32": "--"}
    series = [(impl, dtype, g.sort_values("threads")) for impl in impls
              for dtype, g in ts[ts["impl"] == impl].groupby("dtype", sort=True)]
    span = (xs.max() - xs.min()) if len(xs) > 1 else 1.0
    for idx, (impl, dtype, g) in enumerate(series):
        color, marker = styles[impl]
        ls = dstyles.get(str(dtype), "-.")
        dx = (idx - (len(series) - 1) / 2) * 0.012 * span  # spread the range bars apart
        x = g["threads"].to_numpy(float) + dx
        y = g["speedup"].to_numpy(float)
        ax_s.errorbar(x, y, yerr=[y - g["min"].to_numpy(float), g["max"].to_numpy(float) - y], color=color,
                      marker=marker, markersize=5, linestyle=ls, capsize=2, elinewidth=0.8, label=f"{impl} {dtype}")
        ax_e.plot(x, g["efficiency"], color=color, marker=marker, markersize=5, linestyle=ls)
    for ax in (ax_s, ax_e):
        ax.set_xlabel("threads")
        ax.set_xticks(xs)
        ax.grid(True, alpha=0.3)
    ax_s.set_ylabel(f"speedup over {t0} thread{'s' if t0 != 1 else ''} (geometric mean)")
    ax_e.set_ylabel("parallel efficiency = speedup / thread ratio")
    ax_e.set_ylim(0, max(1.15, float(ts["efficiency"].max()) * 1.1))
    ax_s.set_title("speedup (bars: range over cases)", fontsize=10)
    ax_e.set_title("parallel efficiency (1 = perfect)", fontsize=10)
    ax_s.legend(fontsize=7.5, ncol=1, loc="upper left")
    fig.suptitle(f"Thread scaling, threads {t0}–{tmax}: geometric mean over every measured case of each "
                 "implementation", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return _save(fig, path)


# --------------------------------------------------------------------------- 5. compile times

def compile_times(df: pd.DataFrame, path: Path, *, impls: Sequence[str]) -> Path | None:
    ct = tables.compile_table(df)
    ct = ct[ct["compile_s"] > 0]
    if ct.empty:
        return None
    names = [i for i in impls if i in set(ct["impl"])]
    dtypes = sorted(ct["dtype"].unique())
    colors = {"float32": "#4c72b0", "float64": "#dd8452"}
    fig = Figure(figsize=(8, 1.0 + 0.55 * len(names) * max(1, len(dtypes)) / 1.5))
    ax = fig.add_subplot()
    h = 0.8 / len(dtypes)
    for d, dtype in enumerate(dtypes):
        ys, xs = [], []
        for i, impl in enumerate(names):
            hit = ct[(ct["impl"] == impl) & (ct["dtype"] == dtype)]
            if len(hit):
                ys.append(i - 0.4 + h * (d + 0.5))
                xs.append(float(hit["compile_s"].iloc[0]))
        bars = ax.barh(ys, xs, height=h * 0.9, color=colors.get(dtype, f"C{d}"), label=dtype)
        for y, x in zip(ys, xs):
            ax.text(x * 1.08, y, fmt.seconds(x), va="center", fontsize=8)
        del bars
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    if _spans_decades(ct["compile_s"]):
        ax.set_xscale("log")
        ax.set_xlim(right=float(ct["compile_s"].max()) * 8)
    else:
        ax.set_xlim(0, float(ct["compile_s"].max()) * 1.25)
    ax.xaxis.set_major_formatter(_time_formatter())
    ax.set_xlabel("first-call time: JIT compile, cache load or framework start-up" + (" (log scale)" if _spans_decades(ct["compile_s"]) else ""))
    ax.set_title("Compile time per implementation and dtype (never part of a timing sample)", fontsize=11)
    ax.legend(title="dtype", fontsize=8, loc="upper right")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)
