"""SQL building blocks per engine, so rules compile to set-based SQL (one UPDATE per table).

Each dialect computes the pseudonyms of ``fakes.py`` exactly, on the server:

- PostgreSQL (11+): ``sha256(convert_to(salt || value, 'UTF8'))``, built in, no extension needed.
- MySQL/MariaDB: ``SHA2(CONCAT(salt, CONVERT(value USING utf8mb4)), 256)``.
- SQLite has no sha256 or REGEXP; as the embedded engine it gets deterministic Python functions
  registered on its connections (``engines.sqlite.register_sql_function``), still called set-based.

The salt never appears in a rule's statement: a prelude stores it in the session (PostgreSQL custom
setting, MariaDB user variable, SQLite temp table) and the statements read it from there, so a failing
statement echoed in an error message or a server log does not carry it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import ClassVar

from dataferry.errors import ConfigError

Literal = str | int | float | bool


class Dialect:
    """SQL fragments for one engine; subclasses fill in what differs."""

    name: ClassVar[str]
    #: column types whose values are scanned for personal data
    text_types: ClassVar[frozenset[str]] = frozenset()

    def ident(self, name: str) -> str:
        """A quoted identifier."""
        return '"' + name.replace('"', '""') + '"'

    def table(self, name: str) -> str:
        """A quoted table name; ``schema.table`` is quoted part by part."""
        return ".".join(self.ident(part) for part in name.split("."))

    def string(self, value: str) -> str:
        """A string literal."""
        return "'" + value.replace("'", "''") + "'"

    def literal(self, value: Literal) -> str:
        """A literal of a constant rule."""
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        if isinstance(value, int | float):
            return repr(value)
        return self.string(value)

    def concat(self, *parts: str) -> str:
        """String concatenation; NULL in, NULL out."""
        return "(" + " || ".join(parts) + ")"

    def as_text(self, expr: str) -> str:
        """The value as text, as hashed."""
        raise NotImplementedError

    def salt_prelude(self, salt: str) -> str:
        """Statements that put the salt in the session for ``salt()`` to read."""
        raise NotImplementedError

    def salt(self) -> str:
        """An expression reading the session's salt."""
        raise NotImplementedError

    def digest(self, expr: str) -> str:
        """Lower-hex sha256 of utf8(salt || text(expr))."""
        raise NotImplementedError

    def hex_int(self, hex_expr: str, start: int) -> str:
        """The 4 hex digits at ``start`` (0-based) of ``hex_expr`` as an integer."""
        raise NotImplementedError

    def substr(self, expr: str, start: int, length: int) -> str:
        """Characters ``start`` (1-based) to ``start + length - 1``."""
        return f"substr({expr}, {start}, {length})"

    def pick(self, index_expr: str, options: Sequence[str]) -> str:
        """``options[index_expr % len(options)]``."""
        raise NotImplementedError

    def pad3(self, expr: str) -> str:
        """An integer 0..999 as three digits."""
        raise NotImplementedError

    def stars(self, expr: str) -> str:
        """As many ``*`` as ``expr`` has characters; NULL stays NULL."""
        raise NotImplementedError

    def contains(self, haystack: str, needle: str) -> str:
        """Condition: ``needle`` occurs in ``haystack``."""
        raise NotImplementedError

    def regex(self, expr: str, pattern: str) -> str:
        """Condition: the text of ``expr`` matches ``pattern`` somewhere, ignoring case."""
        raise NotImplementedError

    def older_than(self, column: str, days: int) -> str:
        """Condition: ``column`` is NULL or more than ``days`` days before now."""
        raise NotImplementedError

    def truncate(self, table: str) -> str:
        """Remove every row of a (quoted) table."""
        return f"TRUNCATE TABLE {table};"

    def columns_query(self) -> str:
        """Rows of (table, column, type) for every base table of the database, in column order."""
        raise NotImplementedError

    def is_text(self, data_type: str) -> bool:
        """Whether a column of this type is scanned."""
        return data_type.lower() in self.text_types


class Postgres(Dialect):
    """PostgreSQL 11 or later (sha256 is built in from 11)."""

    name = "postgresql"
    text_types = frozenset(
        {"text", "character varying", "character", "json", "jsonb", "xml", "citext", "_text", "_varchar"}
    )

    def string(self, value: str) -> str:
        """Standard literal; an escape-string literal when it holds a backslash, whatever the
        server's ``standard_conforming_strings``."""
        if "\\" in value:
            return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
        return super().string(value)

    def as_text(self, expr: str) -> str:
        """``expr::text``."""
        return f"({expr})::text"

    def salt_prelude(self, salt: str) -> str:
        """A custom setting for this session (SET prints nothing back, unlike set_config())."""
        return f"SET dataferry.salt = {self.string(salt)};\n"

    def salt(self) -> str:
        """A scalar subquery: evaluated once per statement, not per row."""
        return "(SELECT current_setting('dataferry.salt'))"

    def digest(self, expr: str) -> str:
        """sha256 of the UTF-8 bytes, hex encoded."""
        return f"encode(sha256(convert_to({self.salt()} || {self.as_text(expr)}, 'UTF8')), 'hex')"

    def hex_int(self, hex_expr: str, start: int) -> str:
        """Hex digits through a bit string."""
        return f"('x' || substr({hex_expr}, {start + 1}, 4))::bit(16)::int"

    def pick(self, index_expr: str, options: Sequence[str]) -> str:
        """Array subscript (1-based)."""
        items = ", ".join(self.string(o) for o in options)
        return f"(ARRAY[{items}])[1 + ({index_expr}) % {len(options)}]"

    def pad3(self, expr: str) -> str:
        """lpad."""
        return f"lpad(({expr})::text, 3, '0')"

    def stars(self, expr: str) -> str:
        """repeat."""
        return f"repeat('*', char_length({expr}))"

    def contains(self, haystack: str, needle: str) -> str:
        """strpos."""
        return f"strpos({haystack}, {needle}) > 0"

    def regex(self, expr: str, pattern: str) -> str:
        """Case-insensitive ARE match."""
        return f"({expr})::text ~* {self.string(pattern)}"

    def older_than(self, column: str, days: int) -> str:
        """Compared with now() on the server."""
        return f"({column} IS NULL OR {column} < now() - interval '{int(days)} days')"

    def columns_query(self) -> str:
        """information_schema, every schema but the system ones; ``public`` tables unqualified."""
        return (
            "SELECT CASE WHEN c.table_schema = 'public' THEN c.table_name "
            "ELSE c.table_schema || '.' || c.table_name END, c.column_name, "
            "CASE WHEN c.data_type IN ('USER-DEFINED', 'ARRAY') THEN c.udt_name ELSE c.data_type END "
            "FROM information_schema.columns c JOIN information_schema.tables t "
            "ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
            "WHERE t.table_type = 'BASE TABLE' "
            "AND c.table_schema NOT IN ('pg_catalog', 'information_schema') "
            "AND c.table_schema NOT LIKE 'pg\\_%' "
            "ORDER BY 1, c.ordinal_position"
        )


class MySQL(Dialect):
    """MySQL 8 and MariaDB 10.5+ (PCRE regular expressions, SHA2, CONV)."""

    name = "mysql"
    text_types = frozenset({"char", "varchar", "tinytext", "text", "mediumtext", "longtext", "json"})

    def ident(self, name: str) -> str:
        """Backquotes."""
        return "`" + name.replace("`", "``") + "`"

    def string(self, value: str) -> str:
        """A hex literal converted to utf8mb4 when the text holds a quote or backslash: correct
        whatever the server's sql_mode (NO_BACKSLASH_ESCAPES changes what backslashes mean)."""
        if "\\" in value or "'" in value:
            return f"CONVERT(X'{value.encode('utf-8').hex()}' USING utf8mb4)"
        return "'" + value + "'"

    def literal(self, value: Literal) -> str:
        """Booleans are 1 and 0."""
        if isinstance(value, bool):
            return "1" if value else "0"
        return super().literal(value)

    def concat(self, *parts: str) -> str:
        """CONCAT (|| is OR by default)."""
        return "CONCAT(" + ", ".join(parts) + ")"

    def as_text(self, expr: str) -> str:
        """utf8mb4 text, so the bytes hashed are the UTF-8 ones whatever the column's charset."""
        return f"CONVERT({expr} USING utf8mb4)"

    def salt_prelude(self, salt: str) -> str:
        """A user variable lives as long as the session."""
        return f"SET @dataferry_salt = CONVERT(X'{salt.encode('utf-8').hex()}' USING utf8mb4);\n"

    def salt(self) -> str:
        """The user variable."""
        return "@dataferry_salt"

    def digest(self, expr: str) -> str:
        """SHA2 of the utf8mb4 bytes (lower-case hex)."""
        return f"SHA2(CONCAT({self.salt()}, {self.as_text(expr)}), 256)"

    def hex_int(self, hex_expr: str, start: int) -> str:
        """CONV from base 16."""
        return f"CAST(CONV(SUBSTRING({hex_expr}, {start + 1}, 4), 16, 10) AS UNSIGNED)"

    def pick(self, index_expr: str, options: Sequence[str]) -> str:
        """ELT (1-based)."""
        items = ", ".join(self.string(o) for o in options)
        return f"ELT(1 + ({index_expr}) % {len(options)}, {items})"

    def pad3(self, expr: str) -> str:
        """LPAD."""
        return f"LPAD({expr}, 3, '0')"

    def stars(self, expr: str) -> str:
        """REPEAT."""
        return f"REPEAT('*', CHAR_LENGTH({expr}))"

    def contains(self, haystack: str, needle: str) -> str:
        """LOCATE (case-sensitive like REPLACE, which the substitution uses)."""
        return f"LOCATE(BINARY {needle}, {haystack}) > 0"

    def regex(self, expr: str, pattern: str) -> str:
        """PCRE with ``(?i)``, so binary columns are matched without case too."""
        return f"{expr} REGEXP {self.string('(?i)' + pattern)}"

    def older_than(self, column: str, days: int) -> str:
        """Compared with NOW() on the server."""
        return f"({column} IS NULL OR {column} < NOW() - INTERVAL {int(days)} DAY)"

    def columns_query(self) -> str:
        """information_schema of the connection's database (the shadow's, during a restore)."""
        return (
            "SELECT c.TABLE_NAME, c.COLUMN_NAME, c.DATA_TYPE FROM information_schema.COLUMNS c "
            "JOIN information_schema.TABLES t "
            "ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME "
            "WHERE c.TABLE_SCHEMA = DATABASE() AND t.TABLE_TYPE = 'BASE TABLE' "
            "ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION"
        )


SQLITE_DIGEST = "dataferry_sha256"
SQLITE_HEX_INT = "dataferry_hex_int"


class SQLite(Dialect):
    """SQLite with the Python functions of ``register_sqlite_functions``."""

    name = "sqlite"

    def as_text(self, expr: str) -> str:
        """CAST."""
        return f"CAST({expr} AS TEXT)"

    def salt_prelude(self, salt: str) -> str:
        """A temp table: visible only to this connection, gone when it closes."""
        return (
            "CREATE TEMP TABLE IF NOT EXISTS dataferry_salt (v TEXT);\n"
            "DELETE FROM temp.dataferry_salt;\n"
            f"INSERT INTO temp.dataferry_salt VALUES ({self.string(salt)});\n"
        )

    def salt(self) -> str:
        """A constant subquery: SQLite evaluates it once per statement."""
        return "(SELECT v FROM temp.dataferry_salt)"

    def digest(self, expr: str) -> str:
        """The registered sha256 function."""
        return f"{SQLITE_DIGEST}({self.salt()} || {self.as_text(expr)})"

    def hex_int(self, hex_expr: str, start: int) -> str:
        """The registered hex function."""
        return f"{SQLITE_HEX_INT}(substr({hex_expr}, {start + 1}, 4))"

    def pick(self, index_expr: str, options: Sequence[str]) -> str:
        """CASE (SQLite has no arrays or ELT)."""
        arms = " ".join(f"WHEN {i} THEN {self.string(o)}" for i, o in enumerate(options))
        return f"(CASE ({index_expr}) % {len(options)} {arms} END)"

    def pad3(self, expr: str) -> str:
        """printf."""
        return f"printf('%03d', {expr})"

    def stars(self, expr: str) -> str:
        """n zero bytes, hex-encoded as 2n '0's, each '00' made a '*' (SQLite has no repeat)."""
        return (
            f"(CASE WHEN {expr} IS NULL THEN NULL ELSE replace(hex(zeroblob(length({expr}))), '00', '*') END)"
        )

    def contains(self, haystack: str, needle: str) -> str:
        """instr."""
        return f"instr({haystack}, {needle}) > 0"

    def regex(self, expr: str, pattern: str) -> str:
        """The REGEXP operator, which calls the registered ``regexp`` function."""
        return f"{expr} REGEXP {self.string(pattern)}"

    def older_than(self, column: str, days: int) -> str:
        """julianday() reads ISO-8601 text; a value it cannot read counts as old (NULL)."""
        return f"(julianday({column}) IS NULL OR julianday({column}) < julianday('now', '-{int(days)} days'))"

    def truncate(self, table: str) -> str:
        """SQLite has no TRUNCATE; DELETE without WHERE is its fast path."""
        return f"DELETE FROM {table};"

    def columns_query(self) -> str:
        """sqlite_master and pragma_table_info."""
        return (
            "SELECT m.name, p.name, p.type FROM sqlite_master AS m "
            "JOIN pragma_table_info(m.name) AS p "
            "WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY m.name, p.cid"
        )

    def is_text(self, data_type: str) -> bool:
        """Type affinity: TEXT for CHAR, CLOB, TEXT; none for an empty type (holds anything); JSON too."""
        t = data_type.upper()
        return not t or any(k in t for k in ("CHAR", "CLOB", "TEXT", "JSON"))


_DIALECTS: dict[str, Dialect] = {d.name: d for d in (Postgres(), MySQL(), SQLite())}


def dialect_for(engine: str) -> Dialect:
    """The dialect of an engine, or ``ConfigError`` for engines that cannot be sanitised with SQL."""
    try:
        return _DIALECTS[engine]
    except KeyError:
        raise ConfigError(
            f"the {engine} engine has no SQL sanitisation",
            hint=f"sanitisation profiles work with {', '.join(sorted(_DIALECTS))}",
        ) from None


# -- the SQLite functions ------------------------------------------------------------------------


def _sha256_hex(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(str(text).encode("utf-8")).hexdigest()


def _hex_int(text: str | None) -> int | None:
    return None if text is None else int(text, 16)


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def _regexp(pattern: str, value: object) -> int:
    """SQLite's ``X REGEXP Y`` calls ``regexp(Y, X)``; only text values can hold personal text."""
    return int(isinstance(value, str) and _compiled(pattern).search(value) is not None)


def register_sqlite_functions() -> None:
    """Give the SQLite engine's connections the functions the SQLite dialect calls."""
    from dataferry.engines import sqlite

    sqlite.register_sql_function(SQLITE_DIGEST, 1, _sha256_hex)
    sqlite.register_sql_function(SQLITE_HEX_INT, 1, _hex_int)
    sqlite.register_sql_function("regexp", 2, _regexp)
