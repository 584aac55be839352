"""A pytest plugin (load with ``-p broken_impl_plugin``, tests/ on PYTHONPATH) that registers
``broken``: an Affine implementation that is fast and wrong (forward forgets the bias,
backward returns db = 0). tests/test_pytest_benchmark.py uses it to show that the benchmark
of a wrong kernel fails instead of reporting a time. Never loaded by default.
"""

from __future__ import annotations

import numpy as np

from affbench import registry
from affbench.protocol import KernelImpl

NAME = "broken"


class BrokenAffine(KernelImpl):
    name = NAME
    description = "deliberately wrong (test only): no bias in forward, db = 0 in backward"

    def _forward(self, x, W, b):
        return np.dot(x, W)

    def _backward(self, x, W, dout):
        return np.dot(dout, W.T), np.dot(x.T, dout), np.zeros(W.shape[1], dtype=x.dtype)


def pytest_configure(config):
    registry.register(BrokenAffine, replace=True)


def pytest_unconfigure(config):
    registry.unregister(NAME)
