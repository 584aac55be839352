"""List the registered implementations with their compile options."""

from __future__ import annotations

import argparse

from .. import registry


def configure(p: argparse.ArgumentParser) -> None:
    pass


def execute(args: argparse.Namespace) -> int:
    print("implementations:")
    for impl in registry.all_impls():
        opts = getattr(impl, "compile_options", None) or {}
        opt_text = ", ".join(f"{k}={v}" for k, v in opts.items()) or "-"
        print(f"  {impl.name:<14} {getattr(impl, 'description', '')}")
        print(f"  {'':<14} compile options: {opt_text}")
    return 0
