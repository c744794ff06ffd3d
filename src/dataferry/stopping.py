"""Stops (SIGTERM, SIGINT, ``max_runtime``) that signal handlers raise, remembered.

A stop is an exception raised wherever the main thread is when the signal arrives. When that is
inside a callback a C library calls, such as one of SQLite's SQL functions, the library swallows
it and reports an error of its own ("user-defined function raised exception"), and which bytecode
of the callback the stop lands on is chance: it may be before any ``try`` of the callback could
see it. So every handler records the stop it raises here, and code that catches such a library
error asks whether a stop was raised meanwhile (``raised_since``) and raises that instead: a
stopped run, not a failed statement.
"""

from __future__ import annotations

_RAISED: list[BaseException] = []


def raising(stop: BaseException) -> BaseException:
    """Record ``stop``, which a signal handler is about to raise, and return it."""
    _RAISED.append(stop)
    return stop


def mark() -> int:
    """Where the record stands now, for ``raised_since``."""
    return len(_RAISED)


def raised_since(mark_: int) -> BaseException | None:
    """The first stop raised after ``mark_`` was taken, or None."""
    return _RAISED[mark_] if len(_RAISED) > mark_ else None
