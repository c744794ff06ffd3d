"""SQLite: backup through the online backup API, restore by temp file, fsync and atomic rename."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from glob import escape as glob_escape
from pathlib import Path
from typing import BinaryIO, ClassVar

from dataferry import stopping
from dataferry.config import DatabaseRef
from dataferry.engines import (
    DEFAULT_DUMP,
    DbTarget,
    Dump,
    DumpOptions,
    RestoreOptions,
    Shadow,
    ToolCheck,
    split_target,
    statements,
)
from dataferry.engines.sqlite_files import LOCK_SUFFIX as LOCK_SUFFIX
from dataferry.engines.sqlite_files import SQLiteRestoreLock, keep_access
from dataferry.engines.statements import Changed
from dataferry.errors import ConfigError, EngineError, LockBusy, NotFound, NotReady, VerificationFailed
from dataferry.private import private_dir
from dataferry.streams import copy_stream

_SHADOW_MARK = ".dataferry-shadow-"


def _shadow_files(target: Path) -> list[Path]:
    """Shadow files beside ``target`` (whole copies of a database, with their journals). One that is
    not the current restore's own was left by a killed restore: only the holder of the restore lock
    may remove them."""
    if not target.parent.is_dir():
        return []
    return sorted(target.parent.glob(glob_escape(target.name) + _SHADOW_MARK + "*"))


def sqlite_path(db: DatabaseRef) -> Path:
    """The file behind ``sqlite:///path`` (relative paths were resolved by the config)."""
    rest = db.url.split("://", 1)[1]
    path = Path(rest[1:] if rest.startswith("/") else rest)
    if path.is_dir():  # sqlite3 would say only "disk I/O error" or "unable to open database file"
        raise ConfigError(
            f"the url of {db.name} in {db.environment} names the directory {path}, not a database file",
            hint=f"point it at the file in that directory, e.g. sqlite:///{path}/{db.name}.db",
        )
    return path


class SQLiteEngine:
    """The embedded engine: one database is one file."""

    name: ClassVar[str] = "sqlite"
    dump_format: ClassVar[str] = "sqlite"

    def check(self, db: DatabaseRef) -> list[ToolCheck]:
        """The library version, and whether the file (or its directory, for a target) is usable."""
        path = sqlite_path(db)
        found = [ToolCheck("sqlite library", True, sqlite3.sqlite_version)]
        if path.exists():
            found.append(ToolCheck(f"database file {path}", os.access(path, os.R_OK), "exists"))
        else:
            ok = path.parent.is_dir() and os.access(path.parent, os.W_OK)
            found.append(
                ToolCheck(f"directory {path.parent}", ok, "writable" if ok else "missing or read-only")
            )
        return found

    def check_source(self, db: DatabaseRef) -> list[ToolCheck]:
        """The file exists and opens read-only as an SQLite database (a backup needs it)."""
        path = sqlite_path(db)
        if not path.exists():
            return [ToolCheck(f"database file {path}", False, "does not exist; a backup of it would fail")]
        try:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                tables = con.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            finally:
                con.close()
        except sqlite3.Error as exc:
            return [ToolCheck(f"database file {path}", False, f"cannot be opened: {exc}")]
        return [ToolCheck(f"database file {path}", True, f"opens read-only, {tables} table(s)")]

    def server_version(self, db: DatabaseRef) -> str:
        """SQLite has no server: the library version."""
        return f"SQLite {sqlite3.sqlite_version}"

    def max_jobs(self, db: DatabaseRef) -> int | None:
        """1: a restore copies one file, which workers could not share (``LimitsJobs``)."""
        return 1

    def database_size(self, db: DatabaseRef) -> int | None:
        """The file's size: the dump is a copy of it (``SizesDatabases``)."""
        path = sqlite_path(db)
        return path.stat().st_size if path.is_file() else None

    @contextlib.contextmanager
    def dump(self, db: DatabaseRef, options: DumpOptions = DEFAULT_DUMP) -> Iterator[Dump]:
        """A consistent copy through the online backup API (safe while the database is in use).
        ``options`` holds nothing that applies to this engine."""
        path = sqlite_path(db)
        if not path.exists():
            raise NotFound(
                f"SQLite database {path} does not exist", hint="check the url in the configuration"
            )
        # The consistent copy lives in a private run directory: removed at the end, and swept by
        # the next run if this one is killed (it is a whole copy of the database).
        with private_dir() as directory:
            tmp = directory / "dump.db"
            src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            dst = sqlite3.connect(tmp)
            try:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode=DELETE")
            except sqlite3.Error as exc:
                raise EngineError(f"SQLite backup of {path} failed: {exc}") from exc
            finally:
                dst.close()
                src.close()
            counts = _count_rows(tmp)
            with open(tmp, "rb") as f:
                yield Dump(stream=f, row_counts=counts)

    def row_counts(self, target: DbTarget) -> dict[str, int]:
        """Exact counts with ``count(*)`` per table of ``target`` (the live file or a shadow)."""
        return _count_rows(_path(target))

    def restore_shadow(self, db: DatabaseRef, src: BinaryIO, options: RestoreOptions) -> Shadow:
        """Write beside the target, fsync, and check integrity before it can be swapped in."""
        target = sqlite_path(db)
        if not target.parent.is_dir():
            raise NotReady(f"directory {target.parent} does not exist", hint="create it or fix the url")
        lock = SQLiteRestoreLock(target, db.environment)
        try:
            fd, tmp = tempfile.mkstemp(prefix=target.name + _SHADOW_MARK, dir=target.parent)
        except BaseException:
            lock.release()
            raise
        shadow = Shadow(ref=db, name=tmp, lock=lock)
        try:
            with os.fdopen(fd, "wb") as out:
                copy_stream(src, out)
                out.flush()
                os.fsync(out.fileno())
            _integrity_check(Path(tmp))
        except BaseException:
            self.drop_shadow(shadow)
            raise
        return shadow

    def stale_shadows(self, db: DatabaseRef) -> list[str]:
        """Shadow files (and their journals) beside the database: a restore keeps its own only
        until its swap or drop, so any found while no restore runs were left by a killed one."""
        target = sqlite_path(db)
        return [str(p) for p in _shadow_files(target)]

    def remove_stale_shadows(self, db: DatabaseRef) -> list[str]:
        """Remove them under the restore lock (so never a running restore's shadow)."""
        target = sqlite_path(db)
        if not target.parent.is_dir():
            return []
        try:
            lock = SQLiteRestoreLock(target, db.environment)
        except LockBusy:
            return []  # a restore runs now; the next run sweeps
        try:
            found = self.stale_shadows(db)
            for path in found:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            return found
        finally:
            lock.release()

    def swap(self, shadow: Shadow) -> None:
        """Checkpoint the live file's WAL, then rename the shadow over it (atomic on POSIX)."""
        target = sqlite_path(shadow.ref)
        if not Path(shadow.name).is_file():
            raise EngineError(f"the shadow {shadow.name} is gone; nothing was swapped")
        if Path(str(target) + "-wal").exists():
            # A WAL left beside the new file would be replayed into it: fold it into the old file first.
            con = sqlite3.connect(target)
            try:
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                con.close()
        if shadow.lock is None:
            raise EngineError(
                f"the shadow {shadow.name} no longer holds the restore lock of {target}; nothing was swapped",
                hint="another restore of this database ran at the same time; run this one again",
            )
        keep_access(Path(shadow.name), target)
        os.replace(shadow.name, target)
        shadow.release()
        for suffix in ("-wal", "-shm"):
            side = Path(str(target) + suffix)
            if side.exists() and side.stat().st_size == 0:
                side.unlink()
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def drop_shadow(self, shadow: Shadow) -> None:
        """Delete the shadow file (missing is fine; its name is unique to this restore), then release
        the restore lock."""
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(shadow.name)
        finally:
            shadow.release()

    def run_sql(self, target: DbTarget, sql: str) -> list[Changed]:
        """Run a script on ``target`` (used by sanitisation) in one transaction, statement by
        statement (SQLite's own ``complete_statement`` splits it); any error is fatal and rolls back.
        Returns what each data-changing statement changed."""
        path = _path(target)
        since = stopping.mark()
        con = _connect(path)
        con.isolation_level = None  # transactions are ours: BEGIN ... COMMIT around the script
        done: list[tuple[str, int]] = []
        try:
            con.execute("BEGIN")
            for statement in _statements(sql):
                done.append((statements.kind(statement), con.execute(statement).rowcount))
            con.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")
            _reraise_stop(since)
            raise EngineError(f"SQL failed on {path.name}: {exc}") from exc
        finally:
            con.close()
        return statements.changing(done)

    def query(self, target: DbTarget, sql: str) -> list[tuple[object, ...]]:
        """Run one read-only query on ``target`` and return its rows (the file is opened read-only)."""
        path = _path(target)
        if not path.exists():
            raise NotFound(
                f"SQLite database {path} does not exist", hint="check the url in the configuration"
            )
        since = stopping.mark()
        con = _connect(path, read_only=True)
        try:
            return [tuple(row) for row in con.execute(sql).fetchall()]
        except sqlite3.Error as exc:
            _reraise_stop(since)
            raise EngineError(f"SQL query failed on {path.name}: {exc}") from exc
        finally:
            con.close()


def _statements(sql: str) -> Iterator[str]:
    """The statements of a script, as SQLite itself cuts them (strings, comments, triggers)."""
    buf = ""
    for piece in sql.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            if statements.kind(buf):
                yield buf
            buf = ""
    if statements.kind(buf.rstrip(";")):
        yield buf.rstrip(";")  # a last statement without ';' (or an unfinished one: SQLite says)


def _path(target: DbTarget) -> Path:
    """The file behind a target: the shadow's file, or the live database's."""
    db, shadow = split_target(target)
    return Path(shadow.name) if shadow else sqlite_path(db)


SqlFunction = Callable[..., str | int | float | bytes | None]

#: Deterministic SQL functions every ``run_sql``/``query`` connection gets. SQLite has no sha256 or
#: REGEXP built in, so sanitisation registers Python ones here (``register_sql_function``).
_SQL_FUNCTIONS: dict[str, tuple[int, SqlFunction]] = {}


def register_sql_function(name: str, nargs: int, fn: SqlFunction) -> None:
    """Make ``fn`` callable as ``name(...)`` from SQL run by this engine; it must be deterministic."""
    _SQL_FUNCTIONS[name] = (nargs, fn)


def _connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    target = f"file:{path}?mode=ro" if read_only else str(path)
    con = sqlite3.connect(target, uri=read_only)
    for name, (nargs, fn) in _SQL_FUNCTIONS.items():
        con.create_function(name, nargs, fn, deterministic=True)
    return con


def _reraise_stop(since: int) -> None:
    """Raise the stop (Ctrl-C, SIGTERM, a job's stop) that arrived while a statement ran, if one
    did: SQLite turns a stop raised inside one of our SQL functions into "user-defined function
    raised exception", which would otherwise be reported as a failed statement (a failed
    sanitisation, exit 8) instead of a stopped run (``stopping``)."""
    stop = stopping.raised_since(since)
    if stop is not None:
        raise stop.with_traceback(None)


def _count_rows(path: Path) -> dict[str, int]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [
            r[0]
            for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        return {t: int(con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]) for t in tables}
    finally:
        con.close()


def _integrity_check(path: Path) -> None:
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            result = con.execute("PRAGMA integrity_check").fetchone()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise VerificationFailed(f"restored SQLite file is not a valid database: {exc}") from exc
    if not result or result[0] != "ok":
        raise VerificationFailed(f"restored SQLite file failed its integrity check: {result}")
