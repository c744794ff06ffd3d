"""Script statements (``engines.statements``): cut a script, name each statement's kind, read
psql's command tags, and count what a plain UPDATE or DELETE would touch in a dry run."""

from __future__ import annotations

import pytest

from dataferry.engines import statements

SCRIPT = """-- a comment; with a semicolon
CREATE TABLE t (a TEXT);  # MariaDB comment; here
INSERT INTO t VALUES ('x;y'), ("q;r"), (`c;d`);
/* block; comment */ UPDATE t SET a = 'it''s; fine' WHERE a <> 'z';
CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;
DELETE FROM t
"""


def test_split_respects_quotes_comments_and_dollar_quotes() -> None:
    kinds = [statements.kind(s) for s in statements.split(SCRIPT)]
    assert kinds == ["CREATE", "INSERT", "UPDATE", "CREATE", "DELETE"]


def test_psql_command_tags_give_the_changing_statements_in_order() -> None:
    out = "SET\nINSERT 0 3\nCREATE TABLE\nUPDATE 0\n some row value\nDELETE 12\nMERGE 1\n"
    assert statements.changed_rows(out) == [
        statements.Changed(1, "INSERT", 3),
        statements.Changed(2, "UPDATE", 0),
        statements.Changed(3, "DELETE", 12),
        statements.Changed(4, "MERGE", 1),
    ]


@pytest.mark.parametrize(
    ("statement", "query"),
    [
        ("DELETE FROM audit WHERE who = 'x'", "SELECT count(*) FROM audit WHERE who = 'x'"),
        ("UPDATE s SET v = (SELECT 1 FROM t WHERE 1=1) WHERE id > 0", "SELECT count(*) FROM s WHERE id > 0"),
        ("update s set a = 'where' where b = 1", "SELECT count(*) FROM s WHERE b = 1"),
        ("UPDATE t SET a = 1", "SELECT count(*) FROM t"),
        ("DELETE FROM t", "SELECT count(*) FROM t"),
        ("DELETE FROM t USING u WHERE t.id = u.id", None),
        ("UPDATE t SET a = b FROM u WHERE t.id = u.id", None),
        ("DELETE FROM t WHERE a = 1 LIMIT 5", None),
        ("DELETE FROM t x WHERE x.a = 1", None),
        ("INSERT INTO t VALUES (1)", None),
        ("WITH x AS (SELECT 1) DELETE FROM t", None),
    ],
)
def test_a_dry_run_counts_only_plain_updates_and_deletes(statement: str, query: str | None) -> None:
    assert statements.count_query(statement) == query
