"""Stopping a run safely: SIGTERM, SIGINT and ``max_runtime`` become ``Interrupted``/``RunTimedOut``
where the run is, except during the swap, when the stop waits until it is over."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from types import FrameType
from typing import Any

from dataferry import stopping
from dataferry.errors import FerryError, Interrupted, RunTimedOut


class _StopNow(BaseException):
    """Raised by the signal handler inside a step. A ``BaseException`` so that no ``except
    Exception`` cleanup on the way out (such as reading the rest of a stream to classify an
    error) runs; ``finally`` blocks (dropping the shadow) still do. It becomes ``Interrupted`` or
    ``RunTimedOut`` at the step boundary."""


class StopGuard:
    """Turns SIGTERM/SIGINT and the runtime limit into exceptions at safe points.

    While ``armed`` (a step is running) a stop raises at once, wherever the step is; inside
    ``enter_critical``/``leave_critical`` (the swap) it is deferred to the next step boundary. Signal handlers only exist in the
    main thread; elsewhere (an in-process scheduler) stops are seen between steps via ``stop``.
    """

    def __init__(self, job: str, max_runtime: timedelta | None, stop: threading.Event | None) -> None:
        self.job = job
        self.max_runtime = max_runtime
        self.stop = stop or threading.Event()
        self.reason: str | None = None
        self.timed_out = False
        self._armed = False
        self._critical = False
        self._started = time.monotonic()
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> StopGuard:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._saved[sig] = signal.signal(sig, self._on_signal)
            if self.max_runtime is not None:
                self._saved[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._on_signal)
                signal.setitimer(signal.ITIMER_REAL, max(self.max_runtime.total_seconds(), 0.01))
        return self

    def __exit__(self, *exc: object) -> None:
        if signal.SIGALRM in self._saved:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGALRM:
            self.timed_out = True
            self.reason = "max_runtime"
        else:
            self.reason = signal.Signals(signum).name
        self.stop.set()
        if self._armed and not self._critical:
            raise stopping.raising(_StopNow())

    def error(self) -> FerryError:
        """The exception that reports why the run stopped."""
        if self.timed_out:
            return RunTimedOut(
                f"job {self.job} ran longer than its max_runtime and was stopped",
                hint="raise max_runtime if this database needs longer, or find out why it was slow",
            )
        return Interrupted(
            f"job {self.job} was stopped by {self.reason or 'a stop request'}",
            hint="nothing half-made was published and the live database was not swapped mid-way; "
            "run the job again (see 'dataferry history')",
        )

    def check(self) -> None:
        """Raise if a stop was requested or the runtime limit passed (between steps)."""
        if (
            self.max_runtime is not None
            and time.monotonic() - self._started > self.max_runtime.total_seconds()
        ):
            self.timed_out = True
            self.stop.set()
        if self.stop.is_set():
            raise self.error()

    @contextlib.contextmanager
    def armed(self) -> Iterator[None]:
        """A step runs: a stop raises immediately."""
        self.check()
        self._armed = True
        try:
            yield
        except _StopNow:
            raise self.error() from None
        except FerryError as exc:
            # A failure after a stop request is its consequence (a tool or statement cut short):
            # the run was stopped, not failed.
            if self.stop.is_set() and not isinstance(exc, Interrupted | RunTimedOut):
                raise self.error() from None
            raise
        finally:
            self._armed = False

    def enter_critical(self) -> None:
        """The swap is about to run: from now on a stop waits until ``leave_critical``."""
        self._critical = True

    def leave_critical(self) -> None:
        """The swap is over (or never happened): stops raise again (at the next safe point)."""
        self._critical = False
