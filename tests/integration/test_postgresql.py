"""The PostgreSQL engine against a real server: round trips, swaps, ownership, check, SQL.

Failure paths (killed processes, corrupt artifacts, refused restores, secrets) are in
test_postgresql_failures.py; the command line is in test_cli_postgresql.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from dataferry import ops
from dataferry.config import database_ref
from dataferry.engines import Engine, Shadow, get_engine
from dataferry.engines.postgresql import PostgresEngine
from dataferry.errors import EngineError, NotReady
from dataferry.progress import NullReporter
from servers import PgServer, S3Server

from ._pg_helpers import (
    PASSWORD_ENV,
    HookReporter,
    PgSetup,
    dataferry_databases,
    exact_counts,
    fingerprint,
    new_setup,
    quote,
    seed_app,
    seed_bulk,
    unique,
    use_s3,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_setup(pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PgSetup]:
    """A seeded source, a target with other data, local stores."""
    yield from new_setup(pg_server, tmp_path, monkeypatch)


def restore(setup: PgSetup, **kwargs: object) -> ops.RestoreResult:
    """Restore app from production into staging."""
    req = ops.RestoreRequest(database="app", environment="staging", source="production", **kwargs)  # type: ignore[arg-type]
    return ops.restore(ops.plan_restore(setup.config(), req))


def test_round_trip_is_exact_and_leaves_nothing_behind(pg_setup: PgSetup) -> None:
    pg = pg_setup.pg
    before = fingerprint(pg, pg_setup.src)

    backup = ops.backup(pg_setup.config(), "app", "production")
    result = restore(pg_setup)

    assert result.swapped
    assert fingerprint(pg, pg_setup.dst) == before
    assert "public.old_stuff" not in exact_counts(pg, pg_setup.dst)
    manifest = backup.manifest
    assert manifest.engine == "postgresql"
    assert {o.format for o in manifest.objects} == {"pg_directory"}  # one object per table (issue 15)
    assert manifest.server_version.startswith("PostgreSQL ")
    assert manifest.row_counts == exact_counts(pg, pg_setup.src)
    assert manifest.row_counts["billing.invoices"] == 600
    assert result.row_counts == manifest.row_counts
    assert dataferry_databases(pg, pg_setup.dst) == set()
    # the source was only read
    assert fingerprint(pg, pg_setup.src) == before


def test_round_trip_through_s3_with_parallel_restore(
    pg_setup: PgSetup, s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_s3(pg_setup, s3_server, s3_bucket, monkeypatch)
    before = fingerprint(pg_setup.pg, pg_setup.src)

    backup = ops.backup(pg_setup.config(), "app", "production")
    result = restore(pg_setup, jobs=2)

    assert result.swapped
    assert fingerprint(pg_setup.pg, pg_setup.dst) == before
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert sorted(keys) == sorted(
        [
            f"production/{backup.manifest.key}",
            *(f"production/{o.key}" for o in backup.manifest.objects),
            "staging/_dataferry/live/app.json",  # what the restore made live (ops.live), for status
        ]
    )
    assert pg_setup.spool_files() == []


def test_restore_creates_a_target_database_that_does_not_exist(pg_setup: PgSetup) -> None:
    pg = pg_setup.pg
    pg.drop_db(pg_setup.dst)
    checks = get_engine("postgresql").check(database_ref(pg_setup.config(), "app", "staging"))
    assert all(c.ok for c in checks), checks
    assert any("does not exist yet" in c.detail for c in checks)

    ops.backup(pg_setup.config(), "app", "production")
    restore(pg_setup)

    assert fingerprint(pg, pg_setup.dst) == fingerprint(pg, pg_setup.src)
    assert dataferry_databases(pg, pg_setup.dst) == set()


def test_artifact_and_at_pick_older_backups(pg_setup: PgSetup) -> None:
    pg = pg_setup.pg
    first = ops.backup(pg_setup.config(), "app", "production").manifest
    v1 = fingerprint(pg, pg_setup.src)
    time.sleep(1.1)  # artifact ids have one-second resolution
    pg.psql(
        "DELETE FROM billing.invoices WHERE id % 2 = 0; UPDATE public.users SET name = 'changed';",
        pg_setup.src,
    )
    second = ops.backup(pg_setup.config(), "app", "production").manifest
    v2 = fingerprint(pg, pg_setup.src)
    assert v1 != v2
    assert second.row_counts["billing.invoices"] == 300

    restore(pg_setup, artifact=first.id)
    assert fingerprint(pg, pg_setup.dst) == v1
    restore(pg_setup)
    assert fingerprint(pg, pg_setup.dst) == v2
    restore(pg_setup, artifact=first.objects[0].key)
    assert fingerprint(pg, pg_setup.dst) == v1
    restore(pg_setup, at=first.created_at)
    assert fingerprint(pg, pg_setup.dst) == v1


def test_open_sessions_are_terminated_and_the_swap_succeeds(pg_setup: PgSetup) -> None:
    pg = pg_setup.pg
    ops.backup(pg_setup.config(), "app", "production")
    busy = subprocess.Popen(
        [*pg.psql_argv(pg_setup.dst), "-c", "SELECT pg_sleep(120)"],
        env=pg.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    idle = psycopg.connect(pg.dsn(pg_setup.dst), password=pg.password, autocommit=True)
    in_txn = psycopg.connect(pg.dsn(pg_setup.dst), password=pg.password)
    in_txn.execute("SELECT * FROM old_stuff FOR UPDATE")  # holds a row lock in an open transaction
    try:
        deadline = time.time() + 10
        while "pg_sleep" not in pg.psql(
            f"SELECT string_agg(query, ' ') FROM pg_stat_activity WHERE datname = '{pg_setup.dst}';"
        ):
            assert time.time() < deadline, "the sleeping session did not start"
            time.sleep(0.05)

        restore(pg_setup)

        _, err = busy.communicate(timeout=30)
        assert busy.returncode != 0
        assert "terminating connection due to administrator command" in err
        for conn in (idle, in_txn):
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
    finally:
        busy.kill()
        idle.close()
        in_txn.close()
    assert fingerprint(pg, pg_setup.dst) == fingerprint(pg, pg_setup.src)
    # clients can connect again, and see the restored data
    assert pg.psql("SELECT count(*) FROM billing.invoices;", pg_setup.dst) == "600"


def test_database_grants_settings_and_owner_survive_the_swap(pg_setup: PgSetup) -> None:
    pg = pg_setup.pg
    reader, owner = unique("reader"), unique("app-owner")
    pg.psql(f"CREATE ROLE {quote(reader)} LOGIN; CREATE ROLE {quote(owner)};")
    dst = quote(pg_setup.dst)
    pg.psql(
        f"ALTER DATABASE {dst} OWNER TO {quote(owner)};"
        f"REVOKE CONNECT, TEMPORARY ON DATABASE {dst} FROM PUBLIC;"
        f"GRANT CONNECT ON DATABASE {dst} TO {quote(reader)} WITH GRANT OPTION;"
        f'ALTER DATABASE {dst} SET search_path = "$user", public, billing;'
        f"ALTER DATABASE {dst} SET work_mem = '8MB';"
        f"ALTER ROLE {quote(reader)} IN DATABASE {dst} SET statement_timeout = '5s';"
        f"ALTER DATABASE {dst} CONNECTION LIMIT 50;"
        f"COMMENT ON DATABASE {dst} IS 'staging copy';"
    )
    query = (
        "SELECT pg_get_userbyid(d.datdba), d.datacl::text, d.datconnlimit, shobj_description(d.oid, 'pg_database'), "
        "(SELECT array_agg(coalesce(pg_get_userbyid(nullif(s.setrole, 0)), '-') || ':' || array_to_string(s.setconfig, ';') "
        "ORDER BY s.setrole) FROM pg_db_role_setting s WHERE s.setdatabase = d.oid) "
        f"FROM pg_database d WHERE d.datname = '{pg_setup.dst}';"
    )
    before = pg.psql(query)
    try:
        ops.backup(pg_setup.config(), "app", "production")
        restore(pg_setup)
        assert pg.psql(query) == before
        assert fingerprint(pg, pg_setup.dst) == fingerprint(pg, pg_setup.src)
        assert pg.psql("SHOW search_path;", pg_setup.dst) == '"$user", public, billing'
    finally:
        pg.drop_db(pg_setup.dst)
        pg.psql(f"DROP ROLE {quote(reader)}; DROP ROLE {quote(owner)};")


def test_object_owners_are_preserved_by_default(pg_setup: PgSetup) -> None:
    pg = pg_setup.pg
    role = unique("app-rw")
    pg.psql(f"CREATE ROLE {quote(role)};")
    try:
        pg.psql(
            f"ALTER TABLE public.users OWNER TO {quote(role)}; ALTER SCHEMA billing OWNER TO {quote(role)};",
            pg_setup.src,
        )
        ops.backup(pg_setup.config(), "app", "production")
        restore(pg_setup)
        owners = "SELECT string_agg(tableowner, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname IN ('public', 'billing');"
        assert pg.psql(owners, pg_setup.dst) == pg.psql(owners, pg_setup.src)
        assert role in pg.psql(owners, pg_setup.dst)
        assert (
            pg.psql(
                "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'billing';", pg_setup.dst
            )
            == role
        )
    finally:
        for db in (pg_setup.src, pg_setup.dst):
            pg.drop_db(db)
        pg.psql(f"DROP ROLE {quote(role)};")


def test_owner_from_config_owns_the_database_and_every_object(pg_setup: PgSetup) -> None:
    pg = pg_setup.pg
    owner = unique("staging-owner")
    pg.psql(f"CREATE ROLE {quote(owner)};")
    pg_setup.owner = owner
    try:
        ops.backup(pg_setup.config(), "app", "production")
        restore(pg_setup)
        assert (
            pg.psql(f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{pg_setup.dst}';")
            == owner
        )
        owners = pg.psql(
            "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname IN ('public', 'billing');",
            pg_setup.dst,
        )
        assert owners == owner
        assert pg.psql("SELECT count(*) FROM billing.invoices;", pg_setup.dst) == "600"
    finally:
        pg.drop_db(pg_setup.dst)
        pg.psql(f"DROP ROLE {quote(owner)};")


def test_excluded_tables_leave_their_rows_out_and_the_target_keeps_its_own(pg_setup: PgSetup) -> None:
    """GOV.UK's excluded_tables: the rows are not in the artifact (the definition is: views and
    foreign keys may depend on it) and the target keeps its own rows through the swap."""
    pg = pg_setup.pg
    pg_setup.exclude = ["events", "billing.invoices", "no_such_table"]  # a missing one: a warning
    warnings: list[str] = []

    class Warnings(NullReporter):
        def warn(self, message: str, **fields: object) -> None:
            warnings.append(message)

    backup = ops.backup(pg_setup.config(), "app", "production", reporter=Warnings())
    assert any("no table 'no_such_table'" in w for w in warnings), warnings
    assert "public.events" not in backup.manifest.row_counts
    restore(pg_setup)  # the first restore: the target had no such tables, they arrive empty
    assert pg.psql("SELECT count(*) FROM public.events;", pg_setup.dst) == "0"
    pg.psql(
        "INSERT INTO public.events (kind) VALUES ('staging 1'), ('staging 2');"
        "INSERT INTO billing.invoices (user_id, amount, note) VALUES (7, 1, 'staging invoice');",
        pg_setup.dst,
    )
    kept = pg.psql("SELECT id, kind FROM public.events ORDER BY id;", pg_setup.dst)
    assert kept.endswith("|staging 2")
    pg.psql("UPDATE public.users SET name = 'changed in production';", pg_setup.src)
    ops.backup(pg_setup.config(), "app", "production")
    restore(pg_setup)
    assert pg.psql("SELECT id, kind FROM public.events ORDER BY id;", pg_setup.dst) == kept
    assert pg.psql("SELECT note FROM billing.invoices;", pg_setup.dst) == "staging invoice"
    changed = "SELECT count(*) FROM public.users WHERE name = 'changed in production';"
    assert pg.psql(changed, pg_setup.dst) == "200"
    # the kept table's identity moved on with its rows: a new row does not collide
    last = int(kept.splitlines()[-1].split("|")[0])
    new = pg.psql("INSERT INTO public.events (kind) VALUES ('new') RETURNING id;", pg_setup.dst)
    assert new.splitlines()[0] == str(last + 1)
    assert pg.psql("SELECT total_for(7);", pg_setup.dst) == "1.00"  # the function sees the kept rows


def test_check_reports_tools_and_server_and_changes_nothing(pg_setup: PgSetup, pg_server: PgServer) -> None:
    engine = PostgresEngine()
    ref = database_ref(pg_setup.config(), "app", "production")
    databases = pg_server.databases()
    checks = engine.check(ref)
    assert all(c.ok for c in checks), checks
    names = {c.what for c in checks}
    assert {"pg_dump", "pg_restore", "psql"} <= names
    server = next(c for c in checks if c.what.startswith("server "))
    assert server.detail == engine.server_version(ref)
    assert server.detail.startswith("PostgreSQL 1")
    assert pg_server.databases() == databases
    assert fingerprint(pg_server, pg_setup.src) == fingerprint(pg_server, pg_setup.src)


def test_check_reports_an_unreachable_server_without_raising(pg_setup: PgSetup, pg_server: PgServer) -> None:
    cfg = pg_setup.config()
    ref = database_ref(cfg, "app", "production").model_copy(
        update={"url": f"postgresql://postgres@127.0.0.1:1/{pg_setup.src}"}
    )
    checks = PostgresEngine().check(ref)
    failed = [c for c in checks if not c.ok]
    assert len(failed) == 1 and "connection to" in failed[0].what
    wrong_password = database_ref(cfg, "app", "production").model_copy(update={"password": None})
    checks = PostgresEngine().check(wrong_password)
    assert any(not c.ok and "password" in c.detail for c in checks), checks


def test_run_sql_and_query_on_live_and_shadow(pg_setup: PgSetup) -> None:
    engine = PostgresEngine()
    ref = database_ref(pg_setup.config(), "app", "production")
    assert engine.query(ref, "SELECT count(*) FROM billing.invoices") == [(600,)]
    engine.run_sql(ref, "UPDATE public.users SET email = 'x' || id || '@invalid'; CREATE TABLE t (x int);")
    assert engine.query(ref, "SELECT count(*) FROM public.users WHERE email LIKE '%@invalid'") == [(200,)]
    # a failing script changes nothing: it runs in one transaction
    with pytest.raises(EngineError, match="no_such_table"):
        engine.run_sql(ref, "DELETE FROM public.users; SELECT * FROM no_such_table;")
    assert engine.query(ref, "SELECT count(*) FROM public.users") == [(200,)]
    with pytest.raises(EngineError, match="no_such_table"):
        engine.query(ref, "SELECT * FROM no_such_table")
    assert engine.query(ref, "SET work_mem = '4MB'") == []

    dst_ref = database_ref(pg_setup.config(), "app", "staging")
    ops.backup(pg_setup.config(), "app", "production")
    seen: list[object] = []

    def sanitise(engine: Engine, shadow: Shadow) -> None:
        assert isinstance(engine, PostgresEngine)
        engine.run_sql(shadow, "UPDATE public.users SET name = 'redacted';")
        seen.extend(engine.query(shadow, "SELECT DISTINCT name FROM public.users"))

    req = ops.RestoreRequest(database="app", environment="staging", source="production")
    ops.restore(ops.plan_restore(pg_setup.config(), req), before_swap=sanitise)
    assert seen == [("redacted",)]
    assert engine.query(dst_ref, "SELECT DISTINCT name FROM public.users") == [("redacted",)]


def test_row_counts_match_the_dump_snapshot_under_concurrent_writes(pg_setup: PgSetup) -> None:
    """Rows inserted while the dump streams are in neither the dump nor its counts."""
    pg = pg_setup.pg
    inserted: list[int] = []

    def write_meanwhile(_: int) -> None:
        if not inserted:
            pg.psql(
                "INSERT INTO public.events (kind) SELECT 'late' FROM generate_series(1, 50);", pg_setup.src
            )
            inserted.append(50)

    seed_bulk(pg, pg_setup.src, 40_000)  # > 1 MiB, so the hook runs before pg_dump finishes
    backup = ops.backup(pg_setup.config(), "app", "production", reporter=HookReporter(write_meanwhile))
    assert inserted
    assert backup.manifest.row_counts["public.events"] == 200
    assert exact_counts(pg, pg_setup.src)["public.events"] == 250
    restore(pg_setup)
    assert pg.psql("SELECT count(*) FROM public.events;", pg_setup.dst) == "200"


def test_manifest_is_plain_json_without_the_password(pg_setup: PgSetup) -> None:
    backup = ops.backup(pg_setup.config(), "app", "production")
    text = (pg_setup.tmp / "store-production" / backup.manifest.key).read_text()
    assert json.loads(text)["row_counts"]["public.users"] == 200
    assert os.environ[PASSWORD_ENV] not in text


def test_seed_is_realistic(pg_server: PgServer) -> None:
    """Guard for the helpers: the seeded schema has what the round trips claim to cover."""
    db = unique("seedcheck")
    pg_server.create_db(db)
    try:
        seed_app(pg_server, db)
        kinds = pg_server.psql(
            "SELECT string_agg(DISTINCT c.relkind::text, '' ORDER BY c.relkind::text) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN ('public', 'billing');",
            db,
        )
        assert set("irSv") <= set(kinds)  # index, table, sequence, view
        assert pg_server.psql("SELECT count(*) FROM pg_constraint WHERE contype = 'f';", db) == "1"
        assert pg_server.psql("SELECT public.total_for(2);", db) != "0"
    finally:
        pg_server.drop_db(db)


def test_check_fails_when_the_client_tools_are_too_old(
    pg_setup: PgSetup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tools older than the server (pg_dump cannot dump a newer server) fail the check, and the
    backup stops before running anything. The old install is simulated by scripts that report an
    old version: only 15 is installed here."""
    bindir = tmp_path / "old-bin"
    bindir.mkdir()
    for name in ("pg_dump", "pg_restore", "psql"):
        script = bindir / name
        script.write_text(f"#!/bin/sh\necho '{name} (PostgreSQL) 12.22'\n")
        script.chmod(0o755)
    monkeypatch.setenv("DATAFERRY_PG_BINDIR", str(bindir))
    ref = database_ref(pg_setup.config(), "app", "production")
    checks = PostgresEngine().check(ref)
    failed = {c.what: c.detail for c in checks if not c.ok}
    assert set(failed) == {"pg_dump", "pg_restore", "psql"}
    assert "cannot handle PostgreSQL 1" in failed["pg_dump"] and "DATAFERRY_PG_BINDIR" in failed["pg_dump"]
    with pytest.raises(NotReady, match="pg_dump"):
        ops.backup(pg_setup.config(), "app", "production")
    assert not (pg_setup.tmp / "store-production" / "app").exists()

    monkeypatch.setenv("DATAFERRY_PG_BINDIR", str(tmp_path / "nowhere"))
    checks = PostgresEngine().check(ref)
    assert [c.what for c in checks if not c.ok] == ["PostgreSQL client tools"]
