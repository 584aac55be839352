"""The built-in Affine implementations, one module per family.

Adding one: write a module here with a ``KernelImpl`` subclass and add its ``register`` line
below. The order here is the order reports list them in.
"""

from affbench.registry import register

from .naive import NaiveAffine
from .numba_loops import NumbaPrangeAffine, NumbaSerialAffine
from .numba_tiled import NumbaTiledAffine
from .numpy_blas import NumpyAffine

register(NaiveAffine)
register(NumpyAffine)
register(NumbaSerialAffine)
register(NumbaPrangeAffine)
register(NumbaTiledAffine)
