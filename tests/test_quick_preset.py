"""The quick preset end to end, as a user runs it: verify, compile, time, write, report."""

from __future__ import annotations

import json
import subprocess
import sys

from affbench import registry
from affbench.engine.sweep import expand, preset
from affbench.measure.threads import max_threads
from affbench.store import results


def test_quick_preset_runs_and_writes_everything(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "affbench", "run", "--preset", "quick", "--out", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = results.read_rows(out).rows
    impls = {n: registry.get(n) for n in registry.names()}
    expected = {c.case_id for c in expand(preset("quick"), impls, max_threads())}
    ids = [r["case_id"] for r in rows]
    assert len(ids) == len(set(ids)), "a case was written twice"
    assert set(ids) == expected
    statuses = {r["status"] for r in rows}
    assert statuses <= {"ok", "extrapolated"}, statuses
    measured = [r for r in rows if r["status"] == "ok"]
    assert {r["impl"] for r in measured} == set(impls)
    for r in measured:
        assert r["median_s"] > 0 and r["n_samples"] >= 3 and len(r["samples_s"]) == r["n_samples"]
        assert r["q1_s"] <= r["median_s"] <= r["q3_s"]
        assert r["numba_threads"] >= 1 and r["blas_threads"] >= 1
    for r in rows:
        if r["status"] == "extrapolated":
            assert "predicted" in r["error"] and r["n_samples"] is None
    jit = [r for r in measured if getattr(impls[r["impl"]], "jit", False)]
    assert jit and all(r["compile_s"] >= 0 for r in jit)
    env = json.loads((out / "env.json").read_text())
    for key in ("cpu", "numba", "llvmlite", "blas", "numba_threading_layer", "command", "load", "finished_at"):
        assert key in env, key
    assert (out / "verify.csv").exists() and (out / "report.md").exists() and (out / "report.html").exists()
