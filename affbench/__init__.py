"""affbench: a benchmark suite for the Affine (fully connected) layer.

Public face: :class:`Affine` (the book's layer on any implementation) and :mod:`registry`.
"""

from . import pool_env  # noqa: F401  (first: sets what OpenBLAS and libgomp read when they load)
from . import malloc_env  # noqa: F401  (pins glibc's malloc thresholds: see malloc_env.py)
from . import registry
from .layer import Affine
from .protocol import AffineImpl, KernelImpl

__all__ = ["Affine", "AffineImpl", "KernelImpl", "registry"]
__version__ = "0.1.0"
