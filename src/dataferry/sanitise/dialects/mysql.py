"""MySQL's and MariaDB's SQL fragments."""

from __future__ import annotations

from collections.abc import Sequence

from dataferry.sanitise.dialects.base import Dialect, Literal


class MySQL(Dialect):
    """MySQL 8 and MariaDB 10.5+ (PCRE regular expressions, SHA2, CONV)."""

    name = "mysql"
    #: text types, and binary ones (read as utf8mb4: a byte sequence that is not UTF-8 reads as '?')
    text_types = frozenset(
        {"char", "varchar", "tinytext", "text", "mediumtext", "longtext", "json"}
        | {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"}
    )

    known_kinds = frozenset({"table", "system-versioned table", "view", "sequence"})
    integer_types = frozenset({"tinyint", "smallint", "mediumint", "int", "bigint"})

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
        """utf8mb4 text, so the bytes hashed are the UTF-8 ones whatever the column's charset, with
        an explicit binary collation: an explicit collation outranks a column's implicit one, so
        comparing it with a column of any collation (``utf8mb4_unicode_ci``, latin1, ...) is never
        an "illegal mix of collations" (ERROR 1267). The bytes, and so the pseudonyms, are the same."""
        return f"CONVERT({expr} USING utf8mb4) COLLATE utf8mb4_bin"

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
        """PCRE with ``(?i)`` (so the binary collation still matches without case) on the value as
        collation-safe utf8mb4 text."""
        return f"{self.as_text(expr)} REGEXP {self.string('(?i)' + pattern)}"

    def one_address_at(self, expr: str, domain: str) -> str:
        """On the utf8mb4 text with its binary collation (as_text), so no case or accent folding;
        LOCATE and CHAR_LENGTH both count characters of that text (never bytes against characters)."""
        text, suffix = self.as_text(expr), "@" + domain
        return (
            f"(RIGHT({text}, {len(suffix)}) = {self.string(suffix)} "
            f"AND LOCATE('@', {text}) = CHAR_LENGTH({text}) - {len(suffix) - 1})"
        )

    def prefix_then_digits(self, expr: str, prefix: str, digits: int) -> str:
        """On as_text's utf8mb4_bin text: code point order, lengths in characters."""
        return self._prefix_then_digits(self.as_text(expr), prefix, digits, "CHAR_LENGTH", "SUBSTRING", "")

    def older_than(self, column: str, days: int) -> str:
        """Compared with NOW() on the server."""
        return f"({column} IS NULL OR {column} < NOW() - INTERVAL {int(days)} DAY)"

    def objects_query(self) -> str:
        """Every table of the database by kind; a table whose engine keeps its rows on another
        server (FEDERATED, CONNECT, Spider) is a kind of its own, which the sanitiser refuses."""
        return (
            "SELECT TABLE_NAME, CASE "
            "WHEN ENGINE IN ('FEDERATED', 'CONNECT', 'SPIDER') THEN CONCAT(LOWER(ENGINE), ' table') "
            "WHEN TABLE_TYPE = 'BASE TABLE' THEN 'table' "
            "WHEN TABLE_TYPE = 'SYSTEM VERSIONED' THEN 'system-versioned table' "
            "WHEN TABLE_TYPE = 'VIEW' THEN 'view' WHEN TABLE_TYPE = 'SEQUENCE' THEN 'sequence' "
            "ELSE LOWER(TABLE_TYPE) END FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
            "ORDER BY TABLE_NAME"
        )

    def definitions_query(self) -> str:
        """Views, routines, triggers, events, column defaults, check constraints and comments."""
        here = "= DATABASE()"
        return " UNION ALL ".join(
            [
                f"SELECT CONCAT('view ', TABLE_NAME), VIEW_DEFINITION FROM information_schema.VIEWS WHERE TABLE_SCHEMA {here}",
                "SELECT CONCAT('routine ', ROUTINE_NAME), ROUTINE_DEFINITION FROM information_schema.ROUTINES "
                f"WHERE ROUTINE_SCHEMA {here}",
                "SELECT CONCAT('trigger ', TRIGGER_NAME), ACTION_STATEMENT FROM information_schema.TRIGGERS "
                f"WHERE TRIGGER_SCHEMA {here}",
                f"SELECT CONCAT('event ', EVENT_NAME), EVENT_DEFINITION FROM information_schema.EVENTS WHERE EVENT_SCHEMA {here}",
                "SELECT CONCAT('default ', TABLE_NAME, '.', COLUMN_NAME), COLUMN_DEFAULT FROM information_schema.COLUMNS "
                f"WHERE TABLE_SCHEMA {here} AND COLUMN_DEFAULT IS NOT NULL",
                "SELECT CONCAT('comment on column ', TABLE_NAME, '.', COLUMN_NAME), COLUMN_COMMENT "
                f"FROM information_schema.COLUMNS WHERE TABLE_SCHEMA {here} AND COLUMN_COMMENT <> ''",
                "SELECT CONCAT('comment on table ', TABLE_NAME), TABLE_COMMENT FROM information_schema.TABLES "
                f"WHERE TABLE_SCHEMA {here} AND TABLE_COMMENT <> ''",
                "SELECT CONCAT('constraint ', CONSTRAINT_NAME), CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                f"WHERE CONSTRAINT_SCHEMA {here}",
            ]
        )

    def finish(self, kinds: dict[str, str]) -> list[tuple[str, str]]:
        """The history of each system-versioned table purged: the rules' UPDATEs and DELETEs put
        the old values there (and a live copy may hold older ones)."""
        return [
            (f"purge history of {name}", f"DELETE HISTORY FROM {self.ident(name)};")
            for name, kind in kinds.items()
            if kind == "system-versioned table"
        ]

    def scan_from(self, table: str, kind: str) -> str:
        """A system-versioned table's current and history rows."""
        return f"{table} FOR SYSTEM_TIME ALL" if kind == "system-versioned table" else table

    def scan_keys_query(self) -> str:
        """MariaDB and MySQL run a query on one CPU: a large table is scanned in key ranges on
        several connections. Base tables only (a system-versioned table's history is not cut)."""
        return (
            "SELECT t.TABLE_NAME, c.COLUMN_NAME, c.DATA_TYPE, t.DATA_LENGTH FROM information_schema.TABLES t "
            "LEFT JOIN information_schema.STATISTICS s ON s.TABLE_SCHEMA = t.TABLE_SCHEMA "
            "AND s.TABLE_NAME = t.TABLE_NAME AND s.INDEX_NAME = 'PRIMARY' "
            "LEFT JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = s.TABLE_SCHEMA "
            "AND c.TABLE_NAME = s.TABLE_NAME AND c.COLUMN_NAME = s.COLUMN_NAME "
            "WHERE t.TABLE_SCHEMA = DATABASE() AND t.TABLE_TYPE = 'BASE TABLE'"
        )

    def triggers_query(self) -> str:
        """Every trigger of the database, in the order they fire (recreated in that order, so
        ``FOLLOWS``/``PRECEDES`` orderings survive)."""
        return (
            "SELECT EVENT_OBJECT_TABLE, TRIGGER_NAME, ACTION_TIMING, EVENT_MANIPULATION, "
            "ACTION_STATEMENT, SQL_MODE FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() "
            "ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER"
        )

    def trigger_toggles(self, row: tuple[object, ...]) -> tuple[str, str]:
        """MySQL and MariaDB cannot disable a trigger: it is dropped, and created again afterwards
        with its own ``sql_mode``, as the connecting account (the restoring one, as in the dump)."""
        table, name, timing, event, statement, sql_mode = (str(v) for v in row)
        create = (
            f"SET SESSION sql_mode = {self.string(sql_mode)};\n"
            f"CREATE TRIGGER {self.ident(name)} {timing} {event} ON {self.ident(table)} "
            f"FOR EACH ROW {statement}"
        )
        return f"DROP TRIGGER {self.ident(name)};", create

    def columns_query(self) -> str:
        """information_schema of the connection's database (the shadow's, during a restore)."""
        return (
            "SELECT c.TABLE_NAME, c.COLUMN_NAME, c.DATA_TYPE FROM information_schema.COLUMNS c "
            "JOIN information_schema.TABLES t "
            "ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME "
            "WHERE c.TABLE_SCHEMA = DATABASE() AND t.TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') "
            "ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION"
        )
