"""Option parsing shared by several commands: comma-separated lists checked against known values."""

from __future__ import annotations

from typing import Iterable, Sequence

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
