"""`python -m affbench list`: the implementations and the presets, as a user reads them."""

from __future__ import annotations

from affbench import cli
from affbench.engine.sweep import PRESETS


def test_presets_are_listed_with_their_rounds_in_words(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in PRESETS:
        assert f"  {name} " in out
    full = out.split("  full ")[1].split("\n\n")[0]
    lo, hi = PRESETS["full"][1].plan.min_rounds, PRESETS["full"][1].plan.max_rounds
    assert "1-1 rounds" not in out  # a fixed count reads as one number
    assert (f"over {lo}-{hi} rounds" if lo != hi else f"over {lo} round") in full
    assert "stopping at +-2%" in full
