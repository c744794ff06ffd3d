"""SQLite's SQL fragments, and the Python functions registered on its connections (SQLite has no
sha256 or REGEXP of its own)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache

from dataferry.sanitise.dialects.base import Dialect

#: the module of a virtual table, from its ``CREATE VIRTUAL TABLE ... USING module(...)``
_MODULE = (
    "lower(trim(substr(m.sql, instr(upper(m.sql), ' USING ') + 7, "
    "instr(substr(m.sql, instr(upper(m.sql), ' USING ') + 7), '(') - 1)))"
)
#: an FTS table declared with ``content=''`` (or ``content=""``): it keeps no copy of its text
_CONTENTLESS = "replace(replace(lower(m.sql), ' ', ''), '\"', '''') LIKE '%content=''''%'"

SQLITE_DIGEST = "dataferry_sha256"
SQLITE_HEX_INT = "dataferry_hex_int"


class SQLite(Dialect):
    """SQLite with the Python functions of ``register_sqlite_functions``."""

    name = "sqlite"
    #: FTS5 and FTS4 indexes are rebuilt after the rules; R*Tree tables hold only numbers
    known_kinds = frozenset({"table", "view", "shadow table", "fts5 table", "fts4 table"}) | frozenset(
        {"rtree table", "rtree_i32 table", "geopoly table"}
    )
    derived_kinds = frozenset({"shadow table"})
    #: one file, scanned by the Python functions of one process: nothing gained by more connections
    parallel_scan = False

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

    def one_address_at(self, expr: str, domain: str) -> str:
        """substr from the end, compared with BINARY; instr and length count characters (an ASCII
        byte always starts one, so the first ``@`` found is the first 0x40 byte)."""
        text, suffix = self.as_text(expr), "@" + domain
        return (
            f"(substr({text}, -{len(suffix)}) = {self.string(suffix)} COLLATE BINARY "
            f"AND instr({text}, '@') = length({text}) - {len(suffix) - 1})"
        )

    def prefix_then_digits(self, expr: str, prefix: str, digits: int) -> str:
        """BINARY: byte order, which is code point order for UTF-8."""
        return self._prefix_then_digits(
            self.as_text(expr), prefix, digits, "length", "substr", " COLLATE BINARY"
        )

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

    def triggers_query(self) -> str:
        """Every trigger, with the statement that created it."""
        return "SELECT tbl_name, name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY rowid"

    def trigger_toggles(self, row: tuple[object, ...]) -> tuple[str, str]:
        """SQLite cannot disable a trigger (``recursive_triggers`` only governs triggers firing
        triggers): it is dropped and created again from its own statement."""
        _, name, sql = (str(v) for v in row)
        return f"DROP TRIGGER {self.ident(name)};", sql + ";"

    def objects_query(self) -> str:
        """Tables, views, shadow tables and virtual tables by module (``pragma_table_list``, SQLite
        3.37+). A contentless FTS table keeps only its index, which the rules cannot reach."""
        return (
            "SELECT t.name, CASE WHEN t.type = 'shadow' THEN 'shadow table' "
            "WHEN t.type <> 'virtual' THEN t.type "
            f"WHEN {_CONTENTLESS} THEN 'contentless ' || {_MODULE} || ' table' "
            f"ELSE {_MODULE} || ' table' END "
            "FROM pragma_table_list AS t JOIN sqlite_master AS m ON m.name = t.name "
            "WHERE t.schema = 'main' AND t.name NOT LIKE 'sqlite!_%' ESCAPE '!' ORDER BY m.rowid"
        )

    def definitions_query(self) -> str:
        """The statement of every table (defaults, constraints, comments), view, index and trigger."""
        return "SELECT type || ' ' || name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid"

    def finish(self, kinds: dict[str, str]) -> list[tuple[str, str]]:
        """Full-text indexes rebuilt from their (sanitised) content, so no segment keeps an old term;
        then the file rewritten (``VACUUM``), so free pages and cells keep no deleted or overwritten
        value (nor any left in production's file before the backup). VACUUM cannot run inside a
        transaction: the engine runs a script between ``BEGIN`` and ``COMMIT``, so this one ends
        that transaction, vacuums and opens another."""
        steps = [
            (
                f"rebuild full-text index {name}",
                f"INSERT INTO {self.ident(name)}({self.ident(name)}) VALUES ('rebuild');",
            )
            for name, kind in kinds.items()
            if kind in ("fts5 table", "fts4 table")
        ]
        return [*steps, ("vacuum", "COMMIT;\nVACUUM;\nBEGIN;")]

    def holds_no_text(self, expr: str) -> str | None:
        """Numbers (and NULL), by storage class: every column is scanned, so this keeps the Python
        ``regexp`` away from the numeric values of numeric columns."""
        return f"typeof({expr}) NOT IN ('text', 'blob')"

    def is_text(self, data_type: str) -> bool:
        """Every column: SQLite stores a value by its own storage class, whatever the declared type
        (text in an INTEGER or ``STRING`` column, a BLOB in a TEXT one); ``regexp`` reads TEXT and
        BLOB values and skips numbers."""
        return True


# -- the SQLite functions ------------------------------------------------------------------------


def _sha256_hex(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(str(text).encode("utf-8")).hexdigest()


def _hex_int(text: str | None) -> int | None:
    return None if text is None else int(text, 16)


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def _regexp(pattern: str, value: object) -> int:
    """SQLite's ``X REGEXP Y`` calls ``regexp(Y, X)``; TEXT and BLOB values can hold personal text
    (a BLOB is read as UTF-8, a byte that is not UTF-8 as U+FFFD); numbers cannot."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return int(isinstance(value, str) and _compiled(pattern).search(value) is not None)


def register_sqlite_functions() -> None:
    """Give the SQLite engine's connections the functions the SQLite dialect calls."""
    from dataferry.engines import sqlite

    sqlite.register_sql_function(SQLITE_DIGEST, 1, _sha256_hex)
    sqlite.register_sql_function(SQLITE_HEX_INT, 1, _hex_int)
    sqlite.register_sql_function("regexp", 2, _regexp)
