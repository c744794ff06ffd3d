"""GOV.UK drop-in on real PostgreSQL and moto S3: ``dataferry legacy`` job files, the govuk layout as
GOV.UK's consumers read it, and a config with ``layout = "govuk"`` through the ordinary commands.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from dataferry.cli import cli
from dataferry.compat.jobfile import getopts, resolve
from dataferry.compat.legacy import LegacyOptions, run
from dataferry.errors import EngineError
from servers import PgServer, S3Server

from ._pg_helpers import (
    CmdlineWatcher,
    HookReporter,
    dataferry_databases,
    fingerprint,
    kill_descendants,
    seed_app,
    seed_bulk,
)

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "govuk"
RERUN_CFG = FIXTURES / "etc-staging" / "pull_content_data_admin_production_daily.cfg"
PATH = "content-data-admin-postgres"


@dataclass
class Govuk:
    """One test's database (GOV.UK-style name) on the shared server, a bucket and job files."""

    pg: PgServer
    s3: S3Server
    bucket: str
    db: str
    tmp: Path

    @property
    def host(self) -> str:
        return f"{self.pg.host}:{self.pg.port}"

    def job_file(self, action: str, name: str | None = None, **extra: str) -> Path:
        """The seed manual's job file, with this test's host, bucket and database put in."""
        text = RERUN_CFG.read_text(encoding="utf-8")
        text = text.replace('action="pull"', f'action="{action}"')
        text = text.replace('"content-data-admin-postgres"\nurl', f'"{self.host}"\nurl', 1)
        text = text.replace("content_data_admin_production", self.db)
        text = text.replace('url="govuk-production-database-backups"', f'url="{self.bucket}"')
        text += "".join(f'{k}="{v}"\n' for k, v in extra.items())
        path = self.tmp / (name or RERUN_CFG.name.replace("pull_", f"{action}_"))
        path.write_text(text, encoding="utf-8")
        return path

    def object_keys(self) -> list[str]:
        resp = self.s3.client().list_objects_v2(Bucket=self.bucket)
        return sorted(o["Key"] for o in resp.get("Contents", []))

    def get(self, key: str) -> bytes:
        body: bytes = self.s3.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def put(self, key: str, data: bytes) -> None:
        self.s3.client().put_object(Bucket=self.bucket, Key=key, Body=data)

    def dumps(self) -> list[str]:
        return [k for k in self.object_keys() if k.endswith(".gz")]


@pytest.fixture
def govuk(
    pg_server: PgServer, s3_server: S3Server, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Govuk]:
    for key, value in s3_server.env().items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("DB_USER", pg_server.user)
    monkeypatch.setenv("DB_PASSWORD", pg_server.password)
    monkeypatch.setenv("GOVUK_ENVIRONMENT", "staging")
    g = Govuk(
        pg_server, s3_server, s3_bucket, f"content_data_admin_{uuid.uuid4().hex[:8]}_production", tmp_path
    )
    pg_server.create_db(g.db)
    seed_app(pg_server, g.db, rows=50)
    yield g
    for suffix in ("", "-dataferry-shadow", "-dataferry-old", "-consumer"):
        pg_server.drop_db(g.db + suffix)


def legacy(*argv: str | Path) -> Result:
    """``dataferry legacy`` with db-backup's layout (these tests are about it; a job file's default
    is the Puppet-era script's, ``tests/integration/test_govuk_pickers_s3.py``)."""
    return CliRunner().invoke(cli, ["legacy", *map(str, argv), "--layout", "govuk"])


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output + (str(result.exception) if result.exception else "")
    return result


def push(g: Govuk) -> str:
    """Push and return the new dump's key (pushes in one second would share a key: wait it out)."""
    before = set(g.dumps())
    ok(legacy("-f", g.job_file("push")))
    (new,) = set(g.dumps()) - before
    return new


def mutate(g: Govuk) -> None:
    g.pg.psql("DELETE FROM billing.invoices; INSERT INTO public.events (kind) VALUES ('after push');", g.db)


# -- push: exactly what GOV.UK's consumers read ----------------------------------------------------


def test_push_writes_govuk_names_with_manifest_and_pointer(govuk: Govuk) -> None:
    g = govuk
    key = push(g)
    assert re.fullmatch(rf"{PATH}/\d{{4}}-\d\d-\d\dT\d{{6}}Z-{g.db}\.gz", key)
    manifest_key = key.removesuffix(".gz") + ".manifest.json"
    pointer_key = f"{PATH}/latest-{g.db}.txt"
    started = "_dataferry/pending/" + key.removesuffix(".gz") + ".started"  # outside GOV.UK's directories
    assert g.object_keys() == sorted([key, manifest_key, pointer_key, started])
    assert g.get(pointer_key) == key.encode()  # db-backup's write_pointer: "<DB_HOST>/<file>", no newline
    data = g.get(key)
    assert data.startswith(b"PGDMP")  # what db-backup's dump_is_readable checks
    manifest = json.loads(g.get(manifest_key))
    assert manifest["objects"][0] == {
        **manifest["objects"][0],
        "key": key,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "format": "pg_custom",
        "compression": "none",
    }
    assert manifest["extra"]["layout"] == "govuk"
    assert manifest["row_counts"]["billing.invoices"] == 150
    # "latest" as govuk-docker finds it: ls | grep '\.gz$' | sort | tail -1; and db-backup's list regex
    listing = [k.rsplit("/", 1)[1] for k in g.object_keys() if k.startswith(f"{PATH}/")]
    assert sorted(n for n in listing if n.endswith(".gz"))[-1] == key.rsplit("/", 1)[1]
    db_re = g.db.replace("_", ".").replace("-", ".")
    assert [m for n in listing for m in re.findall(rf"[-0-9:TZ_]+-{db_re}\.gz", n)] == [key.rsplit("/", 1)[1]]


def test_pushed_dump_restores_with_govuk_dockers_own_commands(govuk: Govuk) -> None:
    """The developer path: download the object and ``pg_restore --no-owner --no-privileges`` it."""
    g = govuk
    key = push(g)
    path = g.tmp / key.rsplit("/", 1)[1]
    path.write_bytes(g.get(key))
    listing = subprocess.run(
        [str(g.pg.bindir / "pg_restore"), "--list", str(path)], capture_output=True, text=True, check=True
    ).stdout
    compression = re.search(r"Compression: (\S+)", listing)
    assert compression and compression.group(1) not in ("0", "none")  # pg_dump -Fc -Z1, like db-backup
    consumer = g.db + "-consumer"
    g.pg.create_db(consumer)
    subprocess.run(
        [
            str(g.pg.bindir / "pg_restore"),
            "--no-owner",
            "--no-privileges",
            f"--dbname={g.pg.dsn(consumer)}",
            str(path),
        ],
        env=g.pg.env(),
        check=True,
        capture_output=True,
    )
    assert fingerprint(g.pg, consumer) == fingerprint(g.pg, g.db)


# -- pull --------------------------------------------------------------------------------------------


def test_seed_manual_rerun_command_with_dataferry_legacy(govuk: Govuk) -> None:
    """``dataferry legacy -f /etc/govuk_env_sync/pull_content_data_admin_production_daily.cfg``."""
    g = govuk
    push(g)
    expected = fingerprint(g.pg, g.db)
    mutate(g)
    assert fingerprint(g.pg, g.db) != expected
    cfg = g.job_file("pull", name=RERUN_CFG.name)
    result = ok(legacy("-f", cfg))
    assert f"pulled {PATH}/" in result.stdout
    assert fingerprint(g.pg, g.db) == expected
    assert dataferry_databases(g.pg, g.db) == set()


def test_t_restores_a_given_timestamp_and_a_stale_pointer_is_passed_over(govuk: Govuk) -> None:
    g = govuk
    first = push(g)
    first_print = fingerprint(g.pg, g.db)
    mutate(g)
    time.sleep(1.1)  # keys have second resolution
    second = push(g)
    second_print = fingerprint(g.pg, g.db)
    assert first != second and first_print != second_print
    g.pg.psql("DROP TABLE public.events;", g.db)
    cfg = g.job_file("pull")

    stamp = first.rsplit("/", 1)[1][: len("2026-01-05T230501Z")]
    ok(legacy("-f", cfg, "-t", stamp))
    assert fingerprint(g.pg, g.db) == first_print

    ok(legacy("-f", cfg))  # the pointer names the second
    assert fingerprint(g.pg, g.db) == second_print

    g.put(f"{PATH}/latest-{g.db}.txt", first.encode())  # a stale pointer: the newer committed dump wins
    result = ok(legacy("-f", cfg))
    assert fingerprint(g.pg, g.db) == second_print
    assert f"names {first}, but {second} is newer" in result.stderr

    g.s3.client().delete_object(Bucket=g.bucket, Key=f"{PATH}/latest-{g.db}.txt")
    result = ok(legacy("-f", cfg))  # no pointer: the newest key
    assert fingerprint(g.pg, g.db) == second_print
    assert "no pointer" in result.stderr


def test_a_dump_written_by_govuks_scripts_with_a_colon_name_is_restored(govuk: Govuk) -> None:
    """Puppet-era object (colon timestamp, no manifest, no pointer): restored with a warning."""
    g = govuk
    dump = subprocess.run(
        [str(g.pg.bindir / "pg_dump"), "-Fc", "-Z1", f"--dbname={g.pg.dsn(g.db)}"],
        env=g.pg.env(),
        capture_output=True,
        check=True,
    ).stdout
    expected = fingerprint(g.pg, g.db)
    g.put(f"{PATH}/2022-06-30T23:00:05-{g.db}.gz", dump)
    mutate(g)
    result = ok(legacy("-f", g.job_file("pull")))
    assert fingerprint(g.pg, g.db) == expected
    assert "has no dataferry manifest" in result.stderr


def test_transformation_runs_on_the_shadow_before_the_swap(govuk: Govuk) -> None:
    g = govuk
    push(g)
    sql = g.tmp / "anonymise.sql"
    sql.write_text("UPDATE public.users SET email = 'anon-' || id || '@example.com';\n", encoding="utf-8")
    ok(legacy("-f", g.job_file("pull"), "-s", sql))
    emails = g.pg.psql("SELECT count(*) FROM public.users WHERE email NOT LIKE 'anon-%@example.com';", g.db)
    assert emails == "0"


def test_a_failing_transformation_changes_nothing(govuk: Govuk) -> None:
    g = govuk
    push(g)
    mutate(g)
    before = fingerprint(g.pg, g.db)
    sql = g.tmp / "broken.sql"
    sql.write_text(
        "UPDATE public.users SET email = NULL;\nUPDATE public.no_such_table SET x = 1;\n", encoding="utf-8"
    )
    result = legacy("-f", g.job_file("pull"), "-s", sql)
    assert result.exit_code == 8, result.output
    assert "transformation broken.sql failed" in result.stderr
    assert fingerprint(g.pg, g.db) == before
    assert dataferry_databases(g.pg, g.db) == set()


@pytest.mark.parametrize("damage", ["corrupt-with-manifest", "not-a-dump", "truncated-legacy"])
def test_a_bad_dump_is_refused_and_the_live_database_is_untouched(govuk: Govuk, damage: str) -> None:
    g = govuk
    key = push(g)
    data = g.get(key)
    if damage == "corrupt-with-manifest":
        g.put(key, data[:-100] + bytes(b ^ 0xFF for b in data[-100:]))  # same size, other bytes
        code, message = 7, "sha256 differs"
    elif damage == "not-a-dump":
        g.put(f"{PATH}/latest-{g.db}.txt", f"{PATH}/2030-01-01T000000Z-{g.db}.gz".encode())
        g.put(f"{PATH}/2030-01-01T000000Z-{g.db}.gz", b"<html>AccessDenied</html>")
        code, message = 7, "is not a PostgreSQL custom-format archive"
    else:
        g.s3.client().delete_object(Bucket=g.bucket, Key=f"{PATH}/latest-{g.db}.txt")
        g.put(f"{PATH}/2030-01-01T000000Z-{g.db}.gz", data[: len(data) // 2])
        code, message = 1, "pg_restore"
    if damage == "truncated-legacy":  # no manifest anywhere: the legacy rules apply
        g.s3.client().delete_object(Bucket=g.bucket, Key=key.removesuffix(".gz") + ".manifest.json")
    mutate(g)
    before = fingerprint(g.pg, g.db)
    result = legacy("-f", g.job_file("pull"))
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert fingerprint(g.pg, g.db) == before
    assert dataferry_databases(g.pg, g.db) == set()


def test_push_killed_halfway_publishes_nothing_and_keeps_the_pointer(govuk: Govuk) -> None:
    """pg_dump killed midway: no dump, no manifest, the pointer still names the previous dump.

    A local store (``-u file://...``) reads the dump in 1 MiB chunks, so the kill lands mid-stream;
    an S3 upload reads a whole part first."""
    g = govuk
    bucket = g.tmp / "bucket"
    cfg = g.job_file("push")
    job = resolve(getopts(["-f", str(cfg), "-u", f"file://{bucket}"]))
    run(job, LegacyOptions(layout="govuk"))
    seed_bulk(g.pg, g.db, 60_000)
    time.sleep(1.1)
    killed: list[int] = []

    def kill_pg_dump(raw_bytes: int) -> None:
        if not killed and raw_bytes >= 1024 * 1024:
            killed.append(kill_descendants("pg_dump"))

    with pytest.raises(EngineError, match=r"pg_dump failed \(killed by signal 9\)"):
        run(job, LegacyOptions(layout="govuk"), reporter=HookReporter(kill_pg_dump))
    assert killed == [1]
    files = sorted(p.relative_to(bucket).as_posix() for p in bucket.rglob("*") if p.is_file())
    (first,) = [f for f in files if f.endswith(".gz")]
    started = sorted(f for f in files if f.startswith("_dataferry/pending/"))
    assert len(started) == 2  # both pushes were recorded before their uploads
    assert files == sorted(
        [first, first.removesuffix(".gz") + ".manifest.json", f"{PATH}/latest-{g.db}.txt", *started]
    )
    assert (bucket / PATH / f"latest-{g.db}.txt").read_text() == first


def test_production_is_protected_and_dry_run_changes_nothing(
    govuk: Govuk, monkeypatch: pytest.MonkeyPatch
) -> None:
    g = govuk
    push(g)
    mutate(g)
    before = fingerprint(g.pg, g.db)
    monkeypatch.setenv("GOVUK_ENVIRONMENT", "production")
    refused = legacy("-f", g.job_file("pull"))
    assert refused.exit_code == 9 and "production is protected" in refused.stderr
    dry = ok(legacy("-f", g.job_file("pull"), "--dry-run", "--force"))
    assert dry.stdout.startswith("would pull ")
    assert fingerprint(g.pg, g.db) == before
    objects = g.object_keys()
    dry_push = ok(legacy("-f", g.job_file("push"), "--dry-run"))
    assert dry_push.stdout.startswith(f"would push {g.db} to s3://{g.bucket}/")
    assert g.object_keys() == objects


def test_no_password_in_argv_output_or_objects(govuk: Govuk) -> None:
    g = govuk
    with CmdlineWatcher() as watcher:
        push(g)
        result = ok(legacy("-f", g.job_file("pull")))
    assert {"pg_dump", "pg_restore"} <= watcher.programs()
    assert watcher.containing(g.pg.password) == []
    assert g.pg.password not in result.output
    for key in g.object_keys():
        assert g.pg.password.encode() not in g.get(key)


# -- a config with layout = "govuk" through the ordinary commands --------------------------------


def _config(g: Govuk, staging_db: str) -> Path:
    conn = f"postgresql://{g.pg.user}@{g.host}"
    path = g.tmp / "dataferry.toml"
    path.write_text(
        f"""
[environments.production]
protected = true
[environments.production.store]
url = "s3://{g.bucket}"
layout = "govuk"
endpoint_url = "{g.s3.endpoint_url}"
[environments.staging]
store = {{ url = "s3://{g.bucket}/staging", layout = "govuk", endpoint_url = "{g.s3.endpoint_url}" }}

[databases.content-data-admin]
engine = "postgresql"
store_path = "{PATH}"
store_name = "{g.db}"
[databases.content-data-admin.environments]
production = {{ url = "{conn}/{g.db}", password_env = "DB_PASSWORD" }}
staging = {{ url = "{conn}/{staging_db}", password_env = "DB_PASSWORD" }}
""",
        encoding="utf-8",
    )
    return path


def test_config_with_govuk_layout_through_backup_list_verify_restore(govuk: Govuk) -> None:
    g = govuk
    staging_db = g.db + "-consumer"
    g.pg.create_db(staging_db)
    config = str(_config(g, staging_db))
    run = CliRunner()
    backed = run.invoke(cli, ["--config", config, "backup", "content-data-admin", "--env", "production"])
    assert backed.exit_code == 0, backed.output
    (key,) = g.dumps()
    assert key.startswith(f"{PATH}/")
    assert key.removesuffix(".gz") + ".manifest.json" in backed.stdout  # Manifest.key of this layout
    listed = run.invoke(
        cli, ["--config", config, "list", "content-data-admin", "--env", "production", "--json"]
    )
    assert [m["objects"][0]["key"] for m in json.loads(listed.stdout)] == [key]
    verified = run.invoke(cli, ["--config", config, "verify", "content-data-admin", "--env", "production"])
    assert verified.exit_code == 0 and "sha256 verified" in verified.stdout
    restored = run.invoke(
        cli, ["--config", config, "restore", "content-data-admin", "--env", "staging", "--from", "production"]
    )
    assert restored.exit_code == 0, restored.output
    assert fingerprint(g.pg, staging_db) == fingerprint(g.pg, g.db)
    cleanup = run.invoke(cli, ["--config", config, "cleanup", "content-data-admin", "--env", "production"])
    assert cleanup.exit_code == 9 and g.dumps() == [key]
    status = run.invoke(cli, ["--config", config, "status", "--env", "production", "--json"])
    assert status.exit_code == 0, status.output
    newest = json.loads(status.stdout)["environments"][0]["databases"][0]["newest_artifact"]
    assert newest["id"] == json.loads(listed.stdout)[0]["id"], "status sees the govuk layout's dump"


# -- imported job files run as dataferry jobs ----------------------------------------------------------


def test_imported_job_files_run_as_a_dataferry_job(govuk: Govuk, monkeypatch: pytest.MonkeyPatch) -> None:
    """``dataferry import /etc/govuk_env_sync`` then ``dataferry run`` a translated pull job: it
    restores the dump a legacy push wrote, through the same govuk layout."""
    g = govuk
    push(g)
    expected = fingerprint(g.pg, g.db)
    mutate(g)
    config = g.tmp / "dataferry.toml"
    imported = CliRunner().invoke(cli, ["import", str(FIXTURES / "etc-staging"), "-o", str(config)])
    assert imported.exit_code == 0, imported.output
    text = config.read_text(encoding="utf-8")
    # Point the imported file at this test's server and bucket; everything else is as imported.
    text = text.replace("aws_db_admin@content-data-admin-postgres", f"{g.pg.user}@{g.host}")
    text = text.replace("content_data_admin_production", g.db)
    text = text.replace("s3://govuk-production-database-backups", f"s3://{g.bucket}")
    text = text.replace("s3://govuk-staging-database-backups", f"s3://{g.bucket}/staging")  # run records
    config.write_text(text, encoding="utf-8")
    monkeypatch.setenv("CONTENT_DATA_ADMIN_POSTGRES_PASSWORD", g.pg.password)
    monkeypatch.setenv("SIGNON_MYSQL_PASSWORD", "unused")
    monkeypatch.setenv("WHITEHALL_MYSQL_PASSWORD", "unused")
    job = f"pull_{g.db}_daily"  # the job file's title, with this test's database name in it
    result = CliRunner().invoke(cli, ["--config", str(config), "run", job])
    assert result.exit_code == 0, result.output
    assert fingerprint(g.pg, g.db) == expected
    assert dataferry_databases(g.pg, g.db) == set()
