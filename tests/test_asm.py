"""affbench.measure.asm (loops and instruction mix from assembly text) and `python -m affbench asm`."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from affbench.measure import asm

# Two functions in the shape LLVM prints them: a packed-FMA loop with a register reloaded from
# the stack, a scalar mul+add loop, a block that jumps elsewhere (not a loop) and directives.
LISTING = """\
\t.text
\t.globl\t_ZN15implementations11numba_tiled6_macroB2v1E5ArrayIfLi2E
_ZN15implementations11numba_tiled6_macroB2v1E5ArrayIfLi2E:
\tpushq\t%rbp
.LBB0_3:
\tvbroadcastss\t(%rcx), %ymm0
\tvmovups\t(%r10), %ymm1
\tvfmadd231ps\t%ymm1, %ymm0, %ymm15     # comment
\tvfmadd231ps\t(%r10,%r8), %ymm0, %ymm14
\tmovq\t16(%rsp), %rbx
\tvmovups\t%ymm2, (%rdi)
\taddq\t$-1, %rdx
\tjne\t.LBB0_3
.LBB0_4:
\tvaddss\t%xmm0, %xmm1, %xmm1
\tjmp\t.LBB0_3
\t.p2align\t4
__numba_parfor_gufunc_0x7f46:
.LBB1_7:
\tvmulsd\t(%rax), %xmm1, %xmm1
\tvaddsd\t%xmm1, %xmm0, %xmm0
\tcmpq\t%rax, %rdx
\tjl\t.LBB1_7
"""


def test_loops_are_blocks_that_jump_back_to_themselves():
    found = asm.loops(LISTING)
    assert [(lp.function, lp.label) for lp in found] == [("_macro", ".LBB0_3"), ("prange body", ".LBB1_7")]
    fma, scalar = found
    assert fma.instructions[-1].startswith("jne") and len(fma.instructions) == 8


def test_instruction_mix_flops_and_verdict():
    fma, scalar = asm.loops(LISTING)
    mix = fma.mix()
    assert mix["fma ymm"] == 2 and mix["broadcast"] == 1 and mix["load"] == 1 and mix["store"] == 1
    assert mix["stack access"] == 1 and fma.stack_accesses == 1
    assert fma.flops == 2 * 8 * 2  # two FMAs on 8 float32 lanes
    assert fma.verdict == "packed FMA"
    assert scalar.flops == 2 and scalar.verdict == "scalar mul+add" and scalar.stack_accesses == 0
    assert fma.describe().startswith("2 fma ymm")


@pytest.mark.parametrize("instr, what", [
    ("vmovups\t%zmm0, (%rdi,%rax,4) {%k1}", "store"),  # an AVX-512 mask after the memory operand
    ("vmovups\t(%rdi,%rax,4), %ymm0", "load"),
    ("vmovaps\t%ymm3, 64(%rsp)", "stack access"),  # a vector register spilled
    ("movq\t16(%rsp), %rbx", "stack access"),  # an integer one reloaded
    ("leaq\t16(%rsp), %rbx", "other"),  # an address computed, no memory touched
    ("vbroadcastsd\t8(%rsp), %ymm0", "broadcast"),
    ("vmaskmovpd\t(%rax), %ymm1, %ymm2", "masked load/store"),
    ("jne\t.LBB0_3", "branch"),
])
def test_category(instr, what):
    assert asm.category(instr) == what


def test_stack_accesses_count_folded_operands_too():
    lp = asm.Loop("f", ".L1", ("vfmadd231pd\t64(%rsp), %ymm0, %ymm1", "vbroadcastsd\t8(%rsp), %ymm2",
                               "leaq\t16(%rsp), %rbx", "jne\t.L1"))
    assert lp.stack_accesses == 2 and lp.verdict == "packed FMA"


def test_macho_labels_and_symbols():
    text = ("__ZN3pkg3mod6kernelB2v1E5Array:\nLBB0_3:\n\tvfmadd231pd\t%ymm1, %ymm0, %ymm2\n"
            "\tjne\tLBB0_3\n")
    (lp,) = asm.loops(text)
    assert lp.function == "kernel" and lp.label == "LBB0_3"


@pytest.mark.parametrize("instr, kind, lanes, bits", [
    ("mulpd\t%xmm1, %xmm0", "mul/add", 2, 64),  # SSE, no VEX prefix
    ("addss\t%xmm1, %xmm0", "mul/add", 1, 32),
    ("vfmadd231pd\t%ymm1, %ymm2, %ymm3", "fma", 4, 64),
    ("vfnmadd213ps\t%xmm1, %xmm2, %xmm3", "fma", 4, 32),
    ("vfmadd231ss\t%xmm1, %xmm2, %xmm3", "fma", 1, 32),
    ("vmulpd\t%ymm1, %ymm2, %ymm3", "mul/add", 4, 64),
    ("vaddps\t(%rax), %xmm2, %xmm3", "mul/add", 4, 32),
    ("vsubsd\t%xmm1, %xmm2, %xmm3", "mul/add", 1, 64),
])
def test_arithmetic(instr, kind, lanes, bits):
    op = asm.arithmetic(instr)
    assert (op.kind, op.lanes, op.bits) == (kind, lanes, bits)


@pytest.mark.parametrize("instr", ["vmovups\t(%rax), %ymm0", "addq\t$1, %rax", "vxorps\t%ymm0, %ymm0, %ymm0",
                                   "vbroadcastsd\t(%rax), %ymm0", "jne\t.LBB0_1"])
def test_not_arithmetic(instr):
    assert asm.arithmetic(instr) is None


def test_kinds_group_identical_loops_and_drop_integer_loops():
    text = LISTING + LISTING.replace("LBB0", "LBB9").replace("LBB1", "LBB8") + (
        "_ZN3foo3barE:\n.LBB5_1:\n\taddq\t$1, %rax\n\tjne\t.LBB5_1\n")
    found = asm.kinds(asm.loops(text))
    assert set(found) == {"_macro", "prange body"}  # bar's loop does no floating-point work
    assert [k.count for k in found["_macro"]] == [2]


def test_dtype_of_a_signature_is_its_first_float_array():
    from numba import types

    from affbench.commands.asm import _dtype_of

    ints, f32 = types.Array(types.int64, 1, "C"), types.Array(types.float32, 2, "C")
    assert _dtype_of((ints, types.boolean, f32)) == "float32"
    assert _dtype_of((types.int64, ints)) is None


def test_demangle():
    assert asm._demangle("_ZN15implementations11numba_tiled6_macroB2v1E5Array") == "_macro"
    assert asm._demangle("__gufunc__._ZN13_3cdynamic_3e36__numba_parfor_gufunc_0x7f") == "prange body"
    assert asm._demangle("plain_symbol") == "plain_symbol"


X86 = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="reads x86-64 assembly")


def test_merge_keeps_a_callees_loop_once_under_its_own_name():
    """A caller's listing holds its callees' code under other block numbers: counted once, and a
    prange body is named after the function whose own listing holds it."""
    from affbench.commands import asm as command

    callee = ("_ZN3pkg6calleeE:\n.LBB0_2:\n\tvfmadd231pd\t(%rax), %ymm0, %ymm1\n\tjne\t.LBB0_2\n"
              "__numba_parfor_gufunc_0x1:\n.LBB1_4:\n\tvaddpd\t%ymm0, %ymm1, %ymm1\n\tjne\t.LBB1_4\n")
    caller = ("_ZN3pkg6callerE:\n.LBB0_9:\n\tvmulsd\t%xmm0, %xmm1, %xmm1\n\tjl\t.LBB0_9\n"
              + callee.replace("LBB0_2", "LBB3_2").replace("LBB1_4", "LBB4_4"))
    found = command.merge([("caller", caller), ("callee", callee)])
    assert sorted(lp.function for lp in found) == ["callee", "callee: prange body", "caller"]
    assert [k.count for k in asm.kinds(found)["callee"]] == [1]


@X86
def test_asm_command_on_the_plain_loops():
    """End to end in a fresh process (the command turns Numba's cache off, which must happen
    before anything is compiled): the i-k-j loops without fastmath get no FMA at all."""
    out = subprocess.run([sys.executable, "-m", "affbench", "asm", "--impl", "numba-serial", "--dtype", "float64"],
                         capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert "numba-serial float64" in text and "_forward_serial" in text and "_backward_serial" in text
    assert "FMA" not in text  # no fastmath, no contraction: multiplies and adds stay apart
    assert "mul+add" in text and "FLOP/trip" in text


def test_asm_command_refuses_non_jit_and_compiled(capsys):
    from affbench import cli

    assert cli.main(["asm", "--impl", "numpy"]) == 2
    assert "compile(s) no Numba code" in capsys.readouterr().err

    import numpy as np

    from affbench import registry

    serial = registry.get("numba-serial")
    serial.forward(np.ones((2, 3)), np.ones((3, 4)), np.ones(4))  # compiled (or cache-loaded) here
    assert cli.main(["asm", "--impl", "numba-serial"]) == 2
    err = capsys.readouterr().err
    assert "already compiled" in err and "_forward_serial" in err and "fresh process" in err
