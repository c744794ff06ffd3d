"""The scheduler and the runner's edges: parallelism limits, two schedulers sharing one store,
retries of transient failures only, hooks, and JSON logs. Real processes, SQLite, local stores."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataferry.config import load
from dataferry.errors import StoreUnavailable
from dataferry.jobs import runner, state
from dataferry.jobs.state import StoreCache

pytestmark = pytest.mark.integration

PY = sys.executable

# A hook that records when it ran (start and end, from the monotonic-enough wall clock) and waits.
TIMED = """\
import json, os, sys, time
start = time.time()
time.sleep(float(sys.argv[2]))
with open(sys.argv[1], "a") as f:
    f.write(json.dumps({"job": os.environ["DATAFERRY_JOB"], "start": start, "end": time.time(),
                        "argv": sys.argv[3:], "artifact": os.environ.get("DATAFERRY_ARTIFACT")}) + "\\n")
"""


def project(root: Path, jobs: str, settings: str = "") -> Path:
    """Three independent sqlite databases in one environment, plus ``jobs``."""
    (root / "timed.py").write_text(TIMED)
    (root / "db").mkdir()
    for name in ("a", "b", "c"):
        (root / "db" / f"{name}.db").write_bytes(b"")
    dbs = "\n".join(
        f'[databases.{n}]\nengine = "sqlite"\n[databases.{n}.environments]\nlocal = {{ url = "sqlite:///db/{n}.db" }}\n'
        f'up = {{ url = "sqlite:///db/{n}-up.db" }}'
        for n in ("a", "b", "c")
    )
    config = root / "dataferry.toml"
    config.write_text(
        f'[settings]\n{settings}\n[environments.local]\nstore = "stores/local"\n'
        f'[environments.up]\nstore = "stores/up"\n{dbs}\n{jobs}'
    )
    return config


def dataferry(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real command line."""
    return subprocess.run(
        [PY, "-m", "dataferry", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=config.parent,
    )


def timed_job(name: str, db: str, seconds: float, after: str | None = None) -> str:
    """A job that backs up ``db`` then runs the timed hook."""
    trigger = f'after = "{after}"' if after else ""
    return (
        f'[jobs.{name}]\nenvironment = "local"\ndatabase = "{db}"\n'
        f'steps = ["backup", "hook:{PY} timed.py times.jsonl {seconds} $DATAFERRY_JOB"]\n{trigger}\n'
    )


def upstream(db: str) -> str:
    """The job the others run after."""
    return f'[jobs.up-{db}]\nenvironment = "up"\ndatabase = "{db}"\nsteps = ["backup"]\n'


def intervals(root: Path) -> list[dict[str, object]]:
    """What the timed hooks recorded."""
    path = root / "times.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _overlaps(rows: list[dict[str, object]]) -> bool:
    spans = sorted((float(r["start"]), float(r["end"])) for r in rows)  # type: ignore[arg-type]
    return any(b[0] < a[1] for a, b in itertools.pairwise(spans))


@pytest.mark.parametrize(("parallel", "overlap"), [(1, False), (3, True)])
def test_max_parallel_limits_how_many_jobs_run_at_once(tmp_path: Path, parallel: int, overlap: bool) -> None:
    jobs = "".join(upstream(d) + timed_job(f"job-{d}", d, 1.5, after=f"up-{d}") for d in ("a", "b", "c"))
    config = project(tmp_path, jobs)
    for d in ("a", "b", "c"):
        (tmp_path / "db" / f"{d}-up.db").write_bytes(b"")
        assert dataferry(config, "run", f"up-{d}").returncode == 0
    sched = dataferry(config, "scheduler", "--once", "--max-parallel", str(parallel))
    assert sched.returncode == 0, sched.stderr
    rows = intervals(tmp_path)
    assert sorted(str(r["job"]) for r in rows) == ["job-a", "job-b", "job-c"]
    assert _overlaps(rows) is overlap
    assert all(r["argv"] == [r["job"]] for r in rows)  # $DATAFERRY_JOB was expanded, without a shell


def test_two_schedulers_sharing_a_store_run_a_triggered_job_once(tmp_path: Path) -> None:
    config = project(tmp_path, upstream("a") + timed_job("job-a", "a", 2.0, after="up-a"))
    (tmp_path / "db" / "a-up.db").write_bytes(b"")
    assert dataferry(config, "run", "up-a").returncode == 0
    argv = [PY, "-m", "dataferry", "--config", str(config), "scheduler", "--once"]
    procs = [
        subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)
    ]
    for p in procs:
        p.communicate(timeout=120)
        assert p.returncode == 0
    assert len(intervals(tmp_path)) == 1  # one run, whichever machine won
    cfg = load(config)
    records = list(state.iter_runs(StoreCache(cfg).for_job("job-a"), "job-a"))
    assert [r.status for r in records] == ["succeeded"]


def test_transient_failures_are_retried_and_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    config = tmp_path / "dataferry.toml"
    (tmp_path / "db").mkdir()
    config.write_text(
        '[environments.local]\nstore = "stores/local"\n'
        # nothing listens on port 9 of the loopback: every request is refused (a store outage)
        '[environments.remote]\nstore = { url = "s3://b/p", endpoint_url = "http://127.0.0.1:9", region = "us-east-1" }\n'
        '[databases.a]\nengine = "sqlite"\n[databases.a.environments]\n'
        'local = { url = "sqlite:///db/a.db" }\nremote = { url = "sqlite:///db/r.db" }\n'
        '[jobs.pull]\nenvironment = "local"\ndatabase = "a"\nsteps = ["restore:remote"]\n'
        'retries = 2\nretry_delay = "0.2s"\n'
    )
    cfg = load(config)
    with pytest.raises(StoreUnavailable):
        runner.run_job(cfg, "pull")
    (record,) = state.iter_runs(StoreCache(cfg).for_job("pull"), "pull")
    assert record.status == "failed" and record.steps[0].attempts == 3
    assert record.error is not None and record.error.type == "StoreUnavailable"
    assert state.read_lock(StoreCache(cfg).for_job("pull"), "pull", state.lock_ttl(cfg)) is None


def test_json_logs_are_json_lines(tmp_path: Path) -> None:
    config = project(tmp_path, timed_job("job-a", "a", 0))
    proc = dataferry(config, "--json-logs", "run", "job-a")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines()]
    assert lines and all({"time", "level", "message"} <= set(line) for line in lines)
    assert any(line["message"].startswith("job job-a: run") and line.get("job") == "job-a" for line in lines)


def test_hooks_get_their_context_and_never_a_shell(tmp_path: Path) -> None:
    jobs = (
        upstream("a")
        + '[jobs.pull]\nenvironment = "local"\ndatabase = "a"\n'
        + f'steps = ["restore:up", "hook:{PY} timed.py times.jsonl 0 $DATAFERRY_ARTIFACT;echo $HOME"]\n'
    )
    config = project(tmp_path, jobs)
    (tmp_path / "db" / "a-up.db").write_bytes(b"")
    assert dataferry(config, "run", "up-a").returncode == 0
    proc = dataferry(config, "run", "pull")
    assert proc.returncode == 0, proc.stderr
    (row,) = intervals(tmp_path)
    artifact = str(row["artifact"])
    assert artifact.endswith("-a")
    # $DATAFERRY_* is expanded; anything else (and ';') reaches the command as plain text
    assert row["argv"] == [f"{artifact};echo", "$HOME"]


def test_a_schedule_fire_runs_once(tmp_path: Path) -> None:
    every_minute = (
        '[jobs.nightly]\nenvironment = "local"\ndatabase = "a"\nsteps = ["backup"]\n'
        'schedule = "* * * * *"\ntimezone = "Europe/London"\n'
    )
    config = project(tmp_path, every_minute)
    first = dataferry(config, "scheduler", "--once")
    assert first.returncode == 0, first.stderr
    cfg = load(config)
    records = list(state.iter_runs(StoreCache(cfg).for_job("nightly"), "nightly"))
    # one run per fire (two only if the minute turned between two passes), never two for one fire
    assert 1 <= len(records) <= 2 and all(r.trigger == "schedule" for r in records)
    assert len({r.trigger_detail for r in records}) == len(records)
    again = dataferry(config, "scheduler", "--once")
    assert again.returncode == 0, again.stderr
    after = list(state.iter_runs(StoreCache(cfg).for_job("nightly"), "nightly"))
    assert len({r.trigger_detail for r in after}) == len(after)  # no fire handled twice


def test_unknown_job_and_bad_from_step_are_refused(tmp_path: Path) -> None:
    config = project(
        tmp_path,
        upstream("a")
        + '[jobs.pull]\nenvironment = "local"\ndatabase = "a"\nsteps = ["restore:up", "sanitise"]\n',
    )
    unknown = dataferry(config, "run", "nope")
    assert unknown.returncode == 4 and "known jobs: pull, up-a" in unknown.stderr
    sanitise_first = dataferry(config, "run", "pull", "--from-step", "2")
    assert sanitise_first.returncode == 2 and "--from-step 1" in sanitise_first.stderr
    assert "Traceback" not in unknown.stderr + sanitise_first.stderr


def test_unlock_removes_only_an_expired_lock_without_force(tmp_path: Path) -> None:
    config = project(tmp_path, upstream("a"), settings='lock_ttl = "1s"')
    cfg = load(config)
    store = StoreCache(cfg).for_job("up-a")
    lock = state.JobLock(store, "up-a", ttl=state.lock_ttl(cfg), run_id="r-live")
    lock.acquire()
    try:
        live = dataferry(config, "unlock", "up-a")
        assert live.returncode == 6 and "r-live" in live.stderr
    finally:
        lock._stop.set()  # the holder "dies": no more heartbeats, nothing released
        lock._held = False
    # Wait until the lock, as a reader sees it, has expired: a heartbeat may have refreshed it
    # just before the holder "died", and the CLI can start in well under the 1 s TTL.
    deadline = time.monotonic() + 10
    while (info := state.read_lock(store, "up-a", state.lock_ttl(cfg))) and not info.expired():
        assert time.monotonic() < deadline, "the lock never expired"
        time.sleep(0.1)
    forced = dataferry(config, "unlock", "up-a")
    assert forced.returncode == 0 and "removed the lock" in forced.stdout
    assert state.read_lock(store, "up-a", state.lock_ttl(cfg)) is None
    assert "is not locked" in dataferry(config, "unlock", "up-a").stdout


def test_verify_step_rereads_what_the_run_published(tmp_path: Path) -> None:
    config = project(
        tmp_path, '[jobs.bv]\nenvironment = "local"\ndatabase = "a"\nsteps = ["backup", "verify"]\n'
    )
    cfg = load(config)
    record = runner.run_job(cfg, "bv")
    assert record is not None and record.status == "succeeded"
    assert record.steps[1].artifact == record.published_artifact
    # damage the published data object: a verify-only re-run (--from-step 2) must catch it
    data = next((tmp_path / "stores" / "local" / "a").glob("*.zst"))
    raw = data.read_bytes()
    data.write_bytes(raw[:-1] + bytes([raw[-1] ^ 0xFF]))
    proc = dataferry(config, "run", "bv", "--from-step", "2")
    assert proc.returncode == 7, proc.stderr
    latest = next(state.iter_runs(StoreCache(cfg).for_job("bv"), "bv"))
    assert latest.status == "failed" and latest.steps[1].error is not None


def test_scheduler_env_runs_only_that_environments_jobs(tmp_path: Path) -> None:
    every_minute = 'steps = ["backup"]\nschedule = "* * * * *"\n'
    jobs = (
        f'[jobs.local-a]\nenvironment = "local"\ndatabase = "a"\n{every_minute}'
        f'[jobs.up-b]\nenvironment = "up"\ndatabase = "b"\n{every_minute}'
    )
    config = project(tmp_path, jobs)
    (tmp_path / "db" / "b-up.db").write_bytes(b"")
    sched = dataferry(config, "scheduler", "--once", "--env", "up")
    assert sched.returncode == 0, sched.stderr
    cfg = load(config)
    stores = StoreCache(cfg)
    assert list(state.iter_runs(stores.for_job("local-a"), "local-a")) == []
    assert [r.trigger for r in state.iter_runs(stores.for_job("up-b"), "up-b")][:1] == ["schedule"]
    assert "started with 1 job(s) of up" in sched.stderr
    unknown = dataferry(config, "scheduler", "--once", "--env", "qa")
    assert unknown.returncode == 2 and "no environment 'qa'" in unknown.stderr
    status = dataferry(config, "status", "--env", "up")
    assert status.returncode == 0, status.stderr
    assert "up-b" in status.stdout and "local-a" not in status.stdout
