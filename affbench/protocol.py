"""The contract every Affine implementation follows, and the one input check they share.

An implementation computes, on 2-D arrays of one float dtype (float32 or float64):

    forward(x, W, b)     -> y              y  = x @ W + b        x (N, K), W (K, M), b (M,)
    backward(x, W, dout) -> (dx, dW, db)   dx = dout @ W.T,  dW = x.T @ dout,  db = dout.sum(0)

Results are new arrays of the input dtype; inputs are never modified.

Kernel authors subclass :class:`KernelImpl` and write ``_forward`` / ``_backward``: those
receive arrays that are already validated, plain ndarrays, writable, C-contiguous and of one
dtype, so a Numba kernel (which does no bounds checks) never sees a shape it could overrun.
Passes whose outputs are all empty are answered before the kernel, and passes that would
allocate more than the memory available are refused with a ValueError.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

#: The dtypes a kernel accepts. Anything else is refused before a kernel runs.
SUPPORTED_DTYPES: tuple[np.dtype, ...] = (np.dtype(np.float32), np.dtype(np.float64))

#: Largest element count of one array we let through (well above any real machine's memory,
#: small enough that index arithmetic in an int64 kernel cannot overflow).
MAX_ELEMENTS = 2**40

#: Allocations below this many bytes skip the available-memory check (reading it costs ~10 µs,
#: too much for a batch-1 call that takes 5 µs).
MEMORY_CHECK_BYTES = 1 << 28


def available_memory() -> int | None:
    """Bytes of memory the OS says a process can still get (MemAvailable); None when unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os

        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def format_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def require_memory(pass_: str, allocations: list[tuple[str, tuple[int, ...], np.dtype]]) -> None:
    """Refuse, with a ValueError, a pass whose new arrays (outputs and contiguous copies, each
    ``(what, shape, dtype)``) exceed MAX_ELEMENTS or the memory available now.

    Huge *declared* inputs cost nothing to make (``np.broadcast_to``, zero strides); without
    this check a pass would try to allocate terabytes, or be killed by the OOM killer.
    """
    total = 0
    for what, shape, dtype in allocations:
        count = math.prod(map(int, shape))  # map, not a generator: ~0.3 µs less per array
        if count > MAX_ELEMENTS:
            raise ValueError(
                f"{pass_}: {what} of shape {tuple(shape)} would have {count} elements, "
                f"above the limit of {MAX_ELEMENTS}"
            )
        total += count * (dtype.itemsize if isinstance(dtype, np.dtype) else np.dtype(dtype).itemsize)
    if total <= MEMORY_CHECK_BYTES:
        return
    avail = available_memory()
    if avail is not None and total > avail:
        listing = ", ".join(f"{what} {tuple(shape)} {np.dtype(dtype)}" for what, shape, dtype in allocations)
        raise ValueError(
            f"{pass_} would allocate {format_bytes(total)} ({listing}) "
            f"but only {format_bytes(avail)} of memory is available"
        )


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
    if isinstance(arr, np.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array ({_describe(arr)}); its mask would be ignored, pass plain arrays")
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
    first = None
    for a in arrays.values():  # the common case (one dtype) without building a dict and a set
        if first is None:
            first = a.dtype
        elif a.dtype != first:
            break
    else:
        if first is not None:
            return first
    dtypes = {name: a.dtype for name, a in arrays.items()}
    if len(set(dtypes.values())) != 1:
        listing = ", ".join(f"{n}={d}" for n, d in dtypes.items())
        raise TypeError(
            f"all arrays must share one dtype at the kernel level, got {listing} "
            f"(affbench.Affine promotes mixed dtypes for you)"
        )
    return next(iter(dtypes.values()))


def _needs_copy(arr: np.ndarray) -> bool:
    # Kernels index rows as contiguous memory. Read-only arrays are copied too: Numba compiles a
    # separate signature for every read-only/writable combination (~1 s each, inside a timing).
    flags = arr.flags  # one flags object, not three (each access builds a new one)
    return not (flags.c_contiguous and flags.aligned and flags.writeable)


def _contiguous(arr: np.ndarray) -> np.ndarray:
    """A plain, writable, aligned, C-contiguous ndarray (a copy only when needed); subclasses
    such as np.matrix are viewed as ndarray so they cannot leak into results."""
    if type(arr) is not np.ndarray:
        arr = arr.view(np.ndarray)
    return np.array(arr, order="C") if _needs_copy(arr) else arr


def _copies(**arrays: np.ndarray) -> list[tuple[str, tuple[int, ...], np.dtype]]:
    return [(f"a contiguous copy of {n}", a.shape, a.dtype) for n, a in arrays.items() if a.size and _needs_copy(a)]


def _plain(a: Any) -> bool:
    """An exact ndarray a kernel can take as it is (what _contiguous would return unchanged)."""
    if type(a) is not np.ndarray:
        return False
    f = a.flags
    return f.c_contiguous and f.aligned and f.writeable


def _fast_ok(pass_outputs: int, first: np.ndarray, *rest: np.ndarray) -> bool:
    """The inputs are plain, of one supported dtype, and the outputs small enough to skip the
    memory check: the full checks could only hand the same arrays back. Shapes are checked by
    the callers. ~1.5 us where the full checks take ~8 (a batch-1 step is ~25 us)."""
    dtype = first.dtype
    if dtype not in SUPPORTED_DTYPES or not _plain(first) or first.size > MAX_ELEMENTS:
        return False
    for a in rest:
        if a.dtype != dtype or not _plain(a) or a.size > MAX_ELEMENTS:
            return False
    return pass_outputs * dtype.itemsize <= MEMORY_CHECK_BYTES


def check_forward(x: Any, W: Any, b: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate forward inputs; return C-contiguous x (N, K), W (K, M) and b as (M,).

    Raises TypeError for non-arrays and unsupported or mixed dtypes, ValueError for shapes.
    """
    if (type(x) is np.ndarray and type(W) is np.ndarray and type(b) is np.ndarray
            and x.ndim == 2 and W.ndim == 2 and b.ndim == 1
            and x.shape[1] == W.shape[0] and b.shape[0] == W.shape[1]
            and _fast_ok(x.shape[0] * W.shape[1], x, W, b)):
        return x, W, b
    return _check_forward_full(x, W, b)


def _check_forward_full(x: Any, W: Any, b: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = _require_array("x", x)
    W = _require_array("W", W)
    b = _require_array("b", b)
    _require_ndim("x", x, 2, "(N, K)")
    _require_ndim("W", W, 2, "(K, M)")
    b_shape = b.shape
    if b.ndim == 2 and b.shape[0] == 1:
        b = b.reshape(b.shape[1])  # (1, M) as in the book's comments
    if b.ndim != 1:
        raise ValueError(f"b must have shape (M,) or (1, M), got shape {b_shape}")
    if x.shape[1] != W.shape[0]:
        raise ValueError(
            f"x and W do not chain: x has shape {x.shape} (K={x.shape[1]}), "
            f"W has shape {W.shape} (K={W.shape[0]})"
        )
    if b.shape[0] != W.shape[1]:
        raise ValueError(f"b has shape {b_shape} but W has shape {W.shape}: b needs M={W.shape[1]} entries")
    dtype = _same_dtype(x=x, W=W, b=b)
    require_memory("forward", [("y", (x.shape[0], W.shape[1]), dtype), *_copies(x=x, W=W, b=b)])
    return _contiguous(x), _contiguous(W), _contiguous(b)


def check_backward(x: Any, W: Any, dout: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate backward inputs; return C-contiguous x (N, K), W (K, M), dout (N, M)."""
    if (type(x) is np.ndarray and type(W) is np.ndarray and type(dout) is np.ndarray
            and x.ndim == 2 and W.ndim == 2 and dout.ndim == 2
            and x.shape[1] == W.shape[0] and dout.shape[0] == x.shape[0] and dout.shape[1] == W.shape[1]
            and _fast_ok(x.size + W.size + W.shape[1], x, W, dout)):
        return x, W, dout
    return _check_backward_full(x, W, dout)


def _check_backward_full(x: Any, W: Any, dout: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    dtype = _same_dtype(x=x, W=W, dout=dout)
    N, K = x.shape
    M = W.shape[1]
    require_memory(
        "backward",
        [("dx", (N, K), dtype), ("dW", (K, M), dtype), ("db", (M,), dtype), *_copies(x=x, W=W, dout=dout)],
    )
    return _contiguous(x), _contiguous(W), _contiguous(dout)


class KernelImpl:
    """Base class: validates, then hands clean arrays to ``_forward`` / ``_backward``.

    Subclasses set ``name`` and may set ``description`` and ``compile_options`` (shown by
    ``python -m affbench list``), ``jit = True`` when the first call per dtype compiles (or
    ``slow_first_call = True`` when it initialises something), and ``prepare()`` for one-off
    set-up that belongs to no call at all (importing a framework).
    """

    def prepare(self) -> None:
        """One-off set-up before the first timed or first-call-timed call (nothing by default)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    compile_options: ClassVar[dict[str, Any]] = {}
    jit: ClassVar[bool] = False
    #: The first call per dtype does one-off work without compiling (a framework's lazy
    #: initialisation): timed apart like a compile (compile_s), never inside a sample.
    slow_first_call: ClassVar[bool] = False
    #: Pure-Python kernels set this so sweeps can skip sizes they would take hours on.
    slow: ClassVar[bool] = False

    def forward(self, x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        x, W, b = check_forward(x, W, b)
        N, M = x.shape[0], W.shape[1]
        if N == 0 or M == 0:
            # Nothing to compute. Answered here because a zero-size array may declare a huge
            # other axis (np.empty((0, 2**40)) costs nothing) that a kernel would loop over.
            return np.empty((N, M), dtype=x.dtype)
        return self._forward(x, W, b)

    def backward(
        self, x: np.ndarray, W: np.ndarray, dout: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x, W, dout = check_backward(x, W, dout)
        (N, K), M = x.shape, W.shape[1]
        if M == 0 and N * K == 0:  # every output is empty (see forward)
            return np.empty((N, K), x.dtype), np.empty((K, M), x.dtype), np.empty((M,), x.dtype)
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
