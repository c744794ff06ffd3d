"""Row rules that compare times (``keep_newer_than_days``) only run on columns that hold times.

Without this guard the engines do not fail, they delete: SQLite's ``julianday()`` reads an INTEGER
epoch as no time at all (NULL, so "old"), and MariaDB compares an integer with ``NOW()`` as numbers;
either way every row went. PostgreSQL refuses to compare an integer or text with a timestamp, which
already stops the run, so it needs no guard here.

Checked before any script or rule runs; a column that does not hold times stops the run with
``SanitisationFailed`` (exit 8), naming the rule, the column and the count, and nothing is deleted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataferry.errors import SanitisationFailed
from dataferry.sanitise.profile import Profile, RowRule

if TYPE_CHECKING:
    from dataferry.sanitise.execution import Target

#: MariaDB column types whose values are times; text types are checked value by value.
_MYSQL_TIME_TYPES = ("date", "datetime", "timestamp")
_MYSQL_TEXT_TYPES = ("char", "varchar", "tinytext", "text", "mediumtext", "longtext")


def require_times(t: Target, profile: Profile) -> None:
    """Raise when a ``keep_newer_than_days`` column holds values that are not times."""
    for rule in profile.rows:
        if rule.keep_newer_than_days is None or rule.column is None:
            continue
        problem = _problem(t, rule, rule.column)
        if problem:
            raise SanitisationFailed(
                f"row rule '{rule.describe()}': {rule.table}.{rule.column} {problem}; comparing it "
                "with a time would delete rows it cannot date, so nothing was deleted",
                hint="point keep_newer_than_days at a date or time column (SQLite: ISO-8601 text), or "
                "use delete_where with the condition that fits the column (e.g. an epoch in seconds)",
            )


def _problem(t: Target, rule: RowRule, column: str) -> str | None:
    d = t.dialect
    col, table = d.ident(column), d.table(rule.table)
    what = f"time check of {rule.table}.{column}"
    if d.name == "sqlite":
        # julianday() also reads numbers (as Julian day numbers, not epochs): only text is a time
        sql = (
            f"SELECT count(*) FROM {table} WHERE {col} IS NOT NULL "
            f"AND (typeof({col}) <> 'text' OR julianday({col}) IS NULL)"
        )
        return _count_problem(t.query(sql, what))
    if d.name == "mysql":
        rows = t.query(
            "SELECT DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
            f"AND TABLE_NAME = {d.string(rule.table)} AND COLUMN_NAME = {d.string(column)}",
            what,
        )
        data_type = str(rows[0][0]).lower() if rows else ""
        if data_type in _MYSQL_TIME_TYPES:
            return None
        if data_type not in _MYSQL_TEXT_TYPES:
            return f"is of type {data_type or 'unknown'}, not a date or time"
        sql = f"SELECT count(*) FROM {table} WHERE {col} IS NOT NULL AND CAST({col} AS DATETIME) IS NULL"
        return _count_problem(t.query(sql, what))
    return None


def _count_problem(rows: list[tuple[object, ...]]) -> str | None:
    count = int(str(rows[0][0] or 0)) if rows else 0
    return f"holds {count} value(s) that are not times" if count else None
