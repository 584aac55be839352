"""Fixtures and hooks for the pytest-benchmark comparisons (see affbench/pytest_plugin.py).

Imported rather than listed in ``pytest_plugins``: pytest allows that variable only in the
root conftest. Hooks and fixtures defined by import here apply to tests/benchmarks only.
"""

from affbench.pytest_plugin import (  # noqa: F401  (pytest finds them by name)
    affbench_threads,
    affbench_warm,
    pytest_collection_modifyitems,
    pytest_benchmark_update_commit_info,
    pytest_benchmark_update_machine_info,
)
