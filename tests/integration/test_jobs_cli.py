"""The job commands as an operator uses them: real ``dataferry`` processes, real SQLite databases
and real local directory stores. Each test tries to break one promise: no overlapping runs, no
stale data, holds that hold, runs that resume, stops that leave the live database as it was."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dataferry import artifacts
from dataferry.config import load
from dataferry.errors import LockBusy
from dataferry.jobs import state
from dataferry.jobs.state import JobLock, RunRecord, StoreCache
from dataferry.stores.local import LocalStore

pytestmark = pytest.mark.integration

PY = sys.executable

WAIT_FOR_GO = "import os, time\nwhile not os.path.exists('go'):\n    time.sleep(0.05)\n"
FAIL_UNLESS_FIXED = "import os, sys\nsys.exit(0 if os.path.exists('fixed') else 3)\n"


def write_project(
    root: Path,
    *,
    stage_steps: str = '["restore:production", "backup"]',
    stage_extra: str = "",
    ttl: str = "10m",
) -> Path:
    """A production -> staging -> integration chain on SQLite and local stores; returns the config."""
    for env in ("production", "staging", "integration"):
        (root / "db" / env).mkdir(parents=True, exist_ok=True)
    (root / "wait_for_go.py").write_text(WAIT_FOR_GO)
    (root / "fail_unless_fixed.py").write_text(FAIL_UNLESS_FIXED)
    config = root / "dataferry.toml"
    config.write_text(
        f"""
[settings]
lock_ttl = "{ttl}"
metrics_textfile_dir = "metrics"

[environments.production]
store = "stores/production"
protected = true
[environments.staging]
store = "stores/staging"
[environments.integration]
store = "stores/integration"

[databases.app]
engine = "sqlite"
[databases.app.environments]
production = {{ url = "sqlite:///db/production/app.db" }}
staging = {{ url = "sqlite:///db/staging/app.db" }}
integration = {{ url = "sqlite:///db/integration/app.db" }}

[jobs.prod]
environment = "production"
database = "app"
steps = ["backup"]

[jobs.stage]
environment = "staging"
database = "app"
steps = {stage_steps}
after = "prod"
{stage_extra}

[jobs.integ]
environment = "integration"
database = "app"
steps = ["restore:staging"]
after = "stage"
"""
    )
    set_rows(root / "db" / "production" / "app.db", "v1", 20)
    return config


def set_rows(path: Path, version: str, n: int) -> None:
    """(Re)fill the sample table with ``n`` rows tagged ``version``."""
    con = sqlite3.connect(path)
    with con:
        con.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, version TEXT, body TEXT)")
        con.execute("DELETE FROM items")
        con.executemany(
            "INSERT INTO items (version, body) VALUES (?, ?)", [(version, f"row {i} " * 20) for i in range(n)]
        )
    con.close()


def versions(path: Path) -> set[str]:
    """The versions present in a database's sample table."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {r[0] for r in con.execute("SELECT DISTINCT version FROM items")}
    finally:
        con.close()


def sha(path: Path) -> str:
    """Checksum of a database file (the live database must not change by a byte)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dataferry(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real command line."""
    return subprocess.run(
        [PY, "-m", "dataferry", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=config.parent,
    )


def spawn(config: Path, *args: str) -> subprocess.Popen[str]:
    """Start the command line in its own process group (so a test can kill all it started)."""
    return subprocess.Popen(
        [PY, "-m", "dataferry", "--config", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=config.parent,
        start_new_session=True,
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    """Poll until ``predicate`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def runs(config: Path, job: str) -> list[RunRecord]:
    """Run records of ``job``, newest first, read straight from the store."""
    cfg = load(config)
    return list(state.iter_runs(StoreCache(cfg).for_job(job), job))


def stage_store(config: Path) -> LocalStore:
    """Staging's store."""
    return LocalStore(config.parent / "stores" / "staging")


@pytest.fixture
def cleanup_groups() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes (and their process groups) to kill at the end whatever happened."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def _hook_running(config: Path) -> bool:
    records = runs(config, "stage")
    return bool(records) and any(s.kind == "hook" and s.status == "running" for s in records[0].steps)


def test_two_concurrent_runs_of_one_job_one_gets_lock_busy(
    tmp_path: Path, cleanup_groups: list[subprocess.Popen[str]]
) -> None:
    config = write_project(
        tmp_path, stage_steps=f'["restore:production", "hook:{PY} wait_for_go.py", "backup"]'
    )
    assert dataferry(config, "run", "prod").returncode == 0
    first = spawn(config, "run", "stage")
    cleanup_groups.append(first)
    wait_for(lambda: _hook_running(config), what="the first run to reach its hook")
    second = dataferry(config, "run", "stage")
    assert second.returncode == LockBusy.exit_code == 6, second.stderr
    assert "already running" in second.stderr and "hint:" in second.stderr
    (tmp_path / "go").touch()
    _out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    records = runs(config, "stage")
    assert [r.status for r in records] == ["succeeded"]  # the refused run left no record
    assert state.read_lock(stage_store(config), "stage", timedelta(minutes=10)) is None


def test_a_killed_run_leaves_a_lock_that_expires_and_is_taken_over(
    tmp_path: Path, cleanup_groups: list[subprocess.Popen[str]]
) -> None:
    config = write_project(
        tmp_path, ttl="5s", stage_steps=f'["restore:production", "hook:{PY} wait_for_go.py", "backup"]'
    )
    assert dataferry(config, "run", "prod").returncode == 0
    victim = spawn(config, "run", "stage")
    cleanup_groups.append(victim)
    wait_for(lambda: _hook_running(config), what="the run to reach its hook")
    victim_run = runs(config, "stage")[0].run_id
    os.kill(victim.pid, signal.SIGKILL)  # the dataferry process only, as the OOM killer would
    victim.wait()
    store = stage_store(config)
    lock = state.read_lock(store, "stage", timedelta(seconds=5))
    assert lock is not None and lock.run_id == victim_run and lock.pid == victim.pid
    with pytest.raises(LockBusy):  # still valid: nobody may run yet
        JobLock(store, "stage", ttl=timedelta(seconds=5)).acquire()
    wait_for(lambda: lock.expired(), timeout=15, what="the lock to expire")
    (tmp_path / "go").touch()
    rerun = dataferry(config, "run", "stage")
    assert rerun.returncode == 0, rerun.stderr
    assert "took over the expired lock" in rerun.stderr
    new, dead = runs(config, "stage")[:2]
    assert new.status == "succeeded" and new.lock_takeover is not None
    assert new.lock_takeover["run_id"] == victim_run
    assert dead.run_id == victim_run and dead.status == "abandoned"
    assert dead.error is not None and "took it over" in dead.error.message
    history = dataferry(config, "history", "stage")
    assert "abandoned" in history.stdout and "took over the expired lock" in history.stdout
    assert state.read_lock(store, "stage", timedelta(seconds=5)) is None


def test_a_held_job_is_skipped_and_runs_when_the_hold_expires(tmp_path: Path) -> None:
    config = write_project(tmp_path)
    assert dataferry(config, "run", "prod").returncode == 0
    until = datetime.now(UTC) + timedelta(seconds=20)  # long enough for the slow CLI calls below
    paused = dataferry(
        config, "pause", "stage", "--reason", "pen test until Friday", "--until", until.isoformat()
    )
    assert paused.returncode == 0, paused.stderr
    held = dataferry(config, "run", "stage")
    assert held.returncode == 5, held.stderr
    assert "pen test until Friday" in held.stderr and "dataferry resume stage" in held.stderr
    skipped = runs(config, "stage")[0]
    assert skipped.status == "skipped" and skipped.skip_reason and "pen test" in skipped.skip_reason
    assert not (tmp_path / "db" / "staging" / "app.db").exists()  # nothing was restored
    # the scheduler leaves it alone too (and records the skip once, not on every pass)
    sched = dataferry(config, "scheduler", "--once")
    assert sched.returncode == 0, sched.stderr
    assert [r.status for r in runs(config, "stage")] == ["skipped", "skipped"]
    assert runs(config, "integ") == []
    status = json.loads(dataferry(config, "status", "--json").stdout)
    stage = next(e for e in status["environments"] if e["name"] == "staging")
    assert stage["databases"][0]["jobs"][0]["holds"][0]["reason"] == "pen test until Friday"
    time.sleep(max((until - datetime.now(UTC)).total_seconds(), 0) + 0.2)  # it expires by itself
    sched = dataferry(config, "scheduler", "--once")
    assert sched.returncode == 0, sched.stderr
    assert runs(config, "stage")[0].status == "succeeded"
    assert runs(config, "integ")[0].status == "succeeded"
    assert versions(tmp_path / "db" / "integration" / "app.db") == {"v1"}


def test_pause_and_resume_an_environment_and_everything(tmp_path: Path) -> None:
    config = write_project(tmp_path)
    assert dataferry(config, "pause", "--env", "production", "--reason", "maintenance").returncode == 0
    assert dataferry(config, "run", "prod").returncode == 5
    assert dataferry(config, "resume", "--env", "production").returncode == 0
    assert dataferry(config, "pause", "--all", "--reason", "cross-government test").returncode == 0
    held = dataferry(config, "run", "prod")
    assert held.returncode == 5 and "everything is held" in held.stderr
    status = dataferry(config, "status")
    assert "HELD: everything is held" in status.stdout and "cross-government test" in status.stdout
    # held twice over: the hint names every resume it takes, not only the first hold's
    assert dataferry(config, "pause", "prod", "--reason", "pen test").returncode == 0
    twice = dataferry(config, "run", "prod")
    assert twice.returncode == 5
    assert "'dataferry resume prod' and 'dataferry resume --all' lift the holds" in twice.stderr, twice.stderr
    assert dataferry(config, "resume", "prod").returncode == 0
    resumed = dataferry(config, "resume", "--all")
    assert resumed.returncode == 0 and "resumed everything" in resumed.stdout
    assert dataferry(config, "run", "prod").returncode == 0
    both = dataferry(config, "pause", "stage", "--env", "staging", "--reason", "x")
    assert both.returncode == 2 and "exactly one" in both.stderr
    past = dataferry(config, "pause", "stage", "--reason", "x", "--until", "2020-01-01T00:00:00Z")
    assert past.returncode == 2 and "in the past" in past.stderr


def test_from_step_resumes_after_a_failed_step(tmp_path: Path) -> None:
    config = write_project(
        tmp_path, stage_steps=f'["restore:production", "hook:{PY} fail_unless_fixed.py", "backup"]'
    )
    assert dataferry(config, "run", "prod").returncode == 0
    failed = dataferry(config, "run", "stage")
    assert failed.returncode == 1 and "--from-step 2" in failed.stderr
    record = runs(config, "stage")[0]
    assert record.status == "failed"
    assert [s.status for s in record.steps] == ["succeeded", "failed", "skipped"]
    assert record.steps[1].detail == "exit 3" and record.published_artifact is None
    live = tmp_path / "db" / "staging" / "app.db"
    restored_once = sha(live)
    set_rows(tmp_path / "db" / "production" / "app.db", "v2", 5)  # production moved on meanwhile
    assert dataferry(config, "run", "prod").returncode == 0
    (tmp_path / "fixed").touch()
    resumed = dataferry(config, "run", "stage", "--from-step", "2")
    assert resumed.returncode == 0, resumed.stderr
    record = runs(config, "stage")[0]
    assert [s.status for s in record.steps] == ["skipped", "succeeded", "succeeded"]
    assert record.from_step == 2 and record.published_artifact
    assert sha(live) == restored_once  # step 1 (the restore) did not run again
    published = artifacts.latest(stage_store(config), "app")
    assert published.id == record.published_artifact
    assert published.row_counts == {"items": 20}  # the v1 data that step 1 restored
    bad = dataferry(config, "run", "stage", "--from-step", "9")
    assert bad.returncode == 2 and "out of range" in bad.stderr


def test_a_stale_artifact_is_refused_and_the_live_database_kept(tmp_path: Path) -> None:
    config = write_project(tmp_path, stage_extra='max_age = "26h"')
    assert dataferry(config, "run", "prod").returncode == 0
    assert dataferry(config, "run", "stage").returncode == 0
    live = tmp_path / "db" / "staging" / "app.db"
    before = sha(live)
    set_rows(tmp_path / "db" / "production" / "app.db", "v2", 5)
    assert dataferry(config, "run", "prod").returncode == 0
    # the newest production artifact is now two days old (its upstream backups "stopped")
    prod_store = LocalStore(tmp_path / "stores" / "production")
    newest = artifacts.latest(prod_store, "app")
    old = newest.model_copy(update={"finished_at": datetime.now(UTC) - timedelta(days=2)})
    artifacts.write_manifest(prod_store, old)
    refused = dataferry(config, "run", "stage")
    assert refused.returncode == 7, refused.stderr
    assert "over the limit of 1d 2h" in refused.stderr and "hint:" in refused.stderr
    record = runs(config, "stage")[0]
    assert record.status == "failed" and record.error is not None and record.error.exit_code == 7
    assert record.steps[0].attempts == 1  # not transient: not retried
    assert sha(live) == before and versions(live) == {"v1"}
    dry = dataferry(config, "run", "stage", "--dry-run")
    assert dry.returncode == 7  # the dry run makes the same checks


def test_dry_run_shows_the_plan_and_touches_nothing(tmp_path: Path) -> None:
    config = write_project(
        tmp_path, stage_steps='["restore:production", "hook:echo rewrite-hosts", "backup"]'
    )
    assert dataferry(config, "run", "prod").returncode == 0
    stores = tmp_path / "stores"
    before = sorted(str(p) for p in stores.rglob("*"))
    dry = dataferry(config, "run", "stage", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    newest = artifacts.latest(LocalStore(stores / "production"), "app")
    assert f"would restore {newest.id}" in dry.stdout
    # size in IEC units, age in seconds (it read "123456 bytes, finished 0.0h ago")
    assert re.search(
        rf"would restore {newest.id} \(\d+(\.\d)? (B|KiB|MiB), finished \d+(\.\d)?s ago", dry.stdout
    )
    assert "db/staging/app.db" in dry.stdout and "shadow" in dry.stdout
    assert "would run ['echo', 'rewrite-hosts']" in dry.stdout
    assert "would back up app (staging)" in dry.stdout
    assert sorted(str(p) for p in stores.rglob("*")) == before  # no record, no lock, no artifact
    assert not (tmp_path / "db" / "staging" / "app.db").exists()


def test_max_runtime_stops_a_run_and_drops_nothing_half_made(
    tmp_path: Path, cleanup_groups: list[subprocess.Popen[str]]
) -> None:
    config = write_project(
        tmp_path,
        stage_steps=f'["restore:production", "hook:{PY} wait_for_go.py", "backup"]',
        stage_extra='max_runtime = "3s"',
    )
    assert dataferry(config, "run", "prod").returncode == 0
    started = time.monotonic()
    slow = dataferry(config, "run", "stage", timeout=60)
    assert slow.returncode == 1 and "max_runtime" in slow.stderr
    assert time.monotonic() - started < 30
    record = runs(config, "stage")[0]
    assert record.status == "failed" and record.error is not None and record.error.type == "RunTimedOut"
    assert record.steps[1].status == "failed" and record.steps[2].status == "skipped"
    assert record.published_artifact is None
    assert list(stage_store(config).list("app/")) == []
    assert state.read_lock(stage_store(config), "stage", timedelta(minutes=10)) is None


def _feed_fifo(fifo: Path, data: bytes, release: threading.Event) -> None:
    """Write the first half of the artifact, then stall (a slow network), until released."""
    try:
        with open(fifo, "wb") as out:
            out.write(data[: len(data) // 2])
            out.flush()
            release.wait(60)
    except BrokenPipeError:
        pass  # the reader went away: that is what the test wants


def test_scheduler_sigterm_mid_restore_leaves_the_live_database_unchanged(
    tmp_path: Path, cleanup_groups: list[subprocess.Popen[str]]
) -> None:
    config = write_project(tmp_path)
    for job in ("prod", "stage", "integ"):
        assert dataferry(config, "run", job).returncode == 0
    live = tmp_path / "db" / "staging" / "app.db"
    before = sha(live)
    set_rows(tmp_path / "db" / "production" / "app.db", "v2", 400)
    assert dataferry(config, "run", "prod").returncode == 0
    # make the new artifact's data arrive slowly: a FIFO fed by this test, stalled halfway
    prod_store = tmp_path / "stores" / "production"
    newest = artifacts.latest(LocalStore(prod_store), "app")
    data_file = prod_store / newest.objects[0].key
    data = data_file.read_bytes()
    data_file.unlink()
    os.mkfifo(data_file)
    release = threading.Event()
    feeder = threading.Thread(target=_feed_fifo, args=(data_file, data, release), daemon=True)
    feeder.start()
    sched = spawn(config, "scheduler", "--interval", "1s", "--grace", "30s")
    cleanup_groups.append(sched)
    shadows = lambda: [p for p in live.parent.iterdir() if ".dataferry-shadow-" in p.name]  # noqa: E731
    wait_for(lambda: bool(shadows()), what="the restore to be writing its shadow")
    sched.send_signal(signal.SIGTERM)
    _out, err = sched.communicate(timeout=60)
    release.set()
    assert sched.returncode == 0, err
    assert "asking job stage" in err
    assert sha(live) == before and versions(live) == {"v1"}  # untouched
    assert shadows() == []  # the half-restored shadow was dropped
    assert state.read_lock(stage_store(config), "stage", timedelta(minutes=10)) is None
    record = runs(config, "stage")[0]
    assert record.status == "interrupted" and record.trigger == "after"
    assert record.error is not None and "SIGTERM" in record.error.message
    assert len(runs(config, "integ")) == 1  # nothing downstream saw a half-made artifact
    # an interrupted run does not consume its trigger: the next scheduler pass runs it
    data_file.unlink()
    data_file.write_bytes(data)
    again = dataferry(config, "scheduler", "--once")
    assert again.returncode == 0, again.stderr
    assert versions(live) == {"v2"}
    assert runs(config, "stage")[0].status == "succeeded"


def _families(directory: Path) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for path in sorted(directory.glob("*.prom")):
        for family in text_string_to_metric_families(path.read_text()):
            for s in family.samples:
                found.setdefault(s.name, []).append((s.labels, s.value))
    return found


def test_metrics_files_parse_and_carry_the_documented_names(tmp_path: Path) -> None:
    config = write_project(
        tmp_path, stage_steps=f'["restore:production", "hook:{PY} fail_unless_fixed.py", "backup"]'
    )
    assert dataferry(config, "run", "prod").returncode == 0
    (tmp_path / "fixed").touch()
    assert dataferry(config, "run", "stage").returncode == 0
    assert dataferry(config, "run", "integ").returncode == 0
    (tmp_path / "fixed").unlink()
    assert dataferry(config, "run", "stage").returncode == 1  # the hook fails this time
    metrics = _families(tmp_path / "metrics")
    govuk = {"database_engine", "database_instance", "database_db_name", "operation"}
    for name in ("db_backup_job_state", "db_backup_job_duration_seconds", "db_backup_job_file_size_bytes"):
        assert metrics[name] and all(set(labels) == govuk for labels, _ in metrics[name]), name
    stamps = metrics["db_backup_job_status_timestamp_seconds"]
    assert all(set(labels) == govuk | {"state"} for labels, _ in stamps)
    ops = {labels["operation"] for labels, _ in metrics["db_backup_job_state"]}
    assert ops == {"backup", "restore", "hook"}
    hook_state = [v for labels, v in metrics["db_backup_job_state"] if labels["operation"] == "hook"]
    assert hook_state == [0]  # failed
    hook_states = {labels["state"] for labels, _ in stamps if labels["operation"] == "hook"}
    assert hook_states == {"started", "succeeded", "failed"}  # the earlier success is kept
    restore_size = [
        v
        for labels, v in metrics["db_backup_job_file_size_bytes"]
        if labels["operation"] == "restore" and "staging" in labels["database_instance"]
    ]
    assert restore_size and restore_size[0] > 0
    job_state = {labels["job_name"]: v for labels, v in metrics["dataferry_job_state"]}
    assert job_state == {"prod": 2, "stage": 0, "integ": 2}
    fresh = {
        (labels["environment"], labels["kind"]): v
        for labels, v in metrics["dataferry_data_timestamp_seconds"]
    }
    prod_artifact = fresh[("production", "artifact")]
    assert fresh[("staging", "live")] == pytest.approx(
        prod_artifact, abs=2
    )  # staging holds production's data
    assert fresh[("integration", "live")] == pytest.approx(
        prod_artifact, abs=2
    )  # ... and so does integration
    assert all(time.time() - v < 600 for v in fresh.values())
