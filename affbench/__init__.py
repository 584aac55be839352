"""affbench: a benchmark suite for the Affine (fully connected) layer.

Public face: :class:`Affine` (the book's layer on any implementation) and :mod:`registry`.

Layout, in the order data flows (imports only point down this list):
``protocol``, ``registry``, ``reference`` (the layer's contract, its implementations, the
float64 reference); ``measure/`` (timing, intervals, thread pools, the machine); ``layer``
and ``verify``; ``store/`` (results files); ``engine/`` (sweeps, the run, worker processes);
``report/`` and ``train/``; the front ends ``cli``, ``commands/`` and ``pytest_plugin``.
"""

# Order matters (isort: skip_file): pool_env and malloc_env set the environment before NumPy loads.
from affbench.measure import pool_env  # noqa: F401
from affbench.measure import malloc_env  # noqa: F401  (pins glibc's malloc thresholds: see malloc_env.py)
from affbench import registry
from affbench.layer import Affine
from affbench.protocol import AffineImpl, KernelImpl
from affbench.version import __version__

__all__ = ["Affine", "AffineImpl", "KernelImpl", "registry", "__version__"]
