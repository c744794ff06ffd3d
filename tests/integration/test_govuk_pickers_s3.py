"""GOV.UK's own "latest" picks (``tests/govuk_pickers.py``) on moto's S3, against buckets that
dataferry wrote with real PostgreSQL dumps in each GOV.UK layout, and buckets that mix those with
dumps named as GOV.UK's scripts name them (issue 13: items 1 and 3)."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from dataferry.cli import cli
from govuk_pickers import (
    PuppetPullFailed,
    db_backup_list_pick,
    puppet_pg_image,
    puppet_pick,
    replicate_pick,
    s3_ls,
)
from servers import PgServer, S3Server

from ._pg_helpers import fingerprint, seed_app

pytestmark = pytest.mark.integration

PATH = "publishing-api-postgres"
_SECOND = timedelta(seconds=1)


@dataclass
class Bucket:
    """One test's bucket in one layout, the production database and a staging copy."""

    pg: PgServer
    s3: S3Server
    bucket: str
    db: str
    config: Path

    def run(self, *argv: str) -> Result:
        result = CliRunner().invoke(cli, ["--config", str(self.config), *argv])
        assert result.exit_code == 0, result.output + (str(result.exception) if result.exception else "")
        return result

    def backup(self) -> str:
        """Back up production and return the new dump's file name."""
        before = set(self.names())
        self.run("backup", "publishing-api", "--env", "production")
        (new,) = {n for n in self.names() if n.endswith(".gz")} - before
        time.sleep(1.05)  # keys have second resolution
        return new

    def ls(self) -> list[str]:
        return s3_ls(self.s3.client(), self.bucket, PATH)

    def names(self) -> list[str]:
        return [line.rsplit(" ", 1)[-1] for line in self.ls()]

    def put_script_dump(self, when: datetime, colon: bool = True) -> str:
        """A dump as GOV.UK's scripts push it (``pg_dump -Fc``, no manifest), named for ``when``."""
        dump = subprocess.run(
            [str(self.pg.bindir / "pg_dump"), "-Fc", f"--dbname={self.pg.dsn(self.db)}"],
            env=self.pg.env(),
            capture_output=True,
            check=True,
        ).stdout
        name = f"{when.strftime('%Y-%m-%dT%H:%M:%S' if colon else '%Y-%m-%dT%H%M%SZ')}-{self.db}.gz"
        self.s3.client().put_object(Bucket=self.bucket, Key=f"{PATH}/{name}", Body=dump)
        return name


def _config(tmp: Path, pg: PgServer, s3: S3Server, bucket: str, db: str, layout: str) -> Path:
    conn = f"postgresql://{pg.user}@{pg.host}:{pg.port}"
    path = tmp / "dataferry.toml"
    path.write_text(
        f"""
[environments.production.store]
url = "s3://{bucket}"
layout = "{layout}"
endpoint_url = "{s3.endpoint_url}"
[environments.staging.store]
url = "{tmp / "staging-store"}"

[databases.publishing-api]
engine = "postgresql"
store_path = "{PATH}"
store_name = "{db}"
[databases.publishing-api.environments]
production = {{ url = "{conn}/{db}", password_env = "DB_PASSWORD" }}
staging = {{ url = "{conn}/{db}_staging", password_env = "DB_PASSWORD" }}
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture(params=["govuk-puppet", "govuk"])
def bucket(
    request: pytest.FixtureRequest,
    pg_server: PgServer,
    s3_server: S3Server,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Bucket]:
    for key, value in s3_server.env().items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("DB_PASSWORD", pg_server.password)
    db = f"publishing_api_{uuid.uuid4().hex[:8]}_production"
    pg_server.create_db(db)
    pg_server.create_db(db + "_staging")
    seed_app(pg_server, db, rows=20)
    config = _config(tmp_path, pg_server, s3_server, s3_bucket, db, request.param)
    yield Bucket(pg_server, s3_server, s3_bucket, db, config)
    for name in (db, db + "_staging", db + "_staging-dataferry-shadow", db + "_staging-dataferry-old"):
        pg_server.drop_db(name)


def _pg_dump_major(pg: PgServer) -> int:
    out = subprocess.run(
        [str(pg.bindir / "pg_dump"), "--version"], capture_output=True, text=True, check=True
    )
    found = re.search(r"\(PostgreSQL\) (\d+)", out.stdout)
    assert found, out.stdout
    return int(found.group(1))


def _layout(b: Bucket) -> str:
    return "govuk-puppet" if "govuk-puppet" in b.config.read_text() else "govuk"


def test_govuks_readers_pick_the_newest_dump_dataferry_wrote(bucket: Bucket) -> None:
    b = bucket
    b.backup()
    newest = b.backup()
    assert replicate_pick(b.ls()) == newest  # govuk-docker's replicate scripts
    assert db_backup_list_pick(b.ls(), b.db) == newest  # db-backup without a pointer
    if _layout(b) == "govuk-puppet":
        assert puppet_pick(b.ls(), b.db) == newest  # govuk_env_sync.sh -a pull
        assert b.names() == sorted(n for n in b.names() if n.endswith(f"-{b.db}.gz"))  # nothing else there
    else:  # the govuk layout's pointer and manifests are what the Puppet-era script trips over
        with pytest.raises(PuppetPullFailed):
            puppet_pick(b.ls(), b.db)
    data = b.s3.client().get_object(Bucket=b.bucket, Key=f"{PATH}/{newest}")["Body"].read()
    assert data.startswith(b"PGDMP")
    # The script's pull knows archive versions 1.13 and 1.14 only (pg_dump 9.6 to 15).
    if _pg_dump_major(b.pg) <= 15:
        assert puppet_pg_image(data) in ("9.6.22", "13.4")
    else:
        with pytest.raises(PuppetPullFailed, match="not a supported dump file version"):
            puppet_pg_image(data)


def test_mixed_with_the_scripts_dumps_of_the_same_hour(bucket: Bucket) -> None:
    """The Puppet script pushed at the top of this hour; dataferry pushes later in the hour. GOV.UK's
    readers and dataferry all take dataferry's dump, and then the script's next, newer one."""
    b = bucket
    now = datetime.now(UTC)
    if now.minute == 59 and now.second > 50:
        time.sleep(15)  # the test needs this hour to last a few seconds more
        now = datetime.now(UTC)
    b.put_script_dump(now.replace(minute=0, second=0, microsecond=0))
    b.put_script_dump(now.replace(minute=0, second=1, microsecond=0), colon=False)  # db-backup's name
    mine = b.backup()
    assert replicate_pick(b.ls()) == db_backup_list_pick(b.ls(), b.db) == mine
    if _layout(b) == "govuk-puppet":
        assert puppet_pick(b.ls(), b.db) == mine
    b.run("restore", "publishing-api", "--env", "staging", "--from", "production")
    assert fingerprint(b.pg, b.db + "_staging") == fingerprint(b.pg, b.db)

    b.pg.psql("DELETE FROM billing.invoices;", b.db)  # the script's next push holds other data
    theirs = b.put_script_dump(datetime.now(UTC).replace(microsecond=0) + _SECOND)
    assert replicate_pick(b.ls()) == theirs
    if _layout(b) == "govuk-puppet":
        assert puppet_pick(b.ls(), b.db) == theirs
    result = b.run("restore", "publishing-api", "--env", "staging", "--from", "production")
    assert fingerprint(b.pg, b.db + "_staging") == fingerprint(b.pg, b.db)
    assert "has no dataferry manifest" in result.stderr
    if _layout(b) == "govuk":  # its pointer still names dataferry's dump: passed over, loudly
        assert f"but {PATH}/{theirs} is newer" in result.stderr


def test_legacy_push_by_default_is_what_the_scripts_pull_finds(
    pg_server: PgServer, s3_server: S3Server, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dataferry legacy`` (its default layout is govuk-puppet) in the shim of a machine that
    pushes, while other machines still pull with ``govuk_env_sync.sh``: their pick is dataferry's
    dump, and dataferry's own pull verifies it by its manifest. The same pull still reads a bucket
    the govuk layout (db-backup's names, manifest beside, pointer) wrote, by its manifest."""
    for key, value in s3_server.env().items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("DB_USER", pg_server.user)
    monkeypatch.setenv("DB_PASSWORD", pg_server.password)
    monkeypatch.setenv("GOVUK_ENVIRONMENT", "integration")
    db = f"publishing_api_{uuid.uuid4().hex[:8]}_production"
    pg_server.create_db(db)
    try:
        seed_app(pg_server, db, rows=20)
        host = f"{pg_server.host}:{pg_server.port}"
        flags = [
            "-S",
            "s3",
            "-T",
            str(tmp_path),
            "-D",
            "postgresql",
            "-d",
            db,
            "-H",
            host,
            "-u",
            s3_bucket,
            "-p",
            PATH,
        ]
        pushed = CliRunner().invoke(cli, ["legacy", "-a", "push", *flags])
        assert pushed.exit_code == 0, pushed.output
        lines = s3_ls(s3_server.client(), s3_bucket, PATH)
        (name,) = [line.rsplit(" ", 1)[-1] for line in lines]
        assert puppet_pick(lines, db) == name  # the script's pull finds it, and nothing else is there
        expected = fingerprint(pg_server, db)
        pg_server.psql("DELETE FROM billing.invoices;", db)
        pulled = CliRunner().invoke(cli, ["legacy", "-a", "pull", *flags])
        assert pulled.exit_code == 0, pulled.output
        assert fingerprint(pg_server, db) == expected
        assert "no dataferry manifest" not in pulled.stderr  # its manifest was found and verified
        # a bucket the govuk layout wrote: the default pull takes its newest dump, by its manifest
        chart = CliRunner().invoke(cli, ["legacy", "-a", "push", *flags, "--layout", "govuk"])
        assert chart.exit_code == 0, chart.output
        pg_server.psql("DELETE FROM billing.invoices;", db)
        pulled = CliRunner().invoke(cli, ["legacy", "-a", "pull", *flags])
        assert pulled.exit_code == 0, pulled.output
        assert fingerprint(pg_server, db) == expected
        assert "(pointer)" in pulled.stderr and "no dataferry manifest" not in pulled.stderr
        bad = CliRunner().invoke(cli, ["legacy", "-a", "push", *flags, "--layout", "puppet"])
        assert bad.exit_code == 2 and "unknown layout 'puppet'" in bad.stderr
    finally:
        for suffix in ("", "-dataferry-shadow", "-dataferry-old"):
            pg_server.drop_db(db + suffix)
