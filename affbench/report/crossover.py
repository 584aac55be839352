"""Crossover points: the batch size at which an implementation starts or stops beating the baseline,
with how uncertain that batch is.

For each layer size (K, M), dtype, pass and thread count, the speedup over the baseline is
followed along the measured batch sizes. Each point gets a verdict from its 95% interval
(``tables.speedups``: 'above' = clearly faster, 'below' = clearly slower, 'tie' = the interval
reaches into the band of the run's precision target around 1). A crossover is a change
between clear verdicts; the batch sizes in between whose verdict is a tie are where it may lie,
so it is reported as a range, "between N=16 and N=128 (tie at 64)", never as one batch. An
implementation that ties at the smallest (largest) batches and then wins clearly gets an open
crossover: "wins clearly from N=128". Where two clear verdicts are neighbours, ``N≈`` is also
interpolated in log-log between them (times grow roughly like a + b·N). Predicted
(extrapolated) points have no interval: their point value decides, and the crossover is
marked ``predicted``. Pure functions on the DataFrame from ``tables.speedups``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import pandas as pd

from affbench.measure.intervals import DEFAULT_TARGET, Interval
from affbench.report import speedup, tables

GROUP = ["impl", "pass", "dtype", "in_features", "out_features", "threads"]
_iv = tables.interval_of  # a speedups row as an Interval (unknown ends infinite)


@dataclass(frozen=True)
class Crossover:
    impl: str
    pass_: str
    dtype: str
    in_features: int
    out_features: int
    threads: int
    direction: str  # "starts beating" or "stops beating" (as N grows)
    #: last batch with the old clear verdict; None when the ties reach down to the smallest batch
    batch_below: int | None
    #: first batch with the new clear verdict; None when the ties reach up to the largest batch
    batch_above: int | None
    #: measured batches between the two whose verdict is a tie: where the crossover may lie
    tie_batches: tuple[int, ...]
    #: interpolated batch where the point estimates cross 1 (NaN for an open crossover)
    batch_estimate: float
    speedup_below: Interval | None
    speedup_above: Interval | None
    predicted: bool  # a point involved was extrapolated


def estimate(n0: float, s0: float, n1: float, s1: float) -> float:
    """Batch where log s crosses 0 between (n0, s0) and (n1, s1), interpolating in log-log."""
    l0, l1 = math.log(s0), math.log(s1)
    if l0 == l1:
        return math.sqrt(n0 * n1)
    if n0 <= 0 or n1 <= 0:  # N = 0 cannot go on a log axis: interpolate linearly
        return n0 + (0 - l0) * (n1 - n0) / (l1 - l0)
    x0, x1 = math.log(n0), math.log(n1)
    return math.exp(x0 + (0 - l0) * (x1 - x0) / (l1 - l0))


def verdicts(g: pd.DataFrame, band: float = DEFAULT_TARGET) -> list[str]:
    """The verdict of each row: the ``verdict`` column of tables.speedups, or one computed from
    speedup_low/high (unknown ends: tie) for a frame built without it."""
    if "verdict" in g:
        return [str(v) for v in g["verdict"]]
    return [speedup.verdict(_iv(r), band, bool(r.get("extrapolated", False))) for r in g.to_dict("records")]


def group_crossovers(key: tuple, g: pd.DataFrame, band: float = DEFAULT_TARGET) -> list[Crossover]:
    """Crossovers of one group (rows of one impl, pass, dtype, K, M, threads)."""
    g = g[(g["speedup"] > 0) & g["speedup"].map(math.isfinite)].sort_values("batch")
    recs = g.to_dict("records")
    v = verdicts(g, band)
    n = [int(r["batch"]) for r in recs]
    s = [float(r["speedup"]) for r in recs]
    clear = [i for i, x in enumerate(v) if x != "tie"]
    impl, pass_, dtype, k, m, thr = key
    base = dict(impl=str(impl), pass_=str(pass_), dtype=str(dtype), in_features=int(k), out_features=int(m),
                threads=int(thr))
    pred = lambda lo, hi: any(bool(r.get("extrapolated", False)) for r in recs[lo:hi + 1])  # noqa: E731
    out: list[Crossover] = []
    if clear and clear[0] > 0 and v[clear[0]] == "above":  # ties from the smallest batch, then a clear win
        i = clear[0]
        out.append(Crossover(**base, direction="starts beating", batch_below=None, batch_above=n[i],
                             tie_batches=tuple(n[:i]), batch_estimate=math.nan, speedup_below=None,
                             speedup_above=_iv(recs[i]), predicted=pred(0, i)))
    for i, j in zip(clear, clear[1:]):
        if v[i] == v[j]:
            continue
        cross = next((c for c in range(i, j) if (s[c] > 1.0) != (s[c + 1] > 1.0)), None)
        est = estimate(n[cross], s[cross], n[cross + 1], s[cross + 1]) if cross is not None else math.nan
        out.append(Crossover(**base, direction="starts beating" if v[j] == "above" else "stops beating",
                             batch_below=n[i], batch_above=n[j], tie_batches=tuple(n[i + 1:j]), batch_estimate=est,
                             speedup_below=_iv(recs[i]), speedup_above=_iv(recs[j]),
                             predicted=pred(i, j)))
    if clear and clear[-1] < len(n) - 1 and v[clear[-1]] == "above":  # a clear win, then ties to the end
        i = clear[-1]
        out.append(Crossover(**base, direction="stops beating", batch_below=n[i], batch_above=None,
                             tie_batches=tuple(n[i + 1:]), batch_estimate=math.nan, speedup_below=_iv(recs[i]),
                             speedup_above=None, predicted=pred(i, len(n) - 1)))
    return out


def find_crossovers(sp: pd.DataFrame, band: float = DEFAULT_TARGET) -> list[Crossover]:
    """Every change between a clear win and anything else along the batch axis, per group."""
    out: list[Crossover] = []
    if sp.empty:
        return out
    for key, g in sp.groupby(GROUP, sort=False):
        out.extend(group_crossovers(key, g, band))
    return out


def win_summary(sp: pd.DataFrame, impls: Iterable[str] | None = None, band: float = DEFAULT_TARGET) -> pd.DataFrame:
    """Per group: where the implementation clearly beats the baseline and where it ties, in
    words, plus its crossovers.

    Columns: impl, pass, dtype, in_features, out_features, threads, batches (measured range, then
    the predicted batch sizes),
    faster_at (e.g. "N ≤ 4", "16 ≤ N ≤ 64; tie at N ≥ 128", "always", "never"),
    crossovers (list[Crossover]).
    """
    cols = GROUP + ["batches", "faster_at", "crossovers"]
    if sp.empty:
        return pd.DataFrame(columns=cols)
    if impls is not None:
        sp = sp[sp["impl"].isin(list(impls))]
    rows = []
    by_group: dict[tuple, list[Crossover]] = {}
    for c in find_crossovers(sp, band):
        by_group.setdefault((c.impl, c.pass_, c.dtype, c.in_features, c.out_features, c.threads), []).append(c)
    for key, g in sp.groupby(GROUP, sort=False):
        g = g.sort_values("batch")
        n = g["batch"].to_list()
        v = verdicts(g, band)
        ck = (str(key[0]), str(key[1]), str(key[2]), int(key[3]), int(key[4]), int(key[5]))
        rows.append({**dict(zip(GROUP, key)), "batches": batches_text(n, g["extrapolated"].astype(bool).to_list()),
                     "faster_at": faster_text(n, v), "crossovers": by_group.get(ck, [])})
    return pd.DataFrame(rows, columns=cols)


def batches_text(n: list[int], predicted: list[bool]) -> str:
    """The measured batch sizes as a range, then the predicted ones: '1–100 (+ N=1024 predicted)'."""
    meas = [x for x, p in zip(n, predicted) if not p]
    pred = [x for x, p in zip(n, predicted) if p]
    text = (f"{meas[0]}–{meas[-1]}" if len(meas) > 1 else str(meas[0])) if meas else "none"
    return text + (f" (+ N={', '.join(map(str, pred))} predicted)" if pred else "")


def faster_text(n: list[int], v: list[str]) -> str:
    """Clear wins, then ties: 'N ≤ 4', 'never; tie at N ≥ 64', 'tie at every N'."""
    win, tie = [x == "above" for x in v], [x == "tie" for x in v]
    if all(tie):
        return "tie at every N"
    text = _ranges(n, win)
    return text + (f"; tie at {_ranges(n, tie)}" if any(tie) else "")


def _ranges(n: list[int], win: list[bool]) -> str:
    if all(win):
        return "always"
    if not any(win):
        return "never"
    parts = []
    i = 0
    while i < len(n):
        if not win[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(n) and win[j + 1]:
            j += 1
        lo, hi = n[i], n[j]
        if lo == hi:
            parts.append(f"N = {lo}")
        elif i == 0:
            parts.append(f"N ≤ {hi}")
        elif j == len(n) - 1:
            parts.append(f"N ≥ {lo}")
        else:
            parts.append(f"{lo} ≤ N ≤ {hi}")
        i = j + 1
    return ", ".join(parts)
