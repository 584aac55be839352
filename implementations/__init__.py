"""The built-in Affine implementations, one module per family.

Adding one: write a module here with a ``KernelImpl`` subclass and add its ``register`` line
below. The order here is the order reports list them in.

The peers (PyTorch, JAX) need the optional extra ``peers``: they are registered when their
packages can be found and otherwise declared with the command that installs them (see
affbench.registry.register_optional); their modules import the frameworks only when called.
"""

from affbench.registry import register, register_optional
from implementations.jax_peer import JaxAffine
from implementations.naive import NaiveAffine
from implementations.numba_loops import NumbaPrangeAffine, NumbaSerialAffine
from implementations.numba_tiled import NumbaTiledAffine
from implementations.numpy_blas import NumpyAffine
from implementations.torch_peer import INSTALL as PEERS_INSTALL
from implementations.torch_peer import TorchAffine, TorchOpsAffine

register(NaiveAffine)
register(NumpyAffine)
register(NumbaSerialAffine)
register(NumbaPrangeAffine)
register(NumbaTiledAffine)


def declare_peers() -> None:
    """Register the peers whose packages are installed, declare the others (run again by the
    tests that hide a package)."""
    register_optional(TorchAffine(), requires=("torch",), install=PEERS_INSTALL)
    register_optional(TorchOpsAffine(), requires=("torch",), install=PEERS_INSTALL)
    register_optional(JaxAffine(), requires=("jax", "jaxlib"), install=PEERS_INSTALL)


declare_peers()
