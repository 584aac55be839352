"""Shared fixtures, the hypothesis profile, and the fuzz summary line.

The fuzz tests add to ``_support.FUZZ_COUNTS``; at the end of the session the terminal
summary reports how many inputs they tried (the hardening issue asks for that number).
"""

from __future__ import annotations

import os
import sys

import affbench  # noqa: F401, I001  (before numpy: affbench.measure.pool_env sets what OpenBLAS reads at load)
import numpy as np  # isort: skip
import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))  # tests/_support.py, also for the fuzz worker

import _support  # noqa: E402

from affbench import registry  # noqa: E402

settings.register_profile(
    "affbench",
    deadline=None,  # Numba compiles on first use and the machine is shared: no per-example deadline
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("AFFBENCH_HYPOTHESIS_PROFILE", "affbench"))

from _support import IMPL_NAMES  # noqa: E402

#: Options that ask pytest-benchmark to time. Without one of them the benchmarks run once,
#: untimed, as correctness checks (the README's test command).
TIMING_OPTIONS = ("benchmark_only", "benchmark_enable", "benchmark_save", "benchmark_autosave",
                  "benchmark_json", "benchmark_compare", "benchmark_histogram")


def pytest_configure(config: pytest.Config) -> None:
    """--benchmark-disable by default, but not in addopts: there it clashes with the
    --benchmark-only that pytest-benchmark users type ("Can't have both ..."). This hook runs
    before pytest-benchmark reads its options (its pytest_configure is trylast)."""
    option = config.option
    if not hasattr(option, "benchmark_disable"):  # pytest-benchmark not loaded (-p no:benchmark)
        return
    if not any(getattr(option, name, None) for name in TIMING_OPTIONS):
        option.benchmark_disable = True


@pytest.fixture(params=IMPL_NAMES)
def impl_name(request) -> str:
    return request.param


@pytest.fixture
def impl(impl_name):
    return registry.get(impl_name)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    counts = _support.FUZZ_COUNTS
    if not counts:
        return
    total = sum(counts.values())
    parts = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    terminalreporter.write_sep("-", "fuzz summary")
    terminalreporter.write_line(f"fuzz: {total} inputs tried ({parts})")
