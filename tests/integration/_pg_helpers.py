"""Helpers for the PostgreSQL engine's integration tests: seeding, fingerprints, configs, processes.

Every test gets its own source and target databases on the session's throwaway server (names
are unique, so other suites can share the server), and its own stores under ``tmp_path``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dataferry.config import Config, load
from dataferry.progress import NullReporter, Transfer
from servers import PgServer, S3Server, pg_quote_ident

PASSWORD_ENV = "FERRY_TEST_PG_PASSWORD"
SHADOW_SUFFIX = "-dataferry-shadow"
OLD_SUFFIX = "-dataferry-old"

SCHEMA_SQL = """
CREATE SCHEMA billing;
CREATE SEQUENCE public.invoice_no START 1000;
CREATE TABLE public.users (
    id bigserial PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text NOT NULL,
    profile jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL
);
CREATE TABLE billing.invoices (
    id integer PRIMARY KEY DEFAULT nextval('public.invoice_no'),
    user_id bigint NOT NULL REFERENCES public.users (id) ON DELETE CASCADE,
    amount numeric(12, 2) NOT NULL CHECK (amount >= 0),
    note text
);
CREATE INDEX invoices_user_idx ON billing.invoices (user_id);
CREATE INDEX users_profile_idx ON public.users USING gin (profile);
CREATE TABLE public.events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind text NOT NULL,
    payload bytea
);
CREATE VIEW public.big_spenders AS
    SELECT u.id, u.name, sum(i.amount) AS total
    FROM public.users u JOIN billing.invoices i ON i.user_id = u.id
    GROUP BY u.id, u.name HAVING sum(i.amount) > 100;
CREATE FUNCTION public.total_for(uid bigint) RETURNS numeric LANGUAGE sql STABLE
    AS $$ SELECT coalesce(sum(amount), 0) FROM billing.invoices WHERE user_id = uid $$;
COMMENT ON TABLE public.users IS 'people, with unicode: Zoë';
"""

DATA_SQL = """
INSERT INTO public.users (email, name, profile, created_at)
SELECT 'user' || g || '@example.org', 'Zoë Ångström 東京 ' || g,
       jsonb_build_object('n', g, 'tags', jsonb_build_array('a', 'ü'), 'even', g % 2 = 0),
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour'
FROM generate_series(1, {rows}) g;
INSERT INTO billing.invoices (user_id, amount, note)
SELECT 1 + (g % {rows}), (g * 7.31)::numeric(12, 2),
       CASE WHEN g % 3 = 0 THEN NULL ELSE 'note «' || g || '» ✓' END
FROM generate_series(1, {rows} * 3) g;
INSERT INTO public.events (kind, payload)
SELECT 'k' || (g % 5), decode(md5(g::text), 'hex') FROM generate_series(1, {rows}) g;
"""


def unique(prefix: str) -> str:
    """A database name no other test uses (with a hyphen, to exercise quoting)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def seed_app(pg: PgServer, db: str, rows: int = 200) -> None:
    """The realistic small schema: two schemas, FK, indexes, view, function, jsonb, unicode, sequence."""
    pg.psql(SCHEMA_SQL + DATA_SQL.format(rows=rows), db)


def seed_other(pg: PgServer, db: str) -> None:
    """Different content, standing for the target environment's current (live) data."""
    pg.psql(
        "CREATE TABLE public.old_stuff (id int PRIMARY KEY, v text); INSERT INTO old_stuff VALUES (1, 'keep me');",
        db,
    )


def seed_bulk(pg: PgServer, db: str, rows: int) -> None:
    """A table of poorly compressible text, so a dump or restore takes several chunks."""
    pg.psql(
        "CREATE TABLE public.bulk (id int PRIMARY KEY, a text, b text, c text);"
        f"INSERT INTO public.bulk SELECT g, md5(g::text), md5((g * 7)::text), md5((g * 13)::text) "
        f"FROM generate_series(1, {rows}) g;",
        db,
    )


def user_tables(pg: PgServer, db: str) -> list[str]:
    """``schema.table`` of the user tables."""
    out = pg.psql(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast' "
        "ORDER BY 1;",
        db,
    )
    return [line for line in out.splitlines() if line]


def fingerprint(pg: PgServer, db: str) -> dict[str, str]:
    """Rows and content of every table (count and md5 of the ordered rows) plus the schema."""
    result = {}
    for table in user_tables(pg, db):
        result[table] = pg.psql(
            f"SELECT count(*) || ' ' || md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) "
            f"FROM {table} t;",
            db,
        )
    result["~schema"] = schema_sql(pg, db)
    return result


def schema_sql(pg: PgServer, db: str) -> str:
    """pg_dump --schema-only, without the per-dump random \\restrict keys of newer pg_dump."""
    out = subprocess.run(
        [str(pg.bindir / "pg_dump"), "--schema-only", f"--dbname={pg.dsn(db)}"],
        env=pg.env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return "\n".join(line for line in out.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))


def exact_counts(pg: PgServer, db: str) -> dict[str, int]:
    """count(*) of every user table, named like the manifests name them."""
    counts = {}
    for table in user_tables(pg, db):
        counts[table.replace('"', "")] = int(pg.psql(f"SELECT count(*) FROM {table};", db))
    return counts


def dataferry_databases(pg: PgServer, live: str) -> set[str]:
    """Shadow or old copies of ``live`` that exist right now."""
    return {name for name in pg.databases() if name in (live + SHADOW_SUFFIX, live + OLD_SUFFIX)}


def datallowconn(pg: PgServer, db: str) -> str:
    """'t' or 'f'."""
    return pg.psql(f"SELECT datallowconn FROM pg_database WHERE datname = '{db}';")


# -- configuration ---------------------------------------------------------------------------------


def local_store(path: Path) -> str:
    """A store line for a local directory."""
    return f'store = "{path}"'


def s3_store(s3: S3Server, bucket: str, prefix: str) -> str:
    """A store line for a bucket on the moto server (credentials through env vars)."""
    return (
        f'store = {{ url = "s3://{bucket}/{prefix}", endpoint_url = "{s3.endpoint_url}", '
        f'region = "{s3.region}", access_key_id_env = "AWS_ACCESS_KEY_ID", '
        'secret_access_key_env = "AWS_SECRET_ACCESS_KEY", part_size_mib = 5 }'
    )


def connection(pg: PgServer, db: str, *, owner: str | None = None, user: str | None = None) -> str:
    """An inline connection table; the password comes from ``PASSWORD_ENV``."""
    url = pg.dsn(db) if user is None else f"postgresql://{user}@{pg.host}:{pg.port}/{db}"
    extra = f', owner = "{owner}"' if owner else ""
    return f'{{ url = "{url}", password_env = "{PASSWORD_ENV}"{extra} }}'


@dataclass
class PgSetup:
    """A source (production) and a target (staging) database, with a config naming them."""

    pg: PgServer
    tmp: Path
    src: str
    dst: str
    prod_store: str
    staging_store: str
    staging_protected: bool = False
    owner: str | None = None
    user: str | None = None
    src_user: str | None = None
    exclude: list[str] = field(default_factory=list)
    #: "per-table" (one object per table, the default) or "single" (one pg_dump archive)
    artifact_format: str = "per-table"

    @property
    def config_path(self) -> Path:
        """Written on each access, so tests can change the fields first."""
        path = self.tmp / "dataferry.toml"
        exclude = ", ".join(f'"{t}"' for t in self.exclude)
        path.write_text(
            f"""
[settings]
spool_dir = "{self.tmp / "spool"}"

[environments.production]
{self.prod_store}
protected = true

[environments.staging]
{self.staging_store}
protected = {"true" if self.staging_protected else "false"}

[databases.app]
engine = "postgresql"
exclude_tables = [{exclude}]
artifact_format = "{self.artifact_format}"

[databases.app.environments]
production = {connection(self.pg, self.src, user=self.src_user)}
staging = {connection(self.pg, self.dst, owner=self.owner, user=self.user)}
""",
            encoding="utf-8",
        )
        return path

    def config(self) -> Config:
        """The validated configuration."""
        return load(self.config_path)

    def spool_files(self) -> list[Path]:
        """Whatever is left in the spool directory."""
        return list((self.tmp / "spool").iterdir())


def new_setup(pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PgSetup]:
    """Body of each module's ``pg_setup`` fixture: a seeded source, a target with other data,
    local stores; the databases are dropped afterwards."""
    monkeypatch.setenv(PASSWORD_ENV, pg_server.password)
    (tmp_path / "spool").mkdir()
    setup = PgSetup(
        pg=pg_server,
        tmp=tmp_path,
        src=unique("src"),
        dst=unique("dst"),
        prod_store=local_store(tmp_path / "store-production"),
        staging_store=local_store(tmp_path / "store-staging"),
    )
    pg_server.create_db(setup.src)
    pg_server.create_db(setup.dst)
    seed_app(pg_server, setup.src)
    seed_other(pg_server, setup.dst)
    yield setup
    for name in (setup.src, setup.dst):
        for db in (name, name + SHADOW_SUFFIX, name + OLD_SUFFIX):
            pg_server.drop_db(db)


def use_s3(setup: PgSetup, s3: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point both environments at prefixes of one bucket on the moto server."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, s3.env()[key])
    setup.prod_store = s3_store(s3, bucket, "production")
    setup.staging_store = s3_store(s3, bucket, "staging")


# -- processes ---------------------------------------------------------------------------------------


def descendants_named(name: str) -> list[int]:
    """Pids of our descendant processes whose command is ``name``."""
    parents: dict[int, int] = {}
    comms: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        parents[int(entry.name)], comms[int(entry.name)] = ppid, comm
    me = os.getpid()

    def ours(pid: int) -> bool:
        seen = set()
        while pid not in (0, 1) and pid not in seen:
            seen.add(pid)
            pid = parents.get(pid, 0)
            if pid == me:
                return True
        return False

    return [pid for pid, comm in comms.items() if comm == name and ours(pid)]


def kill_descendants(name: str) -> int:
    """SIGKILL our descendants called ``name``; returns how many were killed."""
    pids = descendants_named(name)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return len(pids)


class HookReporter(NullReporter):
    """A reporter that calls ``hook(total_bytes_so_far)`` as a transfer advances (to act midway)."""

    def __init__(self, hook: Callable[[int], None]) -> None:
        self.hook = hook
        self.messages: list[str] = []

    def info(self, message: str, **fields: Any) -> None:
        """Keep the message."""
        self.messages.append(message)

    def transfer(self, label: str, total: int | None) -> Transfer:
        """A transfer that calls the hook."""
        return _HookTransfer(self.hook)


class _HookTransfer:
    def __init__(self, hook: Callable[[int], None]) -> None:
        self.hook = hook
        self.count = 0

    def advance(self, n: int) -> None:
        self.count += n
        self.hook(self.count)

    def done(self) -> None:
        pass


class CmdlineWatcher:
    """Records the argv of every process on the machine while active (to look for secrets).

    A process is seen again while it still runs Python: a child started by ``subprocess`` shows its
    parent's command line until it execs the tool, and the tool's is the one that matters."""

    def __init__(self) -> None:
        self.seen: dict[int, list[bytes]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CmdlineWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _settled(self, pid: int) -> bool:
        lines = self.seen.get(pid)
        return bool(lines) and not _program(lines[-1]).startswith("python")

    def _run(self) -> None:
        while not self._stop.is_set():
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit() and not self._settled(int(entry.name)):
                    try:
                        raw = (entry / "cmdline").read_bytes()
                    except OSError:
                        continue
                    lines = self.seen.setdefault(int(entry.name), [])
                    if raw and (not lines or lines[-1] != raw):
                        lines.append(raw)
            time.sleep(0.005)

    def programs(self) -> set[str]:
        """Base names of the programs seen."""
        return {_program(raw) for lines in self.seen.values() for raw in lines}

    def containing(self, secret: str) -> list[str]:
        """Command lines that contain ``secret``."""
        needle = secret.encode()
        return [
            raw.replace(b"\0", b" ").decode(errors="replace")
            for lines in self.seen.values()
            for raw in lines
            if needle in raw
        ]


def _program(raw: bytes) -> str:
    return os.path.basename(raw.split(b"\0")[0].decode(errors="replace"))


def terminate_backends(pg: PgServer, db: str) -> int:
    """pg_terminate_backend for every session on ``db``; returns how many."""
    out = pg.psql(f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{db}';")
    return int(out or 0)


def quote(name: str) -> str:
    """A quoted identifier."""
    return pg_quote_ident(name)
