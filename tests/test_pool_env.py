"""affbench.measure.pool_env: the idle-spin settings of OpenBLAS and libgomp, and whether they came in time."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from affbench.measure import pool_env

STATUS = "import json; from affbench import pool_env; print(json.dumps([pool_env.status(), pool_env.gomp_status()]))"


def _child(code: str, **env_over: str) -> list[dict]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_THREAD_TIMEOUT", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(env_over)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_defaults_set_before_either_pool_loads():
    blas, gomp = _child(STATUS)
    assert blas["value"] == pool_env.OPENBLAS_THREAD_TIMEOUT and blas["in_effect"] is True
    assert gomp["value"] == pool_env.GOMP_SPINCOUNT and gomp["in_effect"] is True


def test_a_value_the_user_set_is_kept():
    blas, gomp = _child(STATUS, OPENBLAS_THREAD_TIMEOUT="24", GOMP_SPINCOUNT="0")
    assert blas["value"] == "24" and gomp["value"] == "0"
    assert blas["set_by"] == gomp["set_by"] == "user"


def test_the_users_wait_policy_is_left_to_decide():
    """libgomp lets GOMP_SPINCOUNT override OMP_WAIT_POLICY: affbench must not set it then."""
    blas, gomp = _child("import os, json; from affbench import pool_env\n"
                        "print(json.dumps([pool_env.status(), dict(pool_env.gomp_status(), "
                        "env=os.environ.get('GOMP_SPINCOUNT'))]))", OMP_WAIT_POLICY="passive")
    assert gomp["env"] is None and gomp["value"] is None and gomp["omp_wait_policy"] == "passive"
    assert gomp["in_effect"] is True and gomp["set_by"] == "user"


def test_a_value_set_before_start_is_in_effect_whatever_the_import_order():
    blas, _ = _child("import numpy\n" + STATUS, OPENBLAS_THREAD_TIMEOUT="20")
    assert blas["in_effect"] is True and blas["set_by"] == "user"


def test_too_late_is_recorded_as_not_in_effect():
    code = ("import numpy, numba\n"
            "@numba.njit(parallel=True)\n"
            "def f(a):\n"
            "    for i in numba.prange(a.size):\n"
            "        a[i] += 1\n"
            "f(numpy.zeros(100))\n" + STATUS)
    blas, gomp = _child(code)
    assert blas["in_effect"] is False  # numpy came first: OpenBLAS never saw the timeout
    import numba

    if numba.config.THREADING_LAYER in ("default", "omp") and sys.platform.startswith("linux"):
        layer = _child("import numba, numpy\n@numba.njit(parallel=True)\ndef f(a):\n"
                       "    for i in numba.prange(a.size):\n        a[i] += 1\nf(numpy.zeros(100))\n"
                       "import json; print(json.dumps([numba.threading_layer()]))")[0]
        if layer == "omp":
            assert gomp["in_effect"] is False  # libgomp was loaded (and read its settings) first
        else:
            pytest.skip(f"Numba's threading layer here is {layer}, not libgomp")


@pytest.mark.parametrize("user_value", [None, "20"])
def test_importing_numpy_first_is_warned_about(user_value):
    """Said at import time, so a script that times kernels itself learns it too (not only a
    run's env.json): unless the user set the timeout before start, when it is in effect anyway."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if user_value:
        env["OPENBLAS_THREAD_TIMEOUT"] = user_value
    out = subprocess.run([sys.executable, "-c", "import numpy\nimport affbench"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    warned = "numpy was imported before affbench" in out.stderr
    assert warned is (user_value is None), out.stderr
    if warned:  # pointed at the user's own import line, not at affbench's insides
        assert out.stderr.startswith("<string>:2:"), out.stderr
    ok = subprocess.run([sys.executable, "-c", "import affbench\nimport numpy"], env=env,
                        capture_output=True, text=True, timeout=120)
    assert "numpy was imported before affbench" not in ok.stderr
