"""The parallel artifact format, ``pg_directory``: the backup side.

``pg_dump --format=directory --jobs N`` writes one file per table's data (``<dump id>.dat``), then
the table of contents (``toc.dat``; large objects add ``blobs.toc`` and ``blob_<oid>.dat``). Each
table's file is handed on (compressed, checksummed and stored by the pipeline) while pg_dump writes
it, read as it grows, until pg_dump's leader says it is done (``--verbose``: ``finished item <id>
TABLE DATA ...``), so dumping and storing overlap as in a single stream; files that other workers
finished meanwhile follow. A file is deleted once stored, so the local disk holds what is dumped
and not stored yet: where pg_dump is faster than the compression, nearly the whole dump (the
pipeline reserves room for it first, ``runspace.backup_spool``). The table of contents comes last,
after pg_dump succeeded.

The dump runs in an exported snapshot, as the single-stream dump does, but its rows are counted in
the dump's own output rather than by a ``count(*)`` of every table beside it: COPY's text format
writes one line per row, so each table's file is counted as it is stored, and production is read
once instead of twice (``RowsFromFiles``).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, BinaryIO, cast

from dataferry.engines import ObjectDump
from dataferry.engines.postgresql.sql import Conn, count_rows, sql_errors, table_key, user_table_oids
from dataferry.engines.postgresql.tools import run_tool
from dataferry.private import private_dir
from dataferry.streams import CHUNK, Reader, process_failed, spawn

TOC = "toc.dat"
#: pg_dump's leader, in parallel mode, after a worker finished a table's data file.
_FINISHED = re.compile(r"^pg_dump: finished item (\d+) TABLE DATA ")
#: Lines of pg_dump's stderr kept for an error message (its errors come last).
_TAIL_LINES = 40
#: A table's data file (``<dump id>.dat``; large objects are ``blob_<oid>.dat``).
_TABLE_FILE = re.compile(r"^\d+\.dat$")
#: How long to wait for pg_dump to write more (it writes megabytes between two polls).
_POLL = 0.01
#: How pg_dump ends every table's data file: COPY's end-of-data marker, then two empty lines.
_TRAILER = b"\\.\n\n\n"
#: A table's data in ``pg_restore --list``: its dump id, then 0 and the table's OID.
_DATA_ENTRY = re.compile(rb"^(\d+); 0 (\d+) TABLE DATA ", re.M)


def message_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with pg_dump's messages in English: the leader's progress lines are parsed."""
    return {**env, "LC_MESSAGES": "C", "LANGUAGE": "C"}


class _Progress:
    """Reads pg_dump's stderr on a thread: which tables' files are finished, and a tail of the rest."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._finished: set[str] = set()
        self._lock = threading.Lock()
        self.ended = threading.Event()  # pg_dump closed its stderr: it exited
        self._tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self._thread = threading.Thread(
            target=self._pump, args=(stream,), name="dataferry-pg-dump", daemon=True
        )
        self._thread.start()

    def _pump(self, stream: IO[bytes]) -> None:
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip()
                m = _FINISHED.match(line)
                if m:
                    with self._lock:
                        self._finished.add(f"{m.group(1)}.dat")
                else:
                    self._tail.append(line)
        finally:
            stream.close()
            self.ended.set()

    def done(self, name: str) -> bool:
        """pg_dump finished ``name`` (or exited: nothing more will be written)."""
        with self._lock:
            return name in self._finished or self.ended.is_set()

    def tail(self) -> str:
        """The last lines pg_dump wrote that were not progress (its errors, where there are some)."""
        self._thread.join(timeout=10)
        errors = [line for line in self._tail if "pg_dump: error" in line or "detail" in line]
        return "\n".join(errors or self._tail)


class _Growing(Reader):
    """A table's file that pg_dump may still be writing: at its current end, a read waits for
    more until ``finished()`` says pg_dump is done with it. So a large table is compressed and
    stored while it is dumped, as a single-stream dump is, instead of after."""

    def __init__(self, f: BinaryIO, finished: Callable[[], bool]) -> None:
        self._f = f
        self._finished = finished

    def read(self, n: int = -1) -> bytes:
        """The next bytes; empty only once the file is finished and read to its end."""
        while True:
            finished = self._finished()  # before the read: then it read the last bytes
            data = self._f.read(n if n > 0 else CHUNK)
            if data or finished:
                return data
            time.sleep(_POLL)


class _Lines(Reader):
    """Counts the lines of a table's data file as it is read. COPY's text format writes one line
    per row (a newline inside a value is written as ``\\n``), so the rows are the lines before
    pg_dump's trailer."""

    def __init__(self, inner: BinaryIO | Reader) -> None:
        self._inner = inner
        self.lines = 0
        self._tail = b""

    def read(self, n: int = -1) -> bytes:
        """The next bytes of the file, counted."""
        data = self._inner.read(n)
        self.lines += data.count(b"\n")
        self._tail = (self._tail + data[-len(_TRAILER) :])[-len(_TRAILER) :]
        return data

    def rows(self) -> int | None:
        """The rows read, or None when the file did not end as pg_dump ends a table's data."""
        return self.lines - _TRAILER.count(b"\n") if self._tail == _TRAILER else None


class RowsFromFiles:
    """A directory dump's row counts, counted in the table files as they are stored.

    Which table a file holds comes from the table of contents (a table's data entry carries the
    table's OID), matched against the tables of the dump's snapshot. A table whose file was not
    counted, or did not end as pg_dump ends one, is counted with ``count(*)`` in the snapshot, so
    every table always gets an exact count.
    """

    def __init__(
        self, conn: Conn, tables: Sequence[tuple[str, str]], pg_restore: str, env: dict[str, str]
    ) -> None:
        self._conn, self._pg_restore, self._env = conn, pg_restore, env
        wanted = set(tables)
        with sql_errors("listing the tables to count"):
            self._tables = {oid: t for oid, t in user_table_oids(conn).items() if t in wanted}
        self._files: dict[str, _Lines] = {}

    def counting(self, name: str, reader: BinaryIO | Reader) -> _Lines:
        """``reader`` (table file ``name``), its lines counted as it is read."""
        self._files[name] = _Lines(reader)
        return self._files[name]

    def result(self, directory: Path) -> dict[str, int]:
        """Every table's rows, once pg_dump has written its table of contents into ``directory``."""
        listing = run_tool([self._pg_restore, "--list", str(directory)], message_env(self._env))
        by_oid = {int(oid): f"{dump_id.decode()}.dat" for dump_id, oid in _DATA_ENTRY.findall(listing)}
        counts: dict[str, int] = {}
        for oid, table in self._tables.items():
            counted = self._files.get(by_oid.get(oid, ""))
            rows = counted.rows() if counted is not None else None
            if rows is None:
                with sql_errors(f"counting the rows of {table_key(table)} in the dump's snapshot"):
                    rows = count_rows(self._conn, table)
            counts[table_key(table)] = rows
        return counts


@contextlib.contextmanager
def directory_dump(
    argv: Sequence[str], env: dict[str, str], rows: RowsFromFiles, spool: Path | None, serial: bool = False
) -> Iterator[ObjectDump]:
    """Run ``argv`` (pg_dump ``--format=directory --jobs N --verbose``, without ``--file``) into a
    private run directory under ``spool``; the ``ObjectDump`` hands each file on when it is done."""
    with private_dir(spool) as directory:
        out = directory / "dump"
        full = [*argv, f"--file={out}"]
        proc = spawn(full, env=message_env(env), stdout=subprocess.DEVNULL)
        assert proc.stderr is not None
        progress = _Progress(proc.stderr)
        dump = ObjectDump(files=iter(()))
        dump.files = _files(proc, full, progress, out, rows, dump, serial)
        try:
            yield dump
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def _files(
    proc: subprocess.Popen[bytes],
    argv: Sequence[str],
    progress: _Progress,
    out: Path,
    rows: RowsFromFiles,
    dump: ObjectDump,
    serial: bool,
) -> Iterator[tuple[str, BinaryIO]]:
    handed: set[str] = set()
    while (name := _next_table(out, handed, progress)) is not None:
        handed.add(name)
        yield from _hand_on(out / name, _finished(out, name, progress, serial), rows)
    code = proc.wait()
    if code != 0:
        error = process_failed("pg_dump", argv, code, progress.tail())
        if "No space left" in error.stderr_tail or "Disk quota" in error.stderr_tail:
            error.hint = (
                f"the disk under {out.parent.parent} filled up with tables not yet stored; nothing was "
                "published: set settings.spool_dir to a larger disk (it may hold the whole uncompressed dump)"
            )
        raise error
    dump.row_counts.update(rows.result(out))
    # Large objects, and anything else pg_dump wrote, then the table of contents last.
    rest = sorted(p.name for p in out.iterdir() if p.name not in handed and p.name != TOC)
    for name in [*rest, TOC]:
        yield from _hand_on(out / name)


def _next_table(out: Path, handed: set[str], progress: _Progress) -> str | None:
    """The next table file to store: a finished one first (quick), else the one pg_dump started
    first (read as it grows); None once pg_dump has exited and every table file was handed on."""
    while True:
        ended = progress.ended.is_set()  # before listing: then the listing is complete
        try:
            found = sorted(n for n in os.listdir(out) if _TABLE_FILE.match(n) and n not in handed)
        except FileNotFoundError:
            found = []  # pg_dump has not created its directory yet
        if found:
            finished = [n for n in found if progress.done(n)]
            return finished[0] if finished else min(found, key=lambda n: os.stat(out / n).st_mtime_ns)
        if ended:
            return None
        time.sleep(_POLL)


def _finished(out: Path, name: str, progress: _Progress, serial: bool) -> Callable[[], bool]:
    """When pg_dump is done with the table file ``name``: its leader said so (``--jobs`` 2 or more),
    or, dumping serially (one file open at a time), the next table's file exists; or pg_dump exited."""

    def finished() -> bool:
        if progress.done(name):
            return True
        return serial and any(_TABLE_FILE.match(n) and n != name for n in os.listdir(out))

    return finished


def _hand_on(
    path: Path, finished: Callable[[], bool] | None = None, rows: RowsFromFiles | None = None
) -> Iterator[tuple[str, BinaryIO]]:
    """Hand on the file at ``path`` (a table's file read as it grows, its lines counted), then
    delete it: stored, its disk space is free for the tables still being dumped."""
    with open(path, "rb") as f:
        reader: BinaryIO | Reader = _Growing(f, finished) if finished else f
        yield path.name, cast(BinaryIO, rows.counting(path.name, reader) if rows else reader)
    os.unlink(path)
