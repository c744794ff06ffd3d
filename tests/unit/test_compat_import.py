"""``dataferry import``: job-file directories and db-backup Helm values become a valid config."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dataferry.cli import cli
from dataferry.compat.importer import default_db_owner, import_path, render
from dataferry.config import parse
from dataferry.errors import ConfigError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "govuk"
VALUES = FIXTURES / "db-backup-values.yaml"


def _imported(source: Path, env: str | None = None) -> tuple[dict[str, Any], list[str]]:
    result = import_path(source, env)
    text = render(result)
    parse(text, Path("imported.toml"))
    return tomllib.loads(text), result.untranslated


def test_helm_values_become_jobs_with_their_operations_schedules_and_owner() -> None:
    cfg, _ = _imported(VALUES)
    staging = cfg["jobs"]["staging-publishing-api-postgres"]
    assert staging == {
        "environment": "staging",
        "database": "publishing_api_production",
        "steps": ["restore:production", "sanitise", "backup"],
        "schedule": "36 1 * * 1-5",
        "max_runtime": "12h",
    }
    assert cfg["jobs"]["staging-content-data-api-postgresql-primary"]["max_runtime"] == "1d"
    assert cfg["jobs"]["integration-publishing-api-postgres"]["steps"] == ["restore:staging", "backup"]
    assert cfg["jobs"]["production-signon-mysql"]["steps"] == ["backup"]
    db = cfg["databases"]["publishing_api_production"]
    assert (db["engine"], db["store_path"], db["store_name"]) == (
        "postgresql",
        "publishing-api-postgres",
        "publishing_api_production",
    )
    conns = db["environments"]
    assert conns["staging"]["owner"] == "publishing-api-owner-role"  # DB_OWNER from extraEnv
    assert conns["integration"]["owner"] == "publishing_api"  # db-backup's default rule
    assert "owner" not in conns["production"]  # production only backs up
    # every environment imported together: each its own host and password variable
    assert {env: c["password_env"] for env, c in conns.items()} == {
        "production": "PRODUCTION_PUBLISHING_API_POSTGRES_PASSWORD",
        "staging": "STAGING_PUBLISHING_API_POSTGRES_PASSWORD",
        "integration": "INTEGRATION_PUBLISHING_API_POSTGRES_PASSWORD",
    }
    assert conns["staging"]["url"] == (
        "postgresql://aws_db_admin@publishing-api-postgres.staging.govuk-internal.digital/publishing_api_production"
    )
    assert len({c["url"] for c in conns.values()}) == 3
    assert cfg["databases"]["content_performance_manager_production"]["store_path"] == (
        "content-data-api-postgresql-primary"
    )


def test_helm_environments_are_govuk_layout_stores_and_production_is_protected() -> None:
    cfg, _ = _imported(VALUES)
    for name in ("production", "staging", "integration"):
        store = cfg["environments"][name]["store"]
        assert store == {"url": f"s3://govuk-{name}-database-backups", "layout": "govuk", "sse": "AES256"}
    assert cfg["environments"]["production"]["protected"] is True
    assert "protected" not in cfg["environments"]["staging"]


def test_helm_untranslated_parts_are_listed() -> None:
    cfg, notes = _imported(VALUES)
    text = "\n".join(notes)
    assert "production/shared-documentdb: dbms documentdb is not supported yet" in text
    assert "integration/signon-mysql-restore: restores integration from its own bucket" in text
    assert "integration/ckan-postgres: suspended in the chart" in text
    assert "integration/ckan-postgres: environment variable FILENAME is not translated" in text
    assert "staging/publishing-api-postgres: transformation publishing-api.sql" in text
    assert "production-shared-documentdb" not in cfg["jobs"]
    assert "integration-signon-mysql-restore" not in cfg["jobs"]
    assert "VERBOSE" not in text  # chart-wide logging switch: nothing to translate


def test_helm_one_environment_only() -> None:
    cfg, _ = _imported(VALUES, "staging")
    assert {j["environment"] for j in cfg["jobs"].values()} == {"staging"}
    assert set(cfg["environments"]) == {"staging", "production"}  # production: the restore source
    # as in the chart, which ran in that environment's cluster: short host, the secret map's key
    conn = cfg["databases"]["publishing_api_production"]["environments"]["staging"]
    assert conn["url"] == "postgresql://aws_db_admin@publishing-api-postgres/publishing_api_production"
    assert conn["password_env"] == "PUBLISHING_API_POSTGRES_PASSWORD"


def test_helm_runtime_settings_are_carried_or_reported_one_per_line() -> None:
    result = import_path(VALUES)
    settings = result.settings
    assert all("\n" not in line for line in settings)
    text = "\n".join(settings)
    assert "resources limits.cpu=2000m limits.memory=512Mi requests.cpu=500m requests.memory=128Mi" in text
    assert "production/content-store-postgres: resources limits.memory=2048Mi" in text
    assert "serviceAccount create=True name=db-backup annotations.eks.amazonaws.com/role-arn=" in text
    for key in ("concurrencyPolicy Forbid", "startingDeadlineSeconds 28800", "backoffLimit 0"):
        assert key in text
    assert "PROMETHEUS_PUSHGATEWAY_URL" in text and "run one 'dataferry scheduler --env ENV'" in text


def test_helm_pushgateway_in_extra_env_is_carried(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    text = VALUES.read_text(encoding="utf-8").replace(
        '  - name: VERBOSE\n    value: "1"\n',
        '  - name: VERBOSE\n    value: "1"\n  - name: PROMETHEUS_PUSHGATEWAY_URL\n    value: http://pg:9091\n',
    )
    values.write_text(text, encoding="utf-8")
    cfg, _ = _imported(values)
    assert cfg["settings"]["pushgateway_url"] == "http://pg:9091"


def test_helm_unknown_environment(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no cronjobs for environment 'qa'"):
        import_path(VALUES, "qa")


def test_helm_file_without_cronjobs(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("replicas: 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="no 'cronjobs' map"):
        import_path(values)


def test_staging_job_files() -> None:
    cfg, notes = _imported(FIXTURES / "etc-staging")
    # the Puppet-era script's buckets: its layout, which leaves its pulls nothing to trip over
    assert {e["store"]["layout"] for e in cfg["environments"].values()} == {"govuk-puppet"}
    assert cfg["jobs"]["pull_content_data_admin_production_daily"] == {
        "environment": "staging",
        "database": "content_data_admin_production",
        "steps": ["restore:production"],
    }
    assert cfg["databases"]["signon_production"]["engine"] == "mysql"
    text = "\n".join(notes)
    assert "push_content_store_daily.cfg: dbms mongo is not supported yet" in text
    assert "s3_sync_content_publisher_from_production_daily.cfg: s3_sync" in text
    assert "push_whitehall_staging_daily: pre-dump transformation sanitise_whitehall.sql" in text
    assert "no schedule" in text


def test_a_push_with_a_pre_dump_transformation_becomes_a_sanitised_backup() -> None:
    result = import_path(FIXTURES / "etc-staging")
    cfg = tomllib.loads(render(result))
    assert cfg["jobs"]["push_whitehall_staging_daily"]["steps"] == ["backup:sanitised"]
    db = cfg["databases"]["whitehall_production"]
    assert db["sanitise"] == "sanitise/sanitise_whitehall.toml"
    assert db["scratch"] == {
        "url": "mysql://aws_db_admin@whitehall-mysql/whitehall_production_dfscratch",
        "password_env": "WHITEHALL_MYSQL_PASSWORD",
    }
    profile = tomllib.loads(result.profiles["sanitise/sanitise_whitehall.toml"])
    assert profile == {"scripts": ["/etc/govuk_env_sync/transformation_sql/sanitise_whitehall.sql"]}


def test_two_pre_dump_scripts_for_one_database_are_refused(tmp_path: Path) -> None:
    src = FIXTURES / "etc-staging" / "push_whitehall_staging_daily.cfg"
    shutil.copy(src, tmp_path / src.name)
    text = src.read_text(encoding="utf-8").replace("sanitise_whitehall.sql", "other.sql")
    (tmp_path / "push_whitehall_again.cfg").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot become the sanitisation profile") as info:
        import_path(tmp_path)
    assert info.value.exit_code == 2


def test_a_pull_script_never_replaces_the_profile_of_a_sanitised_push(tmp_path: Path) -> None:
    src = FIXTURES / "etc-staging" / "push_whitehall_staging_daily.cfg"
    (tmp_path / "a_pull.cfg").write_text(
        'action="pull"\ndbms="mysql"\nstoragebackend="s3"\ndatabase="whitehall_production"\n'
        'database_hostname="whitehall-mysql"\nurl="govuk-production-database-backups"\n'
        'path="whitehall-mysql"\ntransformation_sql_file="/etc/govuk_env_sync/transformation_sql/x.sql"\n',
        encoding="utf-8",
    )
    shutil.copy(src, tmp_path / src.name)  # read after the pull: pre-dump pushes are translated first
    result = import_path(tmp_path)
    assert result.databases["whitehall_production"].sanitise == "sanitise/sanitise_whitehall.toml"
    assert any("has two transformations" in n for n in result.untranslated)


def test_a_local_store_stays_local_and_a_numeric_host_gives_a_valid_variable(tmp_path: Path) -> None:
    (tmp_path / "push_app.cfg").write_text(
        'action="push"\ndbms="postgresql"\nstoragebackend="s3"\ndatabase="app"\n'
        f'database_hostname="127.0.0.1:5433"\nurl="file://{tmp_path}/store"\npath="app-postgres"\n',
        encoding="utf-8",
    )
    cfg, _ = _imported(tmp_path, "laptop")
    assert cfg["environments"]["laptop"]["store"] == {
        "url": f"file://{tmp_path}/store",
        "layout": "govuk-puppet",
    }
    assert set(cfg["environments"]) == {"laptop"}
    conn = cfg["databases"]["app"]["environments"]["laptop"]
    assert conn["password_env"] == "DB_127_0_0_1_5433_PASSWORD"
    assert conn["password_env"].isidentifier()
    assert cfg["jobs"]["push_app"]["steps"] == ["backup"]


def test_integration_job_files_keep_excluded_tables_and_transformations() -> None:
    cfg, notes = _imported(FIXTURES / "etc-integration")
    assert cfg["jobs"]["pull_email_alert_api_production_daily"]["steps"] == ["restore:production", "sanitise"]
    assert cfg["jobs"]["pull_whitehall_production_daily"]["steps"] == ["restore:staging"]
    assert cfg["databases"]["whitehall_production"]["exclude_tables"] == ["sessions", "versions"]
    assert (
        cfg["databases"]["email-alert-api_production"]["sanitise"]
        == "sanitise/anonymise_email_addresses.toml"
    )
    assert any("anonymise_email_addresses.sql" in n for n in notes)


def test_job_files_without_a_push_need_env(tmp_path: Path) -> None:
    src = FIXTURES / "etc-staging" / "pull_signon_production_daily.cfg"
    shutil.copy(src, tmp_path / src.name)
    with pytest.raises(ConfigError, match="cannot tell which environment"):
        import_path(tmp_path)
    cfg, _ = _imported(tmp_path, "staging")
    assert cfg["jobs"]["pull_signon_production_daily"]["environment"] == "staging"


def test_a_job_file_that_restores_its_own_bucket_is_listed(tmp_path: Path) -> None:
    (tmp_path / "pull_self.cfg").write_text(
        'action="pull"\ndbms="mysql"\nstoragebackend="s3"\ndatabase="signon_production"\n'
        'database_hostname="signon-mysql"\nurl="govuk-integration-database-backups"\npath="signon-mysql"\n',
        encoding="utf-8",
    )
    cfg, notes = _imported(tmp_path, "integration")
    assert "jobs" not in cfg
    assert any("restores integration from its own bucket" in n for n in notes)


def test_not_a_source(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match="neither a directory"):
        import_path(tmp_path / "x.txt")
    with pytest.raises(ConfigError, match=r"no \.cfg job files"):
        import_path(tmp_path)


@pytest.mark.parametrize(
    ("database", "owner"),
    [
        ("publishing_api_production", "publishing_api"),
        ("draft_content_store_production", "content_store"),
        ("draft-content-store_production", "content_store"),
        ("email-alert-api_production", "email_alert_api"),
        ("ckan", "ckan"),
    ],
)
def test_default_owner_rule_of_db_backup(database: str, owner: str) -> None:
    assert default_db_owner(database) == owner


def test_cli_import_writes_the_file_and_lists_what_it_could_not_translate(tmp_path: Path) -> None:
    out = tmp_path / "dataferry.toml"
    result = CliRunner().invoke(cli, ["import", str(VALUES), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "not translated: production/shared-documentdb" in result.stderr
    assert "setting: concurrencyPolicy Forbid" in result.stderr
    parse(out.read_text(encoding="utf-8"), out)
    again = CliRunner().invoke(cli, ["import", str(VALUES), "-o", str(out)])
    assert again.exit_code == 2 and "exists" in again.stderr
    forced = CliRunner().invoke(cli, ["import", str(VALUES), "-o", str(out), "--force"])
    assert forced.exit_code == 0
    assert (tmp_path / "kubernetes" / "staging-values.yaml").is_file()
    stdout = CliRunner().invoke(cli, ["import", str(VALUES), "--env", "staging"])
    assert "not written (no -o): kubernetes/staging-values.yaml" in stdout.stderr


def test_cli_import_writes_the_generated_profiles_beside_the_config(tmp_path: Path) -> None:
    out = tmp_path / "dataferry.toml"
    result = CliRunner().invoke(cli, ["import", str(FIXTURES / "etc-staging"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    profile = tmp_path / "sanitise" / "sanitise_whitehall.toml"
    assert f"wrote {profile}" in result.stderr
    assert "sanitise_whitehall.sql" in profile.read_text(encoding="utf-8")
    stdout = CliRunner().invoke(cli, ["import", str(FIXTURES / "etc-staging")])
    assert "not written (no -o): sanitisation profiles sanitise/sanitise_whitehall.toml" in stdout.stderr


def test_cli_import_to_stdout() -> None:
    result = CliRunner().invoke(cli, ["import", str(FIXTURES / "etc-staging")])
    assert result.exit_code == 0, result.output
    assert "[jobs.pull_signon_production_daily]" in result.stdout
    assert "not translated" not in result.stdout
