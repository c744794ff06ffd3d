"""``dataferry serve`` over two kinds of store at once, production on S3 (moto) and staging on a
local directory, while a run of the staging job is in progress: the page reflects the run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from dataferry.config import Config, load
from dataferry.jobs.common import StoreCache, now_utc
from dataferry.jobs.locks import JobLock
from dataferry.jobs.runner import run_job
from dataferry.jobs.runs import RunRecord, StepRecord, new_run_id, write_run
from dataferry.progress import NullReporter
from dataferry.quickstart import make_sample_database
from serve_site import call, serving
from servers import S3Server

DB = "subscriptions"


@pytest.fixture
def cfg(tmp_path: Path, s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> Config:
    """Production (S3) backed up once, staging (local) restored from it once."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    make_sample_database(tmp_path / "prod.db", subscribers=50)
    path = tmp_path / "dataferry.toml"
    path.write_text(
        f"""
[environments.production]
store = {{ url = "s3://{s3_bucket}/production", endpoint_url = "{s3_server.endpoint_url}", region = "{s3_server.region}", access_key_id_env = "AWS_ACCESS_KEY_ID", secret_access_key_env = "AWS_SECRET_ACCESS_KEY" }}
protected = true

[environments.staging]
store = "stores/staging"

[databases.{DB}]
engine = "sqlite"
[databases.{DB}.environments]
production = {{ url = "sqlite:///prod.db" }}
staging = {{ url = "sqlite:///staging.db" }}

[jobs.{DB}-production]
environment = "production"
database = "{DB}"
steps = ["backup"]
schedule = "0 2 * * *"

[jobs.{DB}-staging]
environment = "staging"
database = "{DB}"
steps = ["restore:production", "backup"]
after = "{DB}-production"
max_age = "26h"
""",
        encoding="utf-8",
    )
    config = load(path)
    for job in (f"{DB}-production", f"{DB}-staging"):
        run_job(config, job, reporter=NullReporter())
    return config


@pytest.fixture
def running(cfg: Config) -> Iterator[RunRecord]:
    """A run of the staging job in progress: its lock held (with its heartbeat) and its record."""
    job = f"{DB}-staging"
    store = StoreCache(cfg).for_job(job)
    record = RunRecord(
        job=job,
        run_id=new_run_id(),
        environment="staging",
        database=DB,
        started_at=now_utc() - timedelta(seconds=5),
        steps=[StepRecord(index=1, step="restore:production", status="running", started_at=now_utc())],
    )
    with JobLock(store, job, ttl=timedelta(minutes=1), run_id=record.run_id):
        write_run(store, record)
        yield record


def test_two_stores_and_a_run_in_progress(cfg: Config, running: RunRecord) -> None:
    with serving(cfg) as site:
        matrix = call(f"{site}/api/matrix").json()
        cells = {c["environment"]: c for c in matrix["cells"]}
        assert matrix["unreadable"] == {}
        assert cells["production"]["state"] == "fresh"  # read from the bucket
        assert cells["production"]["artifact_age_seconds"] < 600
        assert cells["staging"]["state"] == "running"
        assert cells["staging"]["running"] == [f"{DB}-staging"]
        assert cells["staging"]["live_age_seconds"] < 600  # the run before this one restored it

        status = call(f"{site}/api/status").json()
        stores = {e["name"]: e["store"] for e in status["environments"]}
        assert stores["production"].startswith("s3://") and not stores["staging"].startswith("s3://")

        job = call(f"{site}/api/jobs/{DB}-staging").json()
        assert job["runs"][0]["run_id"] == running.run_id and job["runs"][0]["status"] == "running"
        assert job["status"]["running"]["run_id"] == running.run_id

        html = call(f"{site}/").body
        assert f'class="cell running" data-env="staging" data-db="{DB}"' in html
        assert f"running: run {running.run_id}" in html
        page = call(f"{site}/jobs/{DB}-staging").body
        assert "running now: run " + running.run_id in page
        assert f'dataferry_job_state{{job_name="{DB}-staging"}} 1.0' in call(f"{site}/metrics").body
        database = call(f"{site}/api/databases/{DB}").json()
        assert [len(e["artifacts"]) for e in database["environments"]] == [1, 1]


def test_pause_and_resume_write_the_hold_into_the_bucket(
    cfg: Config, s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATAFERRY_SERVE_TOKEN", "t0ken")
    auth = {"Authorization": "Bearer t0ken", "Content-Type": "application/json"}
    body = json.dumps(
        {"scope": "job", "target": f"{DB}-production", "reason": "bucket migration", "by": "ann"}
    )
    with serving(cfg) as site:
        assert call(f"{site}/api/pause", method="POST", data=body.encode(), headers=auth).status == 200
        keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]]
        assert f"production/_dataferry/holds/job/{DB}-production.json" in keys
        cells = {c["environment"]: c["state"] for c in call(f"{site}/api/matrix").json()["cells"]}
        assert cells == {"production": "held", "staging": "fresh"}
        resume = json.dumps({"scope": "job", "target": f"{DB}-production"}).encode()
        assert call(f"{site}/api/resume", method="POST", data=resume, headers=auth).json() == {
            "done": f"resumed job {DB}-production"
        }
        assert call(f"{site}/api/holds").json() == []


def test_an_unreadable_store_is_shown_and_does_not_hide_the_others(
    cfg: Config, s3_server: S3Server, tmp_path: Path
) -> None:
    """A store that answers with an error (here a bucket that does not exist) is reported on the
    page; the other environments are shown as usual. (A store that does not answer at all makes
    every page wait for the S3 client's retries, as ``dataferry status`` does.)"""
    assert cfg.path is not None
    lab = f'store = {{ url = "s3://no-such-bucket-{tmp_path.name.lower()}/x", endpoint_url = "{s3_server.endpoint_url}", region = "{s3_server.region}" }}'
    text = cfg.path.read_text(encoding="utf-8").replace(
        "[environments.staging]", f"[environments.lab]\n{lab}\n\n[environments.staging]"
    )
    cfg.path.write_text(text, encoding="utf-8")
    with serving(load(cfg.path)) as site:
        matrix = call(f"{site}/api/matrix").json()
        assert list(matrix["unreadable"]) == ["lab"]
        cells = {c["environment"]: c["state"] for c in matrix["cells"]}
        assert cells == {"production": "fresh", "staging": "fresh"}
        assert "the store of lab could not be read" in call(site + "/").body
        assert call(f"{site}/metrics").status == 200
