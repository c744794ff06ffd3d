"""``--jobs`` auto (issue 15, item 3): the usable CPUs, bounded by the connections the real
server still gives (``LimitsJobs``), and streamed where a parallel restore would spool a
PostgreSQL dump or has no room to spool a MySQL one; an asked-for ``--jobs`` is honoured exactly.
Against the session's throwaway PostgreSQL and MariaDB servers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from dataferry import cpus, ops, private
from dataferry.config import Config, DatabaseRef, database_ref, load
from dataferry.engines import LimitsJobs, get_engine
from dataferry.engines.mysql import limits as mysql_limits
from dataferry.engines.postgresql import limits as pg_limits
from dataferry.progress import NullReporter
from servers import MariaDbServer, PgServer, mariadb_quote_ident, pg_quote_ident

from ._pg_helpers import PgSetup, exact_counts, new_setup, unique
from .test_mysql_engine import DB, World, make_world, seed, snapshot

pytestmark = pytest.mark.integration


class Warnings(NullReporter):
    """Keeps the warnings a restore gives."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def warn(self, message: str, **fields: Any) -> None:
        self.lines.append(message)


def _limits(engine_name: str, ref: DatabaseRef) -> int:
    engine = get_engine(engine_name)
    assert isinstance(engine, LimitsJobs)
    allowed = engine.max_jobs(ref)
    assert allowed is not None
    return allowed


# -- PostgreSQL -------------------------------------------------------------------------------------


@pytest.fixture
def pg_setup(pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PgSetup]:
    """A seeded source, a target with other data, local stores."""
    yield from new_setup(pg_server, tmp_path, monkeypatch)


@contextlib.contextmanager
def pg_connections(pg: PgServer, n: int, user: str | None = None) -> Iterator[None]:
    """``n`` extra client connections held open meanwhile."""
    conns = [
        psycopg.connect(
            host=pg.host, port=pg.port, user=user or pg.user, password=pg.password, dbname="postgres"
        )
        for _ in range(n)
    ]
    try:
        yield
    finally:
        for conn in conns:
            conn.close()


def test_pg_max_jobs_is_the_free_connections_less_the_restores_own(pg_setup: PgSetup) -> None:
    """As a superuser: ``max_connections`` less the client backends, less the margin of 2; each
    connection someone else opens is one worker fewer."""
    pg = pg_setup.pg
    ref = database_ref(pg_setup.config(), "app", "staging")
    max_connections = int(pg.psql("SHOW max_connections;"))
    before = _limits("postgresql", ref)
    assert 0 < before <= max_connections - pg_limits.MARGIN
    with pg_connections(pg, 3):
        assert _limits("postgresql", ref) == before - 3
    assert _limits("postgresql", ref) == before


def test_pg_max_jobs_honours_the_roles_connection_limit(pg_setup: PgSetup) -> None:
    """A role with ``CONNECTION LIMIT 5`` restores with at most 5 - 2 workers, fewer while it has
    other sessions open; the superuser-reserved slots are not its to use."""
    pg = pg_setup.pg
    role = unique("limited")
    pg.psql(f"CREATE ROLE {pg_quote_ident(role)} LOGIN CREATEDB PASSWORD '{pg.password}' CONNECTION LIMIT 5;")
    try:
        pg_setup.user = role
        ref = database_ref(pg_setup.config(), "app", "staging")
        assert _limits("postgresql", ref) == 5 - pg_limits.MARGIN
        with pg_connections(pg, 2, user=role):
            assert _limits("postgresql", ref) == 5 - 2 - pg_limits.MARGIN
        pg.psql(f"ALTER ROLE {pg_quote_ident(role)} CONNECTION LIMIT 1;")
        assert _limits("postgresql", ref) == 1 - pg_limits.MARGIN  # auto makes that 1 worker
    finally:
        pg.psql(f"DROP ROLE {pg_quote_ident(role)};")


def _single(setup: PgSetup) -> Config:
    """The configuration with ``artifact_format = "single"``: one pg_custom archive per backup."""
    setup.artifact_format = "single"
    return setup.config()


def test_a_per_table_artifact_restores_with_every_usable_worker_and_no_spool(pg_setup: PgSetup) -> None:
    """Auto on a per-table (pg_directory) artifact, the default format: as many workers as usable
    CPUs (3 here, pretended) within what the server allows, straight from the store, no spool."""
    cfg = pg_setup.config()
    manifest = ops.backup(cfg, "app", "production").manifest
    assert manifest.by_objects
    req = ops.RestoreRequest(database="app", environment="staging", source="production")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cpus, "usable_cpus", lambda *a: 3)
        plan = ops.plan_restore(cfg, req)
    assert plan.jobs == 3 and plan.spool is None and plan.reservation is None
    assert plan.jobs_detail.startswith("jobs 3 (auto: 3 CPUs, server allows ")
    ops.restore(plan)
    assert exact_counts(pg_setup.pg, pg_setup.dst) == exact_counts(pg_setup.pg, pg_setup.src)


def test_a_pg_custom_artifact_restores_streamed_by_default_with_no_spool(pg_setup: PgSetup) -> None:
    """Auto on a single-object pg_custom artifact: one stream into pg_restore, no spool reserved,
    whatever the CPUs and the server allow; and the restore is exact."""
    cfg = _single(pg_setup)
    ops.backup(cfg, "app", "production")
    plan = ops.plan_restore(
        cfg, ops.RestoreRequest(database="app", environment="staging", source="production")
    )
    assert plan.request.jobs is None  # the request still says auto (a re-plan chooses again)
    assert plan.jobs == 1 and plan.spool is None and plan.reservation is None
    assert plan.jobs_detail.startswith(f"jobs 1 (auto: {cpus.usable_cpus()} CPU")
    assert "server allows" in plan.jobs_detail and "pg_custom artifact streams" in plan.jobs_detail
    assert not list((pg_setup.tmp / "spool").iterdir())
    ops.restore(plan)
    assert exact_counts(pg_setup.pg, pg_setup.dst) == exact_counts(pg_setup.pg, pg_setup.src)


def test_an_asked_for_jobs_is_honoured_with_its_spool(pg_setup: PgSetup) -> None:
    """``--jobs 3`` on a pg_custom artifact: 3 workers, the spool reserved, as before auto existed."""
    cfg = _single(pg_setup)
    ops.backup(cfg, "app", "production")
    req = ops.RestoreRequest(database="app", environment="staging", source="production", jobs=3)
    plan = ops.plan_restore(cfg, req)
    try:
        assert (plan.jobs, plan.jobs_detail) == (3, "jobs 3 (as asked)")
        assert plan.spool == pg_setup.tmp / "spool" and plan.reservation is not None
    finally:
        private.release(plan.reservation)


def test_restore_jobs_in_the_configuration(pg_setup: PgSetup) -> None:
    """``databases.app.restore_jobs`` is an asked-for value (the job runner's way to set it);
    ``--jobs`` still wins over it."""
    pg_setup.config()  # writes the file
    path = pg_setup.config_path
    path.write_text(
        path.read_text().replace('engine = "postgresql"\n', 'engine = "postgresql"\nrestore_jobs = 2\n')
    )
    cfg = load(path)
    ops.backup(cfg, "app", "production")
    req = ops.RestoreRequest(database="app", environment="staging", source="production")
    plan = ops.plan_restore(cfg, req)
    private.release(plan.reservation)
    assert (plan.jobs, plan.jobs_detail) == (2, "jobs 2 (databases.app.restore_jobs)")
    plan = ops.plan_restore(cfg, ops.RestoreRequest(**{**req.__dict__, "jobs": 1}))
    assert (plan.jobs, plan.reservation) == (1, None)


# -- MySQL/MariaDB ----------------------------------------------------------------------------------


@pytest.fixture
def world(mariadb_server: MariaDbServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """A seeded production database and an empty staging environment."""
    before = mariadb_server.databases()
    w = make_world(mariadb_server, tmp_path, monkeypatch)
    seed(mariadb_server, w.source, posts=200)
    yield w
    for name in mariadb_server.databases() - before:
        mariadb_server.drop_db(name)


@contextlib.contextmanager
def my_connections(server: MariaDbServer, n: int, user: str | None = None) -> Iterator[None]:
    """``n`` extra client connections held open meanwhile."""
    conns = [
        pymysql.connect(
            host=server.host, port=server.port, user=user or server.user, password=server.password
        )
        for _ in range(n)
    ]
    try:
        yield
    finally:
        for conn in conns:
            conn.close()


def test_mysql_max_jobs_is_the_free_connections_less_the_restores_own(world: World) -> None:
    server = world.server
    ref = database_ref(world.cfg, DB, "staging")
    max_connections = int(server.execute("SELECT @@GLOBAL.max_connections;"))
    before = _limits("mysql", ref)
    assert 0 < before <= max_connections - mysql_limits.MARGIN
    with my_connections(server, 3):
        assert _limits("mysql", ref) == before - 3
    assert _limits("mysql", ref) == before


def test_mysql_max_jobs_honours_the_accounts_max_user_connections(world: World) -> None:
    """An account created ``WITH MAX_USER_CONNECTIONS 5``: 5 - 2 workers, fewer while it has
    other sessions open."""
    server = world.server
    user = unique("limited").replace("-", "_")
    account = f"{mariadb_quote_ident(user)}@'%'"
    server.execute(
        f"CREATE USER {account} IDENTIFIED BY '{server.password}' WITH MAX_USER_CONNECTIONS 5; "
        f"GRANT ALL ON *.* TO {account};"
    )
    try:
        text = world.config_path.read_text().replace(f"mysql://{server.user}@", f"mysql://{user}@")
        world.config_path.write_text(text)
        ref = database_ref(load(world.config_path), DB, "staging")
        assert _limits("mysql", ref) == 5 - mysql_limits.MARGIN
        with my_connections(server, 2, user=user):
            assert _limits("mysql", ref) == 5 - 2 - mysql_limits.MARGIN
    finally:
        server.execute(f"DROP USER {account};")


def test_mysql_auto_restores_in_parallel_when_the_spool_has_room(world: World) -> None:
    """Auto on MySQL: the usable CPUs (here at least 2, whatever this machine has), the spool
    reserved, and the restore exact."""
    world.backup()
    req = ops.RestoreRequest(database=DB, environment="staging", source="production")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cpus, "usable_cpus", lambda *a: 3)
        plan = ops.plan_restore(world.cfg, req)
    assert plan.jobs == 3 and plan.spool == world.spool and plan.reservation is not None
    assert plan.jobs_detail.startswith("jobs 3 (auto: 3 CPUs, server allows ")
    ops.restore(plan)
    assert snapshot(world.server, world.target) == snapshot(world.server, world.source)


def test_mysql_auto_streams_with_a_warning_when_the_spool_has_no_room(world: World) -> None:
    """Another restore reserved all the spool's free space: auto falls back to one stream (nothing
    spooled) and warns, saying why and how to get the parallel restore; ``--jobs 2`` is refused
    as before (exit 3)."""
    world.backup()
    with private.space_lock(world.spool):
        other = private.reserve(world.spool, 10**15)  # more than any disk: no room, however much frees up
    try:
        reporter = Warnings()
        req = ops.RestoreRequest(database=DB, environment="staging", source="production")
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(cpus, "usable_cpus", lambda *a: 2)
            plan = ops.plan_restore(world.cfg, req, reporter)
        assert plan.jobs == 1 and plan.spool is None and plan.reservation is None
        assert plan.jobs_detail.endswith("no room to spool, streamed)")
        [warning] = reporter.lines
        assert "one stream instead of 2 parallel workers" in warning
        assert "reserved by restores running now" in warning and "settings.spool_dir" in warning
        ops.restore(plan)
        assert snapshot(world.server, world.target) == snapshot(world.server, world.source)
        from dataferry.errors import NotReady

        with pytest.raises(NotReady, match="reserved by restores running now"):
            ops.plan_restore(world.cfg, ops.RestoreRequest(**{**req.__dict__, "jobs": 2}))
    finally:
        private.release(other)


def test_dry_run_and_the_log_say_the_jobs(world: World) -> None:
    """``restore --dry-run`` prints the choice; the real restore logs it."""
    world.backup()
    restore = ("restore", DB, "--env", "staging", "--from", "production")
    dry = world.run_cli(*restore, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert ", jobs " in dry.stdout and "(auto: " in dry.stdout and "server allows " in dry.stdout
    done = world.run_cli(*restore, "--jobs", "1")
    assert done.returncode == 0, done.stderr
    assert "jobs 1 (as asked)" in done.stderr
