"""The book's Affine layer ("Deep Learning from Scratch", common/layers.py) on any implementation."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from affbench import registry
from affbench.protocol import SUPPORTED_DTYPES, AffineImpl, require_memory


def compute_dtype(*arrays: Any) -> np.dtype:
    """The dtype the layer computes in: NumPy's promotion, with integers and bools going to
    float64. Complex, object, string and float16 arrays are refused with a TypeError."""
    kinds = []
    for name, a in arrays:
        dt = np.asarray(a).dtype if not isinstance(a, np.ndarray) else a.dtype
        if dt.kind in "iub":
            dt = np.dtype(np.float64)
        elif dt.kind == "f" and not dt.isnative:
            dt = dt.newbyteorder("=")  # big-endian data (e.g. read from a file) is fine
        if dt.kind != "f":
            raise TypeError(f"{name} has dtype {dt}; the Affine layer computes in float32 or float64")
        elif dt not in SUPPORTED_DTYPES:
            raise TypeError(f"{name} has dtype {dt}; supported float dtypes are float32 and float64")
        kinds.append(dt)
    return np.result_type(*kinds)


def _refuse_masked(name: str, a: Any) -> None:
    if isinstance(a, np.ma.MaskedArray):  # np.asarray would drop the mask without a word
        raise TypeError(f"{name} is a masked array (shape {a.shape}); its mask would be ignored, pass a plain array")


def _as_array(name: str, a: Any) -> np.ndarray:
    """An array for ``name`` from an array or nested lists of numbers; a TypeError naming the
    argument for anything else (None, strings, objects), before any shape is looked at."""
    _refuse_masked(name, a)
    if isinstance(a, np.ndarray):
        return a  # its dtype is judged by compute_dtype
    arr = np.asarray(a)
    if arr.dtype.kind in "OSUVMm":
        raise TypeError(f"{name} must be a numeric array (or nested lists of numbers), got {type(a).__name__}")
    return arr


class Affine:
    """y = x·W + b with a backward pass, as in the book.

    ``W`` and ``b`` are kept by reference: changing them in place (as the book's numerical
    gradient check does) is seen on the next call. ``forward`` accepts N-d input, flattened
    to (N, -1); ``backward`` returns dx in the input's original shape and leaves the weight
    gradients on ``.dW`` and ``.db`` (db has b's shape).
    """

    def __init__(self, W: np.ndarray, b: np.ndarray, impl: str | AffineImpl = "numpy") -> None:
        if not isinstance(W, np.ndarray) or not isinstance(b, np.ndarray):
            raise TypeError(f"W and b must be numpy arrays, got {type(W).__name__} and {type(b).__name__} "
                            "(the layer keeps them by reference, so changes made in place are seen)")
        _refuse_masked("W", W)
        _refuse_masked("b", b)
        if W.ndim != 2:
            raise ValueError(f"W must be 2-D (in_features, out_features), got shape {W.shape}")
        if not (b.shape == (W.shape[1],) or b.shape == (1, W.shape[1])):
            raise ValueError(f"b must have shape ({W.shape[1]},) or (1, {W.shape[1]}) to match W {W.shape}, got {b.shape}")
        compute_dtype(("W", W), ("b", b))
        self.W = W
        self.b = b
        self.impl: AffineImpl = registry.get(impl) if isinstance(impl, str) else impl
        self.x: np.ndarray | None = None
        self.original_x_shape: tuple[int, ...] | None = None
        self.dW: np.ndarray | None = None
        self.db: np.ndarray | None = None
        self._dtype: np.dtype | None = None

    def forward(self, x: Any) -> np.ndarray:
        x = _as_array("x", x)
        dtype = compute_dtype(("x", x), ("W", self.W), ("b", self.b))
        if x.ndim < 1:
            raise ValueError(f"x must have a batch axis, got a {x.ndim}-D array of shape {x.shape}")
        flat = (x.shape[0], math.prod(x.shape[1:]))
        if flat[1] != self.W.shape[0]:
            raise ValueError(
                f"x of shape {x.shape} flattens to {flat}, but W has shape {self.W.shape} "
                f"(in_features={self.W.shape[0]})"
            )
        # Flattening a non-contiguous x, and promoting a dtype, copy: refuse before allocating
        # when that (plus the output) cannot fit (x may be a huge zero-stride broadcast view).
        copies = [("y", (flat[0], self.W.shape[1]), dtype)]
        if x.dtype != dtype or (x.ndim != 2 and not x.flags.c_contiguous):
            copies.append(("a flattened copy of x", flat, dtype))
        copies += [(f"a {dtype} copy of {n}", a.shape, dtype) for n, a in (("W", self.W), ("b", self.b)) if a.dtype != dtype]
        require_memory("Affine.forward", copies)
        self.original_x_shape = x.shape
        x2 = x.reshape(flat) if x.ndim != 2 else x
        self.x = x2.astype(dtype, copy=False)
        self._dtype = dtype
        return self.impl.forward(self.x, self._as(self.W), self._as(self.b))

    def backward(self, dout: Any) -> np.ndarray:
        if self.x is None:
            raise RuntimeError("backward() called before forward()")
        dout = _as_array("dout", dout)
        expected = (self.x.shape[0], self.W.shape[1])
        if dout.shape != expected:
            raise ValueError(f"dout has shape {dout.shape}, expected {expected} (batch, out_features)")
        compute_dtype(("dout", dout))
        if dout.dtype != self._dtype:
            require_memory("Affine.backward", [(f"a {self._dtype} copy of dout", dout.shape, self._dtype)])
        dx, dW, db = self.impl.backward(self.x, self._as(self.W), dout.astype(self._dtype, copy=False))
        self.dW = dW
        self.db = db.reshape(self.b.shape)
        return dx.reshape(self.original_x_shape)

    def _as(self, a: np.ndarray) -> np.ndarray:
        return a if a.dtype == self._dtype else a.astype(self._dtype)
