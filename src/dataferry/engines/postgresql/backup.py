"""The backup side: which tables lose their rows, and the dump stream that also counts rows in the
dump's own snapshot (see the package docstring)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import psycopg

from dataferry.config import DatabaseRef
from dataferry.engines.postgresql.sql import (
    Conn,
    connect,
    conninfo,
    count_rows,
    first_line,
    scalar,
    sql_errors,
    table_key,
    user_tables,
    where,
)
from dataferry.errors import EngineError
from dataferry.streams import ProcessReader, Reader

Table = tuple[str, str]


def resolve_excluded(tables: Sequence[Table], names: Sequence[str]) -> tuple[set[Table], list[str]]:
    """Tables named by ``exclude_tables`` (``table`` in any schema or ``schema.table``), and the
    names that match no table (a warning, as for MySQL's ``--ignore-table``)."""
    out: set[Table] = set()
    unknown = []
    for name in names:
        hits = [t for t in tables if table_key(t) == name or ("." not in name and t[1] == name)]
        if not hits:
            unknown.append(name)
        out.update(hits)
    return out, unknown


def dump_pattern(table: Table) -> str:
    """A pg_dump table pattern matching exactly this table (quoted, so no wildcards apply)."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in table)


@dataclass(frozen=True)
class DumpSnapshot:
    """A dump's snapshot and what its pg_dump command line needs."""

    pg_dump: str
    snapshot: str
    conninfo: str
    skipped: list[Table]
    counted: list[Table]
    warnings: list[str]

    def argv(self, format_args: list[str]) -> list[str]:
        """pg_dump in this snapshot, the excluded tables' rows left out, in ``format_args``."""
        return [
            self.pg_dump,
            *format_args,
            "--no-password",
            f"--snapshot={self.snapshot}",
            *(f"--exclude-table-data={dump_pattern(t)}" for t in self.skipped),
            f"--dbname={self.conninfo}",
        ]


@contextlib.contextmanager
def dump_snapshot(pg_dump: str, db: DatabaseRef) -> Iterator[tuple[Conn, DumpSnapshot]]:
    """A REPEATABLE READ transaction on ``db`` with an exported snapshot (the connection, which the
    row counter then uses), and what a pg_dump in that snapshot needs."""
    with contextlib.closing(connect(db)) as conn:
        with sql_errors(f"starting the dump of {where(db)}"):
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            snapshot = str(scalar(conn, "SELECT pg_export_snapshot()"))
            tables = user_tables(conn)
        skipped, unknown = resolve_excluded(tables, db.exclude_tables)
        warnings = [
            f"exclude_tables of {db.name}: no table {name!r} in {where(db)}; check the spelling "
            "(a misspelt name copies the table it meant to leave out)"
            for name in unknown
        ]
        yield (
            conn,
            DumpSnapshot(
                pg_dump=pg_dump,
                snapshot=snapshot,
                conninfo=conninfo(db),
                skipped=sorted(skipped),
                counted=[t for t in tables if t not in skipped],
                warnings=warnings,
            ),
        )


class PgRowCounter:
    """Counts rows of ``tables`` on a background thread, inside the dump's snapshot transaction."""

    def __init__(self, conn: Conn, tables: list[Table]) -> None:
        self._conn = conn
        self._tables = tables
        self._counts: dict[str, int] = {}
        self._error: BaseException | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="dataferry-pg-count", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # Inside a savepoint: a failed count must not abort the transaction, which would void the
        # exported snapshot before pg_dump imported it and hide pg_dump's own, clearer error.
        try:
            self._conn.execute("SAVEPOINT dataferry_count")
            for table in self._tables:
                if self._stopping:
                    return
                self._counts[table_key(table)] = count_rows(self._conn, table)
        except BaseException as exc:  # handed to the reading thread by result()
            self._error = exc
            with contextlib.suppress(psycopg.Error):
                self._conn.execute("ROLLBACK TO SAVEPOINT dataferry_count")

    def result(self) -> dict[str, int]:
        """Wait for the counts; a failed count fails the backup."""
        self._thread.join()
        if self._error is not None:
            raise EngineError(f"counting rows in the dump's snapshot failed: {first_line(self._error)}")
        return dict(self._counts)

    def stop(self) -> None:
        """Abandon counting (the dump was abandoned): cancel the running query and wait."""
        self._stopping = True
        if self._thread.is_alive():
            with contextlib.suppress(psycopg.Error):
                self._conn.cancel_safe(timeout=10)
        self._thread.join(timeout=30)


class DumpStream(Reader):
    """pg_dump's output; at EOF it also waits for the row counts (and raises if either failed)."""

    def __init__(self, reader: ProcessReader, counter: PgRowCounter) -> None:
        self._reader = reader
        self._counter = counter
        self._counted = False
        self.row_counts: dict[str, int] = {}

    def read(self, n: int = -1) -> bytes:
        """Read from pg_dump; at EOF collect the row counts."""
        data = self._reader.read(n)
        if not data and n != 0 and not self._counted:
            self._counted = True
            self.row_counts.update(self._counter.result())
        return data

    def close(self) -> None:
        """Stop pg_dump if it still runs, and stop counting."""
        self._reader.close()
        self._counter.stop()
