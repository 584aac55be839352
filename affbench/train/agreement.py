"""When do two implementations' training runs agree? The tolerance, and the check.

Implementations differ only in the rounding of the Affine products (verified: each product is
within ``affbench.verify.tolerance(dtype, n)`` = τ(n) = 8·√(n+1)·(eps(dtype) + eps(float64)) of
the exact one, normwise, for a sum of n terms). Trained from the same weights on the same
batches, their loss curves L_i (i = 0 .. T-1) part by:

* **one step's rounding**, when training does not amplify differences: a step's loss comes from
  products each within τ(n) of exact, so two implementations' losses may differ by about
  2·τ(n), n the longest sum in the network (the largest of in_features, out_features and the
  batch). Measured in float64: ~2e-16 (the loss's last bit) against 2·τ(n) ~ 1e-13.
* **amplified rounding**, when training is chaotic. ReLU's kink makes a step discontinuous: a
  rounding difference that moves a pre-activation across zero passes or stops a whole gradient
  term, and the runs part. In float32 this happens in the deep MLP (width 1024, 2·10^5
  activations a step), whose curves part by up to ~1e-2 in 100 steps; no formula gives that
  size, so it is measured in the same run: numpy is trained again with up to one rounding error
  added to every Affine output at every call (uniform in ±eps·max|output|: added, not
  multiplied, since only an absolute error can move a sum near zero across it), a valid
  implementation of the kind every other one is. E is the largest relative difference between
  that run and numpy's.

The rule: ``max_i |L_i − L_i(numpy)| / L_i(numpy) ≤ max(2·τ(n), 10·E)``. docs/train.md gives
what it catches (measured: a kernel whose dW is off by a relative 1e-10 fails it in float64).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from affbench.protocol import KernelImpl
from affbench.verify import tolerance as product_tolerance

#: How far beyond numpy's own nudged run an implementation may go.
MARGIN = 10.0


def longest_sum(layer_sizes: Sequence[int], batch: int) -> int:
    """The most terms any product of the network's Affine layers adds: in_features (forward),
    out_features (dx) or the batch (dW, db)."""
    return max(max(layer_sizes), batch)


def rounding_bound(dtype: str | np.dtype, n: int) -> float:
    """2·τ(n): how far two implementations' losses may be apart from one step's rounding."""
    return 2.0 * product_tolerance(dtype, n)


def relative_difference(curve: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """|curve − reference| / |reference|, step by step (NaN where either is not finite)."""
    curve, reference = np.asarray(curve, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if curve.shape != reference.shape:
        raise ValueError(f"curves of different lengths: {curve.shape} and {reference.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(curve - reference) / np.abs(reference)


class NudgedNumpy(KernelImpl):
    """numpy's Affine with up to one rounding error added to every output of every call: a
    uniform amount in ±eps·max|output| (eps of the dtype, from a seeded generator), a stand-in
    for any valid implementation. Not registered: it only measures how training carries
    rounding."""

    name = "numpy (nudged)"
    description = "numpy with one rounding error of noise on every output"
    backend = "blas"  # affbench.measure.threads: its products run on BLAS, like numpy's

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def _nudge(self, a: np.ndarray) -> np.ndarray:
        # Added, at the scale of the product (max |a|), not multiplied: a rounding error of a
        # sum near zero is as large as anywhere else and can change its sign, which matters
        # after ReLU; a relative nudge never could.
        if a.size == 0:
            return a
        scale = float(np.finfo(a.dtype).eps) * float(np.max(np.abs(a)))
        noise = self.rng.random(a.shape, dtype=np.float32)  # float32 uniforms: 10x cheaper than normals
        noise -= 0.5
        noise *= 2.0 * scale
        return a + noise.astype(a.dtype, copy=False)

    def _forward(self, x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self._nudge(np.dot(x, W) + b)

    def _backward(self, x: np.ndarray, W: np.ndarray, dout: np.ndarray):
        return self._nudge(np.dot(dout, W.T)), self._nudge(np.dot(x.T, dout)), self._nudge(np.sum(dout, axis=0))


@dataclass(frozen=True)
class Tolerance:
    rounding: float  # 2·τ(n)
    envelope: float  # E: numpy against its nudged run, the largest relative difference
    margin: float = MARGIN

    @property
    def value(self) -> float:
        return max(self.rounding, self.margin * self.envelope)

    @property
    def source(self) -> str:
        """Which term sets the tolerance: 'rounding' (2·τ(n)) or 'nudged numpy' (10·E)."""
        return "rounding" if self.rounding >= self.margin * self.envelope else "nudged numpy"


def tolerance(dtype: str | np.dtype, n: int, reference: np.ndarray, nudged: np.ndarray) -> Tolerance:
    diff = relative_difference(nudged, reference)
    envelope = float(np.max(diff)) if diff.size and np.all(np.isfinite(diff)) else math.inf
    return Tolerance(rounding_bound(dtype, n), envelope)


@dataclass(frozen=True)
class Agreement:
    max_difference: float  # the largest relative loss difference over the curve
    final_difference: float  # after the last step
    tolerance: Tolerance

    @property
    def passed(self) -> bool:
        return bool(self.max_difference <= self.tolerance.value)


def check(curve: np.ndarray, reference: np.ndarray, tol: Tolerance) -> Agreement:
    """Does ``curve`` follow numpy's ``reference`` within ``tol``? A NaN anywhere fails."""
    diff = relative_difference(curve, reference)
    if diff.size == 0:
        return Agreement(0.0, 0.0, tol)
    worst = float(np.max(diff)) if np.all(np.isfinite(diff)) else math.inf
    return Agreement(worst, float(diff[-1]) if math.isfinite(diff[-1]) else math.inf, tol)
