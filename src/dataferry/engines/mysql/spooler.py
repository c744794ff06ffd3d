"""Spooling a dump for a parallel restore: the schema, the rows cut into chunk files, the keys.

The spooler routes the dump's classified lines: the schema (tables, sequences, view stand-ins) to a
schema sink (a file, or the stdin of the client that creates the tables while the dump is still
being read), the rows of each table to chunk files (whole INSERT statements, or row lines for
``LOAD DATA``), one ``ALTER TABLE`` script per table for the keys held back, and the schema
objects to ``SchemaObjects``. ``tables`` says which tables load with ``LOAD DATA``, which keys wait
and how a chunk's session is set. A ``SpoolEvents`` is told when a chunk is complete and when a
table's rows have all been read, so that loading can start while the rest is still spooled.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from dataferry.engines.mysql.dumpfile import Part, Segment, is_data_control
from dataferry.engines.mysql.objects import SchemaObjects
from dataferry.engines.mysql.tables import (
    TableDef,
    as_load_data,
    connection_charset,
    load_data_charset,
    load_data_statement,
    parse_create,
    rows_on_own_lines,
    session_settings,
)
from dataferry.private import private_dir

#: Rows of one table are cut into chunks of about this size, so one big table loads in parallel too.
CHUNK_BYTES = 32 * 1024 * 1024


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


class SchemaSink(Protocol):
    """Where the schema text goes: a file, or a client's stdin."""

    def write(self, data: bytes, /) -> int:
        """Take ``data``."""


class SpoolEvents(Protocol):
    """What a spool tells a load that runs while it spools."""

    def chunk(self, table: str, script: Path, size: int) -> None:
        """``script`` (a chunk of ``size`` bytes of ``table``'s rows) is complete and can be loaded."""

    def table_read(self, table: str, keys: Path | None) -> None:
        """Every row of ``table`` was spooled; ``keys`` adds its held-back keys (None: none)."""


class Spooler:
    """Routes classified lines to the schema sink, per-table chunk files and key scripts.

    ``load_data`` allows ``LOAD DATA`` chunks (the server has ``local_infile``).
    """

    def __init__(
        self,
        directory: Path,
        objects: SchemaObjects,
        chunk_bytes: int,
        load_data: bool,
        schema: SchemaSink | None = None,
        events: SpoolEvents | None = None,
    ) -> None:
        self.dir = directory
        self.objects = objects
        self.chunk_bytes = chunk_bytes
        self.load_data = load_data
        self.events = events
        self.plan = SpoolPlan(schema=directory / "schema.sql")
        self._file = None if schema is not None else self.plan.schema.open("wb")
        self._schema: SchemaSink = schema if schema is not None else self._file  # type: ignore[assignment]
        self._create: bytearray | None = None  # a CREATE TABLE statement being read
        self._tables: dict[str, TableDef] = {}
        self._keys: dict[str, Path] = {}
        self._reading: str | None = None  # the last table created: its rows come next
        self._rows_as_text: dict[str, str | None] = {}  # table: LOAD DATA charset, or None: INSERT
        self._chunk: IO[bytes] | None = None
        self._chunk_table = ""
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
        self._table_read()  # a dump's rows of one table come before the next table's structure
        table = parse_create(block)
        if table is None:
            self._schema.write(block)  # not a layout we know: run it as dumped
            return
        self._tables[table.name] = table
        self._reading = table.name
        self._schema.write(table.create)
        if keys := table.alter_keys():
            path = self.dir / f"keys-{len(self.plan.keys):06d}.sql"
            path.write_bytes(bytes(self.objects.preamble) + keys)
            self.plan.keys.append((path, 0))
            self._keys[table.name] = path
        self.plan.foreign_keys += table.alter_foreign_keys()

    def _table_read(self) -> None:
        if self._reading is not None and self.events is not None:
            self.events.table_read(self._reading, self._keys.get(self._reading))
        self._reading = None

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
        if self._rows_as_text.get(table):
            _write_load_data(self._chunk, line)
        else:
            self._chunk.write(line)
        self._chunk_size += len(line)
        if self._chunk_size >= self.chunk_bytes and line.endswith(b";\n"):
            self._close_chunk()  # cut only between whole INSERT statements

    def _text_charset(self, table: str, insert_line: bytes) -> str | None:
        """The charset to LOAD DATA ``table``'s rows with; None: load them as INSERT statements."""
        found = self._tables.get(table)
        if not (self.load_data and found and found.plain_columns and rows_on_own_lines(insert_line)):
            return None
        charset = connection_charset(bytes(self.objects.preamble))
        return load_data_charset(found, charset) if charset else None

    def _open_chunk(self, table: str) -> None:
        number = len(self.plan.chunks)
        script = self.dir / f"chunk-{number:06d}.sql"
        charset = self._rows_as_text.get(table)
        found = self._tables.get(table)
        session = found.load_session() if found else b""
        # Either way a chunk is one transaction: a deadlock victim is rolled back whole and can
        # be loaded again. Each client also needs the dump's session settings (the preamble).
        if charset:
            rows = self.dir / f"chunk-{number:06d}.rows"
            settings = session_settings(bytes(self.objects.preamble)) + session
            script.write_bytes(settings + load_data_statement(str(rows), table, charset))
            self.plan.local_infile.add(script)
            self._chunk = rows.open("wb")
        else:
            script.write_bytes(bytes(self.objects.preamble) + session + b"START TRANSACTION;\n")
            self._chunk = script.open("ab")
        self._chunk_table = table
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
            if self.events is not None:
                self.events.chunk(self._chunk_table, path, self._chunk_size)

    def finish(self) -> None:
        """The dump ended: the last chunk and table are complete."""
        self._close_chunk()
        self._flush_create()
        self._table_read()

    def close(self) -> None:
        """Close every file (also after a failure, so the directory can be removed)."""
        if self._chunk is not None:
            self._chunk.close()
            self._chunk = None
        if self._file is not None:
            self._file.close()


def _write_load_data(out: IO[bytes], rows: bytes) -> None:
    """Row lines as LOAD DATA lines (``as_load_data``) without copying a block of rows: in a block
    the only ``);`` line is its last one (the next line starts another statement)."""
    end = len(rows) - 3
    if rows.endswith(b");\n") and rows.find(b");\n", 0, end) < 0:
        out.write(memoryview(rows)[:end])
        out.write(b"),\n")
    else:
        out.write(as_load_data(rows))


def spool(
    segs: Iterable[Segment],
    objects: SchemaObjects,
    directory: Path,
    chunk_bytes: int = CHUNK_BYTES,
    *,
    load_data: bool = False,
) -> SpoolPlan:
    """Read the whole dump into ``directory`` (see the module docstring)."""
    spooler = Spooler(directory, objects, chunk_bytes, load_data)
    try:
        for part, name, seg in segs:
            spooler.line(part, name, seg)
        spooler.finish()
    finally:
        spooler.close()
    return spooler.plan


@contextlib.contextmanager
def spool_dir(base: Path | None) -> Iterator[Path]:
    """A private run directory under ``base`` (default: the system temp dir), always removed, and
    swept by the next run if this one is killed (``dataferry.private``)."""
    with private_dir(base) as path:
        yield path
