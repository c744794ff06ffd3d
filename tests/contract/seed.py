"""Seeding and reading back a small, awkward data set, one function per engine.

The same logical data goes into every engine: a ``people`` table with unicode, quotes, backslashes,
newlines, tabs and NULLs; ``orders`` referencing it through a foreign key and an index; and an empty
``audit_log``. A ``variant`` changes every value and, for variant 1, adds a table ``old_stuff``,
so a restore over a seeded database must really replace it.

``snapshot_*`` functions read schema and data back as text in a canonical order, so two databases
compare equal exactly when their tables, columns, indexes and rows are the same.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from decimal import Decimal
from pathlib import Path

from servers import MariaDbServer, PgServer, mariadb_quote_ident, pg_quote_ident

Row = tuple[object, ...]

NAMES = ["Zoë Ångström", "O'Brien", 'Dan "the man"', "Back\\slash", "Łukasz", "李小龍", "Ordinary"]


def people(variant: int) -> list[Row]:
    """(id, name, email, note) rows; the note has newlines, tabs and NULLs."""
    rows: list[Row] = []
    for i in range(1, 41 + variant * 7):
        name = f"{NAMES[(i + variant) % len(NAMES)]} {i}"
        note: str | None = None if i % 5 == 0 else f"line one\nline\ttwo {variant}-{i} 100%_x"
        rows.append((i, name, f"person{i}.v{variant}@example.org", note))
    return rows


def orders(variant: int) -> list[Row]:
    """(id, person_id, amount, placed_on) rows referencing ``people``."""
    count = len(people(variant))
    return [
        (
            i,
            1 + (i * 7) % count,
            Decimal(f"{(i * 37 + variant) % 1000}.{i % 100:02d}"),
            f"2026-{1 + i % 12:02d}-15",
        )
        for i in range(1, 101 + variant * 13)
    ]


def expected_counts(variant: int) -> dict[str, int]:
    """Rows per table that ``seed_*`` creates for ``variant`` (bare table names)."""
    counts = {"people": len(people(variant)), "orders": len(orders(variant)), "audit_log": 0}
    if variant == 1:
        counts["old_stuff"] = 3
    return counts


def _literal(value: object, *, backslash_escapes: bool = False) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int | Decimal):
        return str(value)
    text = str(value).replace("'", "''")
    if backslash_escapes:
        text = text.replace("\\", "\\\\")
    return f"'{text}'"


def _inserts(table: str, rows: list[Row], quote: str, backslash_escapes: bool = False) -> Iterator[str]:
    for row in rows:
        values = ", ".join(_literal(v, backslash_escapes=backslash_escapes) for v in row)
        yield f"INSERT INTO {quote}{table}{quote} VALUES ({values});"


def _schema(text_type: str, amount_type: str, date_type: str, quote: str, suffix: str = "") -> list[str]:
    q = quote
    return [
        f"CREATE TABLE {q}people{q} (id INTEGER PRIMARY KEY, name {text_type} NOT NULL, "
        f"email VARCHAR(200) NOT NULL UNIQUE, note {text_type}){suffix};",
        f"CREATE TABLE {q}orders{q} (id INTEGER PRIMARY KEY, person_id INTEGER NOT NULL "
        f"REFERENCES {q}people{q} (id), amount {amount_type} NOT NULL, placed_on {date_type} NOT NULL){suffix};",
        f"CREATE INDEX orders_person ON {q}orders{q} (person_id);",
        f"CREATE TABLE {q}audit_log{q} (id INTEGER PRIMARY KEY, message {text_type}){suffix};",
    ]


def _script(variant: int, quote: str, schema: list[str], backslash_escapes: bool = False) -> str:
    lines = list(schema)
    lines += _inserts("people", people(variant), quote, backslash_escapes)
    lines += _inserts("orders", orders(variant), quote, backslash_escapes)
    if variant == 1:
        lines.append(f"CREATE TABLE {quote}old_stuff{quote} (id INTEGER PRIMARY KEY);")
        lines.append(f"INSERT INTO {quote}old_stuff{quote} VALUES (1), (2), (3);")
    return "\n".join(lines) + "\n"


# -- SQLite --------------------------------------------------------------------------------------


def seed_sqlite(path: Path, variant: int = 0) -> dict[str, int]:
    """Create the SQLite database file ``path`` with the data set; returns the row counts."""
    script = _script(variant, '"', _schema("TEXT", "NUMERIC(10,2)", "DATE", '"'))
    with closing(sqlite3.connect(path)) as con:
        con.executescript("BEGIN;\n" + script + "COMMIT;")
    return expected_counts(variant)


def snapshot_sqlite(path: Path) -> dict[str, list[str]]:
    """Schema and rows of a SQLite file."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
        schema = [
            f"{kind} {name}: {sql}"
            for kind, name, sql in con.execute(
                "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
            )
        ]
        out = {"schema": schema}
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"):
            rows = con.execute(f'SELECT * FROM "{table}" ORDER BY 1').fetchall()
            out[table] = [repr(r) for r in rows]
    return out


# -- PostgreSQL ----------------------------------------------------------------------------------


def seed_postgres(pg: PgServer, dbname: str, variant: int = 0) -> dict[str, int]:
    """Create database ``dbname`` on ``pg`` with the data set; returns the row counts."""
    pg.create_db(dbname)
    script = _script(variant, '"', _schema("TEXT", "NUMERIC(10,2)", "DATE", '"'))
    pg.psql("BEGIN;\n" + script + "COMMIT;", dbname=dbname)
    return expected_counts(variant)


def snapshot_postgres(pg: PgServer, dbname: str) -> dict[str, list[str]]:
    """Columns, constraints, indexes and rows (as JSON, one line each) of every public table."""
    columns = pg.psql(
        "SELECT table_name, column_name, data_type, is_nullable, coalesce(numeric_precision, 0) "
        "FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, ordinal_position;",
        dbname=dbname,
    )
    constraints = pg.psql(
        "SELECT conrelid::regclass::text, contype, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2, 3;",
        dbname=dbname,
    )
    indexes = pg.psql(
        "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2;", dbname=dbname
    )
    out = {
        "columns": columns.splitlines(),
        "constraints": constraints.splitlines(),
        "indexes": indexes.splitlines(),
    }
    tables = pg.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1;", dbname=dbname)
    for table in tables.splitlines():
        rows = pg.psql(
            f"SELECT row_to_json(t)::text FROM public.{pg_quote_ident(table)} t ORDER BY 1;", dbname=dbname
        )
        out[table] = rows.splitlines()
    return out


# -- MariaDB / MySQL -----------------------------------------------------------------------------


def seed_mariadb(server: MariaDbServer, dbname: str, variant: int = 0) -> dict[str, int]:
    """Create database ``dbname`` on ``server`` with the data set; returns the row counts."""
    server.create_db(dbname)
    schema = _schema("TEXT", "DECIMAL(10,2)", "DATE", "`", suffix=" ENGINE=InnoDB")
    script = _script(variant, "`", schema, backslash_escapes=True)
    server.execute("START TRANSACTION;\n" + script + "COMMIT;", database=dbname)
    return expected_counts(variant)


def snapshot_mariadb(server: MariaDbServer, dbname: str) -> dict[str, list[str]]:
    """``SHOW CREATE TABLE`` and rows (batch output escapes newlines and tabs) of every table."""
    out: dict[str, list[str]] = {}
    for table in server.execute("SHOW TABLES;", database=dbname).splitlines():
        ident = mariadb_quote_ident(table)
        out[f"{table} (schema)"] = server.execute(f"SHOW CREATE TABLE {ident};", database=dbname).splitlines()
        out[table] = server.execute(f"SELECT * FROM {ident} ORDER BY 1;", database=dbname).splitlines()
    return out
