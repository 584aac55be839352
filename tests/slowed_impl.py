"""A test-only implementation: numpy made slower by a known fraction.

Import it through the registry's plug-in variable (``AFFBENCH_PLUGINS=slowed_impl:SlowedAffine`` with tests/
on PYTHONPATH) and set ``AFFBENCH_TEST_SLOWDOWN`` to the fraction (0.15: each call takes 15%
longer than the numpy call it wraps). The extra time is a busy-wait proportional to the call's
own measured time, so it scales with the size and with the machine's drift alike: the slowdown
is the same everywhere, which is what compare must detect. Read at each call, so one process
can switch it. Never loaded by default.
"""

from __future__ import annotations

import os
import time

from affbench import registry
from affbench.protocol import KernelImpl

NAME = "numpy-slowed"
ENV = "AFFBENCH_TEST_SLOWDOWN"


def slowdown() -> float:
    return float(os.environ.get(ENV, "0") or 0)


def _spin_after(t0: float, fraction: float) -> None:
    if fraction <= 0:
        return
    until = time.perf_counter() + (time.perf_counter() - t0) * fraction
    while time.perf_counter() < until:
        pass


class SlowedAffine(KernelImpl):
    name = NAME
    backend = "blas"  # numpy's pool: its threads are set per case like numpy's
    description = f"numpy plus a busy-wait of ${ENV} x its own time (test only)"

    def __init__(self) -> None:
        self._numpy = registry.get("numpy")

    def _forward(self, x, W, b):
        t0 = time.perf_counter()
        y = self._numpy._forward(x, W, b)
        _spin_after(t0, slowdown())
        return y

    def _backward(self, x, W, dout):
        t0 = time.perf_counter()
        grads = self._numpy._backward(x, W, dout)
        _spin_after(t0, slowdown())
        return grads

