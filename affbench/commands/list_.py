"""List the registered implementations (with their compile options and, for the peers, the
versions of their frameworks), the declared ones that are not installed (with the command that
installs them), and the presets."""

from __future__ import annotations

import argparse

from affbench import registry
from affbench.commands.options import format_percent
from affbench.engine.sweep import PRESETS


def configure(p: argparse.ArgumentParser) -> None:
    pass


def execute(args: argparse.Namespace) -> int:
    print("implementations:")
    for impl in registry.all_impls():
        opts = getattr(impl, "compile_options", None) or {}
        opt_text = ", ".join(f"{k}={v}" for k, v in opts.items()) or "-"
        print(f"  {impl.name:<14} {getattr(impl, 'description', '')}")
        versions = getattr(impl, "versions", None) or {}
        if versions:
            print(f"  {'':<14} versions: " + ", ".join(f"{k} {v or 'unknown'}" for k, v in versions.items()))
        print(f"  {'':<14} compile options: {opt_text}")
    missing = registry.unavailable()
    if missing:
        print("\nnot installed (declared; `run` and `verify` skip them):")
        for info in missing.values():
            print(f"  {info.name:<14} {info.reason}; install with: {info.install}")
    print("\npresets (python -m affbench run --preset NAME):")
    for name, (about, sweep) in PRESETS.items():
        layers = " ".join(f"{k}:{m}" for k, m in sweep.layers)
        print(f"  {name:<8} {about}")
        print(f"  {'':<8} batch {','.join(map(str, sweep.batches))}; layers {layers}; "
              f"threads {','.join(map(str, sweep.threads))}; {sweep.plan.budget_s:g} s per case over "
              f"{_rounds(sweep.plan.min_rounds, sweep.plan.max_rounds)}, stopping at +-{format_percent(sweep.plan.target)}")
    return 0


def _rounds(lo: int, hi: int) -> str:
    """'3-4 rounds', '1 round'."""
    return f"{lo}-{hi} rounds" if hi != lo else f"{lo} round" + ("s" if lo != 1 else "")
