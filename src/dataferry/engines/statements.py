"""What a sanitisation script's statements changed: each data-changing statement's kind and the
rows it affected, so a statement that silently matched nothing is seen (issue 12: psql's output
was discarded, and a script whose WHERE no longer matched anything passed for years).

``split`` cuts a script into statements for the engines whose driver reports affected rows per
statement but not which statement it was (MariaDB): it knows quotes ('', "", ``), comments (``--``,
``#``, ``/* */``) and PostgreSQL's dollar quotes, enough for the scripts dataferry runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Statements whose affected rows are reported; others (DDL, SET, SELECT) change no rows.
CHANGING = ("INSERT", "UPDATE", "DELETE", "REPLACE", "MERGE")

_WORD_RE = re.compile(r"\s*(?:(?:--|#)[^\n]*\n|/\*.*?\*/|\s)*\s*([A-Za-z]+)", re.S)
_DOLLAR_RE = re.compile(r"\$[A-Za-z_]*\$")
#: psql's command tags of data-changing statements (INSERT carries an oid before the count).
_TAG_RE = re.compile(r"^(?:(INSERT) \d+ (\d+)|(UPDATE|DELETE|MERGE) (\d+))$", re.M)


@dataclass(frozen=True)
class Changed:
    """One data-changing statement of a script: its place among the script's data-changing
    statements (from 1; DDL, SET and SELECT are not counted), its kind, and the rows it affected."""

    statement: int
    kind: str
    rows: int


def kind(statement: str) -> str:
    """The statement's first keyword, upper case (``WITH`` for a common table expression)."""
    m = _WORD_RE.match(statement)
    return m.group(1).upper() if m else ""


def split(sql: str) -> list[str]:
    """The script's statements, without empty ones (a trailing ``;`` or a comment alone)."""
    out: list[str] = []
    start = i = 0
    n = len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"`":
            end = sql.find(c, i + 1)
            while end != -1 and c == "'" and end + 1 < n and sql[end + 1] == "'":
                end = sql.find(c, end + 2)  # '' inside a string
            i = n if end == -1 else end + 1
            continue
        if sql.startswith("--", i) or c == "#":
            end = sql.find("\n", i)
            i = n if end == -1 else end + 1
            continue
        if sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end == -1 else end + 2
            continue
        if c == "$":
            m = _DOLLAR_RE.match(sql, i)
            if m:
                end = sql.find(m.group(0), m.end())
                i = n if end == -1 else end + len(m.group(0))
                continue
        if c == ";":
            out.append(sql[start:i])
            start = i + 1
        i += 1
    out.append(sql[start:])
    return [s.strip() for s in out if kind(s)]


def changed_rows(psql_output: str) -> list[Changed]:
    """The data-changing statements in psql's output, from their command tags (``UPDATE 3``)."""
    found: list[Changed] = []
    for m in _TAG_RE.finditer(psql_output):
        what, rows = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        found.append(Changed(len(found) + 1, what, int(rows)))
    return found


def changing(kinds_and_rows: list[tuple[str, int]]) -> list[Changed]:
    """``(kind, rows)`` of every statement, in order, as the data-changing ones numbered from 1."""
    found: list[Changed] = []
    for what, rows in kinds_and_rows:
        if what in CHANGING:
            found.append(Changed(len(found) + 1, what, max(rows, 0)))
    return found


_DELETE_RE = re.compile(r"^\s*DELETE\s+FROM\s+(?P<table>[^\s;(]+)(?P<rest>.*)$", re.S | re.I)
_UPDATE_RE = re.compile(r"^\s*UPDATE\s+(?P<table>[^\s;(]+)\s+SET\s(?P<rest>.*)$", re.S | re.I)
#: Clauses after which a statement is not a plain one whose rows a ``count(*)`` tells.
_NOT_PLAIN = ("FROM", "USING", "ORDER", "LIMIT", "RETURNING", "JOIN")


def count_query(statement: str) -> str | None:
    """``SELECT count(*)`` of the rows a plain ``DELETE FROM t [WHERE ...]`` or ``UPDATE t SET ...
    [WHERE ...]`` would touch, for a dry run; None for anything else (INSERT, joins, USING, FROM,
    LIMIT, CTEs ...), which a dry run then shows as not counted."""
    m = _DELETE_RE.match(statement) or _UPDATE_RE.match(statement)
    if m is None or kind(statement) not in ("DELETE", "UPDATE"):
        return None
    rest = m.group("rest")
    words = _top_level_words(rest)
    where = next((at for word, at in words if word == "WHERE"), None)
    if any(word in _NOT_PLAIN for word, _ in words):
        return None
    before_where = rest[:where] if where is not None else rest
    if kind(statement) == "DELETE" and before_where.strip():
        return None  # something between the table and its WHERE (an alias, ...)
    condition = f" WHERE {rest[where + 5 :].strip()}" if where is not None else ""
    return f"SELECT count(*) FROM {m.group('table')}{condition}"


def _top_level_words(text: str) -> list[tuple[str, int]]:
    """Upper-cased words outside parentheses, quotes and comments, with where each starts."""
    found: list[tuple[str, int]] = []
    depth = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "'\"`":
            end = text.find(c, i + 1)
            i = n if end == -1 else end + 1
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif (
            depth == 0
            and (c.isalpha() or c == "_")
            and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] in "_."))
        ):
            m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[i:])
            assert m is not None
            found.append((m.group(0).upper(), i))
            i += len(m.group(0))
            continue
        i += 1
    return found
