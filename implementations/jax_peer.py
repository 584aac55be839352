"""JAX as a peer: the layer as ``jax.jit``-compiled XLA code on the CPU.

* forward: ``jax.jit(lambda x, W, b: x @ W + b)``;
* backward: ``jax.jit`` of ``jax.vjp`` of that same function, as ``jax.grad`` would
  differentiate a training loss; XLA drops the unused forward product.

Conversion, part of every timed call: NumPy inputs go into the jitted functions as they are
(JAX aliases an aligned NumPy buffer on the CPU, no copy; XLA never writes into inputs it was
not given to donate). Results are blocked on (``block_until_ready``) and then **copied** into
NumPy arrays: ``np.asarray`` of a JAX array is a read-only view of JAX's buffer, and the
protocol returns arrays the caller owns and may write. The copy costs about a memcpy of the
outputs (~0.26 ms for 8 MB here; docs/peers.md).

JAX compiles once per shape and dtype. ``jit = True`` makes affbench time the first calls
apart (``compile_s``, on affbench.engine.warmup's probe sizes) and precede every case with untimed
calls, so no sample contains a compile. float64 is enabled when JAX starts
(``jax_enable_x64``); without it JAX silently computes float64 inputs in float32.

JAX is imported at the first call, through ``affbench.measure.threads.start_jax``, which fixes XLA's
CPU thread pool size for the process (see affbench/measure/threads.py and docs/peers.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from affbench.measure import threads
from affbench.measure.environment import package_version
from affbench.protocol import KernelImpl
from implementations.torch_peer import INSTALL


class JaxAffine(KernelImpl):
    requires = ("jax", "jaxlib")  # packages outside affbench's dependencies (the "peers" extra)
    install = INSTALL
    name = "jax"
    description = ("JAX: jax.jit of x @ W + b and of its jax.vjp, XLA on the CPU (NumPy in without a copy, "
                   "results copied out of JAX's read-only buffers)")
    backend = "jax"
    jit = True
    memory_visible = False  # XLA allocates outside Python's allocator: tracemalloc cannot see it
    compile_options = {"jit": "jax.jit, one compile per shape and dtype", "backward": "jax.vjp",
                       "jax_enable_x64": True, "threads": f"XLA pool sized once at start ({threads.JAX_THREADS_ENV})"}

    def __init__(self) -> None:
        self._fns: tuple[Any, Any] | None = None

    @property
    def versions(self) -> dict[str, str | None]:
        return {"jax": package_version("jax"), "jaxlib": package_version("jaxlib")}

    def prepare(self) -> None:
        self._compiled()  # starts JAX (import, CPU client): nothing is compiled until a call

    def _compiled(self) -> tuple[Any, Any]:
        if self._fns is None:
            jax = threads.start_jax()
            import jax.numpy as jnp

            def layer(x, W, b):
                return x @ W + b

            def backward(x, W, dout):
                # b only shifts y: its value never reaches a gradient, so zeros stand in for it
                _, pullback = jax.vjp(layer, x, W, jnp.zeros(W.shape[1], W.dtype))
                return pullback(dout)

            self._fns = (jax.jit(layer), jax.jit(backward))
        return self._fns

    def _forward(self, x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        forward, _ = self._compiled()
        y = forward(x, W, b).block_until_ready()
        return np.asarray(y).copy()

    def _backward(self, x: np.ndarray, W: np.ndarray, dout: np.ndarray):
        _, backward = self._compiled()
        grads = backward(x, W, dout)
        for g in grads:
            g.block_until_ready()
        return tuple(np.asarray(g).copy() for g in grads)
