"""The innermost loops of the Numba kernels' machine code: vectorized or not, FMA or not, spills.

What LLVM made of a kernel decides its speed, and the assembly says it plainly. Numba does
not let code loaded from its on-disk cache be inspected, so this command first turns that
cache off for the chosen implementations' modules (in this process only; the cache files are
left alone) and compiles every code path afresh (affbench.warmup): about half a minute per
dtype for numba-tiled, seconds for the simple loops. It then reads each compiled function's
assembly (Dispatcher.inspect_asm) and prints, per function, every loop that does
floating-point arithmetic, one line per distinct instruction mix:

  FLOP per trip through the loop body (a packed FMA on 8 float32 lanes counts 16);
  the verdict: "packed FMA" (what a fast kernel needs), "packed mul+add" (vectorized, but
  multiplies and adds stay separate: fastmath's "contract" is off), "scalar ..." (one lane at
  a time: not vectorized);
  the instruction mix, where "stack spill/reload" counts registers LLVM ran out of;
  (xN) when the same loop body was emitted N times (per stride or alignment version).

A loop here is a basic block that jumps back to itself: the shape LLVM gives innermost loops.
x86-64 only (AT&T syntax, as LLVM prints it).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from .. import registry, warmup
from ..asm import Loop, LoopKind, kinds, loops
from ..errors import UsageError
from ..verify import DTYPES
from .options import choose


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

    Must run before anything compiled or loaded them in this process."""
    from numba.core.caching import NullCache

    loaded = [name for name, d in disps.items() if d.overloads]
    if loaded:
        raise RuntimeError(f"already compiled or loaded from cache in this process: {', '.join(sorted(loaded))}; "
                           "their assembly cannot be read (run `python -m affbench asm` in a fresh process)")
    for d in disps.values():
        d._cache = NullCache()  # the inverse of Dispatcher.enable_caching()


def _dtype_of(sig: tuple) -> str | None:
    from numba import types

    for t in sig:
        if isinstance(t, types.Array):
            return str(t.dtype)
    return None


def collect(disps: dict[str, Any], dtype: str) -> list[Loop]:
    """The loops of every compiled signature for ``dtype``. A caller's assembly holds the code
    of the functions it calls too; each loop is kept once, under the smallest listing that holds
    it (its own function's), and a prange body is named after the function that has it."""
    listings = []
    for name, d in disps.items():
        for sig in d.signatures:
            if _dtype_of(sig) in (dtype, None):
                listings.append((name, d.inspect_asm(sig)))
    listings.sort(key=lambda item: len(item[1]))
    seen: dict[tuple, Loop] = {}
    for name, text in listings:
        for loop in loops(text):
            if loop.function == "prange body":
                loop = Loop(f"{name}: prange body", loop.label, loop.instructions)
            key = (loop.function.split(":")[-1], loop.instructions)
            seen.setdefault(key, loop)
    return list(seen.values())


def _summary(found: dict[str, list[LoopKind]]) -> str:
    counts: dict[str, int] = {}
    spilling = 0
    for group in found.values():
        for k in group:
            counts[k.loop.verdict] = counts.get(k.loop.verdict, 0) + k.count
            spilling += k.count if k.loop.spills else 0
    parts = [f"{n} {verdict}" for verdict, n in sorted(counts.items(), key=lambda kv: -kv[1])]
    return f"loops with arithmetic: {', '.join(parts) or 'none'}; {spilling} with stack spills"


def print_kinds(found: dict[str, list[LoopKind]], instructions: bool = False, everything: bool = False,
                file=None) -> None:
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
    jit = [impl.name for impl in registry.all_impls() if getattr(impl, "jit", False)]
    names = choose("--impl", args.impl, registry.names()) or jit
    not_jit = [n for n in names if n not in jit]
    if not_jit:
        raise UsageError(f"--impl: {', '.join(not_jit)} compile(s) no Numba code; JIT implementations: {', '.join(jit)}")
    dtypes = choose("--dtype", args.dtype, DTYPES) or list(DTYPES)
    impls = [registry.get(n) for n in names]
    per_impl = []
    for impl in impls:  # every module's cache off before anything compiles (they may share callees)
        disps = dispatchers(impl)
        try:
            uncache(disps)
        except RuntimeError as exc:
            raise UsageError(f"{impl.name}: {exc}") from None
        per_impl.append((impl, disps))
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
