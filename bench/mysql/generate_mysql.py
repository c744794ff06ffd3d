"""Generate a realistic MariaDB database of a target size, server-side.

The same three tables as the PostgreSQL benchmark (bench/pg/generate_pg.py): ``users``,
``documents`` (HTML bodies of eight paragraphs, a third of them boilerplate shared between
documents; a random uuid; a JSON details document; timestamps) and ``events`` (an audit log with a
JSON payload), with foreign keys and secondary indexes. Prose is random words drawn with a skewed
frequency from a vocabulary, so a dump compresses about 4x with zstd -3.

Everything is set-based SQL (``INSERT ... SELECT`` over MariaDB's built-in SEQUENCE engine,
``seq_1_to_N``), no Python row loops. MariaDB's stored-function loops cost ~40 us per word, so
prose is not made row by row: a pool of random paragraphs is made first with GROUP_CONCAT (~2 us
per word), and rows pick their paragraphs from it by primary key. The pool (1,000 paragraphs per
MB of target, 20,000 to 300,000, ~140 bytes each) is much larger than zstd -3's 2 MB window, so the
picks do not make dumps compress unrealistically well (small databases compress a little better).
Indexes exist from the start (InnoDB tables are clustered on the primary key anyway); batches are
added until the tables hold at least the target size.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import common

_USERS_PER_DOCUMENT = 20
_EVENTS_PER_DOCUMENT = 3
TABLES = ("users", "documents", "events")
# Paragraphs 1..BOILERPLATE of the pool are boilerplate ("How to apply", contact details...);
# about a third of a document's paragraphs are picked from them, as in real content.
BOILERPLATE = 500


def _elt(values: Sequence[str], index: str) -> str:
    """``ELT(index, 'a', 'b', ...)``: MariaDB has no arrays; ELT picks the index-th argument."""
    return f"ELT({index}, " + ",".join(common.sql_string(v) for v in values) + ")"


def _pick(values: Sequence[str]) -> str:
    return _elt(values, f"1 + FLOOR(RAND() * {len(values)})")


def _cap(expr: str) -> str:
    return f"CONCAT(UPPER(LEFT({expr}, 1)), SUBSTRING({expr}, 2))"


def _nth_word(expr: str, n: int) -> str:
    return f"SUBSTRING_INDEX(SUBSTRING_INDEX({expr}, ' ', {n}), ' ', -1)"


def _para(key: str, pool: int) -> str:
    """The id of a pseudo-random pool paragraph for ``key``. CRC32, not RAND(): the value must not
    change if the optimiser merges the derived table into the join."""
    h = f"CRC32({key})"
    return (
        f"IF({h} % 100 < 35, 1 + ({h} DIV 100) % {BOILERPLATE}, "
        f"{BOILERPLATE + 1} + ({h} DIV 100) % {pool - BOILERPLATE})"
    )


def _uuid(unique: str) -> str:
    """A random-looking uuid: MariaDB 10.11's UUID() is time-based and compresses unrealistically.
    RAND() has only ~2^30 values, so ``unique`` (the row's id) goes into the hash too."""
    md5 = f"MD5(CONCAT({unique}, '/', RAND()))"
    return f"INSERT(INSERT(INSERT(INSERT({md5}, 9, 0, '-'), 14, 0, '-'), 19, 0, '-'), 24, 0, '-')"


SCHEMA_SQL = """
CREATE TABLE users (
    id BIGINT NOT NULL PRIMARY KEY,
    email VARCHAR(255) NOT NULL,
    name VARCHAR(255) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    bio TEXT,
    UNIQUE KEY users_email_idx (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE documents (
    id BIGINT NOT NULL PRIMARY KEY,
    content_id CHAR(36) NOT NULL,
    user_id BIGINT NOT NULL,
    title VARCHAR(500) NOT NULL,
    body MEDIUMTEXT NOT NULL,
    details JSON NOT NULL,
    published_at DATETIME(6),
    updated_at DATETIME(6) NOT NULL,
    UNIQUE KEY documents_content_id_idx (content_id),
    KEY documents_published_at_idx (published_at),
    CONSTRAINT documents_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE events (
    id BIGINT NOT NULL PRIMARY KEY,
    document_id BIGINT NOT NULL,
    kind VARCHAR(32) NOT NULL,
    payload JSON NOT NULL,
    occurred_at DATETIME(6) NOT NULL,
    KEY events_document_id_occurred_at_idx (document_id, occurred_at),
    CONSTRAINT events_document_id_fkey FOREIGN KEY (document_id) REFERENCES documents (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
"""


def _paragraphs_sql(count: int) -> str:
    """The pool: ``count`` random paragraphs of 8-40 words, made with one GROUP_CONCAT."""
    word = _elt(common.VOCABULARY, f"1 + FLOOR({len(common.VOCABULARY)} * POW(RAND(), {common.WORD_SKEW}))")
    return f"""
CREATE TABLE bench_paragraphs (id INT NOT NULL PRIMARY KEY, p TEXT NOT NULL) ENGINE=InnoDB;
INSERT INTO bench_paragraphs
SELECT id, {_cap("w")}
FROM (SELECT p.seq AS id, GROUP_CONCAT({word} SEPARATOR ' ') AS w
      FROM seq_1_to_{count} p JOIN seq_1_to_40 n ON n.seq <= 8 + p.seq % 33
      GROUP BY p.seq) s;
"""


def _users_sql(first: int, last: int, pool: int) -> str:
    return f"""
INSERT INTO users (id, email, name, created_at, bio)
SELECT s.seq, CONCAT(f, '.', l, s.seq, '@', {_pick(common.EMAIL_DOMAINS)}),
       CONCAT({_cap("f")}, ' ', {_cap("l")}),
       TIMESTAMP '2012-01-01 00:00:00' + INTERVAL FLOOR(RAND() * 4000 * 86400) SECOND,
       IF(RAND() < 0.8, b.p, NULL)
FROM (SELECT seq, {_pick(common.FIRST_NAMES)} AS f, {_pick(common.LAST_NAMES)} AS l,
             {_para("CONCAT('u', seq)", pool)} AS kb
      FROM seq_{first}_to_{last}) s
JOIN bench_paragraphs b ON b.id = s.kb;
"""


def _documents_sql(first: int, last: int, users: int, pool: int) -> str:
    keys = "".join(
        ",\n             " + _para(f"CONCAT('d', seq, ':{i}')", pool) + f" AS k{i}" for i in range(8)
    )
    joins = "\n".join(f"JOIN bench_paragraphs p{i} ON p{i}.id = d.k{i}" for i in range(8))
    body = ", '.</p>\\n<p>', ".join(f"p{i}.p" for i in range(8))
    title = _cap("SUBSTRING_INDEX(pt.p, ' ', 3 + d.seq % 8)")
    return f"""
INSERT INTO documents (id, content_id, user_id, title, body, details, published_at, updated_at)
SELECT d.seq, {_uuid("d.seq")}, 1 + FLOOR(RAND() * {users}), {title},
       CONCAT('<div class="govspeak"><p>', {body}, '.</p>\\n</div>'),
       JSON_OBJECT(
           'locale', {_pick(common.LOCALES)},
           'base_path', CONCAT('/government/publications/', REPLACE(LOWER({title}), ' ', '-')),
           'tags', JSON_ARRAY({_nth_word("pg.p", 2)}, {_nth_word("pg.p", 3)}, {_nth_word("pg.p", 4)}),
           'version', 1 + FLOOR(RAND() * 30),
           'featured', RAND() < 0.1,
           'withdrawn', RAND() < 0.03),
       IF(RAND() < 0.9, d.created, NULL),
       d.created + INTERVAL FLOOR(RAND() * 400 * 86400) SECOND
FROM (SELECT seq,
             TIMESTAMP '2014-01-01 00:00:00' + INTERVAL CRC32(CONCAT('t', seq)) % (3600 * 86400) SECOND
                 AS created,
             {_para("CONCAT('t', seq)", pool)} AS kt,
             {_para("CONCAT('g', seq)", pool)} AS kg{keys}
      FROM seq_{first}_to_{last}) d
JOIN bench_paragraphs pt ON pt.id = d.kt
JOIN bench_paragraphs pg ON pg.id = d.kg
{joins};
"""


def _events_sql(first: int, last: int, doc_first: int, doc_last: int, pool: int) -> str:
    span = doc_last - doc_first + 1
    return f"""
INSERT INTO events (id, document_id, kind, payload, occurred_at)
SELECT e.seq, {doc_first} + FLOOR(RAND() * {span}), {_pick(common.EVENT_KINDS)},
       JSON_OBJECT(
           'ip', CONCAT('10.', FLOOR(RAND() * 256), '.', FLOOR(RAND() * 256), '.', FLOOR(RAND() * 256)),
           'user_agent', {_pick(common.USER_AGENTS)},
           'session', LEFT(MD5(RAND()), 12),
           'note', LOWER(SUBSTRING_INDEX(n.p, ' ', 2 + e.seq % 10))),
       TIMESTAMP '2016-01-01 00:00:00' + INTERVAL FLOOR(RAND() * 3000 * 86400) SECOND
FROM (SELECT seq, {_para("CONCAT('e', seq)", pool)} AS kn FROM seq_{first}_to_{last}) e
JOIN bench_paragraphs n ON n.id = e.kn;
"""


@dataclass(frozen=True)
class Generated:
    """What was generated: the tables' size (data + indexes) and rows per table."""

    size_bytes: int
    rows: dict[str, int]
    seconds: float


class Client:
    """Runs SQL through the ``mariadb`` client with a 0600 option file (no password in argv)."""

    def __init__(self, server: Any, option_file: Path) -> None:
        self.server = server
        self.opts = server.option_file(option_file)

    def run(self, sql: str, database: str | None = None) -> str:
        """Run ``sql``; return the batch output without column names."""
        argv = ["mariadb", f"--defaults-extra-file={self.opts}", "--batch", "--skip-column-names"]
        if database:
            argv.append(f"--database={database}")
        proc = subprocess.run(
            argv, input=sql, env=common.clean_env(), capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"mariadb failed on {database}: {proc.stderr.strip()}")
        return proc.stdout.rstrip("\n")


def database_size(client: Client, database: str) -> int:
    """Data + index bytes of the benchmark tables from information_schema, after fresh statistics."""
    client.run("ANALYZE TABLE " + ", ".join(TABLES) + ";", database)
    names = ", ".join(common.sql_string(t) for t in TABLES)  # not the paragraph pool
    out = client.run(
        "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables "
        f"WHERE table_schema = {common.sql_string(database)} AND table_name IN ({names});"
    )
    return int(out)


def generate(client: Client, database: str, size_mb: int) -> Generated:
    """Create ``database`` and fill it to at least ``size_mb``."""
    start = time.monotonic()
    target = size_mb * common.MiB
    client.run(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4;")
    client.run(SCHEMA_SQL, database)
    pool = max(20_000, min(300_000, size_mb * 1000))
    client.run(_paragraphs_sql(pool), database)
    batch = max(500, min(20_000, size_mb * 40))
    users = documents = events = 0
    while database_size(client, database) < target:
        new_users = max(1, batch // _USERS_PER_DOCUMENT)
        client.run(_users_sql(users + 1, users + new_users, pool), database)
        users += new_users
        client.run(_documents_sql(documents + 1, documents + batch, users, pool), database)
        new_events = batch * _EVENTS_PER_DOCUMENT
        last_doc = documents + batch
        client.run(_events_sql(events + 1, events + new_events, documents + 1, last_doc, pool), database)
        documents += batch
        events += new_events
    client.run("DROP TABLE bench_paragraphs;", database)
    rows = {"users": users, "documents": documents, "events": events}
    return Generated(database_size(client, database), rows, time.monotonic() - start)


def row_counts(client: Client, database: str) -> dict[str, int]:
    """Exact rows per benchmark table of ``database`` (to check that every restore is complete)."""
    out = client.run(" UNION ALL ".join(f"SELECT '{t}', COUNT(*) FROM `{t}`" for t in TABLES) + ";", database)
    return {name: int(n) for name, n in (line.split("\t") for line in out.splitlines() if line)}
