"""The parallel artifact format, ``pg_directory``: the restore side, with no local spool.

The table of contents (``toc.dat``, kilobytes) and any large objects are fetched into a private run
directory; every table's data streams from the store straight into the shadow. In the order
``pg_restore --jobs`` keeps:

1. ``pg_restore --section=pre-data``: the schema (tables without indexes or constraints);
2. the data: the tables' objects with ``jobs`` workers at once, largest first, each streamed
   (verified, decrypted, decompressed by the ``ObjectSource``) into ``COPY ... FROM STDIN`` with
   pg_restore's own COPY statement and session settings (rendered from the table of contents with
   empty stand-ins for the data files); the rest of the data section (sequence values, large
   objects) through ``pg_restore --section=data``;
3. post-data: a table's own indexes, keys and triggers as soon as its rows are in while other
   tables still load (``postdata``: what ``pg_restore --jobs`` does), then the rest (foreign keys,
   the last table's indexes) with ``pg_restore --use-list --jobs N``.

Every table the table of contents names must be an object of the manifest, and every object of the
manifest is read to its end and verified (``pipeline`` checks the latter) before the swap.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql

from dataferry.config import DatabaseRef
from dataferry.engines import ObjectSource
from dataferry.engines.postgresql import postdata
from dataferry.engines.postgresql.directory import TOC
from dataferry.engines.postgresql.sql import Conn, connect, sql_errors, where
from dataferry.engines.postgresql.tools import run_tool
from dataferry.errors import EngineError, VerificationFailed
from dataferry.streams import CHUNK, process_failed, spawn

_ENTRY = re.compile(rb"^(\d+); \d+ \d+ (.*)$", re.M)
_COPY = re.compile(rb"^COPY .*? FROM stdin;$", re.M | re.S)
_SETTING = re.compile(rb"^(?:SET .*|SELECT pg_catalog\.set_config\(.*\));$", re.M)


@dataclass(frozen=True)
class TableData:
    """One table's data: its object (``<dump id>.dat``), what the TOC calls it, its COPY statement."""

    file: str
    label: str
    copy: bytes = b""


@dataclass(frozen=True)
class Toc:
    """What a restore needs from the table of contents: the tables' data, the other data entries'
    list lines (sequence values, large objects), pg_restore's session settings and the post-data
    section split by table."""

    directory: Path
    tables: list[TableData]
    other_data: list[bytes]
    settings: list[bytes]
    post: postdata.PostData


def read_toc(pg_restore: str, source: ObjectSource, directory: Path, env: dict[str, str]) -> Toc:
    """Fetch the table of contents (and large objects) into ``directory``; find the tables' data
    and their COPY statements. A table whose object the manifest does not list is refused."""
    names = set(source.names())
    if TOC not in names:
        raise VerificationFailed(
            "the artifact has no table of contents (toc.dat)", hint="the artifact is broken; restore another"
        )
    _fetch(source, TOC, directory)
    listing = run_tool([pg_restore, "--list", "--section=data", str(directory)], env)
    tables: list[TableData] = []
    other: list[bytes] = []
    for m in _ENTRY.finditer(listing):
        dump_id, desc = m.group(1).decode(), m.group(2)
        if desc.startswith(b"TABLE DATA "):
            tables.append(TableData(file=f"{dump_id}.dat", label=desc.decode("utf-8", "replace")))
        else:
            other.append(m.group(0))
    missing = [t for t in tables if t.file not in names]
    if missing:
        raise VerificationFailed(
            f"the table of contents names {len(missing)} table(s) whose data the manifest does not list, "
            f"e.g. {missing[0].label} ({missing[0].file})",
            hint="the artifact is incomplete: nothing was changed; restore another with --artifact",
        )
    table_files = {t.file for t in tables}
    for name in sorted(names - table_files - {TOC}):
        _fetch(source, name, directory)  # large objects: blobs.toc, blob_<oid>.dat
    for t in tables:
        (directory / t.file).touch()  # an empty stand-in: pg_restore renders the COPY statement only
    settings, copies, owners = _copy_statements(pg_restore, directory, tables, env)
    tables = [TableData(t.file, t.label, c) for t, c in zip(tables, copies, strict=True)]
    return Toc(directory, tables, other, settings, _post_data(pg_restore, directory, owners, env))


def _post_data(
    pg_restore: str, directory: Path, owners: dict[int, str], env: dict[str, str]
) -> postdata.PostData:
    listed = run_tool([pg_restore, "--list", "--section=post-data", str(directory)], env)
    script = b""
    if owners and postdata.listing(listed):
        script = run_tool([pg_restore, "--verbose", "--section=post-data", "--file=-", str(directory)], env)
    return postdata.split(listed, script, owners)


def _fetch(source: ObjectSource, name: str, directory: Path) -> None:
    with source.open(name) as src, open(directory / name, "wb") as out:
        shutil.copyfileobj(src, out, CHUNK)


def _copy_statements(
    pg_restore: str, directory: Path, tables: list[TableData], env: dict[str, str]
) -> tuple[list[bytes], list[bytes], dict[int, str]]:
    """pg_restore's session settings and one COPY statement per table, in ``tables``' order, and
    the data file each table's dump ids stand for (``postdata.tables_by_id``)."""
    if not tables:
        return [], [], {}
    listed = directory / "tables.list"
    listed.write_bytes(b"".join(f"{t.file.removesuffix('.dat')}; 0 0 TABLE DATA\n".encode() for t in tables))
    argv = [pg_restore, "--verbose", "--section=data", f"--use-list={listed}", "--file=-", str(directory)]
    script = run_tool(argv, env)
    first = script.find(b"\nCOPY ")
    settings = _SETTING.findall(script[: first if first >= 0 else len(script)])
    copies = _COPY.findall(script)
    if len(copies) != len(tables):
        raise EngineError(
            f"pg_restore rendered {len(copies)} COPY statements for {len(tables)} tables",
            hint="this pg_restore writes scripts dataferry does not understand; report it with its version",
        )
    owners = postdata.tables_by_id(postdata.headers(script), [t.file for t in tables])
    return settings, copies, owners


class _Sessions:
    """One connection to the shadow per worker thread, prepared once with pg_restore's session
    settings (a database of hundreds of small tables would otherwise pay a connection per table);
    all closed at the end."""

    def __init__(self, db: DatabaseRef, shadow: str, settings: list[bytes]) -> None:
        self._db, self._shadow, self._settings = db, shadow, settings
        self.where = where(db, shadow)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[Conn] = []

    def get(self) -> Conn:
        """This thread's connection."""
        conn: Conn | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self._db, self._shadow)
            with self._lock:
                self._all.append(conn)
            with sql_errors(f"preparing to load into {where(self._db, self._shadow)}"):
                for setting in self._settings:
                    conn.execute(setting)
                if self._db.owner:
                    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(self._db.owner)))
            self._local.conn = conn
        return conn

    def release(self) -> None:
        """Close this thread's connection (the next ``get`` opens another)."""
        conn: Conn | None = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            with self._lock:
                self._all.remove(conn)
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        """Close every worker's connection."""
        for conn in self._all:
            with contextlib.suppress(Exception):
                conn.close()


#: A table's own post-data is built early only when its object is at least this large: below it,
#: a pg_restore of its own (~20 ms) costs more than building its indexes later with the rest.
EARLY_BYTES = 8 * 1024 * 1024


class OwnBuilds:
    """Each table's own post-data entries (``postdata``), built by ``pg_restore`` on the worker that
    loaded the table, once its rows are in and while other tables still load; the last table's are
    left to the final step, which has every worker. Builds still running when the restore stops
    are killed."""

    def __init__(self, argv: Sequence[str], toc: Toc, env: dict[str, str]) -> None:
        self._argv, self.toc, self._env = list(argv), toc, env
        self.stop = threading.Event()  # set by ``halt``: the loads and the builds end
        self._left = len(toc.tables)
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self.built: list[str] = []

    def loaded(self, table: TableData, size: int) -> bool:
        """``table``'s rows are in: whether to build its own entries now (other tables are still
        loading, it is large enough, it has entries of its own)."""
        with self._lock:
            self._left -= 1
            now = self._left > 0 and size >= EARLY_BYTES and table.file in self.toc.post.own
        return now and not self.stop.is_set()

    def build(self, table: TableData) -> None:
        """Build ``table``'s own entries with ``pg_restore``; an error of it fails the restore."""
        own = self.toc.post.own[table.file]
        argv = listed_argv(self._argv, "post-data", self.toc.directory, f"own-{table.file}", own)
        proc = spawn(argv, env=self._env, stdout=subprocess.DEVNULL)
        with self._lock:
            self._running.add(proc)
            if self.stop.is_set():
                proc.kill()
        try:
            _, err = proc.communicate()
        finally:
            with self._lock:
                self._running.discard(proc)
        if proc.returncode != 0:
            if self.stop.is_set():
                raise EngineError(f"building the indexes of {table.label} stopped: another table failed")
            raise process_failed("pg_restore", argv, proc.returncode, err.decode("utf-8", "replace"))
        with self._lock:
            self.built.append(table.file)

    def halt(self) -> None:
        """Stop: no new build starts, and the running ones are killed (the restore has failed or
        is stopping)."""
        self.stop.set()
        with self._lock:
            for proc in self._running:
                if proc.poll() is None:
                    proc.kill()


def load_tables(
    db: DatabaseRef, shadow: str, source: ObjectSource, toc: Toc, jobs: int, builds: OwnBuilds
) -> dict[str, int]:
    """COPY every table's object into ``shadow`` with ``jobs`` workers, largest first, each worker
    building a table's own post-data once it is loaded (``builds``); the first failure, or a stop,
    stops the others. Returns the rows each COPY loaded, by file."""
    order = sorted(toc.tables, key=lambda t: source.size(t.file), reverse=True)
    sessions = _Sessions(db, shadow, toc.settings)
    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="dataferry-pg-load") as pool:
            futures = {pool.submit(_load_one, sessions, source, t, builds): t for t in order}
            try:
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            except BaseException:  # a stop (SIGTERM, max_runtime) raised here: stop the workers too
                _halt(builds, futures)
                raise
            failed = [f for f in done if f.exception() is not None]
            if failed:
                _halt(builds, futures)
                wait(futures)
                exc = failed[0].exception()
                assert exc is not None
                raise exc
            return {t.file: f.result() for f, t in futures.items()}
    finally:
        sessions.close()


def _halt(builds: OwnBuilds, futures: Iterable[Future[int]]) -> None:
    builds.halt()
    for f in futures:
        f.cancel()


def _load_one(sessions: _Sessions, source: ObjectSource, table: TableData, builds: OwnBuilds) -> int:
    stop = builds.stop
    if stop.is_set():
        return 0
    conn = sessions.get()
    with source.open(table.file) as data, conn.cursor() as cur:
        with sql_errors(f"loading {table.label} into {sessions.where}"), cur.copy(table.copy) as copy:
            while chunk := data.read(CHUNK):
                if stop.is_set():
                    raise EngineError(f"loading {table.label} stopped: another table failed")
                copy.write(chunk)
        rows = cur.rowcount
    if builds.loaded(table, source.size(table.file)):
        sessions.release()  # one connection per worker at a time: the server was asked for jobs
        builds.build(table)
    return rows


def section_argv(base: Sequence[str], section: str, directory: Path, *extra: str) -> list[str]:
    """pg_restore ``base`` (into the shadow, errors fatal) for one section of ``directory``."""
    return [*base, f"--section={section}", *extra, str(directory)]


def listed_argv(
    base: Sequence[str], section: str, directory: Path, name: str, entries: Iterable[bytes]
) -> list[str]:
    """pg_restore ``base`` for only ``entries`` (``--use-list`` lines) of one section of
    ``directory``; the list is written beside the table of contents as ``NAME.list``."""
    listed = directory / f"{name}.list"
    listed.write_bytes(b"\n".join(entries) + b"\n")
    return section_argv(base, section, directory, f"--use-list={listed}")


def restore_other_data(base: Sequence[str], toc: Toc, env: dict[str, str]) -> None:
    """Sequence values, large objects: the data entries that are not a table's rows."""
    if not toc.other_data:
        return
    run_tool(listed_argv(base, "data", toc.directory, "other", toc.other_data), env)
