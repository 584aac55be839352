"""The numba-tiled performance targets (issue 6) and how a measurement is judged against them.

Pure logic, no timing: :func:`evaluate` turns measured median times into an
:class:`Outcome`; ``affbench.commands.kernels`` does the measuring. Ratios are measured side
by side in one process (round-robin samples, medians), never from absolute times taken at
different moments on a shared machine.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from affbench import registry
from affbench.measure.intervals import Interval
from affbench.reference import flops

SUBJECT = "numba-tiled"
BASELINE = registry.BASELINE


def peak_gflops(dtype: str, cpu: dict | None = None, cores: int | None = None) -> float:
    """This machine's theoretical FMA peak in GFLOP/s (affbench.measure.environment.peak_gflops: 166.1
    FP64 / 332.3 FP32 on the 2-core 2.596 GHz AVX-512 VM, 78.2 / 156.5 on the AVX2 machine of
    shared/FACTS.md); NaN when unknown.

    The boost clock is above the nominal one, so a kernel can measure above 100%.
    """
    from affbench.measure import environment

    info = cpu or environment.cpu()
    peak = environment.peak_gflops(info, cores or environment.peak_cores(info))
    value = peak.get(str(dtype))
    return float(value) if value else math.nan


@dataclass(frozen=True)
class Target:
    """One line of the target table.

    kind "ratio": time(SUBJECT, threads) / time(BASELINE, threads) must be <= limit.
    kind "speedup": time(SUBJECT, 1 thread) / time(SUBJECT, threads) must be >= limit.
    """

    case: str
    N: int
    K: int
    M: int
    dtype: str
    kind: str
    limit: float
    threads: int = 2
    pass_: str = "step"  # what is timed: the training step, or forward() or backward() alone

    @property
    def step_flops(self) -> int:
        """FLOPs of one call of the timed pass (the step unless ``pass_`` says otherwise)."""
        return flops(self.pass_, self.N, self.K, self.M)

    @property
    def relation(self) -> str:
        return "<=" if self.kind == "ratio" else ">="

    @property
    def measure(self) -> str:
        if self.kind == "ratio":
            return f"{SUBJECT}/{BASELINE} {self.pass_}"
        return f"{SUBJECT} 1/{self.threads}-thread speedup"

    @property
    def labels(self) -> tuple[str, str]:
        """(numerator, denominator) labels of the two measured kernels."""
        if self.kind == "ratio":
            return SUBJECT, BASELINE
        return f"{SUBJECT}@1t", f"{SUBJECT}@{self.threads}t"


def _targets() -> tuple[Target, ...]:
    out = []
    for n, limit in ((1024, 1.25), (2048, 1.6)):
        for dt in ("float32", "float64"):
            out.append(Target(f"{n}^3", n, n, n, dt, "ratio", limit))
    for dt in ("float64", "float32"):
        out.append(Target("book N=100 784->50", 100, 784, 50, dt, "ratio", 0.67))
        out.append(Target("N=1 784->50", 1, 784, 50, dt, "ratio", 0.67))
    for dt in ("float32", "float64"):
        out.append(Target("1024^3", 1024, 1024, 1024, dt, "speedup", 1.8))
    return tuple(out)


TARGETS: tuple[Target, ...] = _targets()

#: --quick leaves out the slowest (2048^3) cases.
QUICK_SKIP = {"2048^3"}


def rate_text(gflops: float, dtype: str) -> str:
    """'150.6 GFLOP/s ( 96.2%)': a rate and its share of this machine's nominal peak."""
    return f"{gflops:6.1f} GFLOP/s ({100 * gflops / peak_gflops(dtype):5.1f}%)"


@dataclass(frozen=True)
class Outcome:
    target: Target
    value: float  # the measured ratio or speedup
    passed: bool
    t_num: float  # median seconds per step of the numerator / denominator kernel
    t_den: float
    cv: float = math.nan  # the larger coefficient of variation of the two kernels' samples
    #: 95% interval of value (paired samples, affbench.measure.intervals); None when not measured so
    interval: Interval | None = None

    @property
    def verdict(self) -> str:
        """PASS or MISS when the whole interval lies on one side of the limit; NEAR when it
        straddles the limit (the estimate alone decides PASS/MISS, but the measurement cannot)."""
        iv = self.interval
        if iv is None or not (math.isfinite(iv.low) and math.isfinite(iv.high)):
            return "PASS" if self.passed else "MISS"
        good_side = (iv.high <= self.target.limit) if self.target.kind == "ratio" else (iv.low >= self.target.limit)
        bad_side = (iv.low > self.target.limit) if self.target.kind == "ratio" else (iv.high < self.target.limit)
        return "PASS" if good_side else "MISS" if bad_side else "NEAR"

    @property
    def noisy(self) -> bool:
        from affbench.measure.timing import NOISE_CV_THRESHOLD

        return bool(self.cv > NOISE_CV_THRESHOLD)

    def gflops(self) -> tuple[float, float]:
        f = self.target.step_flops
        return (f / self.t_num / 1e9 if self.t_num > 0 else math.nan,
                f / self.t_den / 1e9 if self.t_den > 0 else math.nan)

    def needed(self) -> tuple[str, float]:
        """(kernel label, GFLOP/s) it would need, the other kernel's time unchanged, to meet the
        limit exactly: the numerator for a ratio, the multi-thread run for a speedup."""
        t = self.target
        a, b = t.labels
        if t.kind == "ratio":
            return a, t.step_flops / (t.limit * self.t_den) / 1e9
        return b, t.step_flops / (self.t_num / t.limit) / 1e9

    def line(self, case_width: int = 19) -> str:
        t = self.target
        g_num, g_den = self.gflops()
        a, b = t.labels
        iv = self.interval
        spread = (f" ({iv.low:.3f}-{iv.high:.3f})" if iv is not None and math.isfinite(iv.low)
                  and math.isfinite(iv.high) else "")
        text = (f"{t.case:<{case_width}} {t.dtype:<8} {t.measure:<30} {self.value:6.3f}{spread:<16}  target {t.relation} "
                f"{t.limit:<5g} {self.verdict}   {a} {rate_text(g_num, t.dtype)}  {b} {rate_text(g_den, t.dtype)}")
        if not self.passed and self.t_num > 0 and self.t_den > 0:
            who, need = self.needed()
            text += f"  to pass: {who} {rate_text(need, t.dtype).strip()}"
        return text + (f"  noisy (cv {100 * self.cv:.0f}%)" if self.noisy else "")


def evaluate(target: Target, t_num: float, t_den: float, cv: float = math.nan,
             interval: Interval | None = None) -> Outcome:
    """Judge median times: for a ratio target t_num is SUBJECT, t_den BASELINE; for a speedup
    target t_num is the 1-thread time, t_den the multi-thread time. cv: the larger coefficient
    of variation of the two sample sets (above the noise threshold the line says so).
    ``interval``: the ratio t_num / t_den measured from paired samples, with its 95% interval;
    when given, its estimate is the value judged."""
    if not (t_num > 0 and t_den > 0) or math.isnan(t_num) or math.isnan(t_den):
        return Outcome(target, math.nan, False, t_num, t_den, cv, interval)
    value = interval.value if interval is not None and interval.value > 0 else t_num / t_den
    passed = value <= target.limit if target.kind == "ratio" else value >= target.limit
    return Outcome(target, value, passed, t_num, t_den, cv, interval)


#: --grid: numba-tiled may take at most this much of NumPy's time in any cell (issue 15).
GRID_LIMIT = 1.05


def grid(passes: tuple[str, ...], threads: tuple[int, ...], limit: float = GRID_LIMIT) -> list[Target]:
    """One ratio target per cell of the default preset's grid: every layer, batch and dtype of
    the preset, for each of ``passes`` and ``threads``."""
    from affbench.engine.sweep import preset

    sweep = preset("default")
    return [Target(f"{p} N={n} {k}->{m} t={t}", n, k, m, dt, "ratio", limit, threads=t, pass_=p)
            for p in passes for dt in sweep.dtypes for (k, m) in sweep.layers for n in sweep.batches
            for t in threads]


def select(quick: bool = False, cases: list[str] | None = None) -> list[Target]:
    """The targets to measure: all, less QUICK_SKIP under --quick, or those whose case contains
    one of ``cases`` (not ending inside a number)."""
    chosen = [t for t in TARGETS if not (quick and t.case in QUICK_SKIP)]
    if cases:
        chosen = [t for t in chosen if any(mentions(t.case, c) for c in cases)]
    return chosen


def mentions(case: str, text: str) -> bool:
    """``text`` occurs in ``case``, not ending inside a number: "N=1" is in "N=1 784->50",
    not in "book N=100 ..."."""
    return re.search(re.escape(text) + (r"(?!\d)" if text[-1:].isdigit() else ""), case) is not None
