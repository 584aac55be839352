"""The innermost loops of the Numba kernels' machine code: vectorized or not, FMA or not, stack traffic.

What LLVM made of a kernel decides its speed, and the assembly says it plainly. Numba does
not let code loaded from its on-disk cache be inspected, so this command first turns that
cache off for the chosen implementations' modules (in this process only; the cache files are
left alone) and compiles every code path afresh (affbench.engine.warmup): about half a minute per
dtype for numba-tiled, seconds for the simple loops. It then reads each compiled function's
assembly (Dispatcher.inspect_asm) and prints, per function, every loop that does
floating-point arithmetic, one line per distinct instruction mix:

  FLOP per trip through the loop body (a packed FMA on 8 float32 lanes counts 16);
  the verdict: "packed FMA" (what a fast kernel needs), "packed mul+add" (vectorized, but
  multiplies and adds stay separate: fastmath's "contract" is off), "scalar ..." (one lane at
  a time: not vectorized);
  the instruction mix, where "stack access" counts moves to and from the stack: registers
  LLVM ran out of, or locals it keeps in memory (the summary also counts accesses folded into
  arithmetic and broadcasts);
  (xN) when the same loop body was emitted N times in one function (per stride or alignment
  version, or per call site of an inlined kernel).

A loop here is a basic block that jumps back to itself: the shape LLVM gives innermost loops
(loops spanning several blocks, outer loops among them, are not listed). x86-64 only (AT&T
syntax, as LLVM prints it).
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
import time
from typing import Any, TextIO

from affbench import registry
from affbench.commands.options import choose, split_list
from affbench.engine import warmup
from affbench.errors import UsageError
from affbench.measure.asm import Loop, LoopKind, kinds, loops
from affbench.measure.threads import backend_of
from affbench.verify import DTYPES


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--impl", action="append", metavar="NAME[,NAME]",
                   help="Numba implementations to read (default: every JIT one; see `list`)")
    p.add_argument("--dtype", action="append", metavar="DTYPE", help="float32 and/or float64 (default: both)")
    p.add_argument("--function", action="append", metavar="NAME",
                   help="only functions whose name contains NAME (repeatable), e.g. _macro or prange")
    p.add_argument("--all", action="store_true",
                   help="every loop; by default a function's loops doing under 1/8 of its busiest loop's "
                        "work per trip (remainder and setup loops) are counted, not listed")
    p.add_argument("--instructions", action="store_true", help="also print each listed loop's instructions")


def dispatchers(impl: Any) -> dict[str, Any]:
    """The Numba functions defined at the top level of an implementation's module, by name."""
    from numba.core.dispatcher import Dispatcher

    module = sys.modules[type(impl).__module__]
    return {name: v for name, v in vars(module).items() if isinstance(v, Dispatcher)}


def uncache(disps: dict[str, Any]) -> None:
    """Compile these functions afresh from now on (Numba disables inspection of cached code).

    Must run before anything compiled or loaded them in this process (see check_fresh)."""
    from numba.core.caching import NullCache

    for d in disps.values():
        d._cache = NullCache()  # the inverse of Dispatcher.enable_caching()


def check_fresh(disps: dict[str, Any]) -> None:
    """RuntimeError naming the functions already compiled or cache-loaded in this process."""
    loaded = [name for name, d in disps.items() if d.overloads]
    if loaded:
        raise RuntimeError(f"already compiled or loaded from cache in this process: {', '.join(sorted(loaded))}; "
                           "their assembly cannot be read (run `python -m affbench asm` in a fresh process)")


def _dtype_of(sig: tuple) -> str | None:
    """The floating-point dtype of a signature's first float array argument (None if it has none)."""
    from numba import types

    for t in sig:
        if isinstance(t, types.Array) and isinstance(t.dtype, types.Float):
            return str(t.dtype)
    return None


def collect(disps: dict[str, Any], dtype: str) -> list[Loop]:
    """The loops of every compiled signature of ``disps`` for ``dtype`` (see :func:`merge`)."""
    listings = []
    for name, d in disps.items():
        for sig in d.signatures:
            if _dtype_of(sig) in (dtype, None):
                listings.append((name, d.inspect_asm(sig)))
    return merge(listings)


def merge(listings: list[tuple[str, str]]) -> list[Loop]:
    """Loops from (function name, assembly) listings, each loop once. A caller's assembly holds
    the code of the functions it calls too, under other block numbers: a loop is kept under the
    smallest listing that holds it (its own function's), and a prange body is named after the
    function whose listing that is."""
    seen: dict[tuple, Loop] = {}
    for name, text in sorted(listings, key=lambda item: len(item[1])):
        for loop in loops(text):
            if loop.function == "prange body":
                loop = Loop(f"{name}: prange body", loop.label, loop.instructions, loop.symbol)
            key = (loop.symbol, tuple(_BLOCK.sub(".L", i) for i in loop.instructions))
            seen.setdefault(key, loop)
    return list(seen.values())


_BLOCK = re.compile(r"\.?L[A-Za-z]*\d+_\d+|\.LCPI\d+_\d+")


def _summary(found: dict[str, list[LoopKind]]) -> str:
    counts: dict[str, int] = {}
    stack = 0
    for group in found.values():
        for k in group:
            counts[k.loop.verdict] = counts.get(k.loop.verdict, 0) + k.count
            stack += k.count if k.loop.stack_accesses else 0
    parts = [f"{n} {verdict}" for verdict, n in sorted(counts.items(), key=lambda kv: -kv[1])]
    return (f"innermost loops with arithmetic: {', '.join(parts) or 'none'}; "
            f"{stack} of them touch the stack")


def print_kinds(found: dict[str, list[LoopKind]], instructions: bool = False, everything: bool = False,
                file: TextIO | None = None) -> None:
    """One line per loop kind, function by function; small loops (under 1/8 of the function's
    most FLOP per trip) only counted unless ``everything``."""
    file = file or sys.stdout
    width = max((len(fn) for fn in found), default=8)
    for fn, group in found.items():
        top = max(k.loop.flops for k in group)
        shown = [k for k in group if everything or 8 * k.loop.flops >= top]
        for i, k in enumerate(shown):
            lp = k.loop
            print(f"  {fn if i == 0 else '':<{width}}  {lp.flops:4d} FLOP/trip  {lp.verdict:<15} {lp.describe()}"
                  + (f"  (x{k.count})" if k.count > 1 else ""), file=file)
            if instructions:
                for ins in lp.instructions:
                    print(f"  {'':<{width}}      {ins}", file=file)
        hidden = sum(k.count for k in group) - sum(k.count for k in shown)
        if hidden:
            print(f"  {'':<{width}}  (+{hidden} smaller loop(s): remainders and setup; --all lists them)", file=file)


def execute(args: argparse.Namespace) -> int:
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        raise UsageError(f"reads x86-64 assembly; this machine is {machine or 'unknown'}")
    jit = [impl.name for impl in registry.all_impls()  # Numba's: JAX's XLA code is not read here
           if getattr(impl, "jit", False) and backend_of(impl) == "numba"]
    not_jit = [n for n in (split_list(args.impl) or []) if n in registry.names() and n not in jit]
    if not_jit:
        raise UsageError(f"--impl: {', '.join(not_jit)} compile(s) no Numba code; "
                         f"JIT implementations: {', '.join(jit)}")
    names = choose("--impl", args.impl, jit) or jit
    dtypes = choose("--dtype", args.dtype, DTYPES) or list(DTYPES)
    per_impl = [(impl, dispatchers(impl)) for impl in map(registry.get, names)]
    for impl, disps in per_impl:  # all checked before any module's cache is turned off
        try:
            check_fresh(disps)
        except RuntimeError as exc:
            raise UsageError(f"{impl.name}: {exc}") from None
    for impl, disps in per_impl:  # every module's cache off before anything compiles (they may share callees)
        uncache(disps)
    for impl, disps in per_impl:
        for dt in dtypes:
            print(f"compiling {impl.name} {dt} afresh (no cache, so its assembly can be read) ...",
                  file=sys.stderr, flush=True)
            before = {name: len(d.signatures) for name, d in disps.items()}
            t0 = time.perf_counter()
            warmup.first_calls(impl, dt)
            secs = time.perf_counter() - t0
            # only what this implementation compiled (a module may hold several implementations)
            used = {name: d for name, d in disps.items() if len(d.signatures) > before[name]}
            found = kinds(collect(used, dt))
            if args.function:
                found = {fn: g for fn, g in found.items() if any(f in fn for f in args.function)}
            print(f"\n{impl.name} {dt} (compiled in {secs:.1f} s): {_summary(found)}")
            print_kinds(found, args.instructions, args.all)
    return 0
