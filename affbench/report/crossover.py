"""Crossover points: the batch size at which an implementation starts or stops beating the baseline.

For each layer size (K, M), dtype, pass and thread count, the speedup over the baseline
s(N) = t_baseline(N) / t_impl(N) is followed along the measured batch sizes. Between two
neighbouring batch sizes where s crosses 1, the crossover is estimated by interpolating
log s linearly in log N (times grow roughly like a + b·N, so the log-log curve is smooth
between measured points). A crossover where the speedup on either side is within the spread
of the samples (the half IQRs of both times) is flagged ``within_noise``: it may move or vanish
on a re-run. Pure functions on the DataFrame from ``tables.speedups``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import pandas as pd

GROUP = ["impl", "pass", "dtype", "in_features", "out_features", "threads"]


@dataclass(frozen=True)
class Crossover:
    impl: str
    pass_: str
    dtype: str
    in_features: int
    out_features: int
    threads: int
    direction: str  # "starts beating" or "stops beating" (as N grows)
    batch_below: int  # last measured batch before the crossover
    batch_above: int  # first measured batch after it
    batch_estimate: float  # interpolated batch where the speedup is 1
    speedup_below: float
    speedup_above: float
    predicted: bool  # one of the four times involved was extrapolated
    #: a speedup on either side is within the spread of the samples (half IQRs): the side
    #: the implementation falls on there may be noise, and the crossover with it
    within_noise: bool = False


def estimate(n0: float, s0: float, n1: float, s1: float) -> float:
    """Batch where log s crosses 0 between (n0, s0) and (n1, s1), interpolating in log-log."""
    l0, l1 = math.log(s0), math.log(s1)
    if l0 == l1:
        return math.sqrt(n0 * n1)
    if n0 <= 0 or n1 <= 0:  # N = 0 cannot go on a log axis: interpolate linearly
        return n0 + (0 - l0) * (n1 - n0) / (l1 - l0)
    x0, x1 = math.log(n0), math.log(n1)
    return math.exp(x0 + (0 - l0) * (x1 - x0) / (l1 - l0))


def find_crossovers(sp: pd.DataFrame) -> list[Crossover]:
    """Every sign change of log(speedup) along the batch axis, per group."""
    out: list[Crossover] = []
    if sp.empty:
        return out
    for key, g in sp.groupby(GROUP, sort=False):
        g = g[(g["speedup"] > 0) & g["speedup"].map(math.isfinite)].sort_values("batch")
        n = g["batch"].to_list()
        s = g["speedup"].to_list()
        x = g["extrapolated"].to_list()
        spread = g["rel_spread"].fillna(0).to_list() if "rel_spread" in g else [0.0] * len(n)
        for i in range(len(n) - 1):
            win0, win1 = s[i] > 1.0, s[i + 1] > 1.0
            if win0 == win1:
                continue
            impl, pass_, dtype, k, m, thr = key
            out.append(Crossover(
                impl=str(impl), pass_=str(pass_), dtype=str(dtype), in_features=int(k), out_features=int(m),
                threads=int(thr), direction="starts beating" if win1 else "stops beating",
                batch_below=int(n[i]), batch_above=int(n[i + 1]),
                batch_estimate=estimate(n[i], s[i], n[i + 1], s[i + 1]),
                speedup_below=float(s[i]), speedup_above=float(s[i + 1]), predicted=bool(x[i] or x[i + 1]),
                within_noise=any(abs(s[j] - 1.0) <= spread[j] for j in (i, i + 1)),
            ))
    return out


def win_summary(sp: pd.DataFrame, impls: Iterable[str] | None = None) -> pd.DataFrame:
    """Per group: where the implementation beats the baseline, in words, plus its crossovers.

    Columns: impl, pass, dtype, in_features, out_features, threads, batches (measured range),
    faster_at (e.g. "N ≤ 4", "16 ≤ N ≤ 64", "always", "never"), crossovers (list[Crossover]).
    """
    cols = GROUP + ["batches", "faster_at", "crossovers"]
    if sp.empty:
        return pd.DataFrame(columns=cols)
    if impls is not None:
        sp = sp[sp["impl"].isin(list(impls))]
    rows = []
    by_group: dict[tuple, list[Crossover]] = {}
    for c in find_crossovers(sp):
        by_group.setdefault((c.impl, c.pass_, c.dtype, c.in_features, c.out_features, c.threads), []).append(c)
    for key, g in sp.groupby(GROUP, sort=False):
        g = g.sort_values("batch")
        n = g["batch"].to_list()
        win = (g["speedup"] > 1.0).to_list()
        ck = (str(key[0]), str(key[1]), str(key[2]), int(key[3]), int(key[4]), int(key[5]))
        rows.append({**dict(zip(GROUP, key)), "batches": f"{n[0]}–{n[-1]}" if len(n) > 1 else str(n[0]),
                     "faster_at": _ranges(n, win), "crossovers": by_group.get(ck, [])})
    return pd.DataFrame(rows, columns=cols)


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
        if i == 0:
            parts.append(f"N ≤ {hi}")
        elif j == len(n) - 1:
            parts.append(f"N ≥ {lo}")
        elif lo == hi:
            parts.append(f"N = {lo}")
        else:
            parts.append(f"{lo} ≤ N ≤ {hi}")
        i = j + 1
    return ", ".join(parts)
