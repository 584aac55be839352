"""The book's training loop, one step at a time: a random batch, forward, backward, update.

:class:`Trainer` runs steps of one network on one data set. A step can be given a
:class:`Laps`, which charges the time between consecutive points of the step to its parts
(batch gathering, Affine forward and backward, ReLU, softmax-with-loss, the update) and the
rest of the step to "other": Python's own work between them. Timing with laps costs ~15
clock readings a step (~1 µs against steps of 0.2 ms and more), and is done apart from the
plain steps whose time the table reports.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np

from affbench.train.data import Dataset
from affbench.train.layers import SGD, Momentum
from affbench.train.networks import Network

#: The parts of a step, in the order the stacked bar draws them.
PARTS = ("affine forward", "affine backward", "relu", "softmax-with-loss", "update", "batch", "other")
AFFINE_PARTS = ("affine forward", "affine backward")


class Laps:
    """Seconds spent in each part of a step, one dict per step (``steps``)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.steps: list[dict[str, float]] = []
        self._current: dict[str, float] = {}
        self._start = self._last = 0.0

    def start(self) -> None:
        self._current = dict.fromkeys(PARTS, 0.0)
        self._start = self._last = self.clock()

    def lap(self, part: str) -> None:
        now = self.clock()
        self._current[part] += now - self._last
        self._last = now

    def finish(self) -> None:
        total = self.clock() - self._start
        self._current["other"] = max(0.0, total - sum(self._current.values()))
        self._current["total"] = total
        self.steps.append(self._current)


def affine_share(step: dict[str, float]) -> float:
    """The fraction of one step's time spent in the Affine layers' forward and backward."""
    total = step["total"]
    return sum(step[p] for p in AFFINE_PARTS) / total if total > 0 else math.nan


class Trainer:
    """Steps of ``network`` on ``data``: batches drawn with replacement from a seeded generator
    (the book's np.random.choice), so two trainers with the same seed see the same batches."""

    def __init__(self, network: Network, optimizer: SGD | Momentum, data: Dataset, batch: int = 100,
                 seed: int = 0) -> None:
        if batch < 1:
            raise ValueError(f"batch must be positive, got {batch}")
        self.network = network
        self.optimizer = optimizer
        self.data = data
        self.batch = batch
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self._initial = {key: p.copy() for key, p in network.params.items()}

    def step(self, laps: Laps | None = None) -> float:
        """One training step; returns the loss of its forward pass (before the update).

        The book's script computes the loss a second time after the update, for its plot only;
        that extra forward is not part of training and is left out here."""
        if laps is not None:
            laps.start()
        mask = self.rng.integers(0, len(self.data), self.batch)
        x, t = self.data.x[mask], self.data.t[mask]
        if laps is not None:
            laps.lap("batch")
        loss, grads = self.network.gradient(x, t, laps)
        self.optimizer.update(self.network.params, grads)
        if laps is not None:
            laps.lap("update")
            laps.finish()
        return loss

    def reset(self) -> None:
        """Back to the initial weights, a fresh optimizer and the first batch, in place (the
        Affine layers keep their references)."""
        for key, p in self.network.params.items():
            np.copyto(p, self._initial[key])
        self.optimizer.reset()
        self.rng = np.random.default_rng(self.seed)

    def curve(self, steps: int, clock: Callable[[], float] = time.perf_counter) -> tuple[np.ndarray, np.ndarray]:
        """``steps`` steps: the loss of each, and the wall time from the start to its end."""
        losses = np.empty(steps)
        ends = np.empty(steps)
        t0 = clock()
        for i in range(steps):
            losses[i] = self.step()
            ends[i] = clock() - t0
        return losses, ends

    def epochs(self, count: int) -> int:
        """Train ``count`` epochs of ceil(samples / batch) steps each; returns the steps taken."""
        steps = count * math.ceil(len(self.data) / self.batch)
        for _ in range(steps):
            self.step()
        return steps
