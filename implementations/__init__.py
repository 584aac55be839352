"""The built-in Affine implementations, one module per family.

Adding one: write a module here with a ``KernelImpl`` subclass and add its ``register`` line
below. The order here is the order reports list them in.
"""

from affbench.registry import register
from implementations.naive import NaiveAffine
from implementations.numba_loops import NumbaPrangeAffine, NumbaSerialAffine
from implementations.numba_tiled import NumbaTiledAffine
from implementations.numpy_blas import NumpyAffine

register(NaiveAffine)
register(NumpyAffine)
register(NumbaSerialAffine)
register(NumbaPrangeAffine)
register(NumbaTiledAffine)
