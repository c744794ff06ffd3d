"""GOV.UK drop-in on real MariaDB and moto S3: ``dataferry legacy`` MySQL job files (push with
``-e`` and ``-F``, pull with ``-s`` and ``-t``), gzip'd SQL exactly as ``mysqldump | gzip`` consumers
read it, and dumps written by GOV.UK's own scripts.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from dataferry.cli import cli
from servers import MariaDbServer, S3Server

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "govuk"
PULL_CFG = FIXTURES / "etc-staging" / "pull_signon_production_daily.cfg"
PATH = "signon-mysql"

SCHEMA = """
CREATE TABLE users (id INT PRIMARY KEY, email VARCHAR(200) NOT NULL, name VARCHAR(200) NOT NULL)
    CHARACTER SET utf8mb4;
CREATE TABLE oauth_applications (id INT PRIMARY KEY, name VARCHAR(100), redirect_uri VARCHAR(300));
CREATE TABLE sessions (id INT PRIMARY KEY, data TEXT);
CREATE VIEW user_emails AS SELECT id, email FROM users;
INSERT INTO users VALUES (1, 'ann@example.gov.uk', 'Ann Ångström'), (2, 'bob@example.gov.uk', 'Bob 東京'),
    (3, 'cy@example.gov.uk', 'Cy');
INSERT INTO oauth_applications VALUES (1, 'Publisher', 'https://publisher.publishing.service.gov.uk/auth'),
    (2, 'Whitehall', 'https://whitehall-admin.publishing.service.gov.uk/auth');
INSERT INTO sessions VALUES (1, 'secret session'), (2, 'another');
"""
TABLES = ("users", "oauth_applications", "sessions")


@dataclass
class Govuk:
    """One test's database on the shared MariaDB server, a bucket and job files."""

    my: MariaDbServer
    s3: S3Server
    bucket: str
    db: str
    tmp: Path

    def job_file(self, action: str, **extra: str) -> Path:
        """The staging signon job file with this test's host, bucket and database put in."""
        text = PULL_CFG.read_text(encoding="utf-8")
        text = text.replace('action="pull"', f'action="{action}"')
        text = text.replace(
            'database_hostname="signon-mysql"', f'database_hostname="{self.my.host}:{self.my.port}"'
        )
        text = text.replace("signon_production", self.db)
        text = text.replace('url="govuk-production-database-backups"', f'url="{self.bucket}"')
        text += "".join(f'{k}="{v}"\n' for k, v in extra.items())
        path = self.tmp / PULL_CFG.name.replace("pull_", f"{action}_")
        path.write_text(text, encoding="utf-8")
        return path

    def object_keys(self) -> list[str]:
        resp = self.s3.client().list_objects_v2(Bucket=self.bucket)
        return sorted(o["Key"] for o in resp.get("Contents", []))

    def dumps(self) -> list[str]:
        return [k for k in self.object_keys() if k.endswith(".gz")]

    def get(self, key: str) -> bytes:
        body: bytes = self.s3.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def put(self, key: str, data: bytes) -> None:
        self.s3.client().put_object(Bucket=self.bucket, Key=key, Body=data)

    def rows(self, table: str, db: str | None = None) -> str:
        return self.my.execute(f"SELECT * FROM {table} ORDER BY id;", db or self.db)

    def fingerprint(self, db: str | None = None) -> dict[str, str]:
        return {t: self.rows(t, db) for t in TABLES}

    def leftovers(self) -> set[str]:
        return {d for d in self.my.databases() if d.startswith(self.db + "_df")}

    def client_file(self) -> Path:
        return self.my.option_file(self.tmp / "client.cnf")


@pytest.fixture
def govuk(
    mariadb_server: MariaDbServer,
    s3_server: S3Server,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Govuk]:
    for key, value in s3_server.env().items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("DB_USER", mariadb_server.user)
    monkeypatch.setenv("DB_PASSWORD", mariadb_server.password)
    monkeypatch.setenv("GOVUK_ENVIRONMENT", "staging")
    g = Govuk(mariadb_server, s3_server, s3_bucket, f"signon_{uuid.uuid4().hex[:8]}_production", tmp_path)
    mariadb_server.create_db(g.db)
    mariadb_server.execute(SCHEMA, g.db)
    yield g
    for name in (g.db, g.db + "_consumer", *g.leftovers()):
        mariadb_server.drop_db(name)


def legacy(*argv: str | Path) -> Result:
    """``dataferry legacy`` with db-backup's layout (these tests are about it; a job file's default
    is the Puppet-era script's, ``tests/integration/test_govuk_pickers_s3.py``)."""
    return CliRunner().invoke(cli, ["legacy", *map(str, argv), "--layout", "govuk"])


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output + (str(result.exception) if result.exception else "")
    return result


def push(g: Govuk, *flags: str) -> str:
    before = set(g.dumps())
    ok(legacy("-f", g.job_file("push"), *flags))
    (new,) = set(g.dumps()) - before
    return new


def mutate(g: Govuk) -> None:
    g.my.execute("DELETE FROM users WHERE id = 1; UPDATE oauth_applications SET name = 'changed';", g.db)


def test_push_writes_gzipd_sql_that_govuk_consumers_load(govuk: Govuk) -> None:
    g = govuk
    key = push(g)
    pointer = f"{PATH}/latest-{g.db}.txt"
    started = "_dataferry/pending/" + key.removesuffix(".gz") + ".started"  # outside GOV.UK's directories
    assert g.object_keys() == sorted([key, key.removesuffix(".gz") + ".manifest.json", pointer, started])
    assert g.get(pointer) == key.encode()
    data = g.get(key)
    sql = gzip.decompress(data)  # plain gzip, what gunzip reads
    assert b"MariaDB dump" in sql[:4096] or b"MySQL dump" in sql[:4096]
    assert b"-- Dump completed" in sql[-200:]
    manifest = json.loads(g.get(key.removesuffix(".gz") + ".manifest.json"))
    assert (manifest["objects"][0]["format"], manifest["objects"][0]["compression"]) == ("sql", "gzip")
    assert manifest["row_counts"] == {"oauth_applications": 2, "sessions": 2, "users": 3}
    # govuk-docker's replicate-mysql.sh: gunzip | mysql into the developer's database
    consumer = g.db + "_consumer"
    g.my.create_db(consumer)
    subprocess.run(
        ["mariadb", f"--defaults-extra-file={g.client_file()}", consumer],
        input=sql,
        check=True,
        capture_output=True,
    )
    assert g.fingerprint(consumer) == g.fingerprint()


def test_pull_restores_through_a_shadow(govuk: Govuk) -> None:
    g = govuk
    push(g)
    expected = g.fingerprint()
    mutate(g)
    result = ok(legacy("-f", g.job_file("pull")))
    assert result.stdout.startswith(f"pulled {PATH}/")
    assert g.fingerprint() == expected
    assert g.my.execute("SELECT COUNT(*) FROM user_emails;", g.db) == "3"  # the view works on the new tables
    assert g.leftovers() == set()


def test_e_leaves_the_table_out_and_the_target_keeps_its_own(govuk: Govuk) -> None:
    """GOV.UK's -e: mysqldump --ignore-table; a pull leaves the target's own table as it is."""
    g = govuk
    key = push(g, "-e", "sessions,no_such_table")  # a missing excluded table is only a warning
    sql = gzip.decompress(g.get(key))
    assert b"secret session" not in sql
    assert b"CREATE TABLE `sessions`" not in sql
    g.my.execute("UPDATE sessions SET data = 'target session'; DELETE FROM users WHERE id = 3;", g.db)
    ok(legacy("-f", g.job_file("pull"), "-e", "sessions"))
    assert g.rows("sessions") == "1\ttarget session\n2\ttarget session"
    assert g.rows("users").count("\n") == 2  # the other tables are the dump's


def test_pre_dump_transformation_publishes_a_sanitised_dump_and_leaves_the_source_alone(govuk: Govuk) -> None:
    g = govuk
    before = g.fingerprint()
    sql = g.tmp / "sanitise_signon.sql"
    sql.write_text("UPDATE users SET email = CONCAT('user-', id, '@example.com'), name = 'Redacted';\n")
    key = push(g, "-F", str(sql))
    dump = gzip.decompress(g.get(key))
    assert b"example.gov.uk" not in dump and b"user-1@example.com" in dump
    assert g.fingerprint() == before  # the original changed the live source; dataferry does not
    assert g.leftovers() == set()
    ok(legacy("-f", g.job_file("pull")))
    assert g.rows("users").splitlines()[0] == "1\tuser-1@example.com\tRedacted"


def test_post_restore_transformation_runs_before_the_swap_and_a_failure_changes_nothing(govuk: Govuk) -> None:
    g = govuk
    push(g)
    rewrite = g.tmp / "rewrite.sql"
    rewrite.write_text(
        "UPDATE oauth_applications SET redirect_uri = "
        "REPLACE(redirect_uri, 'publishing.service.gov.uk', 'staging.publishing.service.gov.uk');\n"
    )
    ok(legacy("-f", g.job_file("pull"), "-s", rewrite))
    assert "staging.publishing.service.gov.uk" in g.rows("oauth_applications")
    before = g.fingerprint()
    broken = g.tmp / "broken.sql"
    broken.write_text("DELETE FROM users;\nUPDATE no_such_table SET x = 1;\n")
    result = legacy("-f", g.job_file("pull"), "-s", broken)
    assert result.exit_code == 8, result.output
    assert g.fingerprint() == before
    assert g.leftovers() == set()


def test_dumps_written_by_govuks_scripts_and_t(govuk: Govuk) -> None:
    """Objects without manifest, one colon-named (Puppet), one K8s-named; ``-t`` picks either."""
    g = govuk
    raw = subprocess.run(
        ["mariadb-dump", f"--defaults-extra-file={g.client_file()}", "--single-transaction", "--quick", g.db],
        check=True,
        capture_output=True,
    ).stdout
    old = g.fingerprint()
    g.put(f"{PATH}/2022-06-30T23:00:05-{g.db}.gz", gzip.compress(raw, 1))
    mutate(g)
    newer = subprocess.run(
        ["mariadb-dump", f"--defaults-extra-file={g.client_file()}", "--single-transaction", g.db],
        check=True,
        capture_output=True,
    ).stdout
    new = g.fingerprint()
    g.put(f"{PATH}/2026-01-05T010301Z-{g.db}.gz", gzip.compress(newer, 1))
    g.my.execute("DROP TABLE sessions;", g.db)

    result = ok(legacy("-f", g.job_file("pull")))  # no pointer: the newest key
    assert "has no dataferry manifest" in result.stderr
    assert g.fingerprint() == new
    ok(legacy("-f", g.job_file("pull"), "-t", "2022-06-30T23:00:05"))
    assert g.fingerprint() == old
    ok(legacy("-f", g.job_file("pull"), "-t", f"2026-01-05T010301Z-{g.db}.gz"))
    assert g.fingerprint() == new


@pytest.mark.parametrize("damage", ["truncated", "not-gzip"])
def test_a_damaged_dump_without_manifest_is_refused_and_live_is_untouched(govuk: Govuk, damage: str) -> None:
    g = govuk
    raw = subprocess.run(
        ["mariadb-dump", f"--defaults-extra-file={g.client_file()}", "--single-transaction", g.db],
        check=True,
        capture_output=True,
    ).stdout
    blob = gzip.compress(raw)
    blob = blob[: len(blob) - 20] if damage == "truncated" else raw
    g.put(f"{PATH}/2026-01-05T010301Z-{g.db}.gz", blob)
    mutate(g)
    before = g.fingerprint()
    result = legacy("-f", g.job_file("pull"))
    assert result.exit_code == 7, result.output
    expected = "is not a complete gzip stream" if damage == "truncated" else "is not gzip'd SQL"
    assert expected in result.stderr
    assert g.fingerprint() == before
    assert g.leftovers() == set()


def test_pull_of_a_dataferry_dump_with_a_flipped_byte_is_refused(govuk: Govuk) -> None:
    g = govuk
    key = push(g)
    data = bytearray(g.get(key))
    data[len(data) // 2] ^= 0x01
    g.put(key, bytes(data))
    mutate(g)
    before = g.fingerprint()
    result = legacy("-f", g.job_file("pull"))
    assert result.exit_code == 7, result.output
    assert g.fingerprint() == before
    assert g.leftovers() == set()
