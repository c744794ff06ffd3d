"""``dataferry pull``: a developer's one command, no configuration file, from S3 (moto) into
PostgreSQL, MariaDB and SQLite, with S3 credentials from boto3's chain (environment variables, or a
profile of a shared config file); an unsanitised artifact is refused (exit 9) and the target is left
as it was.

The artifacts are published the ordinary way: ``integration`` requires sanitised data, so its
backups are checked live against a sanitisation profile and marked sanitised; ``production``'s are
not.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from pyrage import x25519

from dataferry import ops, signing
from dataferry.cli import cli
from dataferry.config import load
from servers import MariaDbServer, PgServer, S3Server
from signing_keys import key_pair, signed_config

pytestmark = pytest.mark.integration

PASSWORD_ENV = "FERRY_TEST_PULL_PASSWORD"

PROFILE = """
description = "pull test: nothing personal in items"
[tables.items]
keep = ["id", "label"]
[[checks]]
name = "no address in labels"
sql = "SELECT id FROM items WHERE label LIKE '%@%'"
"""

ROWS = [(i, f"item-{i}") for i in range(1, 41)]


@dataclass
class Engine:
    """One engine's way to make, fill and read a database for these tests."""

    name: str
    url: Callable[[str], str]
    run: Callable[[str, str], object]
    rows: Callable[[str], list[tuple[object, ...]]]
    password: str = ""


def sqlite_engine(tmp: Path) -> Engine:
    def run(db: str, sql: str) -> None:
        with closing(sqlite3.connect(tmp / f"{db}.db")) as con, con:
            con.executescript(sql)

    def rows(db: str) -> list[tuple[object, ...]]:
        with closing(sqlite3.connect(tmp / f"{db}.db")) as con:
            return [tuple(r) for r in con.execute("SELECT id, label FROM items ORDER BY id")]

    return Engine("sqlite", lambda db: f"sqlite:///{tmp / db}.db", run, rows)


def pg_engine(pg: PgServer) -> Engine:
    def run(db: str, sql: str) -> None:
        if db not in pg.databases():
            pg.create_db(db)
        pg.psql(sql, db)

    def rows(db: str) -> list[tuple[object, ...]]:
        out = pg.psql("SELECT id || '|' || label FROM items ORDER BY id", db)
        return [(int(a), b) for a, b in (line.split("|") for line in out.split())]

    return Engine("postgresql", pg.dsn, run, rows, pg.password)


def mariadb_engine(maria: MariaDbServer) -> Engine:
    def run(db: str, sql: str) -> None:
        if db not in maria.databases():
            maria.create_db(db)
        maria.execute(sql, db)

    def rows(db: str) -> list[tuple[object, ...]]:
        out = maria.execute("SELECT id, label FROM items ORDER BY id", db)
        return [(int(a), b) for a, b in (line.split("\t") for line in out.splitlines() if line)]

    return Engine("mysql", maria.url, run, rows, maria.password)


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    if request.param == "sqlite":
        return sqlite_engine(tmp_path)
    if request.param == "postgresql":
        return pg_engine(request.getfixturevalue("pg_server"))
    return mariadb_engine(request.getfixturevalue("mariadb_server"))


@dataclass
class Published:
    """A bucket with production's (unsanitised) and integration's (sanitised) artifacts of ``app``,
    and a developer's database ``target`` with other rows."""

    engine: Engine
    bucket: str
    s3: S3Server
    target: str
    config: Path
    public_key: str

    def pull(self, *args: str, trust: bool = True) -> tuple[int, str]:
        """``dataferry pull`` as a developer runs it: no config file, credentials from the chain, the
        public key of the sanitising step given with --trust-key."""
        argv = ["pull", *args, "--endpoint-url", self.s3.endpoint_url, "--into", self.engine.url(self.target)]
        if trust:
            argv += ["--trust-key", self.public_key]
        if self.engine.password:
            argv += ["--password-env", PASSWORD_ENV]
        result = CliRunner().invoke(cli, argv, prog_name="dataferry")
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return result.exit_code, result.stdout + result.stderr


@pytest.fixture
def published(
    engine: Engine, s3_server: S3Server, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Published]:
    for key, value in s3_server.env().items():  # boto3's chain: the environment
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(PASSWORD_ENV, engine.password)
    suffix = uuid.uuid4().hex[:8]
    source, target = f"pull_src_{suffix}", f"pull_dst_{suffix}"
    engine.run(source, "CREATE TABLE items (id INTEGER PRIMARY KEY, label VARCHAR(64));")
    engine.run(
        source, "INSERT INTO items VALUES " + ", ".join(f"({i}, '{label}')" for i, label in ROWS) + ";"
    )
    engine.run(
        target,
        "CREATE TABLE items (id INTEGER PRIMARY KEY, label VARCHAR(64)); INSERT INTO items VALUES (1, 'mine');",
    )
    (tmp_path / "profile.toml").write_text(PROFILE, encoding="utf-8")
    store = f'endpoint_url = "{s3_server.endpoint_url}", region = "{s3_server.region}"'
    password = f', password_env = "{PASSWORD_ENV}"' if engine.password else ""
    (tmp_path / "dataferry.toml").write_text(
        signed_config(
            f"""
[environments.production]
store = {{ url = "s3://{s3_bucket}/production", {store} }}
[environments.integration]
store = {{ url = "s3://{s3_bucket}/integration", {store} }}
requires_sanitised = true

[databases.app]
engine = "{engine.name}"
sanitise = "profile.toml"
[databases.app.environments]
production = {{ url = "{engine.url(source)}"{password} }}
integration = {{ url = "{engine.url(source)}"{password} }}
""",
            tmp_path,
        ),
        encoding="utf-8",
    )
    cfg = load(tmp_path / "dataferry.toml")
    ops.backup(cfg, "app", "production")
    sanitised = ops.backup(cfg, "app", "integration").manifest
    assert sanitised.is_publishable_sanitised()
    _, public_key = key_pair(tmp_path)
    yield Published(engine, s3_bucket, s3_server, target, tmp_path / "dataferry.toml", public_key)


def test_pull_restores_the_newest_sanitised_artifact(published: Published) -> None:
    code, out = published.pull(f"s3://{published.bucket}/integration/app")
    assert code == 0, out
    assert "pulled" in out and "(sanitised)" in out
    assert published.engine.rows(published.target) == ROWS


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_pull_needs_a_trusted_key_and_refuses_another(published: Published) -> None:
    """A "sanitised" flag anyone with write access could set is not enough: without --trust-key the
    pull says what to give (exit 2); with a key that did not sign the artifact it is refused (exit 9)."""
    code, out = published.pull(f"s3://{published.bucket}/integration/app", trust=False)
    assert code == 2 and "--trust-key" in out, out
    other = signing.generate()[1]
    code, out = published.pull(f"s3://{published.bucket}/integration/app", "--trust-key", other, trust=False)
    assert code == 9 and "trusted" in out, out
    assert published.engine.rows(published.target) == [(1, "mine")]


def test_pull_refuses_an_unsanitised_artifact(published: Published) -> None:
    code, out = published.pull(f"s3://{published.bucket}/production/app")
    assert code == 9, out
    assert "is sanitised" in out and "Traceback" not in out
    assert published.engine.rows(published.target) == [(1, "mine")]


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_pull_refuses_an_unsanitised_artifact_named_explicitly(published: Published) -> None:
    listing = published.s3.client().list_objects_v2(Bucket=published.bucket, Prefix="production/app/")
    key = next(o["Key"] for o in listing["Contents"] if o["Key"].endswith(".manifest.json"))
    ident = key.rsplit("/", 1)[1].removesuffix(".manifest.json")
    code, out = published.pull(f"s3://{published.bucket}/production/app", "--artifact", ident)
    assert code == 9, out
    assert "not sanitised" in out
    assert published.engine.rows(published.target) == [(1, "mine")]


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_pull_uses_a_profile_of_the_shared_config(
    published: Published, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = published.s3.env()
    (tmp_path / "aws-credentials").write_text(
        f"[laptop]\naws_access_key_id = {env['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {env['AWS_SECRET_ACCESS_KEY']}\n",
        encoding="utf-8",
    )
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    code, out = published.pull(f"s3://{published.bucket}/integration/app", "--profile", "laptop")
    assert code == 0, out
    assert published.engine.rows(published.target) == ROWS


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_pull_at_a_time_before_any_artifact_is_not_found(published: Published) -> None:
    code, out = published.pull(f"s3://{published.bucket}/integration/app", "--at", "2000-01-01T00:00:00Z")
    assert code == 4, out
    assert published.engine.rows(published.target) == [(1, "mine")]
    # --at reads the forms restore --at reads: a duration ago (the artifacts are seconds old)
    code, out = published.pull(f"s3://{published.bucket}/integration/app", "--at", "1h")
    assert code == 4, out
    code, out = published.pull(f"s3://{published.bucket}/integration/app", "--at", "0s", "--dry-run")
    assert code == 0, out


@pytest.mark.parametrize(
    ("source", "into", "fragment"),
    [
        ("app", "sqlite:///x.db", "cannot tell the store"),
        ("s3://bucket/app", "oracle://host/db", "unknown database URL scheme"),
        ("s3://bucket/app", "postgresql://u:secret@host/db", "password"),
    ],
)
def test_bad_pull_arguments_exit_2(source: str, into: str, fragment: str) -> None:
    key = signing.generate()[1]
    argv = ["pull", source, "--into", into, "--trust-key", key]
    result = CliRunner().invoke(cli, argv, prog_name="dataferry")
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr and "secret" not in result.stderr


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_pull_decrypts_with_the_identity_given(published: Published, monkeypatch: pytest.MonkeyPatch) -> None:
    identity = x25519.Identity.generate()
    text = published.config.read_text(encoding="utf-8").replace(
        "requires_sanitised = true",
        f'requires_sanitised = true\nencryption = {{ recipients = ["{identity.to_public()}"] }}',
    )
    published.config.write_text(text, encoding="utf-8")
    manifest = ops.backup(load(published.config), "app", "integration").manifest
    assert manifest.objects[0].encryption is not None
    source = f"s3://{published.bucket}/integration/app"
    code, out = published.pull(source, "--artifact", manifest.id)
    assert code == 3, out
    assert "no age identity" in out and published.engine.rows(published.target) == [(1, "mine")]
    monkeypatch.setenv("FERRY_TEST_PULL_IDENTITY", str(identity))
    code, out = published.pull(source, "--identity-env", "FERRY_TEST_PULL_IDENTITY")
    assert code == 0, out
    assert manifest.id in out and published.engine.rows(published.target) == ROWS


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_pull_dry_run_changes_nothing(published: Published) -> None:
    code, out = published.pull(f"s3://{published.bucket}/integration/app", "--dry-run")
    assert code == 0, out
    assert "would pull" in out and published.engine.rows(published.target) == [(1, "mine")]
