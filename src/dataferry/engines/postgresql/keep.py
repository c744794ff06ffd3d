"""``exclude_tables`` on restore: the target keeps its own rows of the excluded tables.

A PostgreSQL swap replaces the whole database (a rename), so the tables whose rows the artifact left
out (their definition is in the dump, because views and foreign keys may depend on them) are filled
in the shadow from the live database just before the swap: ``COPY ... TO STDOUT`` from the live
table streamed into ``COPY ... FROM STDIN`` of the shadow's empty one (bounded memory), in one
transaction per table, with the shadow's sequences owned by the table moved on to the live values.
The rows are the target's own: they are not checked against the restored tables' foreign keys
(``session_replication_role = replica``, where the role may set it; otherwise they are checked, and
a row whose parent the restore removed fails the swap before anything changed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import psycopg
from psycopg import sql

from dataferry.config import DatabaseRef
from dataferry.engines.postgresql.backup import Table, resolve_excluded
from dataferry.engines.postgresql.sql import (
    Conn,
    connect,
    count_rows,
    first_line,
    live_name,
    table_key,
    user_tables,
)
from dataferry.errors import EngineError


def keep_target_rows(db: DatabaseRef, shadow: str, names: Sequence[str]) -> list[str]:
    """Copy the live rows of the excluded tables ``names`` into the shadow where the shadow's copy
    of the table is empty (the artifact left its rows out). Returns the tables filled."""
    if not names:
        return []
    filled: list[str] = []
    with (
        contextlib.closing(connect(db, live_name(db))) as src,
        contextlib.closing(connect(db, shadow)) as dst,
    ):
        in_live, _ = resolve_excluded(user_tables(src), names)
        in_shadow = set(user_tables(dst))
        for table in sorted(in_live & in_shadow):
            if count_rows(dst, table) == 0:  # rows in the artifact win: it did not exclude them
                _copy_table(src, dst, table)
                filled.append(table_key(table))
    return filled


def _columns(conn: Conn, table: Table) -> list[str]:
    """The table's stored columns in order (generated columns are computed, not copied)."""
    found = conn.execute(
        "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 "
        "AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum",
        (_regclass(conn, table),),
    ).fetchall()
    return [str(r[0]) for r in found]


def _regclass(conn: Conn, table: Table) -> str:
    """``schema.table`` quoted as a ``regclass`` literal reads it."""
    return sql.SQL("{}.{}").format(*map(sql.Identifier, table)).as_string(conn)


def _copy_table(src: Conn, dst: Conn, table: Table) -> None:
    what = f"keeping the target's rows of {table_key(table)}"
    columns = _columns(dst, table)
    missing = sorted(set(columns) - set(_columns(src, table)))
    if missing:
        raise EngineError(
            f"{what}: the live table has no column {', '.join(missing)}, which the restored one has",
            hint="the excluded table's definition changed: migrate the target's table first, or take "
            "it out of exclude_tables for this restore",
        )
    name = sql.SQL("{}.{}").format(*map(sql.Identifier, table))
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    try:
        with dst.transaction():
            _unchecked(dst)
            with (
                src.cursor().copy(sql.SQL("COPY {} ({}) TO STDOUT").format(name, cols)) as out,
                dst.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(name, cols)) as into,
            ):
                for chunk in out:
                    into.write(chunk)
            _sequences(src, dst, table)
    except psycopg.Error as exc:
        raise EngineError(
            f"{what}: {first_line(exc)}", hint="nothing was swapped in; the live database is unchanged"
        ) from None


def _unchecked(dst: Conn) -> None:
    """Skip the shadow's foreign-key triggers for this transaction, where the role may."""
    try:
        with dst.transaction():  # a savepoint: a refusal does not abort the copy's transaction
            dst.execute("SET LOCAL session_replication_role = replica")
    except psycopg.errors.InsufficientPrivilege:
        pass


def _sequences(src: Conn, dst: Conn, table: Table) -> None:
    """Move the shadow's sequences owned by ``table`` to the live values, so that new rows do not
    collide with the kept ones."""
    owned = dst.execute(
        "SELECT n.nspname, s.relname FROM pg_class s JOIN pg_namespace n ON n.oid = s.relnamespace "
        "JOIN pg_depend d ON d.objid = s.oid "
        "WHERE s.relkind = 'S' AND d.refobjid = %s::regclass AND d.deptype IN ('a', 'i')",
        (_regclass(dst, table),),
    ).fetchall()
    for schema, name in owned:
        row = src.execute(
            "SELECT last_value FROM pg_sequences WHERE schemaname = %s AND sequencename = %s", (schema, name)
        ).fetchone()
        if row is not None and row[0] is not None:  # NULL: never used in the live database
            dst.execute(
                "SELECT setval(format('%%I.%%I', %s::text, %s::text)::regclass, %s::bigint, true)",
                (schema, name, row[0]),
            )
