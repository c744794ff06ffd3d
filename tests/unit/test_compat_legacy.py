"""``dataferry legacy`` without servers: the configuration a job becomes, guards, bucket sync."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from dataferry.cli import cli
from dataferry.compat.jobfile import LegacyJob, getopts, resolve
from dataferry.compat.legacy import (
    LegacyOptions,
    environment_of_bucket,
    plan,
    run,
    store_url,
    sync_stores,
)
from dataferry.config import database_ref
from dataferry.errors import ConfigError, Refused
from dataferry.progress import NullReporter
from dataferry.stores import put_bytes, read_bytes
from dataferry.stores.local import LocalStore

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "govuk"
PULL_CFG = FIXTURES / "etc-staging" / "pull_content_data_admin_production_daily.cfg"


def _job(*argv: str) -> LegacyJob:
    return resolve(getopts(list(argv)))


def test_a_pull_job_becomes_a_govuk_puppet_layout_config() -> None:
    """Job files are the Puppet-era script's: by default its layout, so that the script's own pulls
    from the same bucket keep working while a migration runs both (``--layout govuk`` for db-backup's)."""
    p = plan(
        _job("-f", str(PULL_CFG)), LegacyOptions(), {"GOVUK_ENVIRONMENT": "staging", "DB_PASSWORD": "pw"}
    )
    assert (p.database, p.target, p.source) == ("content_data_admin_production", "staging", "production")
    store = p.config.environment("production").store
    assert (store.url, store.layout, store.sse) == (
        "s3://govuk-production-database-backups",
        "govuk-puppet",
        "AES256",
    )
    opts = LegacyOptions(layout="govuk")
    chart = plan(_job("-f", str(PULL_CFG)), opts, {"GOVUK_ENVIRONMENT": "staging", "DB_PASSWORD": "pw"})
    assert chart.config.environment("production").store.layout == "govuk"
    db = p.config.database("content_data_admin_production")
    assert (db.engine, db.store_path, db.store_name) == (
        "postgresql",
        "content-data-admin-postgres",
        "content_data_admin_production",
    )
    conn = db.environments["staging"]
    assert conn.url == "postgresql://aws_db_admin@content-data-admin-postgres/content_data_admin_production"
    assert conn.password_env == "DB_PASSWORD"
    assert not p.config.environment("staging").protected
    assert p.notes == []


def test_user_password_env_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    job = _job("-f", str(PULL_CFG), "-H", "127.0.0.1:6543")
    opts = LegacyOptions(environment="laptop", password_env="MY_PW")
    p = plan(job, opts, {"DB_USER": "backup user", "MY_PW": "s3cret"})
    conn = p.config.database(p.database).environments["laptop"]
    assert conn.url == "postgresql://backup%20user@127.0.0.1:6543/content_data_admin_production"
    assert conn.password_env == "MY_PW"
    monkeypatch.setenv("MY_PW", "s3cret")
    ref = database_ref(p.config, p.database, "laptop")
    assert ref.password is not None and ref.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(ref) and "s3cret" not in repr(p.config)


def test_without_a_password_variable_the_tools_own_files_apply() -> None:
    p = plan(_job("-f", str(PULL_CFG)), LegacyOptions(environment="staging"), {})
    assert p.config.database(p.database).environments["staging"].password_env is None


def test_credentials_in_the_host_flag_are_refused_without_echoing_them() -> None:
    job = _job("-f", str(PULL_CFG), "-H", "admin:hunter2@db-host")
    with pytest.raises(ConfigError) as err:
        plan(job, LegacyOptions(environment="staging"), {})
    assert "hunter2" not in str(err.value) and "hunter2" not in (err.value.hint or "")
    assert "DB_PASSWORD" in (err.value.hint or "")


def test_production_target_is_protected(tmp_path: Path) -> None:
    job = _job("-f", str(PULL_CFG), "-u", f"file://{tmp_path}")
    p = plan(job, LegacyOptions(environment="production"), {})
    assert p.config.environment("production").protected
    with pytest.raises(Refused, match="production is protected"):
        run(job, LegacyOptions(environment="production"), environ={})


def test_restoring_from_the_own_bucket_gets_a_distinct_source_name() -> None:
    job = _job("-f", str(PULL_CFG), "-u", "govuk-integration-database-backups")
    p = plan(job, LegacyOptions(environment="integration"), {})
    assert (p.target, p.source) == ("integration", "integration-bucket")


@pytest.mark.parametrize(
    ("url", "env"),
    [
        ("govuk-production-database-backups", "production"),
        ("s3://govuk-staging-database-backups", "staging"),
        ("my-bucket", "my-bucket"),
        ("file:///tmp/x", "tmp"),
    ],
)
def test_environment_of_bucket(url: str, env: str) -> None:
    assert environment_of_bucket(url) == env


def test_store_url() -> None:
    assert store_url("b") == "s3://b"
    assert store_url("file:///d") == "file:///d"
    with pytest.raises(ConfigError):
        store_url("")


def test_missing_transformation_file_stops_before_anything(tmp_path: Path) -> None:
    job = _job("-f", str(PULL_CFG), "-s", str(tmp_path / "missing.sql"))
    with pytest.raises(ConfigError, match=r"missing\.sql not found"):
        run(job, LegacyOptions(environment="staging"), environ={})


# -- s3_sync ---------------------------------------------------------------------------------------


def test_sync_copies_new_and_changed_skips_unchanged_and_deletes_extra(tmp_path: Path) -> None:
    src, dst = LocalStore(tmp_path / "src"), LocalStore(tmp_path / "dst")
    put_bytes(src, "a/new.bin", b"new")
    put_bytes(src, "same.bin", b"same")
    put_bytes(dst, "same.bin", b"same")
    put_bytes(src, "changed.bin", b"longer now")
    put_bytes(dst, "changed.bin", b"short")
    put_bytes(dst, "extra.bin", b"gone")
    dry = sync_stores(src, dst, delete=True, dry_run=True, reporter=NullReporter())
    assert sorted(dry.copied) == ["a/new.bin", "changed.bin"] and dry.deleted == ["extra.bin"]
    assert read_bytes(dst, "extra.bin") == b"gone"
    result = sync_stores(src, dst, delete=True, dry_run=False, reporter=NullReporter())
    assert (sorted(result.copied), result.deleted, result.unchanged) == (
        ["a/new.bin", "changed.bin"],
        ["extra.bin"],
        1,
    )
    assert {o.key: read_bytes(dst, o.key) for o in dst.list("")} == {
        "a/new.bin": b"new",
        "same.bin": b"same",
        "changed.bin": b"longer now",
    }
    again = sync_stores(src, dst, delete=True, dry_run=False, reporter=NullReporter())
    assert (again.copied, again.deleted, again.unchanged) == ([], [], 3)


def test_sync_without_delete_keeps_extra_objects(tmp_path: Path) -> None:
    src, dst = LocalStore(tmp_path / "src"), LocalStore(tmp_path / "dst")
    put_bytes(src, "a.bin", b"a")
    put_bytes(dst, "extra.bin", b"kept")
    result = sync_stores(src, dst, delete=False, dry_run=False, reporter=NullReporter())
    assert result.deleted == [] and read_bytes(dst, "extra.bin") == b"kept"


def test_s3_sync_job_file_through_the_cli(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    put_bytes(LocalStore(src), "blob", b"x" * 1000)
    cfg = tmp_path / "s3_sync.cfg"
    cfg.write_text(
        f'action="s3_sync"\nsource_bucket="file://{src}"\ndestination_bucket="file://{dst}"\ndelete="false"\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["legacy", "-f", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "1 copied, 0 deleted, 0 unchanged" in result.stdout
    assert (dst / "blob").read_bytes() == b"x" * 1000


# -- CLI guards ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["-h"], 0, "usage: dataferry legacy"),
        (
            [],
            2,
            "usage: dataferry legacy",
        ),  # the script exited 0 here; a cron line with no flags is a mistake
        (["-q"], 2, "unknown option -q"),
        (["-f", "/nonexistent/x.cfg"], 2, "job file /nonexistent/x.cfg not found"),
        (["-f", str(FIXTURES / "etc-staging" / "push_content_store_daily.cfg")], 2, "not supported yet"),
    ],
)
def test_cli_legacy_usage_and_errors(argv: list[str], code: int, message: str) -> None:
    result = CliRunner().invoke(cli, ["legacy", *argv])
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_a_failure_hint_never_points_at_check_which_needs_a_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_PASSWORD", "x")
    argv = ["-a", "push", "-D", "mysql", "-S", "s3", "-d", "app", "-H", "127.0.0.1:1"]
    argv += ["-u", "file:///nonexistent", "-p", "a"]
    result = CliRunner().invoke(cli, ["legacy", *argv])
    assert result.exit_code == 3, result.output
    assert "dataferry check" not in result.output
    assert "hint: run the same command with --dry-run to see every check" in result.output
