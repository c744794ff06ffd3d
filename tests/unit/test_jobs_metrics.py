"""Metrics: GOV.UK's names and labels, dataferry's own, textfiles that parse with prometheus-client's
parser and keep earlier states, and pushes to a real Pushgateway (Debian's prometheus-pushgateway)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dataferry.config import Config, parse
from dataferry.metrics import Metrics, StepLabels, step_labels

CONFIG = """
[environments.production]
store = "stores/production"
[environments.staging]
store = "stores/staging"

[databases.publishing-api]
engine = "postgresql"
[databases.publishing-api.environments]
production = { url = "postgresql://backup@pub-db.prod:5432/publishing_api_production", password_env = "P" }
staging = { url = "postgresql://backup@pub-db.staging/publishing_api_production", password_env = "S" }

[jobs.pub-staging]
environment = "staging"
database = "publishing-api"
steps = ["restore:production", "sanitise", "hook:rewrite-hosts", "hook:reindex", "backup"]
"""

T0 = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    """A PostgreSQL job with every kind of step."""
    return parse(CONFIG, tmp_path / "dataferry.toml")


def samples(path: Path) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of a textfile, through prometheus-client's own parser."""
    text = path.read_text()
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def test_step_labels_are_govuks(cfg: Config) -> None:
    labels = [step_labels(cfg, "pub-staging", i).as_dict() for i in range(1, 6)]
    assert [lab["operation"] for lab in labels] == ["restore", "transform", "hook", "hook-4", "backup"]
    assert labels[0] == {
        "database_engine": "postgresql",
        "database_instance": "pub-db.staging",
        "database_db_name": "publishing_api_production",
        "operation": "restore",
    }


def test_a_failed_run_keeps_the_last_success_time(tmp_path: Path, cfg: Config) -> None:
    metrics = Metrics(tmp_path / "prom")
    labels = step_labels(cfg, "pub-staging", 1)
    metrics.step(labels, "pub-staging-1", "started", started_at=T0)
    metrics.step(
        labels, "pub-staging-1", "succeeded", started_at=T0, finished_at=T0 + timedelta(minutes=5), size=123
    )
    t1 = T0 + timedelta(days=1)
    metrics.step(labels, "pub-staging-1", "started", started_at=t1)
    metrics.step(labels, "pub-staging-1", "failed", started_at=t1, finished_at=t1 + timedelta(minutes=1))
    got = samples(tmp_path / "prom" / "dataferry-step-pub-staging-1.prom")
    values = {(name, lab.get("state")): v for name, lab, v in got}
    assert values[("db_backup_job_state", None)] == 0
    assert (
        values[("db_backup_job_status_timestamp_seconds", "succeeded")]
        == (T0 + timedelta(minutes=5)).timestamp()
    )
    assert (
        values[("db_backup_job_status_timestamp_seconds", "failed")]
        == (t1 + timedelta(minutes=1)).timestamp()
    )
    assert values[("db_backup_job_status_timestamp_seconds", "started")] == t1.timestamp()
    assert values[("db_backup_job_duration_seconds", None)] == 60
    assert values[("db_backup_job_file_size_bytes", None)] == 123  # from the last run that had a size
    assert {name for name, _, _ in got} == {
        "db_backup_job_state",
        "db_backup_job_status_timestamp_seconds",
        "db_backup_job_duration_seconds",
        "db_backup_job_file_size_bytes",
    }


def test_job_and_freshness_metrics(tmp_path: Path) -> None:
    metrics = Metrics(tmp_path / "prom")
    metrics.job(
        "pub-staging", "staging", "publishing-api", "succeeded", ended_at=T0, duration=42.0, held=False
    )
    metrics.job(
        "pub-staging",
        "staging",
        "publishing-api",
        "skipped",
        ended_at=T0 + timedelta(1),
        duration=None,
        held=True,
    )
    got = samples(tmp_path / "prom" / "dataferry-job-pub-staging.prom")
    by = {(n, lab.get("status")): (lab, v) for n, lab, v in got}
    assert by[("dataferry_job_state", None)][1] == 3
    assert by[("dataferry_job_held", None)][1] == 1
    assert by[("dataferry_job_last_run_timestamp_seconds", "succeeded")][1] == T0.timestamp()
    assert by[("dataferry_job_duration_seconds", None)][1] == 42.0
    assert by[("dataferry_job_state", None)][0] == {
        "job_name": "pub-staging",
        "environment": "staging",
        "database": "publishing-api",
    }
    metrics.freshness("staging", "publishing-api", live=T0, artifact=None)
    metrics.freshness("staging", "publishing-api", live=None, artifact=T0 + timedelta(hours=1))
    fresh = {
        lab["kind"]: v
        for _, lab, v in samples(tmp_path / "prom" / "dataferry-data-staging-publishing-api.prom")
    }
    assert fresh == {"live": T0.timestamp(), "artifact": (T0 + timedelta(hours=1)).timestamp()}


def test_metrics_go_nowhere_unless_configured(tmp_path: Path, cfg: Config) -> None:
    metrics = Metrics.from_config(cfg)
    assert not metrics.enabled
    metrics.step(step_labels(cfg, "pub-staging", 1), "x", "started", started_at=T0)
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_textfile_directory_warns_and_does_not_raise(tmp_path: Path, cfg: Config) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    warnings: list[str] = []

    class Collect:
        def info(self, message: str, **fields: object) -> None:
            pass

        def warn(self, message: str, **fields: object) -> None:
            warnings.append(message)

        def transfer(self, label: str, total: int | None) -> object:
            raise AssertionError

    Metrics(blocker / "prom", reporter=Collect()).step(  # type: ignore[arg-type]
        step_labels(cfg, "pub-staging", 1), "x", "started", started_at=T0
    )
    assert warnings and "cannot write metrics" in warnings[0]


# -- a real Pushgateway ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[str]:
    """Debian's prometheus-pushgateway on a free loopback port."""
    binary = shutil.which("prometheus-pushgateway") or "/usr/bin/prometheus-pushgateway"
    if not Path(binary).exists():
        pytest.skip(
            "prometheus-pushgateway is not installed (Debian: apt-get install prometheus-pushgateway)"
        )
    port = _free_port()
    proc = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.integration
def test_pushes_use_govuks_grouping_key(pushgateway: str, cfg: Config) -> None:
    metrics = Metrics(pushgateway_url=pushgateway)
    labels: StepLabels = step_labels(cfg, "pub-staging", 1)
    metrics.step(labels, "x", "started", started_at=T0)
    metrics.step(labels, "x", "succeeded", started_at=T0, finished_at=T0 + timedelta(seconds=30), size=99)
    metrics.job(
        "pub-staging", "staging", "publishing-api", "succeeded", ended_at=T0, duration=30.0, held=False
    )
    with urllib.request.urlopen(f"{pushgateway}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    got = [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]
    base = {"job": "db-backup", "instance": "", **labels.as_dict()}
    state = [(lab, v) for n, lab, v in got if n == "db_backup_job_state"]
    assert state == [(base, 2.0)]
    stamps = {lab["state"]: v for n, lab, v in got if n == "db_backup_job_status_timestamp_seconds"}
    assert stamps == {"started": T0.timestamp(), "succeeded": (T0 + timedelta(seconds=30)).timestamp()}
    assert [v for n, _, v in got if n == "db_backup_job_file_size_bytes"] == [99.0]
    ours = [lab for n, lab, _ in got if n == "dataferry_job_state"]
    assert ours and ours[0]["job"] == "dataferry" and ours[0]["job_name"] == "pub-staging"
