"""PyTorch as a peer: the layer as PyTorch trains it (``torch``), and its three products called
directly (``torch-ops``), so the difference between the two is autograd's own cost.

Both take NumPy arrays and return NumPy arrays, as every affbench implementation does:

* in: ``torch.from_numpy`` shares the (validated, C-contiguous) input's memory, no copy;
* out: ``Tensor.numpy()`` shares the result tensor's memory, no copy. Each result is a fresh
  tensor that nothing else holds or writes (autograd keeps no reference to a gradient it
  returns, and y is read by nobody), so the caller owns the array it gets;
* nothing writes into the inputs: no op here is in place, and autograd writes gradients into
  new tensors (``torch.autograd.grad`` returns them; nothing accumulates into ``.grad``).

Conversion therefore costs two wrapper objects per array, ~1 µs each (measured in
docs/peers.md), and is part of every timed call, as it is for a NumPy program that calls
PyTorch.

PyTorch is imported at the first call (``import torch`` takes 1-2 s, which ``list`` and every
worker process would otherwise pay); its thread count is set per case by
``affbench.measure.threads.torch_threads`` (``torch.set_num_threads``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from affbench.measure.environment import package_version
from affbench.protocol import KernelImpl

#: How to get the peers (pyproject.toml's optional extra). Pinned to the CPU build found on this
#: machine's disk: a plain `torch` would download a several-GB CUDA build.
INSTALL = 'python -m pip install -e ".[peers]"'

_torch: Any = None


def _import_torch() -> Any:
    global _torch
    if _torch is None:
        import torch

        _torch = torch
    return _torch


def _tensor(torch: Any, a: np.ndarray) -> Any:
    """``torch.from_numpy`` of a validated array, no copy. NumPy calls an array C-contiguous
    whatever the stride of an axis of length 0 or 1, which may then be negative (``x[::-1]`` of
    one row); torch.from_numpy refuses any negative stride, so such an array is copied (found
    by the fuzz tests)."""
    if any(s < 0 for s in a.strides):
        a = a.copy()
    return torch.from_numpy(a)


class _Graph:
    """The autograd graph of the last forward, kept for the backward that follows it."""

    __slots__ = ("x", "W", "shape", "shared", "xt", "Wt", "bt", "y")

    def __init__(self, x: np.ndarray, W: np.ndarray, xt: Any, Wt: Any, bt: Any, y: Any) -> None:
        self.x, self.W, self.shape = x, W, (x.shape, W.shape, x.dtype)
        # the graph sees x's and W's values at backward time only if it saved their memory
        self.shared = xt.data_ptr() == x.ctypes.data and Wt.data_ptr() == W.ctypes.data
        self.xt, self.Wt, self.bt, self.y = xt, Wt, bt, y


class TorchAffine(KernelImpl):
    """Training as PyTorch runs it: forward through ``F.linear`` on leaf tensors that require
    grad (so PyTorch records the graph, as in a training step), backward by autograd.

    The protocol's backward(x, W, dout) has no graph argument, so the graph of the last
    forward is kept on the object and used when backward gets the very same x and W arrays
    (a training step: affbench's ``step`` pass, the Affine layer). Backward on other arrays
    builds the graph first, a forward's recording inside the backward call, as PyTorch itself
    would need. ``retain_graph=True`` lets the ``backward`` pass be timed alone, call after
    call, on one graph; it only delays freeing what the graph saved (x and W, which are the
    caller's arrays anyway). Not thread-safe: one graph per object, as affbench calls it.
    """

    requires = ("torch",)  # packages outside affbench's dependencies (the "peers" extra)
    install = INSTALL
    name = "torch"
    description = ("PyTorch autograd: F.linear forward recording the graph, torch.autograd.grad backward "
                   "(zero-copy from_numpy in, .numpy() out)")
    backend = "torch"
    #: tracemalloc sees only Python-allocator memory; PyTorch allocates with its own allocator
    memory_visible = False
    #: the first autograd call starts autograd's engine and MKL (~0.3 s measured): timed apart
    slow_first_call = True

    def __init__(self) -> None:
        self._graph: _Graph | None = None

    @property
    def versions(self) -> dict[str, str | None]:
        return {"torch": package_version("torch")}

    #: shown by `list`: how it runs (nothing is compiled)
    compile_options = {"autograd": "F.linear + torch.autograd.grad(retain_graph=True)",
                       "threads": "torch.set_num_threads per case"}

    def prepare(self) -> None:
        _import_torch()

    def _record(self, x: np.ndarray, W: np.ndarray, b: np.ndarray) -> _Graph:
        torch = _import_torch()
        xt = _tensor(torch, x).requires_grad_()
        Wt = _tensor(torch, W).requires_grad_()
        bt = _tensor(torch, b).requires_grad_()
        # F.linear wants the weight as (out, in), nn.Linear's layout; W is (in, out): its
        # transposed view makes addmm(b, x, W) with no copy (the transposes cancel).
        y = torch.nn.functional.linear(xt, Wt.t(), bt)
        graph = _Graph(x, W, xt, Wt, bt, y)
        self._graph = graph
        return graph

    def _forward(self, x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self._record(x, W, b).y.detach().numpy()

    def _backward(self, x: np.ndarray, W: np.ndarray, dout: np.ndarray):
        torch = _import_torch()
        g = self._graph
        if g is None or g.x is not x or g.W is not W or g.shape != (x.shape, W.shape, x.dtype) or not g.shared:
            g = self._record(x, W, np.zeros(W.shape[1], dtype=x.dtype))
        dx, dW, db = torch.autograd.grad(g.y, (g.xt, g.Wt, g.bt), grad_outputs=_tensor(torch, dout),
                                         retain_graph=True)
        return dx.numpy(), dW.numpy(), db.numpy()


class TorchOpsAffine(KernelImpl):
    """The three products as PyTorch ops, no autograd: ``addmm`` forward; ``mm``, ``mm`` and
    ``sum`` backward. Against ``torch`` it shows what autograd's bookkeeping costs."""

    requires = ("torch",)  # packages outside affbench's dependencies (the "peers" extra)
    install = INSTALL
    name = "torch-ops"
    description = "PyTorch ops without autograd: addmm forward; mm, mm, sum backward (zero-copy in and out)"
    backend = "torch"
    memory_visible = False
    slow_first_call = True

    @property
    def versions(self) -> dict[str, str | None]:
        return {"torch": package_version("torch")}

    compile_options = {"autograd": "none", "threads": "torch.set_num_threads per case"}

    def prepare(self) -> None:
        _import_torch()

    def _forward(self, x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        torch = _import_torch()
        return torch.addmm(_tensor(torch, b), _tensor(torch, x), _tensor(torch, W)).numpy()

    def _backward(self, x: np.ndarray, W: np.ndarray, dout: np.ndarray):
        torch = _import_torch()
        xt, Wt, dt = _tensor(torch, x), _tensor(torch, W), _tensor(torch, dout)
        return torch.mm(dt, Wt.t()).numpy(), torch.mm(xt.t(), dt).numpy(), dt.sum(0).numpy()
