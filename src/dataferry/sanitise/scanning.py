"""The gate's scan of every text column, on several connections at once.

``checks.scan_queries`` gives one query per table that sums the matches of every detector in every
text column in one pass. With ``jobs`` above one (a restore's workers), those queries run on that
many connections at once, the largest table first, and a large table whose rows the dialect can cut
by key (MariaDB and MySQL: a primary key of one integer column) is scanned as ``jobs`` key ranges
whose sums are added. MariaDB runs a query on one CPU, so one large table otherwise keeps the whole
scan on one CPU (at 1 GB the chain's scan was most of its sanitisation step). PostgreSQL scans a
large table with its own parallel workers and is not cut; SQLite scans on one connection.

The ranges always cover every row: the first is ``key < b1``, the last ``key >= bn`` and the others
``b(i) <= key < b(i+1)``, and a primary key is never NULL, so no row falls outside them whatever
the bounds (equal cuts of MIN..MAX: they only balance the work, never decide what is scanned).
"""

from __future__ import annotations

import itertools
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dataferry.progress import Reporter
from dataferry.sanitise.checks import ScanQuery

if TYPE_CHECKING:
    from dataferry.sanitise.execution import Target

#: A table smaller than this is scanned by one query: cutting it would cost more than it saves.
SPLIT_BYTES = 64 * 1024 * 1024

Counts = dict[tuple[str, str, str], int]


@dataclass(frozen=True)
class Piece:
    """One query of the scan: a table's, or one key range of it; ``weight`` orders the work."""

    query: ScanQuery
    sql: str
    weight: int


def scan(t: Target, queries: list[ScanQuery], kinds: dict[str, str], reporter: Reporter) -> Counts:
    """``{(table, column, detector): matches}`` of every scan query, on up to ``t.jobs`` connections."""
    pieces = plan(t, queries, kinds)
    jobs = min(t.jobs, len(pieces))
    if jobs > 1:
        reporter.info(f"scan: {len(pieces)} queries over {len(queries)} tables, {jobs} at once")
    counts: Counts = {}
    for piece, row in _run(t, pieces, jobs):
        for (column, detector), value in zip(piece.query.cells, row, strict=True):
            key = (piece.query.table, column, detector)
            counts[key] = counts.get(key, 0) + int(str(value or 0))
    return counts


def plan(t: Target, queries: list[ScanQuery], kinds: dict[str, str]) -> list[Piece]:
    """The scan's queries, large tables cut into key ranges where the dialect can, largest first."""
    keys_sql = t.dialect.scan_keys_query() if t.jobs > 1 and queries else None
    if keys_sql is None:
        return [Piece(q, q.sql, 0) for q in queries]
    rows = t.query(keys_sql, "list the tables' keys for the scan")
    keys = _single_integer_keys(rows, t.dialect.integer_types)
    pieces: list[Piece] = []
    for q in queries:
        key, size = keys.get(q.table, (None, 0))
        if key is None or size < SPLIT_BYTES or kinds.get(q.table, "table") != "table":
            pieces.append(Piece(q, q.sql, size))
            continue
        ranges = _ranges(t, q.table, key)
        pieces += [Piece(q, f"{q.sql} WHERE {cond}", size // len(ranges)) for cond in ranges]
    return sorted(pieces, key=lambda p: -p.weight)


def _single_integer_keys(
    rows: list[tuple[object, ...]], integer: frozenset[str]
) -> dict[str, tuple[str | None, int]]:
    """``{table: (key column or None, bytes)}``: the column when the primary key is one column of
    a type in ``integer``."""
    columns: dict[str, list[tuple[str, str]]] = {}
    sizes: dict[str, int] = {}
    for table, column, data_type, size in rows:
        name = str(table)
        sizes[name] = int(str(size or 0))
        if column is not None:
            columns.setdefault(name, []).append((str(column), str(data_type).lower()))
    out: dict[str, tuple[str | None, int]] = {}
    for name, size in sizes.items():
        cols = columns.get(name, [])
        single = len(cols) == 1 and cols[0][1] in integer
        out[name] = (cols[0][0] if single else None, size)
    return out


def _ranges(t: Target, table: str, key: str) -> list[str]:
    """Conditions cutting ``table`` by ``key`` into ``t.jobs`` ranges that cover every row."""
    column = t.dialect.ident(key)
    row = t.query(f"SELECT MIN({column}), MAX({column}) FROM {t.dialect.table(table)}", f"scan {table}")
    low, high = row[0] if row else (None, None)
    if low is None or high is None:
        return ["1 = 1"]  # no rows
    return key_ranges(column, int(str(low)), int(str(high)), t.jobs)


def key_ranges(column: str, low: int, high: int, parts: int) -> list[str]:
    """Conditions on ``column`` for ``parts`` equal cuts of ``low..high``; together they cover
    every value (the first and last ranges are open), each value in exactly one."""
    span = high - low + 1
    bounds = [low + span * i // parts for i in range(1, min(parts, span))]
    if not bounds:
        return ["1 = 1"]
    conds = [f"{column} < {bounds[0]}"]
    conds += [f"{column} >= {a} AND {column} < {b}" for a, b in itertools.pairwise(bounds)]
    return [*conds, f"{column} >= {bounds[-1]}"]


def _run(t: Target, pieces: list[Piece], jobs: int) -> list[tuple[Piece, tuple[object, ...]]]:
    """Each piece's row of sums, on ``jobs`` connections (each ``Target.query`` opens its own). A
    failure or a stop raises at once; pieces not started are cancelled, and those running end
    with their query (a shadow's drop waits for them or, on PostgreSQL, ends them)."""
    if jobs <= 1:
        return [(p, t.query(p.sql, f"scan {p.query.table}")[0]) for p in pieces]
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="dataferry-scan")
    try:
        futures: dict[Future[list[tuple[object, ...]]], Piece] = {
            pool.submit(t.query, p.sql, f"scan {p.query.table}"): p for p in pieces
        }
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in done:
            future.result()  # the first failure, raised here
        return [(futures[f], f.result()[0]) for f in futures]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
