"""The whole chain, production -> staging -> integration, triggered by ``after`` and not by clocks:
the real ``dataferry`` command, real databases (SQLite, PostgreSQL) and real stores (local
directories, S3 through moto's server). Only ``dataferry run <production job>`` and
``dataferry scheduler --once`` are called; everything downstream happens because an upstream job
published a new artifact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dataferry import artifacts
from dataferry.config import load
from dataferry.jobs import state
from dataferry.jobs.state import RunRecord, StoreCache
from dataferry.quickstart import PROFILE, SALT_ENV, make_sample_database, personal_data
from servers import PgServer, S3Server
from signing_keys import signed_config

pytestmark = pytest.mark.integration

PY = sys.executable
SALT = "chain-test-salt-0123456789abcdef"
DB = "email-alert-api"


def dataferry(
    config: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real command line."""
    return subprocess.run(
        [PY, "-m", "dataferry", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=config.parent,
        env={**os.environ, **(env or {})},
    )


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """Exit 0 and no traceback."""
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def runs(config: Path, job: str) -> list[RunRecord]:
    """Run records of ``job``, newest first."""
    cfg = load(config)
    return list(state.iter_runs(StoreCache(cfg).for_job(job), job))


def stores_toml(
    kind: str, request: pytest.FixtureRequest | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """Store settings per environment, and the environment variables they need."""
    envs = ("production", "staging", "integration")
    if kind == "local" or request is None:
        return {e: f'store = "stores/{e}"' for e in envs}, {}
    s3: S3Server = request.getfixturevalue("s3_server")
    bucket = request.getfixturevalue("s3_bucket")
    opts = f'endpoint_url = "{s3.endpoint_url}", region = "{s3.region}"'
    return {e: f'store = {{ url = "s3://{bucket}/{e}", {opts} }}' for e in envs}, s3.env()


def chain_config(
    root: Path, stores: dict[str, str], urls: dict[str, str], engine: str, profile: str, extra_db: str = ""
) -> Path:
    """Three environments, one database, three jobs chained by ``after``; no schedules at all."""
    (root / "profile.toml").write_text(profile)
    lines = [
        f"[environments.production]\n{stores['production']}\nprotected = true",
        f"[environments.staging]\n{stores['staging']}\nrequires_sanitised = true",
        f"[environments.integration]\n{stores['integration']}\nrequires_sanitised = true",
        f'[databases.{DB}]\nengine = "{engine}"\nsanitise = "profile.toml"\n{extra_db}',
        f"[databases.{DB}.environments]",
        *(f"{env} = {url}" for env, url in urls.items()),
        f'[jobs.prod]\nenvironment = "production"\ndatabase = "{DB}"\nsteps = ["backup"]',
        f'[jobs.stage]\nenvironment = "staging"\ndatabase = "{DB}"\n'
        'steps = ["restore:production", "sanitise", "backup"]\nafter = "prod"\nmax_age = "26h"',
        f'[jobs.integ]\nenvironment = "integration"\ndatabase = "{DB}"\n'
        'steps = ["restore:staging"]\nafter = "stage"\nmax_age = "8d"',
    ]
    config = root / "dataferry.toml"
    config.write_text(signed_config("\n\n".join(lines) + "\n", root))
    return config


def assert_chain(config: Path, env: dict[str, str]) -> tuple[RunRecord, RunRecord, RunRecord]:
    """Production by hand, the rest by ``after``; each job consumed exactly its upstream's artifact."""
    ok(dataferry(config, "run", "prod", env=env))
    assert runs(config, "stage") == [] and runs(config, "integ") == []  # nothing ran on a clock
    sched = ok(dataferry(config, "scheduler", "--once", env=env))
    assert "started job stage (after" in sched.stderr and "started job integ (after" in sched.stderr
    (prod,) = runs(config, "prod")
    (stage,) = runs(config, "stage")
    (integ,) = runs(config, "integ")
    assert stage.status == integ.status == "succeeded"
    assert stage.trigger == integ.trigger == "after"
    assert stage.upstream_artifact == stage.restored_artifact == prod.published_artifact
    assert integ.upstream_artifact == integ.restored_artifact == stage.published_artifact
    assert stage.finished_at is not None and integ.started_at > stage.finished_at  # ordered by data
    assert [s.status for s in stage.steps] == ["succeeded", "succeeded", "succeeded"]
    assert integ.data_as_of is not None and stage.data_as_of == integ.data_as_of  # production's time
    # nothing is pending any more: a second pass runs nothing
    again = ok(dataferry(config, "scheduler", "--once", env=env))
    assert "started job" not in again.stderr
    assert len(runs(config, "stage")) == len(runs(config, "integ")) == 1
    return prod, stage, integ


@pytest.mark.parametrize("store_kind", ["local", "s3"])
def test_sqlite_chain_by_after_and_no_personal_data_downstream(
    tmp_path: Path, store_kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    stores, env = stores_toml(store_kind, request)
    env[SALT_ENV] = SALT
    for name, value in env.items():  # this test reads the stores too
        monkeypatch.setenv(name, value)
    dbs = {e: tmp_path / "db" / e / f"{DB}.db" for e in ("production", "staging", "integration")}
    for path in dbs.values():
        path.parent.mkdir(parents=True)
    make_sample_database(dbs["production"], subscribers=60)
    urls = {e: f'{{ url = "sqlite:///db/{e}/{DB}.db" }}' for e in dbs}
    config = chain_config(tmp_path, stores, urls, "sqlite", PROFILE)
    _, stage, integ = assert_chain(config, env)

    prod_emails, prod_phones = personal_data(dbs["production"])
    assert len(prod_emails) == 60 and len(prod_phones) == 60
    for name in ("staging", "integration"):
        emails, phones = personal_data(dbs[name])
        assert emails and not emails & prod_emails and not phones & prod_phones
        assert all(e.endswith("@example.com") for e in emails)
    cfg = load(config)
    published = artifacts.latest(StoreCache(cfg).get("staging"), DB)
    assert published.id == stage.published_artifact and published.is_publishable_sanitised()
    status = json.loads(ok(dataferry(config, "status", "--json", env=env)).stdout)
    integration = next(e for e in status["environments"] if e["name"] == "integration")
    live = integration["databases"][0]["live_data"]
    assert live["artifact"] == integ.restored_artifact and live["age_seconds"] < 600


def test_a_failed_sanitisation_stops_the_chain_and_publishes_nothing(tmp_path: Path) -> None:
    stores, env = stores_toml("local")
    env[SALT_ENV] = SALT
    dbs = {e: tmp_path / "db" / e / f"{DB}.db" for e in ("production", "staging", "integration")}
    for path in dbs.values():
        path.parent.mkdir(parents=True)
    make_sample_database(dbs["production"], subscribers=30)
    urls = {e: f'{{ url = "sqlite:///db/{e}/{DB}.db" }}' for e in dbs}
    # a check that can never pass: the gate must stop the run before the swap
    broken = PROFILE + '\n[[checks]]\nname = "impossible"\nsql = "SELECT id FROM subscribers"\n'
    config = chain_config(tmp_path, stores, urls, "sqlite", broken)
    ok(dataferry(config, "run", "prod", env=env))
    sched = dataferry(config, "scheduler", "--once", env=env)
    assert sched.returncode == 1 and "job stage failed with exit code 8" in sched.stderr
    (stage,) = runs(config, "stage")
    assert stage.status == "failed" and stage.error is not None and stage.error.exit_code == 8
    assert [s.status for s in stage.steps] == ["failed", "failed", "skipped"]
    assert not dbs["staging"].exists()  # never swapped in
    assert [p.name for p in dbs["staging"].parent.iterdir()] == []  # and the shadow is gone
    assert runs(config, "integ") == []  # nothing was published, so nothing downstream ran
    assert list(StoreCache(load(config)).get("staging").list(f"{DB}/")) == []
    history = ok(dataferry(config, "history", "stage", env=env))
    assert "impossible" in history.stdout


def _pg_email_alert_api_seed(now: datetime) -> str:
    rows = [
        "INSERT INTO subscriber_lists (id, title, slug, created_at, updated_at) VALUES "
        f"(1, 'Tax', 'tax', '{now}', '{now}');"
    ]
    for i in range(1, 16):
        address = f"person{i}.smith@gmail.com"
        rows.append(
            "INSERT INTO subscribers (id, address, created_at, updated_at) "
            f"VALUES ({i}, '{address}', '{now}', '{now}');"
        )
        rows.append(
            "INSERT INTO subscriptions (id, subscriber_id, subscriber_list_id, created_at) "
            f"VALUES ({i}, {i}, 1, '{now}');"
        )
        rows.append(
            "INSERT INTO emails (id, address, subject, body, subscriber_id, created_at) VALUES "
            f"('{uuid.UUID(int=i)}', '{address}', 'Update for {address}', "
            f"'This email was sent to {address}', {i}, '{now - timedelta(hours=2)}');"
        )
    rows.append(f"INSERT INTO auth_tokens (address, token, created_at) VALUES ('x@gmail.com', 't', '{now}');")
    return "\n".join(rows)


def test_postgresql_chain_by_after(tmp_path: Path, pg_server: PgServer) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples" / "email-alert-api"
    names = {e: f"chain_{e}_{uuid.uuid4().hex[:8]}" for e in ("production", "staging", "integration")}
    for name in names.values():
        pg_server.create_db(name)
    query: Callable[[str, str], str] = lambda sql, env: pg_server.psql(sql, names[env])  # noqa: E731
    try:
        query(examples.joinpath("schema.sql").read_text(), "production")
        now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        query(_pg_email_alert_api_seed(now), "production")
        env = {"CHAIN_PG_PASSWORD": pg_server.password, "EMAIL_ALERT_API_SANITISE_SALT": SALT}
        urls = {
            e: f'{{ url = "{pg_server.dsn(n)}", password_env = "CHAIN_PG_PASSWORD" }}'
            for e, n in names.items()
        }
        stores = {e: f'store = "stores/{e}"' for e in names}
        config = chain_config(
            tmp_path, stores, urls, "postgresql", examples.joinpath("sanitise.toml").read_text()
        )
        assert_chain(config, env)
        for e in ("staging", "integration"):
            addresses = query("SELECT string_agg(address, ',') FROM subscribers", e)
            assert "gmail.com" not in addresses and addresses.count("@example.com") == 15
            assert query("SELECT count(*) FROM auth_tokens", e).strip() == "0"
        assert "gmail.com" in query("SELECT string_agg(address, ',') FROM subscribers", "production")
    finally:
        for name in names.values():
            pg_server.drop_db(name)
