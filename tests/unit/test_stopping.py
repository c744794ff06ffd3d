"""A stop (SIGTERM, Ctrl-C, a job's stop) that lands inside one of SQLite's SQL functions is the
stop, not a failed statement (``stopping``; engines/sqlite.py). SQLite swallows whatever its SQL
functions raise and reports "user-defined function raised exception"; where in the function the
signal handler runs is chance (in CI it once ran before any ``try`` of a wrapper could see it, and a
stopped sanitisation was reported as a failed one, exit 8)."""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataferry import stopping
from dataferry.config import DatabaseRef
from dataferry.engines import sqlite as sqlite_engine
from dataferry.errors import EngineError


@pytest.fixture
def target(tmp_path: Path) -> DatabaseRef:
    """A SQLite database with a table of three rows."""
    path = tmp_path / "app.db"
    con = sqlite3.connect(path)
    con.executescript("CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (1), (2), (3);")
    con.close()
    return DatabaseRef(name="app", environment="staging", engine="sqlite", url=f"sqlite:///{path}")


@pytest.fixture
def stop_on_usr1() -> Iterator[None]:
    """SIGUSR1 raises a recorded stop, as the command's and the job runner's handlers do."""

    def handler(signum: int, frame: object) -> None:
        raise stopping.raising(KeyboardInterrupt("stopped by SIGUSR1"))

    previous = signal.signal(signal.SIGUSR1, handler)
    yield
    signal.signal(signal.SIGUSR1, previous)


def register(monkeypatch: pytest.MonkeyPatch, name: str, fn: sqlite_engine.SqlFunction) -> None:
    """``fn`` as SQL function ``name`` for this test only."""
    monkeypatch.setitem(sqlite_engine._SQL_FUNCTIONS, name, (1, fn))


def test_a_stop_inside_a_sql_function_is_the_stop(
    target: DatabaseRef, stop_on_usr1: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def signalled(v: object) -> object:
        if v == 2:
            signal.raise_signal(signal.SIGUSR1)  # the handler runs inside this function
        return v

    register(monkeypatch, "signalled", signalled)
    engine = sqlite_engine.SQLiteEngine()

    with pytest.raises(KeyboardInterrupt, match="SIGUSR1"):
        engine.run_sql(target, "UPDATE t SET v = signalled(v);")
    with pytest.raises(KeyboardInterrupt, match="SIGUSR1"):
        engine.query(target, "SELECT signalled(v) FROM t;")
    assert engine.query(target, "SELECT v FROM t ORDER BY v") == [(1,), (2,), (3,)]  # rolled back


def test_a_failing_sql_function_is_a_failed_statement_even_after_an_earlier_stop(
    target: DatabaseRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    stopping.raising(KeyboardInterrupt("an earlier stop, already handled"))

    def failing(v: object) -> object:
        raise ValueError("not a stop")

    register(monkeypatch, "failing", failing)

    with pytest.raises(EngineError, match="user-defined function raised exception"):
        sqlite_engine.SQLiteEngine().run_sql(target, "UPDATE t SET v = failing(v);")
