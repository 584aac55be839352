"""`python -m affbench COMMAND`: parsing only; each command lives in affbench/commands/.

Every command module offers ``configure(parser)`` (its options) and ``execute(args) -> int``
(its exit status). Expected user mistakes raise :class:`UsageError`: one line on stderr,
exit status 2, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from affbench.errors import UsageError

#: name -> (module, one-line help). The order is the order of `--help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("affbench.commands.list_", "list implementations (with compile options) and presets"),
    "verify": ("affbench.commands.verify", "cross-validate implementations against the float64 reference"),
    "run": ("affbench.commands.run", "verify, then time a sweep and write reports/<run-id>/ (the main job)"),
    "report": ("affbench.commands.report", "regenerate plots, report.md and report.html from a results directory"),
    "compare": ("affbench.commands.compare", "compare two runs case by case: each change with the 95%% interval both runs recorded"),
    "kernels": ("affbench.commands.kernels", "measure the numba-tiled targets side by side with NumPy"),
    "asm": ("affbench.commands.asm", "read the Numba kernels' machine code: vectorized loops, FMA, register spills"),
    "train": ("affbench.commands.train", "train the book's networks end to end: time per step, Affine share, loss agreement"),
}

DESCRIPTION = """\
affbench: which Affine-layer kernel wins where, by how much, and why.

Phases can run on their own: `verify` checks every implementation against a float64
reference; `run` verifies, then times a sweep and writes reports/<run-id>/; `report`
regenerates plots and tables from a results directory; `compare` compares two runs.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m affbench", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_, description=(mod.__doc__ or help_).strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.configure(p)
        p.set_defaults(_execute=mod.execute, _command=name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args._execute(args) or 0)
    except UsageError as exc:
        print(f"affbench {args._command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `... | head`: the reader left; not an error of ours
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except KeyboardInterrupt:
        print(f"\naffbench {args._command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
