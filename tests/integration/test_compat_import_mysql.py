"""``dataferry import`` on real MariaDB: a push job file with a pre-dump transformation becomes a
job that publishes only a sanitised copy (issue 13, item 2), and the published dump proves it."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from dataferry.cli import cli
from dataferry.compat.imported import password_variable
from servers import MariaDbServer

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "govuk"
PUSH_CFG = FIXTURES / "etc-staging" / "push_whitehall_staging_daily.cfg"
SCRIPT = FIXTURES / "sanitise_whitehall_test.sql"

SCHEMA = """
CREATE TABLE editions (id INT PRIMARY KEY, access_limited TINYINT NOT NULL);
CREATE TABLE edition_translations (id INT PRIMARY KEY, edition_id INT NOT NULL, title VARCHAR(200),
    body TEXT);
CREATE TABLE fact_check_requests (id INT PRIMARY KEY, edition_id INT, email_address VARCHAR(200),
    comments TEXT);
INSERT INTO editions VALUES (1, 0), (2, 1);
INSERT INTO edition_translations VALUES (1, 1, 'Public title', 'Published text'),
    (2, 2, 'Secret title', 'Embargoed announcement');
INSERT INTO fact_check_requests VALUES (1, 2, 'minister.private@cabinet-office.gov.uk', 'Please check'),
    (2, 1, 'someone@gmail.com', 'Looks fine');
"""
SECRETS = (b"Secret title", b"Embargoed", b"cabinet-office.gov.uk", b"gmail.com", b"Please check")


@dataclass
class Imported:
    """A job directory imported into a config beside its store, on this test's database."""

    my: MariaDbServer
    db: str
    tmp: Path
    config: Path

    @property
    def store(self) -> Path:
        return self.tmp / "store"

    def dumps(self) -> list[Path]:
        return sorted(self.store.rglob("*.gz"))

    def manifest(self, dump: Path) -> dict[str, Any]:
        """The manifest of ``dump``: job files import with the govuk-puppet layout, which keeps
        manifests under ``_dataferry/manifests/`` (out of the Puppet-era script's sight)."""
        (path,) = self.store.rglob(dump.name.removesuffix(".gz") + ".manifest.json")
        assert "_dataferry/manifests/" in path.as_posix()
        data: dict[str, Any] = json.loads(path.read_text())
        return data


def run(*argv: str | Path) -> Result:
    return CliRunner().invoke(cli, list(map(str, argv)))


@pytest.fixture
def imported(
    mariadb_server: MariaDbServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Imported]:
    my = mariadb_server
    db = f"whitehall_{uuid.uuid4().hex[:8]}_production"
    my.create_db(db)
    my.execute(SCHEMA, db)
    jobs = tmp_path / "etc"
    jobs.mkdir()
    text = PUSH_CFG.read_text(encoding="utf-8")
    text = text.replace("whitehall_production", db)
    text = text.replace('database_hostname="whitehall-mysql"', f'database_hostname="{my.host}:{my.port}"')
    text = text.replace('url="govuk-staging-database-backups"', f'url="file://{tmp_path}/store"')
    text = text.replace("/etc/govuk_env_sync/transformation_sql/sanitise_whitehall.sql", str(SCRIPT))
    (jobs / PUSH_CFG.name).write_text(text, encoding="utf-8")
    config = tmp_path / "dataferry.toml"
    result = run("import", jobs, "--env", "staging", "-o", config)
    assert result.exit_code == 0, result.output
    # the operator's edit: GOV.UK's default user is aws_db_admin; this server's user is another
    config.write_text(config.read_text(encoding="utf-8").replace("aws_db_admin@", f"{my.user}@"))
    monkeypatch.setenv(password_variable(f"{my.host}:{my.port}"), my.password)
    yield Imported(my, db, tmp_path, config)
    for name in (db, f"{db}_dfscratch", f"{db}_dfshadow"):
        my.drop_db(name)


def test_imported_pre_dump_push_publishes_only_sanitised_data(imported: Imported) -> None:
    i = imported
    assert 'steps = ["backup:sanitised"]' in i.config.read_text(encoding="utf-8")
    before = i.my.execute("SELECT * FROM edition_translations ORDER BY id;", i.db)
    result = run("--config", i.config, "run", PUSH_CFG.stem)
    assert result.exit_code == 0, result.output
    (dump,) = i.dumps()
    sql = gzip.decompress(dump.read_bytes())
    for secret in SECRETS:
        assert secret not in sql, secret
    assert b"Public title" in sql and b"fact-email-1@example.com" in sql
    head = b"\n".join(sql.split(b"\n")[:8])
    assert b"_dfscratch" not in head and f"Database: {i.db}".encode() in head  # the original's name
    manifest = i.manifest(dump)
    assert manifest["sanitised"] is True
    assert manifest["sanitisation"]["profile"] == "sanitise_whitehall_test.toml"
    # the live source is only read
    assert i.my.execute("SELECT * FROM edition_translations ORDER BY id;", i.db) == before


def test_imported_pre_dump_push_whose_script_leaves_personal_data_publishes_nothing(
    imported: Imported,
) -> None:
    i = imported
    i.my.execute(
        "INSERT INTO edition_translations VALUES (3, 1, 'Contact', 'write to ann@hotmail.com');", i.db
    )
    result = run("--config", i.config, "run", PUSH_CFG.stem)
    assert result.exit_code == 8, result.output  # the scan found an address the script left
    assert i.dumps() == []


# -- what GOV.UK's readers see in a MariaDB dump (items 8 and 9) ---------------------------------

#: db-backup's ``dump_is_readable`` for MySQL, as the chart runs it on the downloaded object.
PROBE = "gzip -d < \"$1\" | head -n5 | grep -q 'MySQL dump'"


def probe_accepts(dump: Path) -> bool:
    """Our double of db-backup's probe, run by the shell exactly as it is written there."""
    return subprocess.run(["bash", "-c", PROBE, "probe", str(dump)], check=False).returncode == 0


def mysql8_client_refuses(sql: bytes) -> str | None:
    """A double of the part of MySQL 8's ``mysql`` client that stops on MariaDB dumps: it reads
    backslash commands on every line, also inside ``/*M! ... */`` comments, and does not know
    ``\\-`` ("ERROR at line N: Unknown command '\\-'.")."""
    for number, line in enumerate(sql.split(b"\n"), 1):
        if not line.startswith(b"INSERT INTO") and b"\\-" in line:
            return f"ERROR at line {number}: Unknown command '\\-'."
    return None


def legacy_push(i: Imported, *flags: str) -> Path:
    cfg = i.tmp / "etc" / PUSH_CFG.name
    result = run("legacy", "-f", cfg, "--env", "staging", *flags)
    assert result.exit_code == 0, result.output
    (dump,) = i.dumps()
    return dump


def test_mariadb_dump_passes_the_probe_and_loads_without_the_sandbox_line(
    imported: Imported, monkeypatch: pytest.MonkeyPatch
) -> None:
    i = imported
    monkeypatch.setenv("DB_USER", i.my.user)
    monkeypatch.setenv("DB_PASSWORD", i.my.password)
    raw = subprocess.run(
        ["mariadb-dump", f"--defaults-extra-file={i.my.option_file(i.tmp / 'c.cnf')}", i.db],
        capture_output=True,
        check=True,
    ).stdout
    plain = i.tmp / "plain.gz"
    plain.write_bytes(gzip.compress(raw))
    assert b"enable the sandbox mode" in raw.split(b"\n", 1)[0]  # what the tool itself writes
    assert not probe_accepts(plain) and mysql8_client_refuses(raw)  # the doubles can fail
    dump = legacy_push(i, "-F", "")  # a plain push (an empty -F clears the job file's)
    sql = gzip.decompress(dump.read_bytes())
    assert probe_accepts(dump)
    assert mysql8_client_refuses(sql) is None and b"sandbox" not in sql[:4096]
    first = sql.split(b"\n", 1)[0]
    assert first.startswith(b"-- MySQL dump made by dataferry-mysql: ")
    # gunzip | mariadb (govuk-docker's replicate-mysql.sh) still loads it
    consumer = f"{i.db}_consumer"
    i.my.create_db(consumer)
    try:
        subprocess.run(
            ["mariadb", f"--defaults-extra-file={i.my.option_file(i.tmp / 'c.cnf')}", consumer],
            input=sql,
            check=True,
            capture_output=True,
        )
        assert i.my.execute("SELECT title FROM edition_translations ORDER BY id;", consumer).splitlines() == [
            "Public title",
            "Secret title",
        ]
    finally:
        i.my.drop_db(consumer)


def test_pre_dump_push_is_traceable_and_its_dump_names_the_database_not_the_copy(
    imported: Imported, monkeypatch: pytest.MonkeyPatch
) -> None:
    i = imported
    monkeypatch.setenv("DB_USER", i.my.user)
    monkeypatch.setenv("DB_PASSWORD", i.my.password)
    dump = legacy_push(i)  # the job file's -F: sanitise_whitehall_test.sql
    sql = gzip.decompress(dump.read_bytes())
    head = b"\n".join(sql.split(b"\n")[:8])
    assert b"_dfshadow" not in head and f"Database: {i.db}".encode() in head
    assert b"Secret title" not in sql
    manifest = i.manifest(dump)
    pre = manifest["extra"]["pre_dump_transformation"]
    assert pre["script"] == SCRIPT.name
    assert pre["sha256"] == hashlib.sha256(SCRIPT.read_bytes()).hexdigest()
    assert "not a dataferry sanitisation profile" in pre["what"] and manifest["sanitised"] is False


def test_post_restore_transformation_is_logged(imported: Imported, monkeypatch: pytest.MonkeyPatch) -> None:
    i = imported
    monkeypatch.setenv("DB_USER", i.my.user)
    monkeypatch.setenv("DB_PASSWORD", i.my.password)
    legacy_push(i, "-F", "")
    pull = i.tmp / "etc" / PUSH_CFG.name
    result = run("legacy", "-f", pull, "-a", "pull", "-F", "", "-s", SCRIPT, "--env", "integration")
    assert result.exit_code == 0, result.output
    digest = hashlib.sha256(SCRIPT.read_bytes()).hexdigest()[:12]
    assert f"transformation {SCRIPT.name} (sha256 {digest}) runs on the shadow" in result.stderr
    assert f"transformation {SCRIPT.name} done" in result.stderr


# -- credentials from ~/.my.cnf (item 5) -----------------------------------------------------------


def write_my_cnf(home: Path, text: str) -> None:
    home.mkdir(exist_ok=True)
    path = home / ".my.cnf"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)


def test_without_a_password_variable_mysql_reads_my_cnf(
    imported: Imported, monkeypatch: pytest.MonkeyPatch
) -> None:
    i = imported
    home = i.tmp / "home"
    # the user and password of the Puppet-era root .my.cnf; its host must not redirect anything
    write_my_cnf(home, f'[client]\nuser={i.my.user}\npassword="{i.my.password}"\nhost=nowhere.invalid\n')
    monkeypatch.delenv("DB_USER", raising=False)
    monkeypatch.delenv("DB_PASSWORD", raising=False)
    pull = i.tmp / "etc" / PUSH_CFG.name
    with monkeypatch.context() as m:  # the test's own client must not read this file
        m.setenv("HOME", str(home))
        dump = legacy_push(i, "-F", "")  # PyMySQL and mariadb-dump
    assert b"Secret title" in gzip.decompress(dump.read_bytes())
    i.my.execute("DELETE FROM editions;", i.db)
    with monkeypatch.context() as m:
        m.setenv("HOME", str(home))
        result = run("legacy", "-f", pull, "-a", "pull", "-F", "", "--env", "integration")  # mariadb client
    assert result.exit_code == 0, result.output
    assert i.my.execute("SELECT COUNT(*) FROM editions;", i.db) == "2"


def test_a_wrong_password_in_my_cnf_fails_clearly(
    imported: Imported, monkeypatch: pytest.MonkeyPatch
) -> None:
    i = imported
    home = i.tmp / "home"
    write_my_cnf(home, f"[client]\nuser={i.my.user}\npassword=wrong-{uuid.uuid4().hex}\n")
    monkeypatch.delenv("DB_PASSWORD", raising=False)
    with monkeypatch.context() as m:
        m.setenv("HOME", str(home))
        result = run("legacy", "-f", i.tmp / "etc" / PUSH_CFG.name, "--env", "staging", "-F", "")
    assert result.exit_code == 3, result.output
    assert "wrong-" not in result.output and i.dumps() == []
