"""Innermost loops in the machine code of Numba kernels, and which arithmetic LLVM emitted there.

Reads the text of ``Dispatcher.inspect_asm`` (x86-64, AT&T syntax). A *loop* here is a basic
block that ends with a conditional jump back to its own label: the shape LLVM gives an innermost
loop body (unrolled or not). Each instruction of it is put in a category, and the categories
say what a person reading the assembly would check first: are the multiply-adds packed
(``vfmadd231ps ymm``: 8 float32 lanes at once) or scalar (``vmulss`` + ``vaddss``: one lane,
two instructions, no FMA contraction)?

Pure text processing: no Numba here (``affbench.commands.asm`` compiles and feeds it).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

#: vector register width in bits, by register name prefix
_WIDTH = {"xmm": 128, "ymm": 256, "zmm": 512}
_FMA = re.compile(r"^vf(?:n?m(?:add|sub))(?:sub|add)?\d{3}(p|s)([sd])$")
_ARITH = re.compile(r"^v(mul|add|sub)(p|s)([sd])$")
_LABEL = re.compile(r"^([.\w$@]+):")
_JUMP = re.compile(r"^(j[a-z]+)\s+([.\w$@]+)")


@dataclass(frozen=True)
class Op:
    """One arithmetic instruction: kind 'fma' or 'mul/add'; lanes it computes; element bits."""

    kind: str
    lanes: int
    bits: int

    @property
    def flops(self) -> int:
        return self.lanes * (2 if self.kind == "fma" else 1)


def _width(instr: str) -> int:
    """The widest vector register an instruction names (128 for scalar ops on xmm)."""
    widths = [w for name, w in _WIDTH.items() if f"%{name}" in instr]
    return max(widths) if widths else 0


def arithmetic(instr: str) -> Op | None:
    """The floating-point multiply/add an instruction does, or None (loads, integer ops ...)."""
    mnemonic = instr.split(None, 1)[0] if instr.strip() else ""
    m = _FMA.match(mnemonic)
    if m:
        kind, packed, prec = "fma", m.group(1) == "p", m.group(2)
    else:
        m = _ARITH.match(mnemonic)
        if not m:
            return None
        kind, packed, prec = "mul/add", m.group(2) == "p", m.group(3)
    bits = 32 if prec == "s" else 64
    lanes = max(_width(instr), 128) // bits if packed else 1
    return Op(kind, lanes, bits)


def category(instr: str) -> str:
    """A short name for what the instruction does, for the per-loop instruction mix."""
    op = arithmetic(instr)
    mnemonic = instr.split(None, 1)[0]
    if op is not None:
        if op.lanes == 1:
            return f"scalar {op.kind}"
        return f"{op.kind} {'ymm' if op.lanes * op.bits == 256 else 'zmm' if op.lanes * op.bits == 512 else 'xmm'}"
    if "(%rsp)" in instr and not mnemonic.startswith(("vbroadcast", "j", "call")):
        # a register that did not fit: LLVM keeps it on the stack and reloads it each trip
        return "stack spill/reload"
    if "broadcast" in mnemonic:
        return "broadcast"
    if "maskmov" in mnemonic:
        return "masked load/store"
    if mnemonic.startswith(("vmov", "mov")) and "(" in instr:
        # AT&T: source first; a memory destination is a store
        return "store" if instr.rstrip().endswith(")") else "load"
    if mnemonic.startswith("j"):
        return "branch"
    if mnemonic.startswith("prefetch"):
        return "prefetch"
    return "other"


@dataclass(frozen=True)
class Loop:
    function: str
    label: str
    instructions: tuple[str, ...]

    def ops(self) -> list[Op]:
        return [op for op in map(arithmetic, self.instructions) if op is not None]

    @property
    def flops(self) -> int:
        """Floating-point operations per trip through the block (an FMA lane counts 2)."""
        return sum(op.flops for op in self.ops())

    def mix(self) -> Counter[str]:
        return Counter(category(i) for i in self.instructions)

    @property
    def spills(self) -> int:
        """Stack accesses per trip (registers LLVM ran out of, kept in memory)."""
        return self.mix().get("stack spill/reload", 0)

    @property
    def verdict(self) -> str:
        """'packed FMA' / 'packed mul+add' / 'scalar FMA' / 'scalar mul+add' / 'no arithmetic':
        the widest kind of multiply-add the loop does."""
        ops = self.ops()
        if not ops:
            return "no arithmetic"
        packed = [op for op in ops if op.lanes > 1]
        best = packed or ops
        kind = "FMA" if any(op.kind == "fma" for op in best) else "mul+add"
        return f"{'packed' if packed else 'scalar'} {kind}"

    def describe(self) -> str:
        """The mix as one line, most frequent category first: '12 fma ymm, 6 broadcast, ...'."""
        return ", ".join(f"{n} {what}" for what, n in self.mix().most_common())


def _demangle(symbol: str) -> str:
    """The last name of an Itanium-mangled Numba symbol (_ZN15implementations11numba_tiled6_macroB..
    -> '_macro'); the symbol itself when it is not mangled that way."""
    if "parfor_gufunc" in symbol:
        return "prange body"
    if not symbol.startswith("_ZN"):
        return symbol
    i, parts = 3, []
    while i < len(symbol) and symbol[i].isdigit():
        j = i
        while j < len(symbol) and symbol[j].isdigit():
            j += 1
        n = int(symbol[i:j])
        parts.append(symbol[j:j + n])
        i = j + n
    return parts[-1] if parts else symbol


def loops(asm: str) -> list[Loop]:
    """Every single-block loop in an assembly listing, with the function it is in."""
    found: list[Loop] = []
    function = "?"
    label: str | None = None
    body: list[str] = []
    for raw in asm.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = _LABEL.match(line)
        if m:
            name = m.group(1)
            if not name.startswith("."):
                function = _demangle(name)
            label, body = name, []
            continue
        if line.startswith("."):  # assembler directives
            continue
        body.append(line)
        j = _JUMP.match(line)
        if j and label is not None and j.group(2) == label and j.group(1) != "jmp":
            found.append(Loop(function, label, tuple(body)))
    return found


@dataclass(frozen=True)
class LoopKind:
    """Loops of one function with the same instruction mix (LLVM often emits a loop body more
    than once: per dtype path, per alignment or stride version): one of them, and how many."""

    loop: Loop
    count: int


def kinds(found: Iterable[Loop]) -> dict[str, list[LoopKind]]:
    """Function -> its loops that do floating-point arithmetic, one per instruction mix, most
    work per trip first."""
    groups: dict[str, dict[tuple, list[Loop]]] = {}
    for loop in found:
        if loop.flops > 0:
            key = tuple(sorted(loop.mix().items()))
            groups.setdefault(loop.function, {}).setdefault(key, []).append(loop)
    return {fn: sorted((LoopKind(same[0], len(same)) for same in by_mix.values()),
                       key=lambda k: (-k.loop.flops, k.loop.spills, k.loop.label))
            for fn, by_mix in sorted(groups.items())}
