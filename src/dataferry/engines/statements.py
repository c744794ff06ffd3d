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
