"""PostgreSQL's SQL fragments."""

from __future__ import annotations

from collections.abc import Sequence

from dataferry.sanitise.dialects.base import Dialect


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
