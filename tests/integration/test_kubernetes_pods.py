"""What the cluster would run, run here: each "pod" is a process started with the rendered
container's argv (the Dockerfile's entrypoint + the CronJob's args) and environment (the rendered
values; each ``secretKeyRef`` filled in by the test from a Secret it holds; mount paths mapped to
local directories), with the ConfigMap's items written into its own "mount" directory and its own
spool, as Kubernetes would. No Kubernetes here: the scheduling of CronJobs is the cluster's; what
these tests prove is that the pods it would start do the work, in order, sharing state through the
store (a moto S3 bucket), refused by the lock and held by a pause from a laptop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dataferry import quickstart
from dataferry.config import load
from dataferry.jobs import state, triggers
from dataferry.jobs.state import StoreCache
from dataferry.progress import NullReporter
from dataferry.render import RenderOptions, render_kubernetes

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


def entrypoint() -> list[str]:
    """The image's ENTRYPOINT, as run here (``dataferry`` is ``python -m dataferry``)."""
    line = next(x for x in (ROOT / "Dockerfile").read_text().splitlines() if x.startswith("ENTRYPOINT"))
    program = json.loads(line.split(None, 1)[1])
    assert program == ["dataferry"]
    return [PY, "-m", "dataferry"]


@dataclass
class Pod:
    """A pod of a rendered CronJob, as a local process in its own directory."""

    cron: dict[str, Any]
    config_map: dict[str, Any]
    secrets: dict[str, str]
    home: Path

    def container(self) -> dict[str, Any]:
        containers: list[dict[str, Any]] = self.cron["spec"]["jobTemplate"]["spec"]["template"]["spec"][
            "containers"
        ]
        return containers[0]

    def prepare(self) -> tuple[list[str], dict[str, str], Path]:
        """Write the config volume (each item's key at its path), map mounts, fill secrets."""
        pod = self.cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        dirs = {"config": self.home / "config", "spool": self.home / "spool"}
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        volume = next(v for v in pod["volumes"] if v["name"] == "config")
        for item in volume["configMap"]["items"]:
            target = dirs["config"] / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(self.config_map["data"][item["key"]])
        c = self.container()
        mounts = {m["mountPath"]: str(dirs[m["name"]]) for m in c["volumeMounts"]}
        env = {
            "PATH": os.environ["PATH"],
            **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}),
        }
        for var in c["env"]:
            if "value" in var:
                value = var["value"]
                for mount, local in mounts.items():
                    value = value.replace(mount, local)
            else:
                value = self.secrets[var["valueFrom"]["secretKeyRef"]["key"]]
            env[var["name"]] = value
        return [*entrypoint(), *c["args"]], env, dirs["spool"]

    def start(self) -> subprocess.Popen[str]:
        argv, env, cwd = self.prepare()
        return subprocess.Popen(
            argv, env=env, cwd=cwd, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    def run(self) -> subprocess.CompletedProcess[str]:
        argv, env, cwd = self.prepare()
        return subprocess.run(argv, env=env, cwd=cwd, text=True, capture_output=True, timeout=180)


def objects_by_name(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects}


def test_the_rendered_pods_run_the_quickstart_chain(tmp_path: Path) -> None:
    qs = tmp_path / "quickstart"
    quickstart.run_quickstart(qs, reporter=NullReporter(), echo=lambda line: None)
    # A pod gets the signing key from its Secret, not from a file beside the config (render refuses
    # a key file: the ConfigMap must hold no secret).
    config_file = qs / "dataferry.toml"
    text = config_file.read_text(encoding="utf-8")
    key_line = f'signing_key_file = "{quickstart.SIGNING_KEY_FILE}"'
    assert key_line in text
    config_file.write_text(
        text.replace(key_line, 'signing_key_env = "DATAFERRY_SIGNING_KEY"'), encoding="utf-8"
    )
    cfg = load(config_file)
    objects = objects_by_name(render_kubernetes(cfg).objects)
    secrets = {
        quickstart.SALT_ENV: (qs / quickstart.SALT_FILE).read_text().strip(),
        "DATAFERRY_SIGNING_KEY": (qs / quickstart.SIGNING_KEY_FILE).read_text(),
    }
    config_map = objects["dataferry-config"]

    def pod(name: str) -> Pod:
        # the quickstart's directory is the mount, so its relative stores and databases are used
        p = Pod(objects[name], config_map, secrets, tmp_path / name)
        p.home.mkdir()
        (p.home / "config").symlink_to(qs)
        return p

    prod = pod("dataferry-email-alert-api-production").run()
    assert prod.returncode == 0, prod.stderr
    stores = StoreCache(load(qs / "dataferry.toml"))
    published = state.last_run(stores.for_job(quickstart.JOBS[0]), quickstart.JOBS[0])
    assert published is not None and published.status == "succeeded" and published.trigger == "schedule"
    for env, job in (("staging", quickstart.JOBS[1]), ("integration", quickstart.JOBS[2])):
        tick = pod(f"dataferry-scheduler-{env}").run()
        assert tick.returncode == 0, tick.stderr
        record = state.last_run(stores.for_job(job), job)
        assert record is not None and record.status == "succeeded", tick.stderr
        assert record.trigger == "after"
        assert record.upstream_artifact == published.published_artifact  # the chain advanced, in order
        assert record.started_at > published.finished_at  # type: ignore[operator]
        published = record
    emails, _ = quickstart.personal_data(qs / "databases" / "production" / f"{quickstart.DB}.db")
    staged, _ = quickstart.personal_data(qs / "databases" / "staging" / f"{quickstart.DB}.db")
    assert emails and not emails & staged


def shared_bucket_config(root: Path, endpoint: str, region: str, bucket: str) -> Path:
    """Production and staging in one moto bucket; SQLite databases at absolute paths (the
    "database servers" both pods reach); a slow job for the lock; a scheduled staging job the tick
    must leave to its own CronJob."""
    dbs = root / "servers"
    dbs.mkdir()
    quickstart.make_sample_database(dbs / "app-production.db", subscribers=50)
    store = f'endpoint_url = "{endpoint}", region = "{region}", access_key_id_env = "S3_KEY_ID", secret_access_key_env = "S3_SECRET"'
    text = f"""
[environments.production]
store = {{ url = "s3://{bucket}/production", {store} }}
protected = true
[environments.staging]
store = {{ url = "s3://{bucket}/staging", {store} }}

[databases.app]
engine = "sqlite"
[databases.app.environments]
production = {{ url = "sqlite:///{dbs}/app-production.db" }}
staging = {{ url = "sqlite:///{dbs}/app-staging.db" }}

[jobs.app-production]
environment = "production"
database = "app"
steps = ["backup"]
schedule = "0 3 * * *"

[jobs.app-staging]
environment = "staging"
database = "app"
steps = ["restore:production", "backup"]
after = "app-production"

[jobs.app-staging-verify]
environment = "staging"
database = "app"
steps = ["verify"]
schedule = "* * * * *"

[jobs.app-production-slow]
environment = "production"
database = "app"
steps = ["backup", "hook:{PY} -c 'import time; time.sleep(8)'"]
"""
    config = root / "laptop" / "dataferry.toml"
    config.parent.mkdir()
    config.write_text(text)
    return config


def laptop(config: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The third process: an operator's laptop with the same config, against the same bucket."""
    return subprocess.run(
        [PY, "-m", "dataferry", "--config", str(config), *args],
        env={**os.environ, **env},
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_two_pods_share_state_through_one_bucket(
    tmp_path: Path, s3_server: Any, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = shared_bucket_config(tmp_path, s3_server.endpoint_url, s3_server.region, s3_bucket)
    secret = {"S3_KEY_ID": s3_server.access_key, "S3_SECRET": s3_server.secret_key}
    objects = objects_by_name(render_kubernetes(load(config), RenderOptions()).objects)
    config_map = objects["dataferry-config"]
    for name, value in secret.items():
        monkeypatch.setenv(name, value)  # for the test's own reads of the bucket
    stores = StoreCache(load(config))

    def pod(name: str, node: str) -> Pod:
        return Pod(objects[name], config_map, secret, tmp_path / node)

    # the staging tick on node B: nothing published yet, and the due scheduled job is not its to run
    tick = pod("dataferry-scheduler-staging", "node-b").run()
    assert tick.returncode == 0, tick.stderr
    assert state.last_run(stores.get("staging"), "app-staging-verify") is None
    assert state.last_run(stores.get("staging"), "app-staging") is None

    # node A: the production CronJob's pod publishes; node B's tick then runs staging after it
    first = pod("dataferry-app-production", "node-a").run()
    assert first.returncode == 0, first.stderr
    prod = state.last_run(stores.get("production"), "app-production")
    assert prod is not None and prod.published_artifact
    tick = pod("dataferry-scheduler-staging", "node-b").run()
    assert tick.returncode == 0, tick.stderr
    staging = state.last_run(stores.get("staging"), "app-staging")
    assert staging is not None and staging.status == "succeeded", tick.stderr
    assert staging.upstream_artifact == prod.published_artifact
    assert state.last_run(stores.get("staging"), "app-staging-verify") is None
    again = pod("dataferry-scheduler-staging", "node-b").run()  # nothing new: nothing runs
    assert again.returncode == 0
    assert state.last_run(stores.get("staging"), "app-staging") == staging

    # the same job on both nodes at once: the second pod is refused by the lock in the bucket
    slow = pod("dataferry-app-production-slow", "node-a").start()
    deadline = time.monotonic() + 60
    while (
        state.read_lock(stores.get("production"), "app-production-slow", state.lock_ttl(load(config))) is None
    ):
        assert slow.poll() is None and time.monotonic() < deadline, slow.stderr.read() if slow.stderr else ""
        time.sleep(0.2)
    busy = pod("dataferry-app-production-slow", "node-b").run()
    assert busy.returncode == 6, busy.stderr
    assert "lock" in busy.stderr.lower()
    _, err = slow.communicate(timeout=120)
    assert slow.returncode == 0, err

    # a pause from a laptop holds the pods of both nodes; resume lets them run again
    paused = laptop(config, "pause", "--all", "--reason", "restore test on staging", env=secret)
    assert paused.returncode == 0, paused.stderr
    held_a = pod("dataferry-app-production", "node-a").run()
    held_b = pod("dataferry-app-staging", "node-b").run()  # as 'kubectl create job --from' would
    assert (held_a.returncode, held_b.returncode) == (5, 5), held_a.stderr + held_b.stderr
    assert "restore test on staging" in held_a.stderr
    resumed = laptop(config, "resume", "--all", env=secret)
    assert resumed.returncode == 0, resumed.stderr
    assert pod("dataferry-app-production", "node-a").run().returncode == 0


def test_a_cron_job_pod_is_the_run_of_its_schedule(tmp_path: Path) -> None:
    """The pod of a scheduled job's CronJob records its run as the schedule's latest fire, so a
    scheduler elsewhere sharing the store (here a laptop's 'scheduler --once') does not run that
    fire again; a pod of an 'after' job's CronJob (a one-off re-run) stays a manual run."""
    fire = (state.now_utc() - timedelta(minutes=3)).replace(second=0, microsecond=0)
    dbs = tmp_path / "servers"
    dbs.mkdir()
    quickstart.make_sample_database(dbs / "app-production.db", subscribers=10)
    quickstart.make_sample_database(dbs / "app-staging.db", subscribers=10)
    config = tmp_path / "laptop" / "dataferry.toml"
    config.parent.mkdir()
    config.write_text(
        f"""
[environments.production]
store = "{tmp_path}/stores/production"
protected = true
[environments.staging]
store = "{tmp_path}/stores/staging"

[databases.app]
engine = "sqlite"
[databases.app.environments]
production = {{ url = "sqlite:///{dbs}/app-production.db" }}
staging = {{ url = "sqlite:///{dbs}/app-staging.db" }}

[jobs.app-production]
environment = "production"
database = "app"
steps = ["backup"]
schedule = "{fire.minute} {fire.hour} * * *"

[jobs.app-staging]
environment = "staging"
database = "app"
steps = ["restore:production"]
after = "app-production"
"""
    )
    cfg = load(config)
    objects = objects_by_name(render_kubernetes(cfg).objects)
    cron = Pod(objects["dataferry-app-production"], objects["dataferry-config"], {}, tmp_path / "node-a")
    assert cron.container()["args"] == ["run", "app-production", "--trigger", "schedule"]
    result = cron.run()
    assert result.returncode == 0, result.stderr
    stores = StoreCache(cfg)
    record = state.last_run(stores.for_job("app-production"), "app-production")
    assert record is not None and record.status == "succeeded"
    assert record.trigger == "schedule"
    assert record.trigger_detail is not None and datetime.fromisoformat(record.trigger_detail) == fire
    assert triggers.due_fire(cfg, "app-production", stores) is None

    scheduler = laptop(config, "scheduler", "--once", env={})
    assert scheduler.returncode == 0, scheduler.stderr
    runs = list(state.iter_runs(stores.for_job("app-production"), "app-production"))
    assert [r.run_id for r in runs] == [record.run_id]  # the fire was not run again
    staged = state.last_run(stores.for_job("app-staging"), "app-staging")
    assert staged is not None and staged.trigger == "after"  # the chain still follows it

    rerun = Pod(objects["dataferry-app-staging"], objects["dataferry-config"], {}, tmp_path / "node-b")
    assert rerun.run().returncode == 0
    again = state.last_run(stores.for_job("app-staging"), "app-staging")
    assert again is not None and again.run_id != staged.run_id and again.trigger == "manual"
    refused = laptop(config, "run", "app-staging", "--trigger", "schedule", env={})
    assert refused.returncode == 2 and "has no schedule" in refused.stderr, refused.stderr
