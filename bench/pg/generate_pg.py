"""Generate a realistic PostgreSQL database of a target size, server-side.

Three tables like a publishing application's: ``users`` (names, emails, short bios), ``documents``
(titles, prose bodies, a uuid, a jsonb details document, timestamps) and ``events`` (an audit log
with a jsonb payload). Prose is random words drawn with a skewed frequency from a vocabulary, so a
dump compresses about 4x with zstd -3 (pgbench's filler compresses ~100x and says nothing about
real throughput). Rows are made by ``INSERT ... SELECT`` over ``generate_series`` in batches: no
Python row loops. Primary keys, foreign keys and secondary indexes are built after the bulk load,
then more batches are added until the database is at least the target size.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import common

# Fraction of the target loaded before the indexes are built; the indexes add roughly the rest.
_DATA_FRACTION = 0.8
_USERS_PER_DOCUMENT = 20
_EVENTS_PER_DOCUMENT = 3
TABLES = ("users", "documents", "events")


def _array(values: Sequence[str]) -> str:
    return "ARRAY[" + ",".join(common.sql_string(v) for v in values) + "]::text[]"


def _setup_sql() -> str:
    """Tables without constraints (they are added after the bulk load) and two helper functions,
    dropped again at the end so the dump holds only the application's schema."""
    return f"""
CREATE TABLE users (
    id bigint NOT NULL,
    email text NOT NULL,
    name text NOT NULL,
    created_at timestamptz NOT NULL,
    bio text
);
CREATE TABLE documents (
    id bigint NOT NULL,
    content_id uuid NOT NULL,
    user_id bigint NOT NULL,
    title text NOT NULL,
    body text NOT NULL,
    details jsonb NOT NULL,
    published_at timestamptz,
    updated_at timestamptz NOT NULL
);
CREATE TABLE events (
    id bigint NOT NULL,
    document_id bigint NOT NULL,
    kind text NOT NULL,
    payload jsonb NOT NULL,
    occurred_at timestamptz NOT NULL
);
CREATE FUNCTION bench_pick(choices text[]) RETURNS text LANGUAGE sql VOLATILE AS
$$ SELECT choices[1 + floor(random() * cardinality(choices))::int] $$;
CREATE FUNCTION bench_words(n int) RETURNS text LANGUAGE sql VOLATILE AS
$$ SELECT string_agg(w[1 + floor(cardinality(w) * random() ^ {common.WORD_SKEW})::int], ' ')
   FROM (SELECT {_array(common.VOCABULARY)} AS w) v, generate_series(1, n) $$;
-- Bodies are HTML like a publishing app's: 8 paragraphs of about n/8 words each, a third of them
-- boilerplate ("How to apply", contact details...) shared between documents, as in real content.
CREATE TABLE bench_boilerplate AS
    SELECT i AS id, initcap(bench_words(1)) || ' ' || bench_words(10 + floor(random() * 30)::int) AS p
    FROM generate_series(1, 500) AS i;
ALTER TABLE bench_boilerplate ADD PRIMARY KEY (id);
-- plpgsql, not SQL: it caches the plans of the bench_words calls across calls.
CREATE FUNCTION bench_html(n int) RETURNS text LANGUAGE plpgsql VOLATILE AS
$$
DECLARE
    html text := '<div class="govspeak">';
    para text;
    pick int;
BEGIN
    FOR i IN 1..8 LOOP
        IF random() < 0.35 THEN
            -- random() in the WHERE clause would be re-evaluated for every row scanned
            pick := 1 + floor(random() * 500)::int;
            SELECT p INTO STRICT para FROM bench_boilerplate WHERE id = pick;
        ELSE
            para := initcap(bench_words(1)) || ' ' || bench_words(greatest(1, n / 8 - 1));
        END IF;
        html := html || '<p>' || para || E'.</p>\n';
    END LOOP;
    RETURN html || '</div>';
END
$$;
"""


def _users_sql(first: int, last: int) -> str:
    return f"""
INSERT INTO users (id, email, name, created_at, bio)
SELECT g, f || '.' || l || g || '@' || bench_pick({_array(common.EMAIL_DOMAINS)}),
       initcap(f) || ' ' || initcap(l),
       timestamptz '2012-01-01 00:00:00+00' + random() * interval '4000 days',
       CASE WHEN random() < 0.8 THEN bench_words(8 + floor(random() * 40)::int) END
FROM (SELECT g, bench_pick({_array(common.FIRST_NAMES)}) AS f,
             bench_pick({_array(common.LAST_NAMES)}) AS l
      FROM generate_series({first}, {last}) AS g) s;
"""


def _documents_sql(first: int, last: int, users: int) -> str:
    return f"""
INSERT INTO documents (id, content_id, user_id, title, body, details, published_at, updated_at)
SELECT g, gen_random_uuid(), u, title, bench_html(n),
       jsonb_build_object(
           'locale', bench_pick({_array(common.LOCALES)}),
           'word_count', n,
           'base_path', '/government/publications/' || replace(lower(title), ' ', '-'),
           'tags', to_jsonb(string_to_array(bench_words(3), ' ')),
           'version', 1 + floor(random() * 30)::int,
           'featured', random() < 0.1,
           'withdrawn', random() < 0.03),
       CASE WHEN random() < 0.9 THEN created END,
       created + random() * interval '400 days'
FROM (SELECT g, 1 + floor(random() * {users})::bigint AS u,
             initcap(bench_words(3 + floor(random() * 8)::int)) AS title,
             40 + floor(random() * 260)::int AS n,
             timestamptz '2014-01-01 00:00:00+00' + random() * interval '3600 days' AS created
      FROM generate_series({first}, {last}) AS g) s;
"""


def _events_sql(first: int, last: int, doc_first: int, doc_last: int) -> str:
    span = doc_last - doc_first + 1
    return f"""
INSERT INTO events (id, document_id, kind, payload, occurred_at)
SELECT g, {doc_first} + floor(random() * {span})::bigint, bench_pick({_array(common.EVENT_KINDS)}),
       jsonb_build_object(
           'ip', '10.' || floor(random() * 256) || '.' || floor(random() * 256) || '.'
                 || floor(random() * 256),
           'user_agent', bench_pick({_array(common.USER_AGENTS)}),
           'session', substr(md5(random()::text), 1, 12),
           'note', bench_words(2 + floor(random() * 10)::int)),
       timestamptz '2016-01-01 00:00:00+00' + random() * interval '3000 days'
FROM generate_series({first}, {last}) AS g;
"""


_CONSTRAINTS_SQL = """
ALTER TABLE users ADD PRIMARY KEY (id);
ALTER TABLE documents ADD PRIMARY KEY (id);
ALTER TABLE events ADD PRIMARY KEY (id);
CREATE UNIQUE INDEX users_email_idx ON users (email);
CREATE UNIQUE INDEX documents_content_id_idx ON documents (content_id);
CREATE INDEX documents_user_id_idx ON documents (user_id);
CREATE INDEX documents_published_at_idx ON documents (published_at);
CREATE INDEX documents_locale_idx ON documents ((details ->> 'locale'));
CREATE INDEX events_document_id_occurred_at_idx ON events (document_id, occurred_at);
ALTER TABLE documents ADD CONSTRAINT documents_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id);
ALTER TABLE events ADD CONSTRAINT events_document_id_fkey FOREIGN KEY (document_id) REFERENCES documents (id);
"""


@dataclass(frozen=True)
class Generated:
    """What was generated: the database's size and its rows per table."""

    size_bytes: int
    rows: dict[str, int]
    seconds: float


class _Loader:
    """Adds batches of users, documents and events; keeps the next ids."""

    def __init__(self, psql: Callable[[str], str], batch_documents: int) -> None:
        self.psql = psql
        self.batch = batch_documents
        self.users = 0
        self.documents = 0
        self.events = 0

    def add_batch(self) -> None:
        """One batch: ``batch`` documents, a user per 20 documents, three events per document."""
        new_users = max(1, self.batch // _USERS_PER_DOCUMENT)
        self.psql(_users_sql(self.users + 1, self.users + new_users))
        self.users += new_users
        doc_first, doc_last = self.documents + 1, self.documents + self.batch
        self.psql(_documents_sql(doc_first, doc_last, self.users))
        self.documents = doc_last
        new_events = self.batch * _EVENTS_PER_DOCUMENT
        self.psql(_events_sql(self.events + 1, self.events + new_events, doc_first, doc_last))
        self.events += new_events


def psql(server: Any, sql: str, dbname: str) -> str:
    """Run ``sql`` with psql on ``dbname`` without the fixtures' 60 s limit (index builds on a big
    database take longer); return the unaligned, tuples-only output."""
    proc = subprocess.run(
        server.psql_argv(dbname), input=sql, env=server.env(), capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"psql failed on {dbname}: {proc.stderr.strip()}")
    return proc.stdout.rstrip("\n")


def database_size(server: Any, dbname: str) -> int:
    """``pg_database_size`` of ``dbname``."""
    return int(psql(server, "SELECT pg_database_size(current_database());", dbname))


def generate(server: Any, dbname: str, size_mb: int, log: Callable[[str], None] = print) -> Generated:
    """Create ``dbname`` on ``server`` (a tests/servers.py PgServer) and fill it to ``size_mb``."""
    start = time.monotonic()
    target = size_mb * common.MiB
    server.create_db(dbname)

    def run(sql: str) -> str:
        return psql(server, sql, dbname)

    run(_setup_sql())
    # ~2 KB per document with its events and user: batches of ~40 MB at most, ~25 at least.
    loader = _Loader(run, batch_documents=max(500, min(20_000, size_mb * 40)))
    while database_size(server, dbname) < target * _DATA_FRACTION:
        loader.add_batch()
    log(f"  loaded {loader.documents} documents, building keys and indexes")
    run(_CONSTRAINTS_SQL)
    while database_size(server, dbname) < target:
        loader.add_batch()
    run(
        "DROP FUNCTION bench_html(int); DROP TABLE bench_boilerplate;"
        " DROP FUNCTION bench_words(int); DROP FUNCTION bench_pick(text[]);"
    )
    # Set hint bits and statistics now, so no measured dump pays for them.
    run("VACUUM ANALYZE; CHECKPOINT;")
    rows = {"users": loader.users, "documents": loader.documents, "events": loader.events}
    return Generated(database_size(server, dbname), rows, time.monotonic() - start)


def row_counts(server: Any, dbname: str) -> dict[str, int]:
    """Exact rows per benchmark table of ``dbname`` (to check that every restore is complete)."""
    out = psql(server, " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in TABLES) + ";", dbname)
    return {name: int(n) for name, n in (line.split("|") for line in out.splitlines() if line)}


def content_fingerprint(server: Any, dbname: str) -> dict[str, str]:
    """Rows and content of every benchmark table: the count and the sum of each row's 64-bit hash
    (md5 of its text form), which does not depend on row order, so it needs no sort of gigabytes;
    any changed, lost or extra row changes it."""
    query = " UNION ALL ".join(
        f"SELECT '{t}', count(*) || ':' || coalesce(sum(('x' || left(md5(r::text), 16))::bit(64)::bigint::numeric), 0) "
        f"FROM {t} r"
        for t in TABLES
    )
    out = psql(server, query + ";", dbname)
    return {name: value for name, value in (line.split("|") for line in out.splitlines() if line)}
