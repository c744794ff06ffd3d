"""Loading a dump into the shadow database: one streamed client, or spooled chunks loaded in parallel.

``jobs == 1`` streams the dump through one ``mariadb`` client: nothing is written to local disk.

``jobs > 1`` reads the whole dump first (so its checksum is verified before the server is touched),
spooling it into a private directory: one schema script (tables, sequences, view stand-ins), the
rows of each table cut into chunks (whole INSERT statements, or row lines for ``LOAD DATA``), one
``ALTER TABLE`` script per table for the keys held back, and the schema objects kept in memory.
Then the schema is created, the chunks are loaded by ``jobs`` clients at once (largest first,
unique and foreign-key checks off), the held-back keys are added, and the triggers, events,
routines and views come last. ``tables`` says which tables load with ``LOAD DATA`` and
which keys wait.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from dataferry.engines.mysql.conn import MAX_PACKET, OptionFile, Tool
from dataferry.engines.mysql.dumpfile import Part, Segment, is_data_control
from dataferry.engines.mysql.objects import SchemaObjects
from dataferry.engines.mysql.tables import (
    TableDef,
    as_load_data,
    connection_charset,
    load_data_statement,
    parse_create,
    rows_on_own_lines,
    session_settings,
)
from dataferry.private import private_dir
from dataferry.streams import StderrTail, process_failed, spawn

#: Unique and foreign-key checks are off while rows load (the dump's rows are already consistent).
INIT_COMMAND = "SET SESSION unique_checks=0, foreign_key_checks=0"
#: Rows of one table are cut into chunks of about this size, so one big table loads in parallel too.
CHUNK_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Client:
    """How to run the ``mariadb``/``mysql`` client against one database."""

    tool: Tool
    opts: OptionFile
    database: str

    def argv(self, *extra: str) -> list[str]:
        """The command line: the option file FIRST, then batch mode without client commands."""
        return [
            self.tool.path,
            self.opts.arg,
            "--batch",
            "--binary-mode",  # no shell escapes or client commands from a dump (DELIMITER still works)
            f"--max-allowed-packet={MAX_PACKET}",
            f"--database={self.database}",
            *extra,
        ]

    def run(self, script: bytes, what: str) -> None:
        """Run a script held in memory (schema objects: small); a failure raises ``EngineError``."""
        argv = self.argv()
        proc = spawn(argv, env=self.opts.env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        assert proc.stdin is not None and proc.stderr is not None
        err = StderrTail(proc.stderr)
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(script)
            proc.stdin.close()
        code = proc.wait()
        if code != 0:
            raise process_failed(what, argv, code, err.text())


# -- jobs = 1: stream -------------------------------------------------------------------------------


def stream_load(client: Client, segs: Iterable[Segment], objects: SchemaObjects) -> None:
    """Pipe the dump into one client, keeping the schema objects aside; events stay out of the shadow
    (they are created disabled, so the scheduler does not run them on a copy)."""
    argv = client.argv(f"--init-command={INIT_COMMAND}")
    proc = spawn(argv, env=client.opts.env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stderr is not None
    err = StderrTail(proc.stderr)
    what = f"{client.tool.name} (loading shadow {client.database})"
    try:
        _feed(proc.stdin, segs, objects)
    except BrokenPipeError:
        pass  # the client stopped reading: its exit status and stderr say why
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    code = proc.wait()
    if code != 0:
        raise process_failed(what, argv, code, err.text())


def _feed(stdin: IO[bytes], segs: Iterable[Segment], objects: SchemaObjects) -> None:
    write = stdin.write
    for part, name, seg in segs:
        write(seg if part is Part.DATA else objects.add(part, name, seg))
    stdin.close()


# -- jobs > 1: spool, then load in parallel --------------------------------------------------------


@dataclass
class SpoolPlan:
    """The spooled dump: the schema script, the row chunks (script path, row bytes) and the keys
    added after the rows (one ``ALTER TABLE`` script per table)."""

    schema: Path
    chunks: list[tuple[Path, int]] = field(default_factory=list)
    keys: list[tuple[Path, int]] = field(default_factory=list)
    #: The foreign keys held back, all tables' in one script: added one after another.
    foreign_keys: bytearray = field(default_factory=bytearray)
    #: The chunk scripts that are a LOAD DATA LOCAL statement of dataferry's own; only their
    #: client may read local files (a dump's own statements never get that right).
    local_infile: set[Path] = field(default_factory=set)


class _Spooler:
    """Routes classified lines to the schema script, per-table chunk files and key scripts.

    ``load_data`` allows ``LOAD DATA`` chunks (the server has ``local_infile``); see
    ``tables`` for when a table's rows go that way and when its keys are deferred.
    """

    def __init__(self, directory: Path, objects: SchemaObjects, chunk_bytes: int, load_data: bool) -> None:
        self.dir = directory
        self.objects = objects
        self.chunk_bytes = chunk_bytes
        self.load_data = load_data
        self.plan = SpoolPlan(schema=directory / "schema.sql")
        self._schema = self.plan.schema.open("wb")
        self._create: bytearray | None = None  # a CREATE TABLE statement being read
        self._tables: dict[str, TableDef] = {}
        self._rows_as_text: dict[str, str | None] = {}  # table: LOAD DATA charset, or None: INSERT
        self._chunk: IO[bytes] | None = None
        self._chunk_is_script = False
        self._chunk_size = 0

    def line(self, part: Part, name: str, line: bytes) -> None:
        """Route one classified line."""
        if part is Part.DATA:
            self._data(name, line)
            return
        self._close_chunk()
        kept = self.objects.add(part, name, line)
        if part is Part.STRUCTURE and (self._create is not None or line.startswith(b"CREATE TABLE ")):
            self._structure(kept)
        elif part in (Part.PREAMBLE, Part.STRUCTURE, Part.SEQUENCE, Part.STANDIN, Part.POSTAMBLE):
            self._flush_create()
            self._schema.write(kept)

    def _structure(self, line: bytes) -> None:
        """Collect a CREATE TABLE statement; at its end, write it with its keys deferred."""
        self._create = (self._create or bytearray()) + line
        if line.endswith(b";\n"):
            self._flush_create()

    def _flush_create(self) -> None:
        if self._create is None:
            return
        block, self._create = bytes(self._create), None
        table = parse_create(block)
        if table is None:
            self._schema.write(block)  # not a layout we know: run it as dumped
            return
        self._tables[table.name] = table
        self._schema.write(table.create)
        if keys := table.alter_keys():
            path = self.dir / f"keys-{len(self.plan.keys):06d}.sql"
            path.write_bytes(bytes(self.objects.preamble) + keys)
            self.plan.keys.append((path, 0))
        self.plan.foreign_keys += table.alter_foreign_keys()

    def _data(self, table: str, line: bytes) -> None:
        """A block of rows, or one line of a table's data section."""
        if line[:1] != b"(":
            if line.startswith(b"INSERT INTO ") and table not in self._rows_as_text:
                self._rows_as_text[table] = self._text_charset(table, line)
            if self._rows_as_text.get(table) or is_data_control(line) or line.startswith(b"--"):
                return  # LOAD DATA chunks hold row lines only
            if not line.strip():
                return
        if self._chunk is None:
            self._open_chunk(table)
        assert self._chunk is not None
        charset = self._rows_as_text.get(table)
        self._chunk.write(as_load_data(line) if charset else line)
        self._chunk_size += len(line)
        if self._chunk_size >= self.chunk_bytes and line.endswith(b";\n"):
            self._close_chunk()  # cut only between whole INSERT statements

    def _text_charset(self, table: str, insert_line: bytes) -> str | None:
        """The charset to LOAD DATA ``table``'s rows with; None: load them as INSERT statements."""
        found = self._tables.get(table)
        if not (self.load_data and found and found.plain_columns and rows_on_own_lines(insert_line)):
            return None
        return connection_charset(bytes(self.objects.preamble))

    def _open_chunk(self, table: str) -> None:
        number = len(self.plan.chunks)
        script = self.dir / f"chunk-{number:06d}.sql"
        charset = self._rows_as_text.get(table)
        # Either way a chunk is one transaction: a deadlock victim is rolled back whole and can
        # be loaded again. Each client also needs the dump's session settings (the preamble).
        if charset:
            rows = self.dir / f"chunk-{number:06d}.rows"
            settings = session_settings(bytes(self.objects.preamble))
            script.write_bytes(settings + load_data_statement(str(rows), table, charset))
            self.plan.local_infile.add(script)
            self._chunk = rows.open("wb")
        else:
            script.write_bytes(bytes(self.objects.preamble) + b"START TRANSACTION;\n")
            self._chunk = script.open("ab")
        self._chunk_is_script = not charset
        self._chunk_size = 0
        self.plan.chunks.append((script, 0))

    def _close_chunk(self) -> None:
        if self._chunk is not None:
            if self._chunk_is_script:
                self._chunk.write(b"COMMIT;\n")
            self._chunk.close()
            path, _ = self.plan.chunks[-1]
            self.plan.chunks[-1] = (path, self._chunk_size)
            self._chunk = None

    def close(self) -> None:
        """Close every file (also after a failure, so the directory can be removed)."""
        self._close_chunk()
        self._flush_create()
        self._schema.close()


def spool(
    segs: Iterable[Segment],
    objects: SchemaObjects,
    directory: Path,
    chunk_bytes: int = CHUNK_BYTES,
    *,
    load_data: bool = False,
) -> SpoolPlan:
    """Read the whole dump into ``directory`` (see the module docstring)."""
    spooler = _Spooler(directory, objects, chunk_bytes, load_data)
    try:
        for part, name, seg in segs:
            spooler.line(part, name, seg)
    finally:
        spooler.close()
    return spooler.plan


@contextlib.contextmanager
def spool_dir(base: Path | None) -> Iterator[Path]:
    """A private run directory under ``base`` (default: the system temp dir), always removed, and
    swept by the next run if this one is killed (``dataferry.private``)."""
    with private_dir(base) as path:
        yield path


class _Loads:
    """The client processes of a parallel load; the first failure stops all of them."""

    def __init__(self, client: Client, local_infile: Collection[Path] = ()) -> None:
        self.client = client
        self.argv = client.argv(f"--init-command={INIT_COMMAND}")
        self.local_infile = local_infile
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen[bytes]] = set()
        self.cancelled = False

    def load(self, path: Path) -> None:
        """Load one chunk file; a chunk rolled back by a deadlock or lock timeout is loaded again."""
        for attempt in range(1, RETRIES + 1):
            code, stderr = self._load_once(path)
            if code is None or code == 0:
                return
            if attempt < RETRIES and _retryable(stderr):
                time.sleep(0.2 * attempt)  # the chunk's transaction was rolled back whole: safe to redo
                continue
            what = f"{self.client.tool.name} (loading {path.name} into shadow {self.client.database})"
            raise process_failed(what, self.argv, code, stderr)

    def _load_once(self, path: Path) -> tuple[int | None, str]:
        """Run one client on ``path``: its exit code (None when cancelled) and stderr tail."""
        with self._lock:
            if self.cancelled:
                return None, ""
            argv = [*self.argv, "--local-infile=1"] if path in self.local_infile else self.argv
            with path.open("rb") as f:
                proc = spawn(argv, env=self.client.opts.env, stdin=f, stdout=subprocess.DEVNULL)
            self._procs.add(proc)
        assert proc.stderr is not None
        err = StderrTail(proc.stderr)
        code = proc.wait()
        with self._lock:
            self._procs.discard(proc)
            return (None if self.cancelled else code), err.text()

    def cancel(self) -> None:
        """Stop every running client; chunks not started yet are skipped."""
        with self._lock:
            self.cancelled = True
            for proc in self._procs:
                proc.kill()


#: Attempts per chunk when InnoDB rolls it back as a deadlock victim or after a lock wait timeout.
RETRIES = 5


def _retryable(stderr: str) -> bool:
    """ERROR 1213 (deadlock) and 1205 (lock wait timeout) roll back a transaction; retrying may work."""
    return "ERROR 1213 " in stderr or "ERROR 1205 " in stderr


def parallel_load(
    client: Client, chunks: Sequence[tuple[Path, int]], jobs: int, local_infile: Collection[Path] = ()
) -> None:
    """Load ``chunks`` with ``jobs`` clients at once, largest first (shortest total time)."""
    loads = _Loads(client, local_infile)
    ordered = sorted(chunks, key=lambda c: c[1], reverse=True)
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="dataferry-mysql-load") as pool:
        futures = [pool.submit(loads.load, path) for path, _ in ordered]
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                loads.cancel()
                exc = failed[0].exception()
                assert exc is not None
                raise exc
        except BaseException:
            loads.cancel()
            raise


def load_spooled(client: Client, plan: SpoolPlan, objects: SchemaObjects, jobs: int) -> None:
    """Schema first, rows in parallel, then triggers, events (disabled), routines and views."""
    with plan.schema.open("rb") as f:
        argv = client.argv(f"--init-command={INIT_COMMAND}")
        proc = spawn(argv, env=client.opts.env, stdin=f, stdout=subprocess.DEVNULL)
    assert proc.stderr is not None
    err = StderrTail(proc.stderr)
    code = proc.wait()
    if code != 0:
        raise process_failed(f"{client.tool.name} (creating the shadow's tables)", argv, code, err.text())
    parallel_load(client, plan.chunks, jobs, plan.local_infile)
    parallel_load(client, plan.keys, jobs)  # the secondary keys held back, tables in parallel
    if plan.foreign_keys:  # one table after another: see the tables module
        script = bytes(objects.preamble) + b"SET SESSION foreign_key_checks=0;\n" + plan.foreign_keys
        client.run(script, f"{client.tool.name} (adding the shadow's foreign keys)")
    client.run(objects.shadow_script(), f"{client.tool.name} (creating the shadow's triggers and views)")
