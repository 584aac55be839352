"""What a run measures: presets, the Case record, expanding axes, TOML configs."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from affbench import reference
from affbench.errors import UsageError
from affbench.measure.timing import Plan
from affbench.verify import DTYPES

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

PASSES = reference.PASSES

#: Layer sizes (in_features, out_features) from real networks.
BOOK_LAYERS = ((784, 50), (50, 10))  # "Deep Learning from Scratch" TwoLayerNet
MNIST_MLP = ((784, 1024),)
SQUARE = ((256, 256), (512, 512), (1024, 1024), (2048, 2048))
TRANSFORMER_MLP = ((768, 3072), (3072, 768))  # BERT-base feed-forward block


@dataclass(frozen=True)
class Case:
    impl: str
    pass_: str
    dtype: str
    batch: int
    in_features: int
    out_features: int
    threads: int

    @property
    def flops(self) -> int:
        return reference.flops(self.pass_, self.batch, self.in_features, self.out_features)

    @property
    def case_id(self) -> str:
        from affbench.store.results import case_id

        return case_id(self.impl, self.pass_, self.dtype, self.batch, self.in_features, self.out_features, self.threads)

    @property
    def size_key(self) -> tuple[str, str, int, int, int]:
        """Cases with equal size_key do identical work: they are timed side by side."""
        return (self.pass_, self.dtype, self.batch, self.in_features, self.out_features)

    def label(self) -> str:
        return (f"{self.impl} {self.pass_} {self.dtype} N={self.batch} "
                f"{self.in_features}->{self.out_features} t={self.threads}")


@dataclass(frozen=True)
class Sweep:
    """The axes of a run and how hard to time each case."""

    impls: tuple[str, ...] | None = None  # None: every registered implementation
    passes: tuple[str, ...] = PASSES
    dtypes: tuple[str, ...] = DTYPES
    batches: tuple[int, ...] = (1, 100)
    layers: tuple[tuple[int, int], ...] = ((784, 50),)
    threads: tuple[int | str, ...] = (1, "all")
    plan: Plan = field(default_factory=Plan)
    #: a case predicted to take longer than this (min_samples + warm-up calls) is extrapolated
    max_case_s: float = 2.0
    case_timeout_s: float | None = None
    #: seconds from the start of the run (compilation included) within which groups still short
    #: of the target get rounds beyond max_rounds, widest interval first; None: no extra rounds
    time_limit_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = [list(layer) for layer in self.layers]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Sweep":
        d = dict(d)
        d["plan"] = Plan(**d.get("plan", {}))
        for key in ("impls", "passes", "dtypes", "batches", "threads"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        d["layers"] = tuple(tuple(layer) for layer in d.get("layers", ()))
        return cls(**d)


PRESETS: dict[str, tuple[str, Sweep]] = {
    "quick": ("smoke test in float32, under a minute on 2 cores (cold Numba cache included); ~100 s with the peers", Sweep(
        # float32 only: numba-tiled's first compile is ~20 s per dtype, so both dtypes with a cold
        # cache took 63 s before a single round (float32 is the dtype networks train in)
        dtypes=("float32",),
        batches=(1, 100),
        layers=((784, 50), (256, 256)),
        plan=Plan(min_samples=6, max_samples=60, budget_s=0.05, min_rounds=3, max_rounds=4),
        max_case_s=0.5,
        case_timeout_s=20.0,
        # planned rounds ~10 s; a first compile adds ~32 s; what is left of 50 s goes to extra
        # rounds where intervals are widest
        time_limit_s=50.0,
    )),
    "default": ("the main job: a training step (forward + backward) of real layer sizes, every "
                "implementation, both dtypes, 1 and all threads; under 5 minutes on 2 cores (~8 with the peers)", Sweep(
        # the step only: one pass with enough samples to resolve 15% changes beats two passes
        # that cannot (docs/measurement.md); --pass forward adds the inference view
        passes=("step",),
        batches=(1, 16, 100, 1024),  # 100: the book's batch
        layers=BOOK_LAYERS + MNIST_MLP + ((256, 256), (1024, 1024)) + TRANSFORMER_MLP[:1],
        # rounds a whole pass apart; 5 rounds is the fewest whose t-interval over the round
        # medians (t = 2.78) can reach the target when rounds agree within ~1.5%
        plan=Plan(min_samples=10, max_samples=120, budget_s=0.5, min_rounds=5, max_rounds=8),
        # 16 calls at least (5 warm-ups, 10 samples, calibration): 2.3 s keeps numba-tiled's
        # 1024^3 float64 step (~0.1 s a call, predicted at up to 0.13 s from a noisy first
        # round) measured, and leaves out the 0.15-0.45 s calls of the pure-Python loops
        max_case_s=2.3,
        case_timeout_s=20.0,  # a safety net under the extrapolation, never reached when it predicts well
        # the planned rounds end at ~240 s with a cold Numba cache, ~210 s warm; what is left of
        # 280 s goes to extra rounds where intervals are widest (the report takes ~3 s more)
        time_limit_s=280.0,
    )),
    "full": ("every layer and batch size 1..1024, more samples (hours)", Sweep(
        batches=(1, 2, 4, 8, 16, 32, 64, 100, 128, 256, 512, 1024),
        layers=BOOK_LAYERS + MNIST_MLP + SQUARE + TRANSFORMER_MLP,
        plan=Plan(min_samples=10, max_samples=100, budget_s=1.0),
        max_case_s=60.0,
    )),
}


def preset(name: str) -> Sweep:
    try:
        return PRESETS[name][1]
    except KeyError:
        raise UsageError(f"--preset: unknown preset {name!r}; accepted: {', '.join(PRESETS)}") from None


def parse_layer(text: str) -> tuple[int, int]:
    """'784:50' -> (784, 50)."""
    parts = str(text).split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        k, m = int(parts[0]), int(parts[1])
    except ValueError:
        raise UsageError(f"--layer: {text!r} is not K:M with two positive integers (e.g. 784:50)") from None
    if k < 1 or m < 1:
        raise UsageError(f"--layer: {text!r}: in_features and out_features must be positive")
    return k, m


def parse_positive_int(option: str, text: Any) -> int:
    """An int, or a string of decimal digits, that is at least 1."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    elif isinstance(text, str) and text.strip().isdigit():
        value = int(text.strip())
    else:
        raise UsageError(f"{option}: {text!r} is not a positive integer")
    if value < 1:
        raise UsageError(f"{option}: {text!r} is not a positive integer")
    return value


def parse_threads(text: Any, max_threads: int) -> int | str:
    if str(text) == "all":
        return "all"
    try:
        n = parse_positive_int("--threads", text)
    except UsageError:
        raise UsageError(f"--threads: {text!r} is not a thread count; accepted: 1..{max_threads} or 'all'") from None
    if n > max_threads:
        raise UsageError(f"--threads: {n} is above the {max_threads} threads available (NUMBA_NUM_THREADS); accepted: 1..{max_threads} or 'all'")
    return n


def load_config(path: str | Path) -> dict[str, Any]:
    """A sweep in TOML: the same keys as the command-line options (see docs/running.md)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise UsageError(f"--config: {path}: no such file") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"--config: {path}: cannot read it as TOML ({exc})") from None
    known = {"preset", "impl", "pass", "dtype", "batch", "layer", "threads", "budget", "min_samples",
             "max_samples", "max_case_s", "case_timeout", "target", "rounds", "time_limit"}
    unknown = set(data) - known
    if unknown:
        raise UsageError(f"--config: {path}: unknown key(s) {', '.join(sorted(unknown))}; accepted: {', '.join(sorted(known))}")
    return data


def resolve_threads(values: Iterable[int | str], max_threads: int) -> tuple[int, ...]:
    out = [max_threads if v == "all" else int(v) for v in values]
    return tuple(sorted(set(out)))


def uses_threads(impl: Any) -> bool:
    """Does more than one thread change anything for this implementation?"""
    from affbench.measure.threads import backend_of

    backend = backend_of(impl)
    if backend in ("blas", "torch", "jax"):
        return True
    return backend == "numba" and bool((getattr(impl, "compile_options", None) or {}).get("parallel"))


def expand(sweep: Sweep, impl_objects: Mapping[str, Any], max_threads: int) -> list[Case]:
    """Every case of the sweep, smallest work first, implementations interleaved.

    Single-threaded implementations are timed at 1 thread only: more threads would time the
    same code again.
    """
    threads = resolve_threads(sweep.threads, max_threads)
    cases: list[Case] = []
    sizes = sorted(itertools.product(sweep.batches, sweep.layers), key=lambda s: (s[0] * s[1][0] * s[1][1], s))
    for (batch, (k, m)), dtype, pass_ in itertools.product(sizes, sweep.dtypes, sweep.passes):
        for name, impl in impl_objects.items():
            ts = threads if uses_threads(impl) else (1,)
            for t in ts:
                cases.append(Case(name, pass_, dtype, batch, k, m, t))
    return cases
