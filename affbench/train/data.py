"""Training data: scikit-learn's digits (real, no download) and MNIST-shaped synthetic data.

Digits needs the optional ``train`` extra (scikit-learn); :func:`digits` raises
:class:`MissingExtra`, whose message is the one line to show, when it is not installed. The
synthetic data needs nothing: timing does not depend on the values, only on the shapes, but
its labels come from a fixed random linear "teacher" so the loss curves of the timing shapes
fall, as a real data set's would, and the agreement check compares curves that move.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass

import numpy as np

INSTALL_HINT = 'pip install -e ".[train]"'
#: scikit-learn's digits: 1797 images of 8x8 pixels (for predictions made without loading it)
DIGITS_SAMPLES = 1797


class MissingExtra(ImportError):
    """scikit-learn (the ``train`` extra) is not installed; the message says how to install it."""


@dataclass(frozen=True)
class Dataset:
    name: str
    x: np.ndarray  # (samples, *sample_shape)
    t: np.ndarray  # (samples,) class indices
    classes: int = 10

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return int(self.x.shape[0])


def sklearn_datasets():
    """sklearn.datasets, or MissingExtra naming the install command."""
    try:
        return importlib.import_module("sklearn.datasets")
    except ImportError:
        raise MissingExtra(f"the digits data needs scikit-learn, which is not installed: {INSTALL_HINT}") from None


def digits(dtype: str | np.dtype = "float64", as_: str = "pixels", seed: int = 0) -> Dataset:
    """scikit-learn's 1797 8x8 digits, pixels scaled to [0, 1] (the book scales MNIST so).

    ``as_="pixels"``: (1797, 64); ``as_="pooled"``: the (1797, 30, 2, 2) maps SimpleConvNet's
    convolution (30 filters 5x5, stride 1, no padding), ReLU and 2x2 pooling make of them,
    with frozen random filters (only the two Affine layers after them are trained)."""
    bunch = sklearn_datasets().load_digits()
    images = np.asarray(bunch.images, dtype=np.float64) / 16.0
    labels = np.asarray(bunch.target, dtype=np.int64)
    if as_ == "pixels":
        x = images.reshape(len(images), -1)
    elif as_ == "pooled":
        x = pooled_features(images, seed=seed)
    else:
        raise ValueError(f"as_ must be 'pixels' or 'pooled', got {as_!r}")
    return Dataset(f"digits ({as_})", x.astype(dtype), labels)


def pooled_features(images: np.ndarray, filters: int = 30, size: int = 5, seed: int = 0) -> np.ndarray:
    """Convolution (``filters`` random He-initialised ``size`` x ``size`` filters, stride 1, no
    padding), ReLU, then 2x2 max pooling with stride 2, as SimpleConvNet's first three layers:
    (N, H, W) -> (N, filters, (H-size+1)//2, (W-size+1)//2)."""
    if images.ndim != 3:
        raise ValueError(f"images must be (N, H, W), got shape {images.shape}")
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((filters, size, size)) * math.sqrt(2.0 / (size * size))
    patches = np.lib.stride_tricks.sliding_window_view(images, (size, size), axis=(1, 2))  # N, oh, ow, s, s
    conv = np.maximum(np.einsum("nhwij,fij->nfhw", patches, w), 0.0)
    n, f, oh, ow = conv.shape
    ph, pw = oh // 2, ow // 2
    return conv[:, :, :2 * ph, :2 * pw].reshape(n, f, ph, 2, pw, 2).max(axis=(3, 5))


def synthetic(sample_shape: tuple[int, ...], samples: int, classes: int = 10, dtype: str | np.dtype = "float64",
              seed: int = 0) -> Dataset:
    """``samples`` inputs of ``sample_shape``, uniform in [0, 1) (MNIST's scaled pixels, or
    pooled ReLU maps: non-negative either way); labels are the argmax of a fixed random linear
    map of the centred input, a task a network can learn."""
    if samples < 1:
        raise ValueError(f"samples must be positive, got {samples}")
    rng = np.random.default_rng(seed)
    x = rng.random((samples, *sample_shape))
    flat = x.reshape(samples, -1) - 0.5
    teacher = rng.standard_normal((flat.shape[1], classes))
    labels = np.argmax(flat @ teacher, axis=1).astype(np.int64)
    return Dataset(f"synthetic {'x'.join(map(str, sample_shape))}", x.astype(dtype), labels, classes)
