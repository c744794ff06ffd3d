"""The base of every dialect: SQL fragments whose shape is the same on each engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

Literal = str | int | float | bool


class Dialect:
    """SQL fragments for one engine; subclasses fill in what differs."""

    name: ClassVar[str]
    #: column types whose values are scanned for personal data
    text_types: ClassVar[frozenset[str]] = frozenset()
    #: the kinds of object (``objects_query``) the sanitiser knows how to handle; any other stops a run
    known_kinds: ClassVar[frozenset[str]] = frozenset({"table", "view"})
    #: kinds whose content derives from tables (rebuilt after the rules): no classification needed
    derived_kinds: ClassVar[frozenset[str]] = frozenset()
    #: whether the scan's queries may run on several connections at once (``sanitise/scanning.py``)
    parallel_scan: ClassVar[bool] = True
    #: primary key types whose MIN..MAX the scan cuts into ranges (where ``scan_keys_query`` is given)
    integer_types: ClassVar[frozenset[str]] = frozenset()

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

    #: whether the scan uses ``one_address_at`` and ``prefix_then_digits`` as shortcuts: measured
    #: (bench/sanitise --scan-ab) on 1M sanitised rows, they halved PostgreSQL's scan and made
    #: MariaDB's 1.75x slower (each call converts the value again, where PCRE's anchored clean
    #: pattern fails fast); SQLite is not measured
    string_shortcuts = False

    def one_address_at(self, expr: str, domain: str) -> str:
        """Condition: the text of ``expr`` ends with ``'@' + domain`` exactly (code point for code
        point, no case or accent folding) and holds no other ``@``. String functions only, no
        regular expression: it is the scan's cheapest proof that a value is one of our own fakes."""
        raise NotImplementedError

    def prefix_then_digits(self, expr: str, prefix: str, digits: int) -> str:
        """Condition: the text of ``expr`` is exactly ``prefix`` followed by ``digits`` ASCII digits
        (code point comparisons, no folding); string functions only, like ``one_address_at``."""
        raise NotImplementedError

    def _prefix_then_digits(
        self, text: str, prefix: str, digits: int, length: str, substr: str, binary: str
    ) -> str:
        """The condition of ``prefix_then_digits`` from a dialect's length and substring functions
        and its code-point ordering (``binary``: a COLLATE clause or nothing): every character
        between '0' and '9' by code point is an ASCII digit."""
        each = [
            f"{substr}({text}, {len(prefix) + i}, 1){binary} BETWEEN '0' AND '9'"
            for i in range(1, digits + 1)
        ]
        head = f"{substr}({text}, 1, {len(prefix)}){binary} = {self.string(prefix)}"
        return "(" + " AND ".join([f"{length}({text}) = {len(prefix) + digits}", head, *each]) + ")"

    def older_than(self, column: str, days: int) -> str:
        """Condition: ``column`` is NULL or more than ``days`` days before now."""
        raise NotImplementedError

    def truncate(self, table: str) -> str:
        """Remove every row of a (quoted) table."""
        return f"TRUNCATE TABLE {table};"

    def columns_query(self) -> str:
        """Rows of (table, column, type) for every base table of the database, in column order."""
        raise NotImplementedError

    def objects_query(self) -> str:
        """Rows of ``(name, kind)`` for every object of the database that can hold data or text."""
        raise NotImplementedError

    def definitions_query(self) -> str:
        """Rows of ``(object, text)`` for every piece of schema text that can hold personal data:
        view and routine definitions, triggers, defaults, constraints, comments."""
        raise NotImplementedError

    def finish(self, kinds: dict[str, str]) -> list[tuple[str, str]]:
        """``(description, sql)`` steps after the rules that leave no old value in derived objects
        (materialised views, history rows, search indexes, free pages)."""
        return []

    def large_objects(self, drop: bool) -> str:
        """PostgreSQL: unlink large objects no column refers to (every one with ``drop``)."""
        raise NotImplementedError

    def scan_from(self, table: str, kind: str) -> str:
        """What the scan of a (quoted) table reads: every row it holds, history included."""
        return table

    def triggers_query(self) -> str:
        """Rows describing each enabled user trigger (and, in PostgreSQL, rewrite rule) that could
        write while the rules run: ``(table, name, ...)``, read by ``trigger_toggles``."""
        raise NotImplementedError

    def trigger_toggles(self, row: tuple[object, ...]) -> tuple[str, str]:
        """SQL that turns one trigger of ``triggers_query`` off, and SQL that puts it back as it was."""
        raise NotImplementedError

    def scan_keys_query(self) -> str | None:
        """Rows of ``(table, primary key column, its data type, bytes)`` for every base table, one
        per column of its primary key (NULLs for a table without one), so that the scan can cut a
        large table into key ranges; None when the engine's scan is not cut (``scanning.py``)."""
        return None

    def holds_no_text(self, expr: str) -> str | None:
        """A condition true for values that cannot hold text, tested before anything else (None: the
        column's type already says so)."""
        return None

    def scan_text(self, column: str, data_type: str) -> str:
        """The text the scan reads of a (quoted) column of ``data_type``: the column itself, unless
        its type needs decoding first (PostgreSQL's bytea)."""
        return column

    def is_text(self, data_type: str) -> bool:
        """Whether a column of this type is scanned."""
        return data_type.lower() in self.text_types
