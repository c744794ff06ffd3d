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
3. ``pg_restore --section=post-data --jobs N``: indexes, constraints and triggers, in parallel.

Every table the table of contents names must be an object of the manifest, and every object of the
manifest is read to its end and verified (``pipeline`` checks the latter) before the swap.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql

from dataferry.config import DatabaseRef
from dataferry.engines import ObjectSource
from dataferry.engines.postgresql.directory import TOC
from dataferry.engines.postgresql.sql import Conn, connect, sql_errors, where
from dataferry.engines.postgresql.tools import run_tool
from dataferry.errors import EngineError, VerificationFailed
from dataferry.streams import CHUNK

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
    list lines (sequence values, large objects) and pg_restore's session settings."""

    directory: Path
    tables: list[TableData]
    other_data: list[bytes]
    settings: list[bytes]


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
    settings, copies = _copy_statements(pg_restore, directory, tables, env)
    tables = [TableData(t.file, t.label, c) for t, c in zip(tables, copies, strict=True)]
    return Toc(directory, tables, other, settings)


def _fetch(source: ObjectSource, name: str, directory: Path) -> None:
    with source.open(name) as src, open(directory / name, "wb") as out:
        shutil.copyfileobj(src, out, CHUNK)


def _copy_statements(
    pg_restore: str, directory: Path, tables: list[TableData], env: dict[str, str]
) -> tuple[list[bytes], list[bytes]]:
    """pg_restore's session settings and one COPY statement per table, in ``tables``' order."""
    if not tables:
        return [], []
    listed = directory / "tables.list"
    listed.write_bytes(b"".join(f"{t.file.removesuffix('.dat')}; 0 0 TABLE DATA\n".encode() for t in tables))
    script = run_tool([pg_restore, "--section=data", f"--use-list={listed}", "--file=-", str(directory)], env)
    first = script.find(b"\nCOPY ")
    settings = _SETTING.findall(script[: first if first >= 0 else len(script)])
    copies = _COPY.findall(script)
    if len(copies) != len(tables):
        raise EngineError(
            f"pg_restore rendered {len(copies)} COPY statements for {len(tables)} tables",
            hint="this pg_restore writes scripts dataferry does not understand; report it with its version",
        )
    return settings, copies


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

    def close(self) -> None:
        """Close every worker's connection."""
        for conn in self._all:
            with contextlib.suppress(Exception):
                conn.close()


def load_tables(db: DatabaseRef, shadow: str, source: ObjectSource, toc: Toc, jobs: int) -> dict[str, int]:
    """COPY every table's object into ``shadow`` with ``jobs`` workers, largest first; the first
    failure stops the others. Returns the rows each COPY loaded, by file."""
    stop = threading.Event()
    order = sorted(toc.tables, key=lambda t: source.size(t.file), reverse=True)
    sessions = _Sessions(db, shadow, toc.settings)
    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="dataferry-pg-load") as pool:
            futures = {pool.submit(_load_one, sessions, source, t, stop): t for t in order}
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                stop.set()
                for f in futures:
                    f.cancel()
                wait(futures)
                exc = failed[0].exception()
                assert exc is not None
                raise exc
            return {t.file: f.result() for f, t in futures.items()}
    finally:
        sessions.close()


def _load_one(sessions: _Sessions, source: ObjectSource, table: TableData, stop: threading.Event) -> int:
    if stop.is_set():
        return 0
    conn = sessions.get()
    with source.open(table.file) as data, conn.cursor() as cur:
        with sql_errors(f"loading {table.label} into {sessions.where}"), cur.copy(table.copy) as copy:
            while chunk := data.read(CHUNK):
                if stop.is_set():
                    raise EngineError(f"loading {table.label} stopped: another table failed")
                copy.write(chunk)
        return cur.rowcount


def section_argv(base: Sequence[str], section: str, directory: Path, *extra: str) -> list[str]:
    """pg_restore ``base`` (into the shadow, errors fatal) for one section of ``directory``."""
    return [*base, f"--section={section}", *extra, str(directory)]


def restore_other_data(base: Sequence[str], toc: Toc, env: dict[str, str]) -> None:
    """Sequence values, large objects: the data entries that are not a table's rows."""
    if not toc.other_data:
        return
    listed = toc.directory / "other.list"
    listed.write_bytes(b"\n".join(toc.other_data) + b"\n")
    run_tool(section_argv(base, "data", toc.directory, f"--use-list={listed}"), env)
