"""The contract every Affine implementation follows, and the one input check they share.

An implementation computes, on 2-D arrays of one float dtype (float32 or float64):

    forward(x, W, b)     -> y              y  = x @ W + b        x (N, K), W (K, M), b (M,)
    backward(x, W, dout) -> (dx, dW, db)   dx = dout @ W.T,  dW = x.T @ dout,  db = dout.sum(0)

Results are new arrays of the input dtype; inputs are never modified.

Kernel authors subclass :class:`KernelImpl` and write ``_forward`` / ``_backward``: those
receive arrays that are already validated, C-contiguous and of one dtype, so a Numba kernel
(which does no bounds checks) never sees a shape it could overrun.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

#: The dtypes a kernel accepts. Anything else is refused before a kernel runs.
SUPPORTED_DTYPES: tuple[np.dtype, ...] = (np.dtype(np.float32), np.dtype(np.float64))

#: Largest element count of one array we let through (well above any real machine's memory,
#: small enough that index arithmetic in an int64 kernel cannot overflow).
MAX_ELEMENTS = 2**40


@runtime_checkable
class AffineImpl(Protocol):
    """What the registry, the verifier and the timer rely on."""

    name: str

    def forward(self, x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray: ...

    def backward(
        self, x: np.ndarray, W: np.ndarray, dout: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


def _describe(arr: Any) -> str:
    if isinstance(arr, np.ndarray):
        return f"shape {arr.shape}, dtype {arr.dtype}"
    return f"type {type(arr).__name__}"


def _require_array(name: str, arr: Any) -> np.ndarray:
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {_describe(arr)}")
    if arr.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"{name} has dtype {arr.dtype}; supported dtypes are float32 and float64 "
            f"(use affbench.Affine for automatic promotion)"
        )
    if arr.size > MAX_ELEMENTS:
        raise ValueError(f"{name} has {arr.size} elements ({_describe(arr)}), above the limit of {MAX_ELEMENTS}")
    return arr


def _require_ndim(name: str, arr: np.ndarray, ndim: int, layout: str) -> None:
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D {layout}, got {arr.ndim}-D array of shape {arr.shape}")


def _same_dtype(**arrays: np.ndarray) -> np.dtype:
    dtypes = {name: a.dtype for name, a in arrays.items()}
    if len(set(dtypes.values())) != 1:
        listing = ", ".join(f"{n}={d}" for n, d in dtypes.items())
        raise TypeError(
            f"all arrays must share one dtype at the kernel level, got {listing} "
            f"(affbench.Affine promotes mixed dtypes for you)"
        )
    return next(iter(dtypes.values()))


def _contiguous(arr: np.ndarray) -> np.ndarray:
    # A copy only when needed; kernels index rows as contiguous memory.
    return arr if arr.flags.c_contiguous and arr.flags.aligned else np.ascontiguousarray(arr)


def check_forward(x: Any, W: Any, b: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate forward inputs; return C-contiguous x (N, K), W (K, M) and b as (M,).

    Raises TypeError for non-arrays and unsupported or mixed dtypes, ValueError for shapes.
    """
    x = _require_array("x", x)
    W = _require_array("W", W)
    b = _require_array("b", b)
    _require_ndim("x", x, 2, "(N, K)")
    _require_ndim("W", W, 2, "(K, M)")
    if b.ndim == 2 and b.shape[0] == 1:
        b = b.reshape(b.shape[1])  # (1, M) as in the book's comments
    if b.ndim != 1:
        raise ValueError(f"b must have shape (M,) or (1, M), got shape {b.shape}")
    if x.shape[1] != W.shape[0]:
        raise ValueError(
            f"x and W do not chain: x has shape {x.shape} (K={x.shape[1]}), "
            f"W has shape {W.shape} (K={W.shape[0]})"
        )
    if b.shape[0] != W.shape[1]:
        raise ValueError(f"b has shape {b.shape} but W has shape {W.shape}: b needs M={W.shape[1]} entries")
    _same_dtype(x=x, W=W, b=b)
    return _contiguous(x), _contiguous(W), _contiguous(b)


def check_backward(x: Any, W: Any, dout: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate backward inputs; return C-contiguous x (N, K), W (K, M), dout (N, M)."""
    x = _require_array("x", x)
    W = _require_array("W", W)
    dout = _require_array("dout", dout)
    _require_ndim("x", x, 2, "(N, K)")
    _require_ndim("W", W, 2, "(K, M)")
    _require_ndim("dout", dout, 2, "(N, M)")
    if x.shape[1] != W.shape[0]:
        raise ValueError(
            f"x and W do not chain: x has shape {x.shape} (K={x.shape[1]}), "
            f"W has shape {W.shape} (K={W.shape[0]})"
        )
    if dout.shape != (x.shape[0], W.shape[1]):
        raise ValueError(
            f"dout has shape {dout.shape}, expected (N, M) = {(x.shape[0], W.shape[1])} "
            f"from x {x.shape} and W {W.shape}"
        )
    _same_dtype(x=x, W=W, dout=dout)
    return _contiguous(x), _contiguous(W), _contiguous(dout)


class KernelImpl:
    """Base class: validates, then hands clean arrays to ``_forward`` / ``_backward``.

    Subclasses set ``name`` and may set ``description`` and ``compile_options`` (shown by
    ``python -m affbench list``), and ``jit = True`` when the first call per dtype compiles.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    compile_options: ClassVar[dict[str, Any]] = {}
    jit: ClassVar[bool] = False
    #: Pure-Python kernels set this so sweeps can skip sizes they would take hours on.
    slow: ClassVar[bool] = False

    def forward(self, x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        x, W, b = check_forward(x, W, b)
        return self._forward(x, W, b)

    def backward(
        self, x: np.ndarray, W: np.ndarray, dout: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x, W, dout = check_backward(x, W, dout)
        return self._backward(x, W, dout)

    # -- to be written by each implementation -------------------------------------------
    def _forward(self, x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _backward(
        self, x: np.ndarray, W: np.ndarray, dout: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
