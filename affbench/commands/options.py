"""Option parsing shared by several commands: comma-separated lists checked against known values,
and percentages (`run --target`, `compare --fail-above` / `--min-change`)."""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

from affbench.errors import UsageError


def split_list(values: Sequence[str] | None) -> list[str] | None:
    """`--impl a,b --impl c` -> ['a', 'b', 'c']; None when the option was not given."""
    if not values:
        return None
    out: list[str] = []
    for v in values:  # `--impl ""` gives [] here: refused by choose(), never "check nothing"
        out.extend(part.strip() for part in v.split(",") if part.strip())
    return out


def choose(option: str, values: Sequence[str] | None, known: Iterable[str]) -> list[str] | None:
    """Check every value is known; UsageError naming the option and the accepted values."""
    known = list(known)
    values = split_list(values)
    if values is None:
        return None
    if not values:
        raise UsageError(f"{option}: empty value; accepted: {', '.join(known)}")
    known = list(known)
    bad = [v for v in values if v not in known]
    if bad:
        raise UsageError(f"{option}: unknown value(s) {', '.join(map(repr, bad))}; accepted: {', '.join(known)}")
    return list(dict.fromkeys(values))


def parse_percent(option: str, text: Any, *, positive: bool = False, below_100: bool = False) -> float:
    """A percentage as a fraction: '2%' -> 0.02; a bare number is a fraction: '0.02' -> 0.02.

    A bare number of 1 or more is refused, never guessed at ('2' could mean 2% or 200%): the
    error names ``option`` and suggests the % form. The range: >= 0, or > 0 with ``positive``;
    < 1 (100%) with ``below_100``. Every mistake is a UsageError naming ``option`` (a TOML key
    is named by passing e.g. "--config FILE: target").
    """
    raw = str(text).strip()
    bare = not raw.endswith("%")
    try:
        number = float(raw if bare else raw[:-1])
    except ValueError:
        number = math.nan
    if isinstance(text, bool) or not math.isfinite(number):
        raise UsageError(f"{option}: {text!r} is not a percentage (write e.g. 2% or 0.02)")
    if bare and number >= 1:
        example = f"{number / 100:g} = {number:g}%" if number < 100 else "0.1 = 10%"
        raise UsageError(f"{option}: {text!r} is ambiguous: write {number:g}% "
                         f"(a bare number is a fraction: {example})")
    value = number if bare else number / 100
    if positive and below_100 and not 0 < value < 1:
        raise UsageError(f"{option}: {text!r} must be above 0% and below 100%")
    if positive and not value > 0:
        raise UsageError(f"{option}: {text!r} must be above 0%")
    if below_100 and not value < 1:
        raise UsageError(f"{option}: {text!r} must be below 100%")
    if not value >= 0:
        raise UsageError(f"{option}: {text!r} must be 0% or more")
    return value


def format_percent(value: float) -> str:
    """A fraction as the percentage it was written as: 0.015 -> '1.5%', 0.1 -> '10%'."""
    return f"{round(value * 100, 6):g}%"
