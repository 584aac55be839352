"""affbench.verify: the tolerance model, exactness on integers, the gradient check, and that
broken implementations are caught, named, and make `python -m affbench verify` exit 1."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from _support import IMPL_NAMES

from affbench import cli, reference, registry
from affbench.protocol import KernelImpl
from affbench.verify import C_TOLERANCE, check_exact, make_inputs, normwise_error, tolerance, verify

FAST_SHAPES = ((1, 1, 1), (0, 5, 3), (3, 5, 0), (7, 13, 11), (17, 31, 19))


def test_cli_verify_exits_0_and_prints_its_table():
    proc = subprocess.run(
        [sys.executable, "-m", "affbench", "verify", "--impl", "numpy,numba-serial"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "implementation" in out and "tolerance" in out and "closest to its tolerance" in out
    for name in ("numpy", "numba-serial"):
        for q in ("y", "dx", "dW", "db", "exact", "contract"):
            assert any(line.startswith(name) and f" {q} " in line for line in out.splitlines()), (name, q)
    assert "naive" not in out
    assert "all checks passed" in out
    assert "mean |diff|" in out


# --------------------------------------------------------------------------- broken implementations
class _Good(KernelImpl):
    def _forward(self, x, W, b):
        return x @ W + b

    def _backward(self, x, W, dout):
        return dout @ W.T, x.T @ dout, dout.sum(axis=0)


class DropsBias(_Good):
    name = "broken-drops-bias"

    def _forward(self, x, W, b):
        return x @ W


class ReturnsNone(_Good):
    name = "broken-returns-none"

    def _forward(self, x, W, b):
        super()._forward(x, W, b)  # computes, forgets to return: npbench #26 passed this


class ModifiesInput(_Good):
    name = "broken-modifies-input"

    def forward(self, x, W, b):  # skip the base class's defensive copies
        y = x @ W + b
        if x.size:
            x[0, 0] += 1.0
        return y


class AliasesInput(_Good):
    name = "broken-aliases-input"

    def backward(self, x, W, dout):
        dx, dW, db = super().backward(x, W, dout)
        if dout.shape == dx.shape:
            np.copyto(dout, dx)  # same values...
            return dout, dW, db  # ...but the caller's own array
        return dx, dW, db


class WrongDtype(_Good):
    name = "broken-wrong-dtype"

    def _forward(self, x, W, b):
        return (x @ W + b).astype(np.float64)


class OutputsShareMemory(_Good):
    name = "broken-outputs-share"

    def _backward(self, x, W, dout):
        dx, dW, db = super()._backward(x, W, dout)
        return dx, dW, dW[0] if dW.shape[0] else db


class DropsOneTerm(_Good):
    """Forgets the last k in the sum: an error of exactly one term."""

    name = "broken-drops-one-term"

    def _forward(self, x, W, b):
        return x[:, :-1] @ W[:-1] + b if x.shape[1] > 1 else x @ W + b


class WrongBackwardShape(_Good):
    name = "broken-db-shape"

    def _backward(self, x, W, dout):
        dx, dW, db = super()._backward(x, W, dout)
        return dx, dW, db.reshape(1, -1)


class Raises(_Good):
    name = "broken-raises"

    def _backward(self, x, W, dout):
        raise RuntimeError("kernel exploded")


class ReturnsList(_Good):
    name = "broken-returns-list"

    def _backward(self, x, W, dout):
        return list(super()._backward(x, W, dout))


BROKEN = [DropsBias, ReturnsNone, ModifiesInput, AliasesInput, WrongDtype, OutputsShareMemory, DropsOneTerm,
          WrongBackwardShape, Raises, ReturnsList]


def run_cli(argv, monkeypatch):
    return cli.main(argv)


def test_print_report_follows_stdout(capsys):
    import io
    from contextlib import redirect_stdout

    from affbench.commands.verify import print_report
    from affbench.verify import VerifyReport

    buf = io.StringIO()
    with redirect_stdout(buf):
        print_report(VerifyReport())
    assert "implementation" in buf.getvalue()


@pytest.fixture
def registered():
    added = []

    def add(cls):
        impl = registry.register(cls)
        added.append(impl.name)
        return impl

    yield add
    for n in added:
        registry.unregister(n)


@pytest.mark.parametrize("cls", BROKEN, ids=lambda c: c.name)
def test_broken_implementation_fails_verify(registered, cls):
    impl = registered(cls)
    report = verify(["numpy", impl.name], ["float32", "float64"], shapes=FAST_SHAPES)
    assert not report.ok
    assert report.failed_impls() == [impl.name]
    assert report.passed("numpy")
    assert "FAIL" in report.table()
    assert any(row["implementation"] == impl.name and not row["passed"] for row in report.summary_rows())


def test_cli_verify_exits_1_and_names_the_broken_one(registered, capsys, monkeypatch):
    impl = registered(DropsBias)
    status = run_cli(["verify", "--impl", f"numpy,{impl.name}", "--dtype", "float64"], monkeypatch)
    captured = capsys.readouterr()
    assert status == 1
    assert f"failing implementation(s): {impl.name}" in captured.err
    assert "FAIL" in captured.out


def test_good_reference_style_impl_passes(registered):
    class Fine(_Good):
        name = "test-fine"

    impl = registered(Fine)
    report = verify([impl.name], shapes=FAST_SHAPES)
    assert report.ok, report.failures()
    assert report.gradient_check and max(report.gradient_check.values()) < 1e-7


def test_csv_written(tmp_path, capsys, monkeypatch):
    path = tmp_path / "checks.csv"
    assert run_cli(["verify", "--impl", "numpy", "--dtype", "float32", "--csv", str(path)], monkeypatch) == 0
    lines = path.read_text().splitlines()
    assert lines[0].startswith("impl,dtype,case,quantity,error,tolerance,passed")
    assert len(lines) > 10


def _no_verification(monkeypatch):
    import affbench.commands.verify as verify_cmd

    def refuse(*a, **k):
        raise AssertionError("a bad --csv must be refused before verifying")

    monkeypatch.setattr(verify_cmd, "verify", refuse)


@pytest.mark.parametrize("where, needle", [("missing/x.csv", "does not exist"), (".", "is a directory"),
                                           ("afile/x.csv", "is not a directory")])
def test_bad_csv_path_is_a_usage_error_before_verifying(tmp_path, capsys, monkeypatch, where, needle):
    (tmp_path / "afile").write_text("")
    _no_verification(monkeypatch)
    path = str(tmp_path / where)
    assert run_cli(["verify", "--impl", "numpy", "--dtype", "float32", "--csv", path], monkeypatch) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "--csv" in err and path in err and needle in err, err
    assert not (tmp_path / "missing").exists()


def test_csv_write_failing_after_the_check_is_one_clear_line(tmp_path, capsys, monkeypatch):
    from affbench.verify import VerifyReport

    def fail(self, path):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(VerifyReport, "write_csv", fail)
    path = str(tmp_path / "checks.csv")
    assert run_cli(["verify", "--impl", "numpy", "--dtype", "float32", "--csv", path], monkeypatch) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert f"--csv {path}: could not write the checks (No space left on device)" in captured.err
    assert "all checks passed" in captured.out  # the verification itself is still reported


# --------------------------------------------------------------------------- tolerance model
def test_float64_tolerance_is_far_tighter_than_float32():
    for n in (1, 10, 784, 4096):
        t32, t64 = tolerance("float32", n), tolerance("float64", n)
        assert t64 < t32 * 1e-8
        assert t32 < 1e-3 and t64 < 1e-12
    assert tolerance(np.float32, 100) == tolerance("float32", 100)
    assert tolerance("float64", 99) == pytest.approx(C_TOLERANCE * 10 * 2 * np.finfo(np.float64).eps)


def test_tolerance_grows_like_sqrt_n():
    assert tolerance("float32", 399) == pytest.approx(2 * tolerance("float32", 99))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("K", [2, 64, 784])
def test_an_error_of_one_dropped_term_fails(dtype, K):
    x, W, b, _ = make_inputs(9, K, 7, dtype, seed=3)
    ref = reference.forward(x, W, b)
    terms = x.astype(np.float64)[:, :, None] * W.astype(np.float64)[None, :, :]  # (N, K, M)
    i, k, j = np.unravel_index(np.argmax(np.abs(terms)), terms.shape)
    wrong = ref.copy()
    wrong[i, j] -= terms[i, k, j]
    scale = np.abs(x.astype(np.float64)) @ np.abs(W.astype(np.float64)) + np.abs(b)
    assert normwise_error(wrong, ref, scale) > 10 * tolerance(dtype, K)
    # while an honest rounding to the dtype passes
    assert normwise_error(ref.astype(dtype), ref, scale) <= tolerance(dtype, K)


def test_normwise_error_edge_cases():
    assert normwise_error(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 3))) == 0.0
    assert math.isinf(normwise_error(np.array([np.nan]), np.array([1.0]), np.array([1.0])))
    assert math.isinf(normwise_error(np.array([np.inf]), np.array([1.0]), np.array([1.0])))
    assert normwise_error(np.array([0.0]), np.array([0.0]), np.array([0.0])) == 0.0  # no 0/0
    assert normwise_error(np.array([1.0, 2.0]), np.array([1.0, 2.5]), np.array([1.0, 5.0])) == 0.1


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 7, 3), (33, 65, 17)])
def test_bit_identical_on_small_integers(impl_name, dtype, shape):
    impl = registry.get(impl_name)
    check = check_exact(impl, *shape, dtype)
    assert check.passed, check.detail
    x, W, b, dout = make_inputs(*shape, dtype, seed=7, integers=True)
    first = registry.get("numpy")
    for a, c in zip((impl.forward(x, W, b), *impl.backward(x, W, dout)),
                    (first.forward(x, W, b), *first.backward(x, W, dout))):
        assert a.tobytes() == c.tobytes()  # bit for bit, across implementations


def test_gradient_check_is_tight():
    diffs = reference.gradient_check()
    assert set(diffs) == {"dx", "dW", "db"}
    for q, d in diffs.items():
        assert 0 <= d < 1e-7, q
    assert max(reference.gradient_check(N=2, K=3, M=4, seed=5).values()) < 1e-7


def test_flops():
    assert reference.flops("forward", 2, 3, 4) == 2 * 24 + 8
    assert reference.flops("backward", 2, 3, 4) == 4 * 24 + 8
    assert reference.flops("step", 2, 3, 4) == 6 * 24 + 16
    with pytest.raises(ValueError, match="unknown pass 'sideways'"):
        reference.flops("sideways", 1, 1, 1)


def test_every_registered_impl_passes_the_fast_grid():
    names = [n for n in IMPL_NAMES]
    report = verify(names, shapes=FAST_SHAPES)
    assert report.ok, [(c.impl, c.dtype, c.case, c.quantity, c.detail) for c in report.failures()]
