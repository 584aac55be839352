"""compare catches a real slowdown end to end: two runs of the engine, the second with the
test-only implementation tests/slowed_impl.py made 15% slower through its environment variable.
Its ratio to numpy, measured side by side in each run, moves by 15%; compare must call it
slower however the machine drifted between the runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from affbench.report.compare import compare_rows
from affbench.report.data import load_run

TESTS = Path(__file__).parent


def _run(out: Path, slowdown: float) -> None:
    env = dict(os.environ, AFFBENCH_PLUGINS="slowed_impl:SlowedAffine", AFFBENCH_TEST_SLOWDOWN=str(slowdown),
               PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", "affbench", "run", "--impl", "numpy,numpy-slowed", "--pass", "forward,step",
         "--dtype", "float64", "--batch", "32,128", "--layer", "256:256", "--threads", "1",
         "--rounds", "4:6", "--budget", "0.3", "--out", str(out), "--no-report", "--no-progress"],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_fifteen_percent_slowdown_is_called_slower(tmp_path):
    _run(tmp_path / "a", 0.0)
    _run(tmp_path / "b", 0.15)
    a, b = load_run(tmp_path / "a"), load_run(tmp_path / "b")
    cmp = compare_rows(a.rows, b.rows)
    slowed = [c for c in cmp.cases if c.impl == "numpy-slowed"]
    assert len(slowed) == 4
    assert all(c.measure == "vs baseline" for c in slowed)
    assert all(c.verdict == "slower" for c in slowed), [(c.key, c.change) for c in slowed]
    assert all(1.08 < c.ratio < 1.25 for c in slowed)
