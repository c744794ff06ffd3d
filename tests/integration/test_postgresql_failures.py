"""The PostgreSQL engine when things go wrong: every failure leaves the live database exactly as
it was, publishes nothing half-made, leaves no shadow behind, and never shows a password.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from dataferry import artifacts, ops
from dataferry.artifacts import DataObject, Manifest
from dataferry.codecs import zstd_compress
from dataferry.config import database_ref, load
from dataferry.engines import Engine, Shadow
from dataferry.engines.postgresql import swap as swapping
from dataferry.errors import (
    ConfigError,
    EngineError,
    FerryError,
    NotReady,
    Refused,
    SanitisationFailed,
    VerificationFailed,
)
from dataferry.progress import LogReporter
from servers import PgServer, S3Server

from ._pg_helpers import (
    SHADOW_SUFFIX,
    CmdlineWatcher,
    HookReporter,
    PgSetup,
    dataferry_databases,
    datallowconn,
    fingerprint,
    kill_descendants,
    new_setup,
    quote,
    seed_bulk,
    terminate_backends,
    unique,
    use_s3,
)

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


@pytest.fixture
def pg_setup(pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PgSetup]:
    """A seeded source, a target with other data, local stores."""
    yield from new_setup(pg_server, tmp_path, monkeypatch)


def restore_req(**kwargs: object) -> ops.RestoreRequest:
    """Restore app from production into staging."""
    return ops.RestoreRequest(database="app", environment="staging", source="production", **kwargs)  # type: ignore[arg-type]


def assert_untouched(setup: PgSetup, before: dict[str, str]) -> None:
    """The live target has exactly its old content, accepts connections, and no shadow is left."""
    assert fingerprint(setup.pg, setup.dst) == before
    assert datallowconn(setup.pg, setup.dst) == "t"
    assert dataferry_databases(setup.pg, setup.dst) == set()


def data_path(setup: PgSetup, manifest: Manifest) -> Path:
    """Where a local production store keeps the artifact's data object."""
    return setup.tmp / "store-production" / manifest.objects[0].key


# -- backups ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["local", "s3"])
def test_backup_killed_halfway_publishes_nothing(
    store: str,
    pg_setup: PgSetup,
    s3_server: S3Server,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pg = pg_setup.pg
    if store == "s3":
        use_s3(pg_setup, s3_server, s3_bucket, monkeypatch)
    # ~100 MB of dump: more than one 5 MiB part before the kill (S3), and pg_dump still running
    # then although dataferry reads ahead of what it has uploaded (a 1 MiB pipe, 8 MiB queued) and
    # pg_dump writes its files without waiting for dataferry (with 40 MB, a slow hour of CI once let
    # pg_dump finish before dataferry had read 13 MiB: nothing was left to kill)
    seed_bulk(pg, pg_setup.src, 1_000_000)
    first = ops.backup(pg_setup.config(), "app", "production").manifest
    killed: list[int] = []

    def kill_pg_dump(raw_bytes: int) -> None:
        if not killed and raw_bytes >= 13 * MiB:
            killed.append(kill_descendants("pg_dump"))

    with pytest.raises(FerryError, match="pg_dump") as info:
        ops.backup(pg_setup.config(), "app", "production", reporter=HookReporter(kill_pg_dump))

    assert killed and killed[0] >= 1  # pg_dump, and its workers (one object per table)
    assert "signal 9" in str(info.value)
    store_ = ops.store_for(pg_setup.config(), "production")
    assert artifacts.latest(store_, "app") == first
    kept = sorted([first.key, *(o.key for o in first.objects)])  # the failed backup's objects removed
    assert sorted(o.key for o in store_.list("")) == kept
    if store == "s3":
        assert s3_server.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    else:  # not even a temporary file is left
        root = pg_setup.tmp / "store-production"
        files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        assert files == kept
    # the snapshot transaction that counted rows is gone too
    sessions = pg.psql(
        f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{pg_setup.src}' AND application_name = 'dataferry';"
    )
    assert sessions == "0"


def test_a_failed_dump_fails_the_backup(pg_setup: PgSetup) -> None:
    """pg_dump's own error (here: a table it may not read) fails the backup; nothing is published."""
    pg = pg_setup.pg
    reader = unique("reader")
    pg.psql(f"CREATE ROLE {quote(reader)} LOGIN PASSWORD '{pg.password}';")
    try:
        pg.psql(
            f"REVOKE ALL ON billing.invoices FROM PUBLIC; GRANT USAGE ON SCHEMA billing TO {quote(reader)};",
            pg_setup.src,
        )
        pg.psql(f"GRANT SELECT ON public.users, public.events TO {quote(reader)};", pg_setup.src)
        pg_setup.src_user = reader
        with pytest.raises(EngineError, match="permission denied") as info:
            ops.backup(pg_setup.config(), "app", "production")
        assert info.value.exit_code == 1
        assert not (pg_setup.tmp / "store-production" / "app").exists() or not any(
            p.name.endswith(".manifest.json") for p in (pg_setup.tmp / "store-production" / "app").iterdir()
        )
    finally:
        pg.drop_db(pg_setup.src)
        pg.psql(f"DROP ROLE {quote(reader)};")


# -- artifacts that must be refused ------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["flip-header", "flip-early", "flip-middle", "truncate"])
def test_corrupt_or_truncated_artifact_is_refused(damage: str, pg_setup: PgSetup) -> None:
    """Damage anywhere is reported as a verification failure (exit 7), even when the damaged bytes
    made zstd or pg_restore fail before the end of the stream, where the checksum is checked."""
    before = fingerprint(pg_setup.pg, pg_setup.dst)
    seed_bulk(pg_setup.pg, pg_setup.src, 60_000)  # ~3 MB compressed: several chunks
    manifest = ops.backup(pg_setup.config(), "app", "production").manifest
    path = data_path(pg_setup, manifest)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        del data[len(data) // 2 :]
    else:
        at = {"flip-header": 0, "flip-early": len(data) // 20, "flip-middle": len(data) // 2}[damage]
        data[at : at + 8] = bytes(b ^ 0xFF for b in data[at : at + 8])
    path.write_bytes(bytes(data))

    with pytest.raises(VerificationFailed) as info:
        ops.restore(ops.plan_restore(pg_setup.config(), restore_req()))
    assert info.value.exit_code == 7
    assert_untouched(pg_setup, before)
    with pytest.raises(VerificationFailed):
        ops.verify(pg_setup.config(), "app", "production")


def test_corrupt_artifact_in_s3_is_refused(
    pg_setup: PgSetup, s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_s3(pg_setup, s3_server, s3_bucket, monkeypatch)
    before = fingerprint(pg_setup.pg, pg_setup.dst)
    manifest = ops.backup(pg_setup.config(), "app", "production").manifest
    s3 = s3_server.client()
    key = f"production/{manifest.objects[0].key}"
    data = bytearray(s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read())
    data[len(data) // 3] ^= 0x01
    s3.put_object(Bucket=s3_bucket, Key=key, Body=bytes(data))

    with pytest.raises(VerificationFailed):
        ops.restore(ops.plan_restore(pg_setup.config(), restore_req()))
    assert_untouched(pg_setup, before)


def publish_raw(setup: PgSetup, payload: bytes) -> Manifest:
    """Publish ``payload`` as a pg_custom artifact with a correct checksum (a broken dump, not a corrupt one)."""
    store = ops.store_for(setup.config(), "production")
    compressed = zstd_compress(io.BytesIO(payload)).read()
    ident, created = artifacts.new_artifact_id(store, "app")
    key = artifacts.data_key("app", ident, "pg_custom.zst")
    store.put(key, io.BytesIO(compressed))

    manifest = Manifest(
        id=ident,
        database="app",
        engine="postgresql",
        source_environment="production",
        created_at=created,
        finished_at=artifacts.utcnow(),
        objects=[
            DataObject(
                key=key,
                size=len(compressed),
                sha256=hashlib.sha256(compressed).hexdigest(),
                format="pg_custom",
                raw_size=len(payload),
            )
        ],
    )
    artifacts.write_manifest(store, manifest)
    return manifest


@pytest.mark.parametrize("jobs", [1, 2])
def test_dump_that_breaks_midway_fails_the_restore_cleanly(jobs: int, pg_setup: PgSetup) -> None:
    """A checksum-valid artifact whose dump ends midway through the data: pg_restore fails after
    loading part of it into the shadow; the shadow is dropped and the live database untouched."""
    pg = pg_setup.pg
    before = fingerprint(pg, pg_setup.dst)
    seed_bulk(pg, pg_setup.src, 20_000)
    dump = subprocess.run(
        [str(pg.bindir / "pg_dump"), "-Fc", "-Z0", f"--dbname={pg.dsn(pg_setup.src)}"],
        env=pg.env(),
        capture_output=True,
        check=True,
    ).stdout
    publish_raw(pg_setup, dump[: len(dump) * 2 // 3])

    with pytest.raises(EngineError, match="pg_restore") as info:
        ops.restore(ops.plan_restore(pg_setup.config(), restore_req(jobs=jobs)))
    assert info.value.exit_code == 1
    assert_untouched(pg_setup, before)
    assert pg_setup.spool_files() == []


def test_garbage_with_a_valid_checksum_is_rejected_by_pg_restore(pg_setup: PgSetup) -> None:
    before = fingerprint(pg_setup.pg, pg_setup.dst)
    publish_raw(pg_setup, b"this is not a PostgreSQL archive\n" * 1000)
    with pytest.raises(EngineError, match="pg_restore"):
        ops.restore(ops.plan_restore(pg_setup.config(), restore_req()))
    assert_untouched(pg_setup, before)


def test_dump_needing_a_missing_role_fails_with_a_hint(pg_setup: PgSetup) -> None:
    pg = pg_setup.pg
    before = fingerprint(pg, pg_setup.dst)
    role = unique("gone")
    pg.psql(f"CREATE ROLE {quote(role)};")
    pg.psql(f"ALTER TABLE billing.invoices OWNER TO {quote(role)};", pg_setup.src)
    ops.backup(pg_setup.config(), "app", "production")
    pg.psql(
        f"REASSIGN OWNED BY {quote(role)} TO {quote(pg.user)}; DROP OWNED BY {quote(role)};", pg_setup.src
    )
    pg.psql(f"DROP ROLE {quote(role)};")

    with pytest.raises(EngineError) as info:
        ops.restore(ops.plan_restore(pg_setup.config(), restore_req()))
    assert f'role "{role}" does not exist' in str(info.value)
    assert info.value.hint is not None and "owner" in info.value.hint
    assert_untouched(pg_setup, before)


# -- restores interrupted midway ---------------------------------------------------------------------


@contextlib.contextmanager
def during_copy(pg: PgServer, shadow: str, action: Callable[[], int]) -> Iterator[list[int]]:
    """Run ``action`` once, on a watcher thread, as soon as a COPY into ``shadow`` is running.

    Watching the server rather than the bytes read: the artifact is read ahead on a thread, so
    how much was read says little about how far pg_restore has got. Yields what ``action``
    returned (empty if no COPY was ever seen).
    """
    acted: list[int] = []
    done = threading.Event()

    def watch() -> None:
        with psycopg.connect(pg.dsn(), password=pg.password, autocommit=True) as conn:
            while not done.is_set():
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND query LIKE 'COPY%%'",
                    (shadow,),
                ).fetchone()
                if row and row[0]:
                    acted.append(action())
                    return
                time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield acted
    finally:
        done.set()
        watcher.join()


def _restore_interrupted(
    pg_setup: PgSetup, interrupt: Callable[[str], int], jobs: int, match: str = "pg_restore"
) -> tuple[list[int], str]:
    """Back up 300,000 rows, restore them and ``interrupt(shadow)`` once the COPY runs; the restore
    must fail as a loader failure (``match``) and leave the live database as it was. Returns what
    ``interrupt`` returned and the error message."""
    before = fingerprint(pg_setup.pg, pg_setup.dst)
    seed_bulk(pg_setup.pg, pg_setup.src, 300_000)
    ops.backup(pg_setup.config(), "app", "production")
    shadow = pg_setup.dst + SHADOW_SUFFIX
    with (
        during_copy(pg_setup.pg, shadow, lambda: interrupt(shadow)) as acted,
        pytest.raises(EngineError, match=match) as info,
    ):
        ops.restore(ops.plan_restore(pg_setup.config(), restore_req(jobs=jobs)))
    assert_untouched(pg_setup, before)
    assert pg_setup.spool_files() == []
    return acted, str(info.value)


@pytest.mark.parametrize("jobs", [1, 2])
def test_killed_pg_restore_leaves_live_untouched_and_no_spool(pg_setup: PgSetup, jobs: int) -> None:
    """pg_restore killed midway, streamed (--jobs 1) or from the spool (--jobs 2): a single-object
    artifact, which pg_restore loads (per-table artifacts are loaded by dataferry's workers)."""
    pg_setup.artifact_format = "single"
    killed, error = _restore_interrupted(pg_setup, lambda _shadow: kill_descendants("pg_restore"), jobs)
    assert killed and killed[0] >= 1
    assert "signal 9" in error


@pytest.mark.parametrize("artifact_format", ["single", "per-table"])
def test_lost_connection_midway_leaves_live_untouched(pg_setup: PgSetup, artifact_format: str) -> None:
    """The loader's connection is cut during the COPY: pg_restore's (single) or a worker's (per-table)."""
    pg_setup.artifact_format = artifact_format
    match = "pg_restore" if artifact_format == "single" else "loading TABLE DATA public "
    cut, error = _restore_interrupted(
        pg_setup, lambda shadow: terminate_backends(pg_setup.pg, shadow), 2, match
    )
    assert cut and cut[0] >= 1
    assert "terminating connection" in error or "server closed the connection" in error


def test_failure_before_the_swap_drops_the_shadow(pg_setup: PgSetup) -> None:
    before = fingerprint(pg_setup.pg, pg_setup.dst)
    ops.backup(pg_setup.config(), "app", "production")

    def failing_check(engine: Engine, shadow: Shadow) -> None:
        assert shadow.name in pg_setup.pg.databases()
        raise SanitisationFailed("a check found personal data")

    with pytest.raises(SanitisationFailed):
        ops.restore(ops.plan_restore(pg_setup.config(), restore_req()), before_swap=failing_check)
    assert_untouched(pg_setup, before)


# -- the swap ----------------------------------------------------------------------------------------


def test_swap_that_cannot_get_the_database_leaves_it_untouched(
    pg_setup: PgSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-superuser restorer cannot end a superuser's session: the renames never commit, the
    live database keeps its data and gets its connections back. Once the session ends it works."""
    pg = pg_setup.pg
    admin = unique("restorer")
    pg.psql(f"CREATE ROLE {quote(admin)} LOGIN CREATEDB PASSWORD '{pg.password}';")
    target = unique("owned")
    pg.psql(f"CREATE DATABASE {quote(target)} OWNER {quote(admin)};")
    pg.psql("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('live data');", target)
    original = pg_setup.dst
    pg_setup.dst, pg_setup.user, pg_setup.owner = target, admin, admin
    monkeypatch.setattr(swapping, "SWAP_ATTEMPTS", 2)
    monkeypatch.setattr(swapping, "SWAP_RETRY_SECONDS", 0.1)
    before = fingerprint(pg, target)
    blocker = psycopg.connect(pg.dsn(target), password=pg.password, autocommit=True)
    try:
        ops.backup(pg_setup.config(), "app", "production")
        with pytest.raises(EngineError, match="sessions kept it busy") as info:
            ops.restore(ops.plan_restore(pg_setup.config(), restore_req()))
        assert "not changed" in (info.value.hint or "")
        assert_untouched(pg_setup, before)
        assert blocker.execute("SELECT v FROM kept").fetchall() == [("live data",)]
        blocker.close()

        ops.restore(ops.plan_restore(pg_setup.config(), restore_req()))
        assert fingerprint(pg, target)["public.users"] == fingerprint(pg, pg_setup.src)["public.users"]
        assert (
            pg.psql(f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{target}';") == admin
        )
    finally:
        blocker.close()
        for db in (target, target + SHADOW_SUFFIX, original):
            pg.drop_db(db)
        pg.psql(f"DROP ROLE {quote(admin)};")


def test_leftover_shadow_is_replaced_but_a_foreign_database_is_refused(pg_setup: PgSetup) -> None:
    pg = pg_setup.pg
    shadow = pg_setup.dst + SHADOW_SUFFIX
    ops.backup(pg_setup.config(), "app", "production")
    # what a crashed run leaves: a marked shadow, maybe with a session still open on it
    pg.create_db(shadow)
    pg.psql(f"COMMENT ON DATABASE {quote(shadow)} IS '{swapping.SHADOW_MARK}{pg_setup.dst}';")
    with psycopg.connect(pg.dsn(shadow), password=pg.password, autocommit=True):
        ops.restore(ops.plan_restore(pg_setup.config(), restore_req()))
    assert dataferry_databases(pg, pg_setup.dst) == set()

    before = fingerprint(pg, pg_setup.dst)
    pg.create_db(shadow)
    pg.psql("CREATE TABLE precious (v text); INSERT INTO precious VALUES ('not ours');", shadow)
    with pytest.raises(Refused, match="not made by dataferry") as info:
        ops.restore(ops.plan_restore(pg_setup.config(), restore_req()))
    assert info.value.exit_code == 9
    assert pg.psql("SELECT v FROM precious;", shadow) == "not ours"
    assert fingerprint(pg, pg_setup.dst) == before


# -- safety rules ------------------------------------------------------------------------------------


def test_protected_target_is_refused_without_force(pg_setup: PgSetup) -> None:
    pg_setup.staging_protected = True
    before = fingerprint(pg_setup.pg, pg_setup.dst)
    ops.backup(pg_setup.config(), "app", "production")
    with pytest.raises(Refused, match="protected") as info:
        ops.restore(ops.plan_restore(pg_setup.config(), restore_req()))
    assert info.value.exit_code == 9
    assert_untouched(pg_setup, before)

    ops.restore(ops.plan_restore(pg_setup.config(), restore_req(force=True)))
    assert fingerprint(pg_setup.pg, pg_setup.dst) == fingerprint(pg_setup.pg, pg_setup.src)


def test_password_never_in_argv_logs_manifests_or_errors(pg_setup: PgSetup) -> None:
    password = pg_setup.pg.password
    log = io.StringIO()
    reporter = LogReporter(log)
    errors: list[FerryError] = []
    with CmdlineWatcher() as watcher:
        backup = ops.backup(pg_setup.config(), "app", "production", reporter=reporter)
        ops.restore(ops.plan_restore(pg_setup.config(), restore_req()), reporter=reporter)
        ops.restore(ops.plan_restore(pg_setup.config(), restore_req(jobs=2)), reporter=reporter)
        publish_raw(pg_setup, b"not an archive")
        with pytest.raises(EngineError) as failed_restore:
            ops.restore(ops.plan_restore(pg_setup.config(), restore_req()), reporter=reporter)
        errors.append(failed_restore.value)
        cfg = pg_setup.config()
        ref = database_ref(cfg, "app", "staging")
        engine = ops.engine_for(cfg, "app")
        with pytest.raises(EngineError) as failed_sql:
            engine.run_sql(ref, "SELECT no_such_column FROM public.old_stuff;")  # type: ignore[attr-defined]
        errors.append(failed_sql.value)
        unreachable = ref.model_copy(update={"url": f"postgresql://postgres@127.0.0.1:1/{pg_setup.dst}"})
        with pytest.raises(NotReady) as failed_connect:
            engine.server_version(unreachable)
        errors.append(failed_connect.value)

    assert {"pg_dump", "pg_restore", "psql"} <= watcher.programs()
    assert watcher.containing(password) == []
    assert log.getvalue() and password not in log.getvalue()
    manifest_text = (pg_setup.tmp / "store-production" / backup.manifest.key).read_text()
    assert password not in manifest_text
    for exc in errors:
        for text in (
            str(exc),
            repr(exc),
            exc.hint or "",
            " ".join(getattr(exc, "argv", [])),
            getattr(exc, "stderr_tail", ""),
        ):
            assert password not in text
    assert password not in repr(ref) and password not in str(ref)
    assert os.environ.get("PGPASSWORD") is None  # never put in our own environment either


def test_password_in_the_url_is_rejected(pg_setup: PgSetup) -> None:
    secret = "hunter2-in-url"
    path = pg_setup.config_path
    path.write_text(
        path.read_text().replace(
            f"postgresql://{pg_setup.pg.user}@", f"postgresql://{pg_setup.pg.user}:{secret}@", 1
        )
    )
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.exit_code == 2
    assert "password" in str(info.value)
    assert secret not in str(info.value) and secret not in (info.value.hint or "")


@pytest.mark.fault
def test_swap_killed_while_connections_are_blocked_heals_on_the_next_restore(pg_setup: PgSetup) -> None:
    """dataferry SIGKILLed mid-swap, after it blocked new connections to the live database: the
    renames never committed, check says what happened, and the next restore gives the
    connections back (GOV.UK's tooling could leave CONNECTION LIMIT 0 behind forever)."""
    pg = pg_setup.pg
    admin = unique("restorer")
    pg.psql(f"CREATE ROLE {quote(admin)} LOGIN CREATEDB PASSWORD '{pg.password}';")
    target = unique("owned")
    pg.psql(f"CREATE DATABASE {quote(target)} OWNER {quote(admin)};")
    pg.psql("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('live data');", target)
    original = pg_setup.dst
    pg_setup.dst, pg_setup.user, pg_setup.owner = target, admin, admin
    before = fingerprint(pg, target)
    # a superuser session the non-superuser restorer cannot end keeps the swap retrying
    blocker = psycopg.connect(pg.dsn(target), password=pg.password, autocommit=True)
    cli = None
    try:
        ops.backup(pg_setup.config(), "app", "production")
        argv = ["-q", "--config", str(pg_setup.config_path), "restore", "app", "--env", "staging"]
        cli = subprocess.Popen(
            [str(Path(sys.executable).parent / "dataferry"), *argv, "--from", "production"],
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 120
        while datallowconn(pg, target) != "f":
            assert cli.poll() is None and time.time() < deadline, "the swap never blocked connections"
            time.sleep(0.05)
        cli.kill()
        cli.wait()
        assert datallowconn(pg, target) == "f"
        blocker.close()

        ref = database_ref(pg_setup.config(), "app", "staging")
        checks = ops.engine_for(pg_setup.config(), "app").check(ref)
        blocked = [c for c in checks if "refuses connections" in c.detail]
        assert len(blocked) == 1 and blocked[0].ok and "interrupted dataferry swap" in blocked[0].detail

        pg.psql(f"ALTER DATABASE {quote(target)} ALLOW_CONNECTIONS true;")
        assert fingerprint(pg, target) == before  # nothing was renamed or changed
        pg.psql(f"ALTER DATABASE {quote(target)} ALLOW_CONNECTIONS false;")

        ops.restore(ops.plan_restore(pg_setup.config(), restore_req()))
        assert datallowconn(pg, target) == "t"
        assert fingerprint(pg, target)["public.users"] == fingerprint(pg, pg_setup.src)["public.users"]
        assert dataferry_databases(pg, target) == set()
    finally:
        if cli is not None and cli.poll() is None:
            cli.kill()
        blocker.close()
        for db in (target, target + SHADOW_SUFFIX, target + "-dataferry-old", original):
            pg.drop_db(db)
        pg.psql(f"DROP ROLE {quote(admin)};")


def test_live_database_blocked_by_someone_else_fails_the_check(pg_setup: PgSetup) -> None:
    pg = pg_setup.pg
    ops.backup(pg_setup.config(), "app", "production")
    pg.psql(f"ALTER DATABASE {quote(pg_setup.dst)} ALLOW_CONNECTIONS false;")
    ref = database_ref(pg_setup.config(), "app", "staging")
    checks = ops.engine_for(pg_setup.config(), "app").check(ref)
    failed = [c for c in checks if not c.ok]
    assert len(failed) == 1 and "ALLOW_CONNECTIONS true" in failed[0].detail
    with pytest.raises(NotReady, match="refuses connections"):
        ops.restore(ops.plan_restore(pg_setup.config(), restore_req()))
    assert datallowconn(pg, pg_setup.dst) == "f"  # not ours to undo
    assert dataferry_databases(pg, pg_setup.dst) == set()
