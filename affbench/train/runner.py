"""One `train` run: for each network, the loss curves and their agreement, the timing, and
the digits accuracy, for every implementation. No files, no printing (``log`` gets progress
lines): affbench.train.output writes what this returns.

Order per network: (1) numpy's loss curve at the timing shape (MNIST-shaped synthetic data) and
numpy's curve with every Affine output nudged by a rounding error, which give the agreement
tolerance (affbench.train.agreement); (2) every other
implementation's curve, checked against numpy's; (3) the timing, all implementations side by
side (affbench.train.measure); (4) on digits, training for ``epochs`` epochs with the same
check, then the train accuracy. Every implementation was compiled before (``compile``), and
each curve starts after two untimed steps on its own shapes, so no compile is ever timed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from affbench import registry
from affbench.engine import warmup
from affbench.measure.threads import backend_of, max_threads, threads_for
from affbench.measure.timing import Plan
from affbench.protocol import AffineImpl
from affbench.reference import flops
from affbench.train import agreement
from affbench.train.agreement import Agreement, Tolerance
from affbench.train.data import DIGITS_SAMPLES, Dataset, digits, synthetic
from affbench.train.loop import Trainer
from affbench.train.measure import StepTiming, measure
from affbench.train.networks import NETWORKS, NetworkSpec, build

BASELINE = registry.BASELINE
#: Implementations timed unless --impl says otherwise: the baseline and the suite's fast kernel,
#: so the defaults finish within 2 minutes on 2 cores. numba-serial and numba-prange take
#: 0.2 s a step of the deep MLP (a 100-step curve: 20 s each): `--impl all` adds them.
DEFAULT_IMPLS = ("numpy", "numba-tiled")
#: pure Python's rate on the Affine products (README: 0.016-0.033 GFLOP/s), for predictions
NAIVE_GFLOPS = 0.02

#: The timing plan: 5-6 rounds, stopping once median and ratio are within 2%, about 0.5 s of
#: steps per case and at least 10 samples (two a round) even for a 0.1 s step.
DEFAULT_PLAN = Plan(min_sample_s=1e-3, warmup_calls=1, min_samples=10, max_samples=40, budget_s=0.5,
                    min_rounds=5, max_rounds=6)


@dataclass(frozen=True)
class Settings:
    networks: tuple[str, ...] = tuple(NETWORKS)
    impls: tuple[str, ...] = DEFAULT_IMPLS
    dtype: str = "float64"
    threads: int = 0  # 0: all (Numba's pool size)
    batch: int = 100
    iterations: int = 100  # steps of each loss curve at the timing shape
    epochs: int | None = None  # epochs on digits before the accuracy; None: each network's own
    digits: bool = True
    seed: int = 0
    samples: int = 1000  # size of the synthetic data set the batches are drawn from
    plan: Plan = DEFAULT_PLAN

    @property
    def thread_count(self) -> int:
        return self.threads or max_threads()

    def steps_per_epoch(self, samples: int) -> int:
        return math.ceil(samples / self.batch)

    def epochs_for(self, spec: NetworkSpec) -> int:
        return self.epochs if self.epochs is not None else spec.digits_epochs


@dataclass
class CurveRun:
    """One implementation trained on one data set: a loss and a wall time per step."""

    losses: np.ndarray
    wall_s: np.ndarray
    agreement: Agreement | None = None  # None for numpy, the reference
    accuracy: float | None = None  # train accuracy after the run (digits only)


@dataclass
class ImplResult:
    impl: str
    compile_s: float
    curve: CurveRun
    timing: StepTiming | None = None
    digits: CurveRun | None = None


@dataclass
class NetworkResult:
    spec: NetworkSpec
    layer_sizes: list[int]  # at the timing shape
    data: str
    tolerance: Tolerance
    impls: dict[str, ImplResult] = field(default_factory=dict)
    digits_data: str | None = None
    digits_layer_sizes: list[int] | None = None
    digits_tolerance: Tolerance | None = None
    digits_steps: int = 0
    digits_epochs: int = 0
    nudged: CurveRun | None = None  # numpy with nudged outputs (affbench.train.agreement)
    digits_nudged: CurveRun | None = None


def step_flops(layer_sizes: list[int], batch: int) -> int:
    """FLOPs of the Affine layers in one step (forward and backward)."""
    return sum(flops("step", batch, k, m) for k, m in zip(layer_sizes, layer_sizes[1:]))


def predicted_naive_s(settings: Settings) -> float:
    """Seconds the naive implementation would spend at its usual rate on this run's steps."""
    total = 0.0
    for name in settings.networks:
        spec = NETWORKS[name]
        sizes = spec.layer_sizes(math.prod(spec.mnist_shape))
        steps = settings.iterations + 2 * settings.plan.min_samples + 2 * settings.plan.min_rounds + 2
        if settings.digits:
            steps += settings.epochs_for(spec) * settings.steps_per_epoch(DIGITS_SAMPLES)
        total += steps * step_flops(sizes, settings.batch) / (NAIVE_GFLOPS * 1e9)
    return total


def compile_all(impls: tuple[str, ...], dtype: str, threads: int, log: Callable[[str], None]) -> dict[str, float]:
    """First calls of every JIT implementation on every code path (affbench.engine.warmup), timed
    apart; 0 for the others (nothing to compile, and naive would spend seconds on the probes)."""
    out = {}
    for name in impls:
        impl = registry.get(name)
        if getattr(impl, "jit", False):
            log(f"compiling {name} ({dtype}) ...")
            out[name] = warmup.first_calls(impl, dtype, threads)
        else:
            out[name] = 0.0
    return out


def _trainer(spec: NetworkSpec, data: Dataset, impl: str | AffineImpl, settings: Settings) -> Trainer:
    net = build(spec, data.sample_shape, impl, settings.dtype, settings.seed)
    return Trainer(net, spec.make_optimizer(), data, settings.batch, settings.seed + 2)


def _curve(trainer: Trainer, steps: int, threads: int) -> CurveRun:
    with threads_for(backend_of(trainer.network.affines[0].impl), threads):
        trainer.step()  # warm: the first calls on this network's own shapes
        trainer.step()
        trainer.reset()
        losses, wall = trainer.curve(steps)
    return CurveRun(losses, wall)


def _curves(spec: NetworkSpec, data: Dataset, settings: Settings, steps: int, log: Callable[[str], None],
            what: str) -> tuple[dict[str, CurveRun], CurveRun, Tolerance, dict[str, Trainer]]:
    """Every implementation's curve on ``data``, checked against numpy's."""
    threads = settings.thread_count
    trainers = {impl: _trainer(spec, data, impl, settings) for impl in settings.impls}
    reference = _curve(trainers[BASELINE], steps, threads)
    nudged = _curve(_trainer(spec, data, agreement.NudgedNumpy(settings.seed + 3), settings), steps, threads)
    n = agreement.longest_sum(spec.layer_sizes(math.prod(data.sample_shape)), settings.batch)
    tol = agreement.tolerance(settings.dtype, n, reference.losses, nudged.losses)
    runs = {BASELINE: reference}
    for impl in settings.impls:
        if impl == BASELINE:
            continue
        log(f"{spec.name}: {what} loss curve, {impl} ...")
        run = _curve(trainers[impl], steps, threads)
        run.agreement = agreement.check(run.losses, reference.losses, tol)
        runs[impl] = run
    return runs, nudged, tol, trainers


def run_network(spec: NetworkSpec, settings: Settings, compile_s: dict[str, float],
                log: Callable[[str], None] = lambda _: None) -> NetworkResult:
    threads = settings.thread_count
    data = synthetic(spec.mnist_shape, settings.samples, spec.classes, settings.dtype, settings.seed + 1)
    sizes = spec.layer_sizes(math.prod(spec.mnist_shape))
    log(f"{spec.name} ({'-'.join(map(str, sizes))}, batch {settings.batch}): loss curves, "
        f"{settings.iterations} steps each ...")
    runs, nudged, tol, _ = _curves(spec, data, settings, settings.iterations, log, "synthetic")
    result = NetworkResult(spec, sizes, data.name, tol, nudged=nudged)
    for impl in settings.impls:
        result.impls[impl] = ImplResult(impl, compile_s.get(impl, 0.0), runs[impl])

    # Timed only when its training agrees with numpy's: a wrong kernel's speed means nothing.
    timed = [impl for impl in settings.impls if impl == BASELINE or runs[impl].agreement.passed]
    log(f"{spec.name}: timing the step, {', '.join(timed)} side by side ...")
    pairs = {impl: (_trainer(spec, data, impl, settings), _trainer(spec, data, impl, settings)) for impl in timed}
    for impl, timing in measure(pairs, threads, settings.plan, BASELINE).items():
        result.impls[impl].timing = timing

    if settings.digits:
        ds = digits(settings.dtype, spec.digits_input, settings.seed + 4)
        epochs = settings.epochs_for(spec)
        steps = epochs * settings.steps_per_epoch(len(ds))
        log(f"{spec.name}: digits, {epochs} epochs ({steps} steps) ...")
        druns, dnudged, dtol, trainers = _curves(spec, ds, settings, steps, log, "digits")
        for impl, run in druns.items():
            with threads_for(backend_of(trainers[impl].network.affines[0].impl), threads):
                run.accuracy = trainers[impl].network.accuracy(ds.x, ds.t)
            result.impls[impl].digits = run
        result.digits_data = ds.name
        result.digits_layer_sizes = spec.layer_sizes(math.prod(ds.sample_shape))
        result.digits_tolerance = dtol
        result.digits_nudged = dnudged
        result.digits_steps = steps
        result.digits_epochs = epochs
    return result


def run(settings: Settings, log: Callable[[str], None] = lambda _: None) -> tuple[dict[str, float], list[NetworkResult]]:
    """Compile, then every network in turn; returns (compile seconds per implementation, results)."""
    if BASELINE not in settings.impls:
        raise ValueError(f"the implementations must include the baseline {BASELINE!r}")
    compile_s = compile_all(settings.impls, settings.dtype, settings.thread_count, log)
    return compile_s, [run_network(NETWORKS[name], settings, compile_s, log) for name in settings.networks]
