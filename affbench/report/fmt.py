"""Number formatting shared by the report tables and compare's output."""

from __future__ import annotations

import math
from typing import Any


def seconds(s: Any) -> str:
    """1.234e-05 -> '12.3 µs'; NaN/None -> '—'."""
    if s is None or not isinstance(s, (int, float)) or math.isnan(s):
        return "—"
    a = abs(s)
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if a >= scale or unit == "ns":
            v = s / scale
            return f"{v:.3g} {unit}" if abs(v) < 1000 else f"{v:.0f} {unit}"
    return f"{s:g} s"  # pragma: no cover


def seconds_range(low: Any, high: Any) -> str:
    """A time interval in one unit: '11.9–12.8 µs'; '—' when either end is unknown."""
    if not all(isinstance(x, (int, float)) and math.isfinite(x) and x > 0 for x in (low, high)):
        return "—"
    unit, scale = next(((u, sc) for u, sc in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)) if high >= sc), ("ns", 1e-9))
    return f"{low / scale:.3g}–{high / scale:.3g} {unit}"


def number(v: Any, digits: int = 3) -> str:
    if v is None or not isinstance(v, (int, float)) or math.isnan(v):
        return "—"
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}"


def ratio(v: Any) -> str:
    if v is None or not isinstance(v, (int, float)) or math.isnan(v):
        return "—"
    return f"{v:.3g}×" if v < 100 else f"{v:.0f}×"


def _ratio_digits(vals: list[float]) -> list[str]:
    """The shortest rendering (3 to 5 significant digits) that keeps distinct numbers distinct,
    so an interval as tight as 1.001 (0.998–1.004) does not print as '1 (1–1)'."""
    def one(v: float, d: int) -> str:  # trailing zeros kept, so both ends show the same precision
        return f"{v:#.{d}g}".rstrip(".") if v < 100 else f"{v:.0f}"

    for d in (3, 4, 5):
        out = [one(v, d) for v in vals]
        if len(set(out)) == len(set(vals)):
            break
    return out


def ratio_ci(v: Any, low: Any = None, high: Any = None) -> str:
    """A ratio with its 95% interval: '1.08× (1.05–1.11)'; '1.08× (—)' when the interval is
    unknown (a prediction, too few samples); '—' without a value."""
    if v is None or not isinstance(v, (int, float)) or math.isnan(v):
        return "—"
    ok = all(isinstance(x, (int, float)) and math.isfinite(x) and x > 0 for x in (low, high))
    if not ok or not math.isfinite(v):
        return f"{ratio(v)} (—)"
    s, lo, hi = _ratio_digits([float(v), float(low), float(high)])
    return f"{s}× ({lo}–{hi})"


def percent(v: Any) -> str:
    if v is None or not isinstance(v, (int, float)) or math.isnan(v):
        return "—"
    return f"{v * 100:+.1f}%"


def layer(k: int, m: int) -> str:
    return f"{k}→{m}"


def lit(text) -> str:
    """Text from the data (an error message, a path, an env value) taken literally in the report:
    the inline marks ``*`` and backquote are escaped, so 'N*K*M' never turns italic."""
    return str(text).replace("\\", "\\\\").replace("*", "\\*").replace("`", "\\`")


def plain(text: str) -> str:
    """The inverse of lit, and the inline marks dropped: for a terminal."""
    out, i, t = [], 0, str(text)
    while i < len(t):
        if t[i] == "\\" and i + 1 < len(t) and t[i + 1] in "\\*`":
            out.append(t[i + 1])
            i += 2
            continue
        if t[i] not in "*`":
            out.append(t[i])
        i += 1
    return "".join(out)
