"""SQLite: backup through the online backup API, restore by temp file, fsync and atomic rename."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, ClassVar

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
)
from dataferry.engines._locks import busy, holder_label
from dataferry.errors import EngineError, NotFound, NotReady, VerificationFailed
from dataferry.private import private_dir
from dataferry.streams import copy_stream

_SHADOW_MARK = ".dataferry-shadow-"
#: Beside the database: ``flock``ed by a restore from start to swap (see ``engines._locks``).
LOCK_SUFFIX = ".dataferry-lock"


class SQLiteRestoreLock:
    """An exclusive ``flock`` on ``<file>.dataferry-lock``; the kernel drops it when the holder dies.
    The file says who holds it (for the message of a refused restore) and is removed on release."""

    def __init__(self, target: Path, environment: str) -> None:
        self._path = Path(str(target) + LOCK_SUFFIX)
        self._fd: int | None = None
        for _ in range(10):
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
                os.close(fd)
                raise busy(f"{target} ({environment})", f"held by {owner}") from None
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, self._path):
                self._fd = fd
                break
            os.close(fd)  # the holder released and removed it between our open and our flock
        else:
            raise EngineError(f"cannot take the restore lock {self._path}: it keeps being replaced")
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder_label().encode(), 0)

    def release(self) -> None:
        """Remove the file, then close it (which releases the lock); idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()
            os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    """True when ``path`` still names the file open as ``fd`` (a lock on a removed file is no lock)."""
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def stale_shadows(target: Path) -> list[Path]:
    """Shadow files beside ``target`` (whole copies of a database). One that is not the current
    restore's own was left by a killed restore: only the holder of the restore lock may remove them."""
    if not target.parent.is_dir():
        return []
    return sorted(target.parent.glob(glob_escape(target.name) + _SHADOW_MARK + "*"))


def glob_escape(name: str) -> str:
    """``name`` matched literally by ``Path.glob``."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def sqlite_path(db: DatabaseRef) -> Path:
    """The file behind ``sqlite:///path`` (relative paths were resolved by the config)."""
    rest = db.url.split("://", 1)[1]
    return Path(rest[1:] if rest.startswith("/") else rest)


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
        if left := stale_shadows(path):
            names = ", ".join(p.name for p in left)
            found.append(
                ToolCheck(
                    f"shadow copies of {path.name}",
                    True,
                    f"left by killed restores: {names}; the next restore of it removes them",
                )
            )
        return found

    def server_version(self, db: DatabaseRef) -> str:
        """SQLite has no server: the library version."""
        return f"SQLite {sqlite3.sqlite_version}"

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
            for stale in stale_shadows(target):  # we hold the lock: a killed restore left these
                stale.unlink(missing_ok=True)
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

    def run_sql(self, target: DbTarget, sql: str) -> None:
        """Run a script on ``target`` (used by sanitisation) in one transaction; any error is fatal."""
        path = _path(target)
        con = _connect(path)
        try:
            con.executescript(f"BEGIN;\n{sql}\nCOMMIT;")
        except sqlite3.Error as exc:
            raise EngineError(f"SQL failed on {path.name}: {exc}") from exc
        finally:
            con.close()

    def query(self, target: DbTarget, sql: str) -> list[tuple[object, ...]]:
        """Run one read-only query on ``target`` and return its rows (the file is opened read-only)."""
        path = _path(target)
        if not path.exists():
            raise NotFound(
                f"SQLite database {path} does not exist", hint="check the url in the configuration"
            )
        con = _connect(path, read_only=True)
        try:
            return [tuple(row) for row in con.execute(sql).fetchall()]
        except sqlite3.Error as exc:
            raise EngineError(f"SQL query failed on {path.name}: {exc}") from exc
        finally:
            con.close()


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
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True) if read_only else sqlite3.connect(path)
    for name, (nargs, fn) in _SQL_FUNCTIONS.items():
        con.create_function(name, nargs, fn, deterministic=True)
    return con


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
