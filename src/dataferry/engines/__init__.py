"""Engines dump and restore one kind of database behind one protocol, found through a registry.

Every engine must pass ``tests/contract/test_engine_contract.py``. The restore is always in two
steps: ``restore_shadow`` loads into a new, separate database that nobody uses, and ``swap`` is
the one destructive step, atomic, at the very end. Anything that fails before ``swap`` is cleaned
up with ``drop_shadow`` and leaves the live database exactly as it was.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, ClassVar, Protocol, TypeAlias, runtime_checkable

from dataferry.config import DatabaseRef
from dataferry.engines._locks import RestoreLock
from dataferry.engines.registry import _REGISTRY, engine_names
from dataferry.engines.registry import register as register  # third-party engines call engines.register
from dataferry.engines.statements import Changed
from dataferry.errors import ConfigError, NotReady


@dataclass
class Shadow:
    """A restored copy that is not live yet: ``name`` is the shadow database (or file, or schema)
    beside ``ref``, the database it will replace.

    ``state`` is private to the engine that made the shadow (what its ``swap`` needs to know, such
    as the mark that tells this restore's shadow from another's); nothing else reads it. ``lock``
    is the target's restore lock, taken by ``restore_shadow`` before anything was touched and held
    until ``swap`` succeeded or ``drop_shadow`` removed the shadow (see ``_locks``).

    A shadow is also a ``DbTarget``: ``row_counts(shadow)``, ``run_sql(shadow, sql)`` and
    ``query(shadow, sql)`` work on the shadow rather than on the live database.
    """

    ref: DatabaseRef
    name: str
    state: object | None = field(default=None, repr=False, compare=False)
    lock: RestoreLock | None = field(default=None, repr=False, compare=False)

    def release(self) -> None:
        """Give the restore lock up (idempotent)."""
        lock, self.lock = self.lock, None
        if lock is not None:
            lock.release()


#: Where reads and SQL go: a live database, or a shadow (which means that shadow of its ``ref``).
DbTarget: TypeAlias = DatabaseRef | Shadow


def split_target(target: DbTarget) -> tuple[DatabaseRef, Shadow | None]:
    """``(database, shadow or None)`` for a target: a shadow means the shadow of its ref."""
    if isinstance(target, Shadow):
        return target.ref, target
    return target, None


@dataclass
class Dump:
    """A dump in progress: the byte stream, and exact per-table row counts taken in the dump's own
    snapshot (filled in by the time the stream reaches EOF; empty if the engine cannot count)."""

    stream: BinaryIO
    row_counts: dict[str, int] = field(default_factory=dict)
    #: what the operator should know about this dump (an excluded table the database does not have)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ToolCheck:
    """One finding of ``Engine.check``: what was checked and whether it is usable."""

    what: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class DumpOptions:
    """How to dump. ``native_compression`` is the dump tool's own compression level where it has one
    (PostgreSQL's custom format: 0 = none, as dataferry compresses with zstd; GOV.UK's layout asks
    for 1, as its consumers read the object as it is). Engines without one ignore it.
    ``database_name`` is the name the dump's header gives the database when a copy (a shadow or
    the scratch database) is dumped in place of the published one (MySQL; PostgreSQL's archive
    keeps the copy's name, which ``pg_restore`` ignores)."""

    native_compression: int = 0
    database_name: str | None = None
    #: where a dump that writes files first (``DumpsObjects``) may put them (default: the temp dir)
    spool_dir: Path | None = None


#: The options of a plain dump (a module-level default: dataclass instances are immutable here).
DEFAULT_DUMP = DumpOptions()


@dataclass(frozen=True)
class RestoreOptions:
    """How to restore: parallelism and where parallel restores may spool (local disk, cleaned up)."""

    jobs: int = 1
    spool_dir: Path | None = None


class Engine(Protocol):
    """Dumps and restores one kind of database. All I/O streams."""

    name: ClassVar[str]
    #: format of the decompressed dump bytes, recorded in the manifest (pg_custom, sql, sqlite, ...)
    dump_format: ClassVar[str]

    def check(self, db: DatabaseRef) -> list[ToolCheck]:
        """Tools present and compatible with the server, server reachable. Changes nothing."""
        ...

    def server_version(self, db: DatabaseRef) -> str:
        """The server's version string, for the manifest."""
        ...

    def dump(self, db: DatabaseRef, options: DumpOptions = DEFAULT_DUMP) -> AbstractContextManager[Dump]:
        """A dump of ``db``. A failed dump raises on read of its stream (at EOF at the latest)."""
        ...

    def row_counts(self, target: DbTarget) -> dict[str, int]:
        """Exact rows per table of ``target``: a live database or a shadow (tables named as in
        ``Dump.row_counts``, so a restore can compare them). ``shadow`` is deprecated: pass the
        shadow as the target."""
        ...

    def restore_shadow(self, db: DatabaseRef, src: BinaryIO, options: RestoreOptions) -> Shadow:
        """Take ``db``'s restore lock (``LockBusy`` if another restore holds it), then load ``src``
        into a new shadow beside ``db``. On failure, drops it, releases the lock and raises."""
        ...

    def swap(self, shadow: Shadow) -> None:
        """Atomically make the shadow the live database and drop the old one; only a shadow this
        process created is swapped in. Releases the restore lock once it succeeded."""
        ...

    def drop_shadow(self, shadow: Shadow) -> None:
        """Remove a shadow that will not be swapped in and release its lock; idempotent."""
        ...


# -- optional capabilities: an engine has one when it implements the protocol ---------------------


@runtime_checkable
class RunsSql(Protocol):
    """Optional capability of SQL engines, used by sanitisation: run scripts and queries on
    ``target``, a live database or a shadow. Any SQL error raises ``EngineError``. ``shadow`` is
    deprecated: pass the shadow as the target."""

    def run_sql(self, target: DbTarget, sql: str) -> list[Changed]:
        """Run a script; the first failing statement stops it and raises. Returns each
        data-changing statement with the rows it affected (``engines.statements``)."""
        ...

    def query(self, target: DbTarget, sql: str) -> list[tuple[object, ...]]:
        """Run one query and return its rows."""
        ...


@runtime_checkable
class ChecksSource(Protocol):
    """Optional capability: check that ``db`` exists and can be opened for a backup (``check``
    alone accepts a database that does not exist yet, because a restore target need not)."""

    def check_source(self, db: DatabaseRef) -> list[ToolCheck]:
        """Open the database read-only and change nothing."""
        ...


@runtime_checkable
class SweepsShadows(Protocol):
    """Optional capability of engines whose shadows are files a killed restore leaves behind
    (SQLite); server engines drop a dead restore's named shadow at the next restore."""

    def stale_shadows(self, db: DatabaseRef) -> list[str]:
        """What killed restores of ``db`` left (read-only; for ``check``)."""
        ...

    def remove_stale_shadows(self, db: DatabaseRef) -> list[str]:
        """Remove them, unless a restore of ``db`` is running now; returns what was removed."""
        ...


@runtime_checkable
class DescribesDumps(Protocol):
    """Optional capability: structured facts about a dump's source (server flavour, character set,
    dump tool, exclusions), recorded as ``Manifest.extra``."""

    def manifest_extra(self, db: DatabaseRef) -> dict[str, object]:
        """Facts about ``db`` and the tools that dump it, as JSON-ready values."""
        ...


@dataclass
class ObjectDump:
    """A dump in progress as several files (one per table's data, plus its table of contents):
    ``files`` yields each finished file's name and bytes, in the order they finish; the engine
    removes a file once the consumer asks for the next. ``row_counts`` and ``warnings`` as ``Dump``'s
    (complete once ``files`` is exhausted)."""

    files: Iterator[tuple[str, BinaryIO]]
    row_counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class ObjectSource(Protocol):
    """The objects of an artifact, as a restore reads them (``pipeline`` provides it): each one
    verified against its manifest entry as it streams, decrypted and decompressed."""

    def names(self) -> list[str]:
        """The names of the objects (file names inside the dump), as the manifest lists them."""
        ...

    def size(self, name: str) -> int:
        """Stored bytes of an object (to start the largest first)."""
        ...

    def open(self, name: str) -> AbstractContextManager[BinaryIO]:
        """The decoded bytes of one object; reading to the end verifies it (``VerificationFailed``
        otherwise), and leaving the block reads and verifies what was left unread. Each object may
        be opened once; thread-safe."""
        ...


@runtime_checkable
class DumpsObjects(Protocol):
    """Optional capability: dump a database as one object per table's data plus a table of
    contents, and restore such an artifact by streaming its objects into a shadow with several
    workers at once, with nothing spooled to local disk (PostgreSQL's ``pg_directory``)."""

    objects_format: ClassVar[str]

    def dump_objects(
        self, db: DatabaseRef, options: DumpOptions, jobs: int
    ) -> AbstractContextManager[ObjectDump]:
        """A dump of ``db`` as files, made by ``jobs`` workers. A failed dump raises while
        ``files`` is iterated (at its end at the latest)."""
        ...

    def restore_shadow_objects(
        self, db: DatabaseRef, source: ObjectSource, options: RestoreOptions
    ) -> Shadow:
        """As ``restore_shadow``, from ``source``'s objects with ``options.jobs`` workers."""
        ...


def manifest_extra(engine: Engine, db: DatabaseRef) -> dict[str, object]:
    """What ``engine`` records about ``db`` in ``Manifest.extra``; empty for engines that record
    nothing."""
    return engine.manifest_extra(db) if isinstance(engine, DescribesDumps) else {}


@runtime_checkable
class SizesDatabases(Protocol):
    """Optional capability: about how many bytes a dump of a database will be, from what the
    database says of its size, so a backup shows a total and an ETA instead of ``?``."""

    def database_size(self, db: DatabaseRef) -> int | None:
        """Bytes a dump of ``db`` will be, about (None: unknown)."""
        ...


def estimated_dump_size(engine: Engine, db: DatabaseRef) -> int | None:
    """``engine``'s estimate of a dump of ``db``; None for engines without one, or when asking
    failed (an estimate is for the progress bar: the backup itself reports real failures)."""
    if not isinstance(engine, SizesDatabases):
        return None
    try:
        size = engine.database_size(db)
    except Exception:
        return None
    return size if size else None


@runtime_checkable
class LimitsJobs(Protocol):
    """Optional capability: how many parallel restore workers the server can take now, so that
    ``--jobs`` left to its default (auto) never asks for more connections than the server, the
    role or the account still allows."""

    def max_jobs(self, db: DatabaseRef) -> int | None:
        """Workers a restore into ``db`` may start (its own extra connections already taken off);
        None when the server sets no limit. Reads only."""
        ...


# -- the registry --------------------------------------------------------------------------------


def drop_after_failure(engine: Engine, shadow: Shadow, failure: BaseException | None) -> None:
    """Drop ``shadow`` because ``failure`` stopped its restore. If the drop fails too, ``failure``
    stays the one reported (it says what happened to the live database) and the drop's failure
    becomes a note on it; with no failure pending, the drop's own error is raised."""
    try:
        engine.drop_shadow(shadow)
    except Exception as drop_exc:
        if failure is None:
            raise
        failure.add_note(
            f"the shadow {shadow.name} could not be dropped ({drop_exc}); the next restore drops it"
        )


def get_engine(name: str) -> Engine:
    """An instance of the named engine."""
    target = _REGISTRY.get(name)
    if target is None:
        raise ConfigError(
            f"engine {name!r} is not supported yet",
            hint=f"supported engines: {', '.join(engine_names())}",
        )
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise NotReady(f"engine {name!r} cannot be loaded: {exc}") from exc
    engine: Engine = getattr(module, cls_name)()
    return engine
