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
_ARITH = re.compile(r"^v?(mul|add|sub)(p|s)([sd])$")  # AVX (vmulpd) or SSE (mulpd)
_LABEL = re.compile(r"^([.\w$@]+):")
_LOCAL = re.compile(r"^(\.L|L[A-Za-z]*\d)")  # basic-block labels: .LBB0_3 (ELF), LBB0_3 (Mach-O)
_JUMP = re.compile(r"^(j[a-z]+)\s+([.\w$@]+)")
_REG_BYTES = {128: "xmm", 256: "ymm", 512: "zmm"}


@dataclass(frozen=True)
class Op:
    """One arithmetic instruction: kind 'fma' or 'mul/add'; lanes it computes; element bits."""

    kind: str
    lanes: int
    bits: int

    @property
    def flops(self) -> int:
        """Floating-point operations: 2 per lane for an FMA, 1 for a multiply or an add."""
        return self.lanes * (2 if self.kind == "fma" else 1)


def operands(instr: str) -> list[str]:
    """The operands of an AT&T instruction, split at top-level commas (not inside ``(...)``),
    AVX-512 masks ``{%k1}`` dropped: ``vmovups %zmm0, (%rdi,%rax,4) {%k1}`` -> ['%zmm0', '(%rdi,%rax,4)']."""
    parts = instr.split(None, 1)
    if len(parts) < 2:
        return []
    text = re.sub(r"\{[^}]*\}", "", parts[1])
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def touches_stack(instr: str) -> bool:
    """A memory operand on the stack pointer (a spilled register or a local kept in memory);
    ``lea`` computes an address without touching memory."""
    return "(%rsp" in instr and not instr.split(None, 1)[0].startswith("lea")


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
        return f"{op.kind} {_REG_BYTES.get(op.lanes * op.bits, 'xmm')}"
    if "broadcast" in mnemonic:
        return "broadcast"
    if "maskmov" in mnemonic:
        return "masked load/store"
    if touches_stack(instr) and mnemonic.startswith(("vmov", "mov", "add", "sub")):
        # integer or vector values LLVM keeps on the stack: spilled registers, Numba's locals
        return "stack access"
    ops = operands(instr)
    if mnemonic.startswith(("vmov", "mov")) and any("(" in o for o in ops):
        # AT&T: destination last; a memory destination is a store
        return "store" if "(" in ops[-1] else "load"
    if mnemonic.startswith("j"):
        return "branch"
    if mnemonic.startswith("prefetch"):
        return "prefetch"
    return "other"


@dataclass(frozen=True)
class Loop:
    """A single-block loop: the function it is in (demangled), its label, its instructions, and
    the function's symbol as the listing spells it (one per compiled signature)."""

    function: str
    label: str
    instructions: tuple[str, ...]
    symbol: str = ""

    def ops(self) -> list[Op]:
        return [op for op in map(arithmetic, self.instructions) if op is not None]

    @property
    def flops(self) -> int:
        """Floating-point operations per trip through the block (an FMA lane counts 2)."""
        return sum(op.flops for op in self.ops())

    def mix(self) -> Counter[str]:
        return Counter(category(i) for i in self.instructions)

    @property
    def stack_accesses(self) -> int:
        """Instructions per trip that read or write the stack (also those folded into an
        arithmetic instruction or a broadcast): registers LLVM ran out of, or locals."""
        return sum(touches_stack(i) for i in self.instructions)

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
    if symbol.startswith("__ZN"):  # Mach-O adds a leading underscore
        symbol = symbol[1:]
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
    function = symbol = "?"
    label: str | None = None
    body: list[str] = []
    for raw in asm.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = _LABEL.match(line)
        if m:
            name = m.group(1)
            if not _LOCAL.match(name):
                function, symbol = _demangle(name), name
            label, body = name, []
            continue
        if line.startswith("."):  # assembler directives
            continue
        body.append(line)
        j = _JUMP.match(line)
        if j and label is not None and j.group(2) == label and j.group(1) != "jmp":
            found.append(Loop(function, label, tuple(body), symbol))
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
                       key=lambda k: (-k.loop.flops, k.loop.stack_accesses, k.loop.label))
            for fn, by_mix in sorted(groups.items())}
