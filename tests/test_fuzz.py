"""Fuzz the public surface (issue 7): every registered implementation, Affine, and the CLI.

Each call either returns the right result (checked against the float64 reference; NaN and Inf
where NumPy has them) or raises a clear ValueError/TypeError naming the argument. Cases that
reach a Numba kernel run in one child process per implementation (tests/_fuzz_worker.py), so
a segfault fails that test instead of killing the run. The terminal summary reports how many
inputs were tried; AFFBENCH_FUZZ_SCALE multiplies every example count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import _support
import numpy as np
import pytest
from _support import FUZZ_COUNTS, IMPL_NAMES, affine_cases, compare_with_reference, is_jit, kernel_cases, n_examples
from hypothesis import given, settings
from hypothesis import strategies as st

from affbench import Affine, cli, registry
from affbench.verify import DTYPES

IN_PROCESS = [n for n in IMPL_NAMES if not is_jit(n)]
SUBPROCESS = [n for n in IMPL_NAMES if is_jit(n)]
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_fuzz_worker.py")
WORKER_TIMEOUT_S = 240


# --------------------------------------------------------------------------- in process
@pytest.mark.parametrize("name", IN_PROCESS)
def test_kernel_fuzz_in_process(name):
    impl = registry.get(name)

    @settings(max_examples=n_examples(200), deadline=None)
    @given(kernel_cases())
    def check(case):
        FUZZ_COUNTS[f"kernel {name}"] += 1
        _support.run_kernel_case(impl, case)

    check()


@pytest.mark.parametrize("name", IN_PROCESS)
def test_affine_fuzz_in_process(name):
    @settings(max_examples=n_examples(120), deadline=None)
    @given(affine_cases())
    def check(case):
        FUZZ_COUNTS[f"Affine {name}"] += 1
        _support.run_affine_case(name, case)

    check()


# --------------------------------------------------------------------------- in a child process
@pytest.fixture(scope="module")
def workers():
    """Start every Numba implementation's worker at once; each test waits for its own."""
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    procs = {
        name: subprocess.Popen(
            [sys.executable, WORKER, name, str(n_examples(300)), str(n_examples(150))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        for name in SUBPROCESS
    }
    yield procs
    for p in procs.values():
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.parametrize("name", SUBPROCESS)
def test_numba_kernel_fuzz_in_subprocess(workers, name):
    proc = workers[name]
    try:
        out, err = proc.communicate(timeout=WORKER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"fuzz worker for {name} hung (> {WORKER_TIMEOUT_S} s):\n{err[-4000:]}")
    assert proc.returncode == 0, (
        f"fuzz worker for {name} exited with {proc.returncode}"
        + (" (killed by a signal: a crash in a kernel)" if proc.returncode < 0 else "")
        + f"\n{err[-6000:]}"
    )
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["impl"] == name
    for part in ("kernel", "affine"):
        FUZZ_COUNTS[f"{part} {name} (subprocess)"] += sum(summary[part].values())
        assert summary[part].get("ok", 0) > 0, f"no valid {part} case was tried: {summary}"
    assert summary["kernel"].get("refused", 0) > 0, "no absurdly large case was tried"


# --------------------------------------------------------------------------- NaN and Inf
def _nan_inf_inputs(dtype, seed):
    rng = np.random.default_rng(seed)
    N, K, M = 9, 37, 21  # big enough for any blocking/vector path, not a multiple of tiles
    x, W, b, dout = (rng.standard_normal(s).astype(dtype) for s in ((N, K), (K, M), (M,), (N, M)))
    x[1, 3] = np.nan
    x[4, 0] = np.inf
    x[6, 7] = -np.inf
    x[7, :] = 0.0
    W[5, 2] = np.inf  # row 7 of x is zero: 0 * inf = NaN in y[7, 2]
    W[9, 11] = np.nan
    b[4] = -np.inf
    dout[2, 5] = np.nan
    dout[3, 8] = np.inf
    dout[5, 8] = -np.inf  # inf + -inf = NaN in db[8]
    return x, W, b, dout


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nan_and_inf_propagate_as_numpy(impl_name, dtype):
    """NaN and Inf must land where NumPy puts them. A kernel compiled with fastmath's 'nnan'/'ninf'
    flags (fastmath=True) may drop them: restrict its flags to {'contract', 'reassoc', 'arcp'}."""
    impl = registry.get(impl_name)
    for seed in range(3):
        x, W, b, dout = _nan_inf_inputs(dtype, seed)
        FUZZ_COUNTS["NaN/Inf"] += 1
        with np.errstate(all="ignore"):
            y = impl.forward(x, W, b)
            dx, dW, db = impl.backward(x, W, dout)
            compare_with_reference({"y": y, "dx": dx, "dW": dW, "db": db}, x, W, b, dout, dtype)
            layer = Affine(W, b, impl=impl_name)
            y2 = layer.forward(x.reshape(9, 37, 1))
            dx2 = layer.backward(dout)
            compare_with_reference({"y": y2, "dx": dx2.reshape(9, 37), "dW": layer.dW, "db": layer.db},
                                   x, W, b, dout, dtype)


# --------------------------------------------------------------------------- CLI options
KNOWN = {"--impl": IMPL_NAMES, "--dtype": list(DTYPES)}
token = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=","), min_size=0, max_size=12)


@settings(max_examples=n_examples(150), deadline=None)
@given(
    option=st.sampled_from(sorted(KNOWN)),
    good=st.lists(st.sampled_from(IMPL_NAMES + list(DTYPES)), max_size=3),
    bad=st.lists(token, min_size=1, max_size=3),
    sep=st.sampled_from([",", ", ", " ,"]),
    repeat=st.booleans(),
)
def test_cli_unknown_values_exit_2_with_one_clear_line(option, good, bad, sep, repeat):
    known = KNOWN[option]
    bad = [t for t in bad if t.strip() and t.strip() not in known]
    if not bad:
        bad = ["no-such-thing"]
    values = good + bad
    argv = ["verify"]
    if repeat:
        for v in values:
            argv.append(f"{option}={v}")
    else:
        argv.append(f"{option}={sep.join(values)}")
    FUZZ_COUNTS["CLI"] += 1
    import contextlib
    import io

    err = io.StringIO()
    out = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        status = cli.main(argv)
    text = err.getvalue()
    assert status == 2, (argv, text)
    lines = text.strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in text
    line = lines[0]
    assert option in line and "accepted" in line
    for k in known:
        assert k in line
    assert repr(bad[0].strip()) in line or repr(bad[0]) in line
    assert out.getvalue() == ""


@settings(max_examples=n_examples(40), deadline=None)
@given(st.lists(st.text(st.characters(codec="ascii", categories=("L", "N", "P")), min_size=1, max_size=10)
                .map(lambda s: "--" + s.replace("=", "")), min_size=1, max_size=2))
def test_cli_unknown_options_exit_2_without_traceback(opts):
    import contextlib
    import io

    argv = ["verify", *opts]
    FUZZ_COUNTS["CLI"] += 1
    err = io.StringIO()
    known_prefixes = ("--impl", "--dtype", "--csv", "--help")
    if any(any(k.startswith(o) for k in known_prefixes) for o in opts):  # argparse accepts prefixes
        return
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "Traceback" not in err.getvalue() and "unrecognized arguments" in err.getvalue()


def test_cli_empty_impl_value_is_a_usage_error(capsys):
    status = cli.main(["verify", "--impl="])
    assert status == 2
