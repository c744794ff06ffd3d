"""What the operator sees is true (issue 14, the state half): status and records after manual
restores, re-runs and failures; holds, locks and skips; recovery procedures that work as the
runbook says; ``check`` that tries what the run will do; a SQLite restore that keeps the live
file's owner and mode. Real ``dataferry`` processes, real SQLite files and local stores."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import stat
import subprocess
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dataferry import artifacts, ops
from dataferry.config import load
from dataferry.errors import LockBusy
from dataferry.jobs import state
from dataferry.progress import NullReporter
from dataferry.quickstart import DB, SALT_ENV, SALT_FILE, run_quickstart
from dataferry.stores.local import LocalStore
from integration._pg_helpers import new_setup, unique
from integration.test_jobs_cli import (
    PY,
    cleanup_groups,
    dataferry,
    runs,
    set_rows,
    sha,
    spawn,
    stage_store,
    versions,
    wait_for,
    write_project,
)
from integration.test_mysql_engine import DB as MY_DB
from integration.test_mysql_engine import make_world, seed
from servers import MariaDbServer, PgServer

__all__ = ["cleanup_groups"]  # a fixture, imported to be used here

pytestmark = pytest.mark.integration


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_a_sqlite_restore_keeps_the_live_files_owner_group_and_mode(tmp_path: Path) -> None:
    config = write_project(tmp_path)
    assert dataferry(config, "run", "prod").returncode == 0
    live = tmp_path / "db" / "staging" / "app.db"
    set_rows(live, "old", 3)
    nobody = pwd.getpwnam("nobody")
    os.chown(live, nobody.pw_uid, nobody.pw_gid)
    os.chmod(live, 0o664)
    restored = dataferry(config, "restore", "app", "--env", "staging", "--from", "production")
    assert restored.returncode == 0, restored.stderr
    st = live.stat()
    assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert stat.S_IMODE(st.st_mode) == 0o664


def _feed_fifo(fifo: Path, data: bytes, release: threading.Event) -> None:
    """Write the first half of the artifact, stall until released, then write the rest."""
    with contextlib.suppress(BrokenPipeError), open(fifo, "wb") as out:
        out.write(data[: len(data) // 2])
        out.flush()
        release.wait(60)
        out.write(data[len(data) // 2 :])


def _stall_artifact(store_dir: Path) -> tuple[Path, bytes, threading.Event]:
    """Make the newest artifact's data arrive through a FIFO that stalls halfway until released."""
    newest = artifacts.latest(LocalStore(store_dir), "app")
    data_file = store_dir / newest.objects[0].key
    data = data_file.read_bytes()
    data_file.unlink()
    os.mkfifo(data_file)
    release = threading.Event()
    threading.Thread(target=_feed_fifo, args=(data_file, data, release), daemon=True).start()
    return data_file, data, release


def test_a_run_that_lost_its_lock_does_not_swap(
    tmp_path: Path, cleanup_groups: list[subprocess.Popen[str]]
) -> None:
    config = write_project(tmp_path, ttl="4s")
    assert dataferry(config, "run", "prod").returncode == 0
    assert dataferry(config, "run", "stage").returncode == 0
    live = tmp_path / "db" / "staging" / "app.db"
    before = sha(live)
    set_rows(tmp_path / "db" / "production" / "app.db", "v2", 400)
    assert dataferry(config, "run", "prod").returncode == 0
    _file, _data, release = _stall_artifact(tmp_path / "stores" / "production")
    run = spawn(config, "run", "stage")
    cleanup_groups.append(run)
    shadows = lambda: [p for p in live.parent.iterdir() if ".dataferry-shadow-" in p.name]  # noqa: E731
    wait_for(lambda: bool(shadows()), what="the restore to be writing its shadow")
    forced = dataferry(config, "unlock", "stage", "--force")
    assert forced.returncode == 0, forced.stderr
    release.set()
    _out, err = run.communicate(timeout=60)
    assert run.returncode == LockBusy.exit_code, err
    assert "lost its lock" in err and "before the swap" in err
    assert sha(live) == before and versions(live) == {"v1"}  # not swapped
    assert shadows() == []
    record = runs(config, "stage")[0]
    assert record.status == "failed" and record.error is not None and record.error.type == "LockBusy"
    assert record.restored_artifact is None


def _backups(config: Path, n: int) -> list[str]:
    """``n`` production backups (one per second: ids are per second); their ids, oldest first."""
    ids = []
    for i in range(n):
        set_rows(config.parent / "db" / "production" / "app.db", f"v{i + 1}", 10 + i)
        out = dataferry(config, "backup", "app", "--env", "production")
        assert out.returncode == 0, out.stderr
        ids.append(out.stdout.split("\t")[0])
    return ids


def test_a_damaged_manifest_is_reported_skipped_and_cleaned_up(tmp_path: Path) -> None:
    config = write_project(tmp_path)
    old, good, damaged = _backups(config, 3)
    prod = tmp_path / "stores" / "production" / "app"
    (prod / f"{damaged}.manifest.json").write_text('{"format_version": 1, "id": "trunc')  # truncated
    (prod / f"{old}.manifest.json").write_bytes(b"")  # and an older one emptied
    listed = dataferry(config, "list", "app", "--env", "production")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].startswith(good + "\t")
    assert f"{damaged}\t-\t-\tDAMAGED" in listed.stdout and f"{old}\t-\t-\tDAMAGED" in listed.stdout
    assert f"artifact {damaged} has a damaged manifest" in listed.stderr
    as_json = dataferry(config, "list", "app", "--env", "production", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert [m["id"] for m in json.loads(as_json.stdout)] == [good]
    assert f"artifact {old} has a damaged manifest" in as_json.stderr
    restored = dataferry(config, "restore", "app", "--env", "staging", "--from", "production")
    assert restored.returncode == 0, restored.stderr
    assert (
        f"restored {good}" in restored.stdout and f"damaged manifest of artifact {damaged}" in restored.stderr
    )
    assert versions(tmp_path / "db" / "staging" / "app.db") == {"v2"}
    kept = dataferry(config, "cleanup", "app", "--env", "production")  # newer than 24h: kept
    assert kept.returncode == 0 and "damaged" not in kept.stdout
    cleaned = dataferry(config, "cleanup", "app", "--env", "production", "--older-than", "0s")
    assert cleaned.returncode == 0, cleaned.stderr
    assert f"removed artifact {damaged} (its manifest is damaged)" in cleaned.stdout
    assert sorted(p.name.split(".")[0] for p in prod.iterdir()) == [good, good]
    again = dataferry(config, "list", "app", "--env", "production")
    assert again.returncode == 0 and again.stderr == "" and "DAMAGED" not in again.stdout


def _live(config: Path, env: str) -> dict[str, Any]:
    """``live_data`` of app in ``env``, as ``status --json`` shows it."""
    out = dataferry(config, "status", "--json")
    assert out.returncode == 0, out.stderr
    found = next(e for e in json.loads(out.stdout)["environments"] if e["name"] == env)
    live: dict[str, Any] = found["databases"][0]["live_data"]
    return live


def _prod_backup(config: Path, version: str) -> artifacts.Manifest:
    set_rows(config.parent / "db" / "production" / "app.db", version, 20)
    assert dataferry(config, "run", "prod").returncode == 0
    return artifacts.latest(LocalStore(config.parent / "stores" / "production"), "app")


def _as_of(live: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(live["data_as_of"])


def test_live_data_as_of_is_true_after_a_failed_run_a_from_step_rerun_and_a_manual_restore(
    tmp_path: Path,
) -> None:
    config = write_project(
        tmp_path, stage_steps=f'["restore:production", "hook:{PY} fail_unless_fixed.py", "backup"]'
    )
    first = _prod_backup(config, "v1")
    (tmp_path / "fixed").touch()
    assert dataferry(config, "run", "stage").returncode == 0
    assert _live(config, "staging")["artifact"] == first.id
    # a run that swapped, then failed in its hook: the new data is live all the same
    (tmp_path / "fixed").unlink()
    swapped = _prod_backup(config, "v2")
    assert dataferry(config, "run", "stage").returncode == 1
    assert versions(tmp_path / "db" / "staging" / "app.db") == {"v2"}
    live = _live(config, "staging")
    assert live["artifact"] == swapped.id and _as_of(live) == swapped.created_at
    # production moves on; the runbook's re-run from the hook publishes staging's v2 data, which is
    # as old as production's v2 dump, not as new as the re-run
    newer = _prod_backup(config, "v3")
    (tmp_path / "fixed").touch()
    rerun = dataferry(config, "run", "stage", "--from-step", "2")
    assert rerun.returncode == 0, rerun.stderr
    published = artifacts.latest(stage_store(config), "app")
    assert datetime.fromisoformat(published.extra["data_as_of"]) == swapped.created_at
    assert dataferry(config, "run", "integ").returncode == 0
    assert _as_of(_live(config, "integration")) == swapped.created_at
    # a restore by hand: status names what it put in place
    manual = dataferry(config, "restore", "app", "--env", "staging", "--from", "production")
    assert manual.returncode == 0, manual.stderr
    live = _live(config, "staging")
    assert live["artifact"] == newer.id and _as_of(live) == newer.created_at
    assert live["via"] == "restore"
    prom = (tmp_path / "metrics" / "dataferry-data-staging-app.prom").read_text()
    fresh = [
        s.value
        for f in text_string_to_metric_families(prom)
        for s in f.samples
        if s.name == "dataferry_data_timestamp_seconds" and s.labels["kind"] == "live"
    ]
    assert fresh == [pytest.approx(newer.created_at.timestamp())]  # the "staging too old" alert


RECORD_HOOK = (
    "import os, sys\n"
    "open('hook.txt', 'w').write(sys.argv[1] + '|' + os.environ.get('DATAFERRY_ARTIFACT', 'unset'))\n"
    "sys.exit(0 if os.path.exists('fixed') else 3)\n"
)


def test_a_hook_re_run_with_from_step_gets_the_artifact_its_run_restored(tmp_path: Path) -> None:
    config = write_project(
        tmp_path,
        stage_steps=f'["restore:production", "hook:{PY} record_hook.py $DATAFERRY_ARTIFACT", "backup"]',
    )
    (tmp_path / "record_hook.py").write_text(RECORD_HOOK)
    restored = _prod_backup(config, "v1")
    assert dataferry(config, "run", "stage").returncode == 1
    assert (tmp_path / "hook.txt").read_text() == f"{restored.id}|{restored.id}"
    _prod_backup(config, "v2")  # production moved on; the live data is still v1
    (tmp_path / "fixed").touch()
    rerun = dataferry(config, "run", "stage", "--from-step", "2")
    assert rerun.returncode == 0, rerun.stderr
    assert (tmp_path / "hook.txt").read_text() == f"{restored.id}|{restored.id}"
    record = runs(config, "stage")[0]
    assert record.steps[0].status == "skipped" and record.steps[0].artifact == restored.id


def test_a_verify_step_after_a_restore_verifies_the_artifact_just_restored(tmp_path: Path) -> None:
    config = write_project(tmp_path, stage_steps='["restore:production", "verify", "backup", "verify"]')
    restored = _prod_backup(config, "v1")
    run = dataferry(config, "run", "stage")  # staging's store is empty: nothing of its own to verify
    assert run.returncode == 0, run.stderr
    record = runs(config, "stage")[0]
    assert record.steps[1].artifact == restored.id and record.steps[1].detail == "in the store of production"
    assert record.steps[3].artifact == record.published_artifact
    assert record.steps[3].detail == "in the store of staging"
    # a damaged copy of what was restored fails the step (exit 7), not a lookup elsewhere
    data = tmp_path / "stores" / "production" / restored.objects[0].key
    data.write_bytes(data.read_bytes()[:-1] + b"\0")
    again = dataferry(config, "run", "stage", "--from-step", "2")
    assert again.returncode == 7, again.stderr
    assert runs(config, "stage")[0].steps[1].artifact is None


def test_a_dry_run_checks_the_salt_and_says_what_the_backup_will_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_quickstart(tmp_path / "qs", reporter=NullReporter(), echo=lambda _line: None)
    config = tmp_path / "qs" / "dataferry.toml"
    job = f"{DB}-staging"
    monkeypatch.delenv(SALT_ENV, raising=False)
    missing = dataferry(config, "run", job, "--dry-run")
    assert missing.returncode == 3 and SALT_ENV in missing.stderr, missing.stderr
    monkeypatch.setenv(SALT_ENV, (tmp_path / "qs" / SALT_FILE).read_text().strip())
    dry = dataferry(config, "run", job, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"(salt set in {SALT_ENV})" in dry.stdout
    resumed = dataferry(config, "run", job, "--dry-run", "--from-step", "3")
    assert resumed.returncode == 0, resumed.stderr
    assert "would check the live data with profile" in resumed.stdout


def test_a_job_into_a_protected_environment_is_refused_without_a_force_hint_run_lacks(tmp_path: Path) -> None:
    config = write_project(tmp_path)
    with config.open("a") as f:
        f.write('\n[jobs.back]\nenvironment = "production"\ndatabase = "app"\nsteps = ["restore:staging"]\n')
    assert dataferry(config, "run", "prod").returncode == 0
    assert dataferry(config, "run", "stage").returncode == 0
    before = sha(tmp_path / "db" / "production" / "app.db")
    for args in (("run", "back"), ("run", "back", "--dry-run")):
        refused = dataferry(config, *args)
        assert refused.returncode == 9, refused.stderr
        assert "production, which is protected" in refused.stderr
        assert "repeat the command with --force" not in refused.stderr
        assert "'dataferry restore app --env production --from staging --force'" in refused.stderr
    assert sha(tmp_path / "db" / "production" / "app.db") == before


def _held_metric(config: Path, job: str) -> float | None:
    path = config.parent / "metrics" / f"dataferry-job-{job}.prom"
    if not path.exists():
        return None
    for family in text_string_to_metric_families(path.read_text()):
        for s in family.samples:
            if s.name == "dataferry_job_held":
                return float(s.value)
    return None


def test_pause_and_resume_set_the_held_metric_at_once(tmp_path: Path) -> None:
    config = write_project(tmp_path)
    assert dataferry(config, "run", "stage").returncode == 4  # no artifact yet: a failed run's metrics
    assert _held_metric(config, "stage") == 0
    assert dataferry(config, "pause", "stage", "--reason", "pen test").returncode == 0
    assert _held_metric(config, "stage") == 1
    assert dataferry(config, "pause", "--env", "staging", "--reason", "maintenance").returncode == 0
    assert dataferry(config, "resume", "stage").returncode == 0
    assert _held_metric(config, "stage") == 1  # its environment is still held
    assert dataferry(config, "resume", "--env", "staging").returncode == 0
    assert _held_metric(config, "stage") == 0
    families = {
        s.name
        for f in text_string_to_metric_families(
            (tmp_path / "metrics" / "dataferry-job-stage.prom").read_text()
        )
        for s in f.samples
    }
    assert {"dataferry_job_state", "dataferry_job_last_run_timestamp_seconds"} <= families  # kept


def test_a_second_pause_does_not_silently_replace_the_first(tmp_path: Path) -> None:
    config = write_project(tmp_path)
    first = dataferry(config, "pause", "stage", "--reason", "pen test", "--until", "3d")
    assert first.returncode == 0, first.stderr
    second = dataferry(config, "pause", "stage", "--reason", "quick fix", "--until", "1h")
    assert second.returncode == 5, second.stderr
    assert "pen test" in second.stderr and "--replace" in second.stderr
    hold = state.read_hold(stage_store(config), "job", "stage")
    assert hold is not None and hold.reason == "pen test"
    replaced = dataferry(config, "pause", "stage", "--reason", "quick fix", "--until", "1h", "--replace")
    assert replaced.returncode == 0, replaced.stderr
    hold = state.read_hold(stage_store(config), "job", "stage")
    assert hold is not None and hold.reason == "quick fix"
    assert dataferry(config, "pause", "--all", "--reason", "x").returncode == 0
    assert dataferry(config, "pause", "--all", "--reason", "y").returncode == 5


def test_scheduler_once_records_one_skip_per_trigger_of_a_held_job(tmp_path: Path) -> None:
    config = write_project(tmp_path)
    assert dataferry(config, "pause", "stage", "--reason", "pen test").returncode == 0
    assert dataferry(config, "run", "prod").returncode == 0
    for _ in range(3):  # cron runs it every few minutes
        assert dataferry(config, "scheduler", "--once").returncode == 0
    assert [(r.status, r.trigger) for r in runs(config, "stage")] == [("skipped", "after")]
    assert dataferry(config, "run", "prod").returncode == 0  # a new trigger: one more record
    assert dataferry(config, "scheduler", "--once").returncode == 0
    assert dataferry(config, "scheduler", "--once").returncode == 0
    assert [r.status for r in runs(config, "stage")] == ["skipped", "skipped"]


def test_a_killed_run_whose_lock_was_removed_shows_abandoned_not_running(
    tmp_path: Path, cleanup_groups: list[subprocess.Popen[str]]
) -> None:
    config = write_project(
        tmp_path, stage_steps=f'["restore:production", "hook:{PY} wait_for_go.py", "backup"]'
    )
    assert dataferry(config, "run", "prod").returncode == 0
    victim = spawn(config, "run", "stage")
    cleanup_groups.append(victim)
    wait_for(
        lambda: any(
            s.kind == "hook" and s.status == "running" for r in runs(config, "stage") for s in r.steps
        )
    )
    dead = runs(config, "stage")[0].run_id
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert dataferry(config, "unlock", "stage", "--force").returncode == 0
    history = dataferry(config, "history", "stage")
    assert history.returncode == 0 and f"{dead}" in history.stdout
    line = next(x for x in history.stdout.splitlines() if x.startswith(dead))
    assert "abandoned" in line and "running" not in line.split()[3]
    status = json.loads(dataferry(config, "status", "--json").stdout)
    stage = next(e for e in status["environments"] if e["name"] == "staging")
    assert stage["databases"][0]["jobs"][0]["last_run"]["status"] == "abandoned"
    (tmp_path / "go").touch()
    assert dataferry(config, "run", "stage").returncode == 0
    earlier = next(r for r in runs(config, "stage") if r.run_id == dead)
    assert earlier.status == "abandoned" and earlier.error is not None
    assert "its lock was removed" in earlier.error.message


@pytest.fixture
def immutable_dirs() -> Iterator[list[Path]]:
    """Directories made immutable (``chattr +i``: even root cannot create files in them), made
    mutable again at the end whatever happened."""
    made: list[Path] = []
    yield made
    for path in made:
        subprocess.run(["chattr", "-R", "-i", str(path)], check=False)


def test_check_fails_on_a_read_only_store_and_a_missing_production_database(
    tmp_path: Path, immutable_dirs: list[Path]
) -> None:
    config = write_project(tmp_path)
    ok = dataferry(config, "check")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "a probe object was written and deleted" in ok.stdout
    assert "app in production: database file" in ok.stdout and "opens read-only" in ok.stdout
    assert "app in staging: directory" in ok.stdout  # a restore target may not exist yet
    store = tmp_path / "stores" / "production"
    store.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["chattr", "-R", "+i", str(store)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    immutable_dirs.append(store)
    (tmp_path / "db" / "production" / "app.db").unlink()
    failed = dataferry(config, "check")
    assert failed.returncode == 3, failed.stdout + failed.stderr
    assert "FAIL  store of production:" in failed.stdout and "not writable" in failed.stdout
    assert "FAIL  app in production: database file" in failed.stdout and "does not exist" in failed.stdout
    assert not any((tmp_path / "stores").rglob("probe-*"))  # probes are deleted


def test_check_fails_on_a_missing_production_postgresql_database(
    pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for setup in new_setup(pg_server, tmp_path, monkeypatch):
        ok = dataferry(setup.config_path, "check")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert f"ok    app in production: database {setup.src} (backed up from): opens" in ok.stdout
        seeded, setup.src = setup.src, unique("missing")  # production's database is gone (or misnamed)
        failed = dataferry(setup.config_path, "check")
        assert failed.returncode == 3, failed.stdout + failed.stderr
        assert (
            f"FAIL  app in production: database {setup.src} (backed up from): cannot be opened"
            in failed.stdout
        )
        assert "FAIL  app in staging" not in failed.stdout  # a restore target may be missing
        setup.src = seeded  # dropped by new_setup's cleanup


def test_check_fails_on_a_missing_mysql_database_a_job_backs_up(
    mariadb_server: MariaDbServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = make_world(mariadb_server, tmp_path, monkeypatch)
    with world.config_path.open("a") as f:
        f.write(f'\n[jobs.nightly]\nenvironment = "production"\ndatabase = "{MY_DB}"\nsteps = ["backup"]\n')
    findings = {w: (ok, d) for w, ok, d in ops.check(load(world.config_path)).findings}
    source = f"{MY_DB} in production: database {world.source} (backed up from)"
    assert findings[source] == (False, "does not exist; a backup of it would fail")
    assert f"{MY_DB} in staging: database {world.target} (backed up from)" not in findings
    seed(mariadb_server, world.source)
    try:
        findings = {w: (ok, d) for w, ok, d in ops.check(load(world.config_path)).findings}
        assert findings[source] == (True, "exists")
    finally:
        mariadb_server.drop_db(world.source)
