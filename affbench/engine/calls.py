"""What one case runs, and under which threads and timeout: shared by the engine's
in-process rounds (runner) and its worker processes (worker), and by `kernels`."""

from __future__ import annotations

import signal
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from affbench.measure import threads


class CaseTimeout(Exception):
    """The case used up its time (``case_timeout_s``): recorded as timed out, the run goes on."""


def pass_call(impl: Any, pass_: str, x, W, b, dout) -> Callable[[], object]:
    if pass_ == "forward":
        return lambda: impl.forward(x, W, b)
    if pass_ == "backward":
        return lambda: impl.backward(x, W, dout)
    return lambda: (impl.forward(x, W, b), impl.backward(x, W, dout))


def _on_alarm(signum, frame):  # noqa: ARG001
    raise CaseTimeout()


class CaseClock:
    """Threads for the case, plus its timeout: cumulative time in the case's calls is capped.
    A compiled call cannot be interrupted midway; the timeout then fires when it returns."""

    def __init__(self, backend: str, threads_: int, isolate: bool, timeout_s: float | None) -> None:
        self.backend, self.threads, self.isolate, self.timeout_s = backend, threads_, isolate, timeout_s
        self.spent = 0.0
        self.state: threads.ThreadState | None = None

    @contextmanager
    def context(self) -> Iterator[None]:
        with threads.threads_for(self.backend, self.threads, self.isolate) as state:
            self.state = state
            if self.timeout_s is None:
                yield
                return
            remaining = self.timeout_s - self.spent
            if remaining <= 0:
                raise CaseTimeout()
            old = signal.signal(signal.SIGALRM, _on_alarm)
            signal.setitimer(signal.ITIMER_REAL, remaining)
            t0 = time.perf_counter()
            try:
                yield
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old)
                self.spent += time.perf_counter() - t0
