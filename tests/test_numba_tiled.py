"""numba-tiled (issue 6) against the float64 reference, and the target/ratio logic.

Shapes are chosen to cross every boundary of the kernels: tile edges (MR = 6 rows, NR = 8
or 16 columns), the packing thresholds, the cache blocks (KC, MC) and the serial/parallel
threshold, with 0 and 1 on every axis; sizes stay moderate so the module runs in seconds.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest

from affbench import registry
from affbench.engine.targets import TARGETS, Target, evaluate, peak_gflops, select
from affbench.verify import check_case, check_exact, make_inputs
from implementations import numba_tiled as nt

IMPL = registry.get("numba-tiled")

SHAPES = [
    (0, 5, 3), (4, 0, 3), (3, 5, 0), (0, 0, 0), (1, 1, 1), (1, 7, 1), (1, 784, 50), (1, 300, 67),
    (2, 3, 40), (5, 1, 7), (7, 13, 1), (6, 8, 16), (7, 9, 17), (13, 31, 19),
    (16, 50, 10),  # the default grid's smallest cell: the one-dispatch small backward (_small_backward)
    (100, 784, 50),  # the book's layer: parallel, B and A partly read in place
    (64, 64, 63), (65, 64, 64),  # around the serial/parallel threshold (64^3)
    (97, 2 * nt.KC + 3, 33),  # several KC blocks, partial last block
    (nt.MC + 7, 70, nt.PACK_A_COLS + 5),  # packed A, more than one MC block
    (nt.PACK_B_ROWS + 1, 37, 29),  # packed B, read-in-place A
    (20, 45, 2 * nt.KC + 5),  # dX with several depth blocks, the last not a whole number of vectors
    (203, 600, 291),  # all three products on the run-time balanced path (SHARED_WORK) on 2 threads
    (50, 37, 17), (13, 7, 18), (9, 2 * nt.KC + 11, 33),  # last column tiles of 1 and 2 (the dot kernel),
    (100, 784, 49), (100, 784, 66),                      # k not a multiple of the vector, several blocks
    (70, 600, 300),  # B packed for its size (PACK_B_BYTES), A packed, the depth split on 2+ threads
    (1, 1030, 131),  # batch 1 with a W over ROW_STREAM_BYTES: rows streamed, 1030 % 4 rows left over
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_against_reference(shape, dtype):
    x, W, b, d = make_inputs(*shape, dtype, seed=sum(shape))
    bad = [c for c in check_case(IMPL, x, W, b, d, str(shape)) if not c.passed]
    assert not bad, bad


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 40, 50), (5, 7, 3), (33, 65, 17), (70, 300, 50),
                                   (130, 257, 41)], ids=lambda s: "x".join(map(str, s)))
def test_bit_identical_on_integers(shape, dtype):
    c = check_exact(IMPL, *shape, dtype)
    assert c.passed, c.detail


@pytest.mark.parametrize("shape", [(90, 130, 70), (70, 300, 50), (100, 784, 50), (203, 600, 291), (30, 1100, 45),
                                   (70, 600, 300), (1, 1030, 131), (300, 7, 300)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("threads", [1, 2])
def test_serial_and_parallel_agree(threads, shape):
    """The same product through the serial path (1 thread) and the task split (2 threads).

    (70, 300, 50): the NT product (dX) split by columns with packed A blocks of a row count
    that is not a multiple of MR (the packing buffer must hold the padded rows).
    (203, 600, 291): every product large enough for _gemm_shared (row chunks from an atomic
    counter): a chunk skipped or taken twice would change the exact integer result.
    (100, 784, 50), (30, 1100, 45): the forward splits its depth (_gemm_parallel with part: W's rows are not
    32-byte multiples, so it is packed; C is short), the second with several blocks per task.
    (70, 600, 300): W packed because its blocks exceed PACK_B_BYTES, A packed too (300 columns),
    depth split. (1, 1030, 131): batch 1, W's rows streamed by depth ranges (_row_stream).
    Below SHARED_WORK on 2 threads the backward's two products share one parallel region
    (_backward_pair): (90, 130, 70), (70, 300, 50), (100, 784, 50) and (300, 7, 300), where dW
    (7 rows) is split by columns, so each task sums db over its own columns."""
    assert 203 * 600 * 291 >= nt.SHARED_WORK and 600 > nt.KC and 203 >= 2 * nt.MC
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("Numba pool has one thread")
    x, W, b, d = make_inputs(*shape, "float64", seed=3, integers=True)
    prev = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        y = IMPL.forward(x, W, b)
        dx, dW, db = IMPL.backward(x, W, d)
    finally:
        numba.set_num_threads(prev)
    np.testing.assert_array_equal(y, x @ W + b)
    np.testing.assert_array_equal(dx, d @ W.T)
    np.testing.assert_array_equal(dW, x.T @ d)
    np.testing.assert_array_equal(db, d.sum(0))


def test_task_bounds_cover_output_once():
    for m, n in ((1, 100), (5, 3), (100, 50), (1024, 1024), (13, 1000)):
        for T in (1, 2, 3):
            for cols in (False, True):
                cover = np.zeros((m, n), dtype=np.int64)
                for t in range(T):
                    r0, r1, c0, c1 = nt._task_bounds(t, T, m, n, nt.MR, 8, cols)
                    cover[r0:r1, c0:c1] += 1
                assert (cover == 1).all(), (m, n, T, cols)


def test_split_depth_covers_the_depth_once():
    for k in (1, 7, 8, 128, 130, 784, 1000):
        for T in (1, 2, 3, 4):
            cover = np.zeros(k, dtype=np.int64)
            for t in range(T):
                k0, k1 = nt._split_depth(t, T, k)
                assert k0 % 8 == 0 or k0 == k
                cover[k0:k1] += 1
            assert (cover == 1).all(), (k, T)


def test_inputs_untouched_and_outputs_fresh():
    x, W, b, d = make_inputs(20, 30, 10, "float32")
    before = [a.copy() for a in (x, W, b, d)]
    y = IMPL.forward(x, W, b)
    dx, dW, db = IMPL.backward(x, W, d)
    for a, c in zip((x, W, b, d), before):
        np.testing.assert_array_equal(a, c)
    assert y.dtype == dx.dtype == dW.dtype == db.dtype == np.float32


# ----------------------------------------------------------------------- target logic
def test_evaluate_ratio_and_speedup_with_fake_numbers():
    ratio = Target("fake", 10, 10, 10, "float64", "ratio", 1.25)
    assert evaluate(ratio, 1.2, 1.0).passed
    assert evaluate(ratio, 1.25, 1.0).passed  # the limit itself passes
    out = evaluate(ratio, 1.3, 1.0)
    assert not out.passed and math.isclose(out.value, 1.3)
    speed = Target("fake", 10, 10, 10, "float32", "speedup", 1.8)
    assert evaluate(speed, 2.0, 1.0).passed  # 1 thread 2.0 s, 2 threads 1.0 s
    assert not evaluate(speed, 1.5, 1.0).passed
    assert not evaluate(ratio, 0.0, 1.0).passed and math.isnan(evaluate(ratio, math.nan, 1.0).value)


def test_outcome_line_and_gflops():
    t = Target("1024^3", 1024, 1024, 1024, "float64", "ratio", 1.25)
    out = evaluate(t, 0.1, 0.08)
    g_num, g_den = out.gflops()
    assert math.isclose(g_num, t.step_flops / 0.1 / 1e9)
    line = out.line()
    assert "1.250" in line and "MISS" not in line and "PASS" in line and "GFLOP/s" in line and "%" in line
    assert "MISS" in evaluate(t, 0.2, 0.1).line()
    assert "noisy" not in line and "noisy (cv 25%)" in evaluate(t, 0.1, 0.08, cv=0.25).line()
    assert not evaluate(t, 0.1, 0.08, cv=0.05).noisy


def test_what_a_miss_would_need():
    """The rate the measured kernel would need, the other one's time unchanged, to meet the limit."""
    ratio = Target("fake", 100, 784, 50, "float64", "ratio", 0.67)
    out = evaluate(ratio, 300e-6, 400e-6)  # ratio 0.75: a miss
    who, need = out.needed()
    assert who == "numba-tiled" and math.isclose(need, ratio.step_flops / (0.67 * 400e-6) / 1e9)
    assert "to pass: numba-tiled" in out.line() and "to pass" not in evaluate(ratio, 200e-6, 400e-6).line()
    speed = Target("fake", 64, 64, 64, "float64", "speedup", 1.8)
    who, need = evaluate(speed, 1.0, 0.6).needed()  # 1.67x: the 2-thread run must take 1/1.8 s
    assert who == "numba-tiled@2t" and math.isclose(need, speed.step_flops * 1.8 / 1e9)


def test_peak_and_table():
    zen3 = {"nominal_ghz": 2.445, "fma": True, "avx512": False}
    assert math.isclose(peak_gflops("float64", zen3, 2), 2 * 16 * 2.445)
    assert math.isclose(peak_gflops("float32", zen3, 2), 2 * 32 * 2.445)
    assert math.isnan(peak_gflops("float64", {"nominal_ghz": None}, 2))
    cases = {(t.case, t.dtype, t.kind): t.limit for t in TARGETS}
    assert cases[("1024^3", "float32", "ratio")] == 1.25
    assert cases[("2048^3", "float64", "ratio")] == 1.6
    assert cases[("book N=100 784->50", "float64", "ratio")] == 0.67
    assert cases[("N=1 784->50", "float64", "ratio")] == 0.67
    assert cases[("1024^3", "float64", "speedup")] == 1.8
    assert all(t.case != "2048^3" for t in select(quick=True))
    assert {t.case for t in select(cases=["book"])} == {"book N=100 784->50"}
    assert {t.case for t in select(cases=["N=1"])} == {"N=1 784->50"}  # not the book's N=100
    assert {t.case for t in select(cases=["N=100"])} == {"book N=100 784->50"}
    assert {t.case for t in select(cases=["1024"])} == {"1024^3"}
    assert select(cases=["N=10"]) == []
    assert len(select(cases=["N="])) == 4 and len(select(cases=["1024^"])) == 4  # text ending before a number


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kc", [1, 7, 8, 17, 64])
@pytest.mark.parametrize("ncols", [1, 5, 8, 15, 16])
def test_packing_against_numpy(kc, ncols, dtype):
    """_pack_b in both directions, on every column count up to NR and depths around the
    vector width: panel contents, zero padding, the fused db, and nothing written past the panel."""
    nr = nt._nr(np.empty(0, dtype))
    ncols = min(ncols, nr)
    rng = np.random.default_rng(kc * 31 + ncols)
    B = rng.standard_normal((kc + 3, ncols + 5)).astype(dtype)  # pack rows 2.., columns 3..
    buf = nt._aligned_empty(kc * nr + nr, np.empty(0, dtype))
    buf[:] = 7
    db = np.ones(ncols + 5, dtype)
    nt._pack_b(B, False, 2, kc - 2 if kc > 2 else kc, 3, ncols, buf, nr, db, True, False)
    rows = kc - 2 if kc > 2 else kc
    panel = buf[:rows * nr].reshape(rows, nr)
    np.testing.assert_array_equal(panel[:, :ncols], B[2:2 + rows, 3:3 + ncols])
    assert not panel[:, ncols:].any() and (buf[rows * nr:] == 7).all()
    np.testing.assert_allclose(db[3:3 + ncols], 1 + B[2:2 + rows, 3:3 + ncols].sum(0), rtol=1e-5)
    assert (db[:3] == 1).all() and (db[3 + ncols:] == 1).all()

    Wt = rng.standard_normal((ncols + 4, kc + 6)).astype(dtype)  # B(p, j) = Wt[j, p]
    buf[:] = 7
    nt._pack_b(Wt, True, 1, kc, 2, ncols, buf, nr, db, False, False)
    panel = buf[:kc * nr].reshape(kc, nr)
    np.testing.assert_array_equal(panel[:, :ncols], Wt[2:2 + ncols, 1:1 + kc].T)
    assert not panel[:, ncols:].any() and (buf[kc * nr:] == 7).all()

    if ncols <= nt.DOT_COLS:  # a narrow last panel for the dot kernel: column-major, both directions
        buf[:] = 7
        db = np.ones(ncols + 5, dtype)
        nt._pack_b(B, False, 2, rows, 3, ncols, buf, nr, db, True, True)
        np.testing.assert_array_equal(buf[:ncols * rows].reshape(ncols, rows), B[2:2 + rows, 3:3 + ncols].T)
        np.testing.assert_allclose(db[3:3 + ncols], 1 + B[2:2 + rows, 3:3 + ncols].sum(0), rtol=1e-5)
        nt._pack_b(Wt, True, 1, kc, 2, ncols, buf, nr, db, False, True)
        np.testing.assert_array_equal(buf[:ncols * kc].reshape(ncols, kc), Wt[2:2 + ncols, 1:1 + kc])


def test_depth_blocks_and_buffer_alignment():
    for k in (1, 8, nt.KC, nt.KC + 1, 784, 3 * nt.KC + 16, 5000):
        step = nt._depth_step(k)
        assert 1 <= step <= nt.KC and step <= k
        blocks = -(-k // step)
        assert blocks == -(-k // nt.KC)  # no more blocks than KC needs
        assert k <= nt.KC or step % 8 == 0
    assert nt._depth_step(784) == 392 and nt._depth_step(1100) == 368
    for n in (1, 13, 1000):
        for dt in (np.float32, np.float64):
            a = nt._aligned_empty(n, np.empty(0, dt))
            assert a.size == n and a.ctypes.data % nt.ALIGN == 0


def test_kernels_command_prints_one_line_per_target(capsys):
    """`python -m affbench kernels` end to end on the two cheapest targets (batch 1)."""
    from affbench import cli

    assert cli.main(["kernels", "--quick", "--case", "N=1", "--samples", "3", "--parts"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("N=1 784->50")]
    assert len(lines) == 2 and {ln.split()[2] for ln in lines} == {"float32", "float64"}
    for ln in lines:
        assert "target <= 0.67" in ln and any(v in ln for v in ("PASS", "MISS", "NEAR"))
        value = float(ln.split()[5])
        assert ln.count("GFLOP/s") == (2 if value <= 0.67 else 3)  # above the limit: what would pass
        low, high = (float(v) for v in ln.split()[6].strip("()").split("-"))  # the ratio's 95% interval
        assert low <= value <= high
    # --parts: forward and backward under each target, both kernels and their ratio
    for name in ("forward", "backward"):
        parts = [ln for ln in out.splitlines() if ln.strip().startswith(name + " ")]
        assert len(parts) == 2, out
        assert all("numba-tiled" in ln and "numpy" in ln and "ratio" in ln for ln in parts)
    assert "/2 targets met" in out and "compile (first calls" in out

    assert cli.main(["kernels", "--quick", "--case", "N=1", "--samples", "3"]) == 0
    out = capsys.readouterr().out
    assert len([ln for ln in out.splitlines() if ln.startswith("N=1 784->50")]) == 2
    assert not [ln for ln in out.splitlines() if ln.strip().startswith(("forward ", "backward "))]


def test_verdict_from_the_interval():
    from affbench.engine.targets import evaluate
    from affbench.measure.intervals import Interval

    t = Target("fake", 100, 784, 50, "float64", "ratio", 1.05)
    assert evaluate(t, 1.0, 1.0, interval=Interval(1.0, 0.98, 1.02)).verdict == "PASS"
    assert evaluate(t, 1.0, 1.0, interval=Interval(1.04, 1.01, 1.08)).verdict == "NEAR"
    assert evaluate(t, 1.0, 1.0, interval=Interval(1.10, 1.07, 1.12)).verdict == "MISS"
    out = evaluate(t, 1.0, 1.0, interval=Interval(1.10, 1.07, 1.12))
    assert out.value == 1.10 and "1.100 (1.070-1.120)" in out.line()
    s = Target("fake", 1024, 1024, 1024, "float64", "speedup", 1.8)
    assert evaluate(s, 2.0, 1.0, interval=Interval(1.9, 1.85, 1.95)).verdict == "PASS"
    assert evaluate(s, 2.0, 1.0, interval=Interval(1.8, 1.7, 1.9)).verdict == "NEAR"
    assert evaluate(s, 2.0, 1.0).verdict == "PASS"  # no interval: the estimate decides


def test_part_lines_say_ratio_or_speedup():
    from affbench.commands import kernels
    from affbench.measure.timing import summarize

    fast, slow = summarize([1e-3, 1e-3, 1e-3]), summarize([2e-3, 2e-3, 2e-3])
    ratio = Target("fake", 100, 784, 50, "float64", "ratio", 0.67)
    line = kernels._part_line(ratio, "forward", fast, slow)
    assert "ratio 0.500" in line and "numba-tiled" in line and "numpy" in line and "noisy" not in line
    speed = Target("fake", 100, 784, 50, "float64", "speedup", 1.8)
    line = kernels._part_line(speed, "backward", slow, fast)
    assert "speedup 2.000" in line and "@1t" in line and "@2t" in line
    assert "noisy" in kernels._part_line(ratio, "forward", summarize([1e-3, 2e-3, 1e-3]), slow)


def test_kernels_command_refuses_what_it_cannot_measure(capsys):
    from affbench import cli

    assert cli.main(["kernels", "--case", "no such case"]) == 2
    assert "--case matched no target" in capsys.readouterr().err
    assert cli.main(["kernels", "--samples", "2"]) == 2


def _exact_in_subprocess(setup: str, shapes: list[tuple[int, int, int]], env: dict[str, str]) -> None:
    """Every shape, both dtypes, checked bit for bit on integers in a fresh Python started with
    ``env`` on top of this one's (Numba reads thread counts and affbench its settings at import);
    ``setup`` asserts what that process must see."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np, numba\n"
        "from affbench import registry\n"
        "from affbench.verify import make_inputs\n"
        "from implementations import numba_tiled as nt\n"
        f"{setup}\n"
        "impl = registry.get('numba-tiled')\n"
        f"for shape in {shapes!r}:\n"
        "    for dt in ('float32', 'float64'):\n"
        "        x, W, b, d = make_inputs(*shape, dt, seed=1, integers=True)\n"
        "        assert (impl.forward(x, W, b) == x @ W + b).all(), shape\n"
        "        dx, dW, db = impl.backward(x, W, d)\n"
        "        assert (dx == d @ W.T).all() and (dW == x.T @ d).all() and (db == d.sum(0)).all(), shape\n"
        "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **env), capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_three_threads_in_a_subprocess():
    """More threads than this 2-core machine has cores (a bigger machine's default): the static
    split hands every task all m rows when it splits by columns, and the packing buffer must hold
    them (a review found heap corruption at N=19, K=64, M=256 on 3 threads, sized for m/T rows)."""
    _exact_in_subprocess("assert numba.get_num_threads() == 3",
                         [(19, 64, 256), (30, 64, 258), (24, 100, 1000), (19, 64, 300), (40, 300, 70), (1, 1030, 131)],
                         {"NUMBA_NUM_THREADS": "3"})


def test_grid_covers_the_default_preset_cell_by_cell():
    from affbench.engine.sweep import preset
    from affbench.engine.targets import GRID_LIMIT, grid
    from affbench.reference import flops

    sweep = preset("default")
    cells = grid(("forward", "step"), (1, 2))
    assert len(cells) == 2 * len(sweep.dtypes) * len(sweep.layers) * len(sweep.batches) * 2
    assert len({(t.pass_, t.dtype, t.N, t.K, t.M, t.threads) for t in cells}) == len(cells)
    assert all(t.kind == "ratio" and t.limit == GRID_LIMIT for t in cells)
    fwd = next(t for t in cells if t.pass_ == "forward")
    assert fwd.step_flops == flops("forward", fwd.N, fwd.K, fwd.M) and fwd.measure.endswith("forward")
    assert fwd.case == f"forward N={fwd.N} {fwd.K}->{fwd.M} t={fwd.threads}"


def test_kernels_grid_prints_the_worst_cells_first(capsys):
    from affbench import cli

    assert cli.main(["kernels", "--grid", "--quick", "--samples", "3", "--case", "N=1", "--case", "784->50",
                     "--pass", "forward"]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("forward N=1 784->50")]
    assert len(lines) == 4  # two dtypes x two thread counts; N=1 does not select N=100 or N=16
    values = [float(ln.split()[7]) for ln in lines]
    assert values == sorted(values, reverse=True)
    assert all("target <= 1.05" in ln for ln in lines)
    assert "4 cells, numba-tiled/numpy at most 1.05:" in out


def test_kernels_grid_refuses_mixed_options(capsys):
    from affbench import cli

    assert cli.main(["kernels", "--grid", "--parts"]) == 2
    assert cli.main(["kernels", "--pass", "step"]) == 2
    assert cli.main(["kernels", "--grid", "--pass", "sideways"]) == 2
    err = capsys.readouterr().err
    assert "--parts and --grid" in err and "--pass applies to --grid only" in err and "'sideways'" in err


def test_the_kernels_use_the_widest_vectors_the_cpu_has():
    assert nt.HOST_VECTOR_BYTES in (32, 64) and nt.VECTOR_BYTES == nt.HOST_VECTOR_BYTES
    assert nt._OPTS["cache"]
    assert nt._nr(np.empty(1)) == nt.NV * nt.VECTOR_BYTES // 8


@pytest.mark.skipif(nt.HOST_VECTOR_BYTES < 64, reason="an AVX2-only CPU runs the ymm kernels in every other test")
def test_the_ymm_kernels_on_an_avx512_machine():
    """The CI machine may lack AVX-512 (the project's first VM did): here the AVX2 kernels are
    checked too, in a subprocess that asks for them (uncached: Numba's cache does not key on
    the width), on the shapes that take every path and every edge tile."""
    _exact_in_subprocess("assert nt.VECTOR_BYTES == 32 and not nt._OPTS['cache']",
                         [(1, 784, 50), (100, 784, 50), (7, 33, 17), (19, 64, 300), (130, 300, 70), (600, 70, 1030),
                          (1, 1030, 131), (256, 256, 256), (40, 26, 26), (100, 784, 25)],  # split panels in ymm
                         {nt.VECTOR_BYTES_ENV: "32"})


@pytest.mark.parametrize("value", ["48", "wide"])
def test_a_bad_vector_width_is_refused_by_name(monkeypatch, value):
    monkeypatch.setenv(nt.VECTOR_BYTES_ENV, value)
    with pytest.raises(ValueError, match=f"{nt.VECTOR_BYTES_ENV}={value!r}: accepted 32"):
        nt._vector_bytes(64)
    monkeypatch.setenv(nt.VECTOR_BYTES_ENV, "64")
    with pytest.raises(ValueError, match="no AVX-512F"):
        nt._vector_bytes(32)


def _split_widths(itemsize: int) -> list[int]:
    """Column counts whose last tile is one vector plus 1 or 2 columns (a split panel), on
    either side of it, for this machine's vector width."""
    vl = nt.VECTOR_BYTES // itemsize
    nr = nt.NV * vl
    return [nr + vl + 1, nr + vl + 2, nr + vl + 3, vl + 1, vl + 2, 2 * nr + vl + 2]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_split_panels_exact_on_integers(dtype):
    """A last column tile of one vector and 1-2 columns more is split (_pack_b, _macro): the
    vector by _ukr_tall, the rest by _ukr_dot (forward, dX) or _ukr_colv (dW). Every product
    takes it here, serial and parallel, with packed B transposed (dX) and not (forward)."""
    for n in _split_widths(np.dtype(dtype).itemsize):
        for shape in [(13, 70, n), (100, 784, n), (40, n, 9), (100, n, 784 % n + n), (7, n, n)]:
            c = check_exact(IMPL, *shape, dtype)
            assert c.passed, (shape, c.detail)


def test_macro_is_compiled_once_per_dtype_and_called_by_address():
    """The large products call _macro through its address (compile time: see _macro_address)."""
    a32, a64 = nt._macro_address(np.dtype("float32")), nt._macro_address(np.dtype("float64"))
    assert a32 and a64 and a32 != a64
    assert nt._macro_address(np.dtype("float32")) == a32  # looked up, not compiled again
    for dt in ("float32", "float64"):
        assert list(nt._macro.overloads).count(nt._macro_sig(numba.from_dtype(np.dtype(dt)))) == 1


def test_call_by_address_refuses_arguments_macro_was_not_compiled_for():
    """A wrong array type is a typing error at compile time, never a call with a wrong layout."""

    @numba.njit
    def bad(fn, A, B, C, bias):
        nt._call_macro(fn, A, False, B, False, B, 1, True, C, bias, 0, 0, 1, 0, 1, 0, 1, 16, False)

    f32 = np.zeros((2, 2), np.float32)
    with pytest.raises(numba.core.errors.TypingError, match="_call_macro"):
        bad(0, f32, np.zeros(4), f32, np.zeros(2, np.float32))  # a float64 panel for a float32 product


def test_the_backward_of_a_mid_size_product_is_one_parallel_region(monkeypatch):
    """On 2+ threads, from PARALLEL_WORK up to SHARED_WORK, dX and dW run in one region
    (_backward_pair); from SHARED_WORK up each product takes its own (_gemm's shared-B scheme)."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba pool has one thread")
    calls = []
    real = nt._backward_pair
    monkeypatch.setattr(nt, "_backward_pair", lambda *a: calls.append(a[0].shape) or real(*a))
    prev = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        for shape in ((100, 784, 50), (203, 600, 291)):
            x, W, b, d = make_inputs(*shape, "float32", seed=5, integers=True)
            dx, dW, db = IMPL.backward(x, W, d)
            np.testing.assert_array_equal(dx, d @ W.T)
            np.testing.assert_array_equal(dW, x.T @ d)
            np.testing.assert_array_equal(db, d.sum(0))
        numba.set_num_threads(1)  # one thread: the serial products, no region
        x, W, b, d = make_inputs(100, 784, 50, "float32", seed=5)
        IMPL.backward(x, W, d)
    finally:
        numba.set_num_threads(prev)
    assert calls == [(100, 784)]
