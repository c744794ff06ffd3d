"""Run the ``dataferry`` command, pausing at one named point of a backup or restore until a signal
arrives: how the fault suite reaches each phase without sleeping and hoping.

    FAULT_PAUSE_AT=restore:row-counts FAULT_FLAG=/tmp/x python tests/fault_launch.py --config ... restore ...

The process is the real command (``dataferry.cli.main``: its SIGTERM handling, its exit codes);
the only change is that at the named point it writes the point's name to ``FAULT_FLAG`` and waits
there. The test sees the flag and kills it (SIGKILL or SIGTERM). A pause on a thread other than the
main one, or on one whose SIGTERM is held back, is released by SIGTERM: a real thread would keep
working.
SIGUSR1 lets a paused run go on and finish. Without ``FAULT_PAUSE_AT`` it runs the command unchanged. The points are in ``fault_points.PHASES``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

_released = threading.Event()
_hit = threading.Lock()
_done: list[str] = []


def pause(point: str) -> None:
    """Say where we are (once) and wait until a signal ends or releases us."""
    with _hit:
        if _done:
            return
        _done.append(point)
    flag = Path(os.environ["FAULT_FLAG"])
    flag.with_suffix(".tmp").write_text(point, encoding="utf-8")
    flag.with_suffix(".tmp").rename(flag)  # whole when it appears
    while not _released.wait(3600):  # the main thread gets KeyboardInterrupt out of this wait
        pass


def _wrap(owner: Any, name: str, before: Callable[..., bool] | None, after: bool = False) -> None:
    """Replace ``owner.name`` by a function pausing before the call (when ``before(*args)`` is true)
    or after it returned."""
    original = getattr(owner, name)
    point = os.environ["FAULT_PAUSE_AT"]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if before is not None and before(*args, **kwargs):
            pause(point)
        result = original(*args, **kwargs)
        if after:
            pause(point)
        return result

    setattr(owner, name, wrapper)


def _reads(first: bool) -> None:
    """Pause in ``ProgressReader.read``: after the first bytes (``first``) or at the end of the data."""
    from dataferry import streams

    original = streams.ProgressReader.read
    point = os.environ["FAULT_PAUSE_AT"]

    def read(self: Any, n: int = -1) -> bytes:
        data = original(self, n)
        if (first and data) or (not first and not data):
            pause(point)
        return data

    streams.ProgressReader.read = read  # type: ignore[method-assign]


def install(point: str) -> None:
    """Arrange the pause at ``point`` (a key of ``fault_points.PHASES``)."""
    from dataferry import pipeline
    from dataferry.engines import sqlite
    from dataferry.engines.mysql import engine as mysql_engine
    from dataferry.engines.mysql import swap as mysql_swap
    from dataferry.engines.postgresql import engine as pg_engine
    from dataferry.engines.postgresql import swap as pg_swap
    from dataferry.layouts import dataferry as layout

    engines = (pg_engine.PostgresEngine, mysql_engine.MySQLEngine, sqlite.SQLiteEngine)
    always: Callable[..., bool] = lambda *a, **k: True  # noqa: E731
    if point in ("backup:dump", "restore:download"):
        _reads(first=True)
    elif point in ("backup:upload", "restore:load"):
        _reads(first=False)
    elif point == "backup:between-objects":
        from dataferry import pieces

        _wrap(pieces, "put_object", None, after=True)  # upload_objects calls it once per object
    elif point == "backup:before-commit":
        _wrap(pipeline, "Manifest", always)
    elif point == "backup:commit":
        _wrap(layout.DataferryLayout, "publish", always)
    elif point == "backup:committed":
        _wrap(layout.DataferryLayout, "publish", None, after=True)
    elif point == "restore:row-counts":
        _wrap(pipeline, "check_row_counts", always)
    elif point == "restore:before-swap":
        for cls in engines:
            _wrap(cls, "swap", always)
    elif point == "restore:swap":
        # inside each engine's swap, at its one atomic step: PostgreSQL with new connections to
        # live blocked, MariaDB with the live triggers dropped (kept in the old database), SQLite
        # just before the rename of the shadow file
        _wrap(pg_swap, "_rename_with_retries", always)
        _wrap(mysql_swap, "execute", lambda conn, stmt, *a: str(stmt).startswith("RENAME TABLE"))
        _wrap(sqlite.os, "replace", lambda src, dst: ".dataferry-shadow-" in str(src))
    elif point == "restore:loader":
        _stopped_loaders(point)
    else:
        raise SystemExit(f"fault_launch: unknown point {point!r}")


def _stopped_loaders(point: str) -> None:
    """Not a matrix phase: the first loader a parallel restore starts (pg_restore, a mariadb client)
    is stopped with SIGSTOP as it starts, and the run pauses. Killed there, the run leaves a loader
    that is still there, deterministically, for check and cleanup to find."""
    from dataferry.engines.mysql import load as mysql_load
    from dataferry.engines.postgresql import restore as pg_restore
    from dataferry.engines.postgresql import tools as pg_tools

    # pg_restore of single-object artifacts, pg_restore's sections of per-table ones (run by
    # tools.run_tool; their rows are loaded by threads of the run, which die with it), mariadb clients
    for module in (pg_restore, pg_tools, mysql_load):
        original = module.spawn

        def spawn(*args: Any, _original: Callable[..., Any] = original, **kwargs: Any) -> Any:
            proc = _original(*args, **kwargs)
            os.kill(proc.pid, signal.SIGSTOP)
            pause(point)
            return proc

        module.spawn = spawn  # type: ignore[assignment]


def _releasing_handlers() -> None:
    """Every SIGTERM handler the command installs (its own, a deferral's) also releases a pause,
    as a real signal never stops a thread that is busy writing."""
    original = signal.signal

    def install(signum: int, handler: Any) -> Any:
        if signum == signal.SIGTERM and callable(handler):
            inner = handler

            def handler(sig: int, frame: Any) -> Any:
                _released.set()
                return inner(sig, frame)

        return original(signum, handler)

    signal.signal = install  # type: ignore[assignment]


def main() -> None:
    """Install the pause, run the command."""
    from dataferry import cli

    point = os.environ.get("FAULT_PAUSE_AT")
    if point:
        install(point)
        _releasing_handlers()
        # SIGUSR1 lets a paused run go on, to finish normally
        signal.signal(signal.SIGUSR1, lambda signum, frame: _released.set())
    sys.argv[0] = "dataferry"
    cli.main(sys.argv[1:])


if __name__ == "__main__":
    main()
