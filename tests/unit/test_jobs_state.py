"""Run records, holds and triggers on a real local store: what makes a job held, due or pending."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dataferry.config import Config, parse
from dataferry.errors import FerryError
from dataferry.jobs import state, triggers
from dataferry.jobs.state import ErrorInfo, Hold, RunRecord, StoreCache

CONFIG = """
[environments.production]
store = "stores/production"
[environments.staging]
store = "stores/staging"

[databases.app]
engine = "sqlite"
[databases.app.environments]
production = { url = "sqlite:///p.db" }
staging = { url = "sqlite:///s.db" }

[jobs.prod]
environment = "production"
database = "app"
steps = ["backup"]
schedule = "0 23 * * *"
timezone = "Europe/London"

[jobs.stage]
environment = "staging"
database = "app"
steps = ["restore:production", "backup"]
after = "prod"
"""


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    """A two-environment configuration with local stores under ``tmp_path``."""
    return parse(CONFIG, tmp_path / "dataferry.toml")


def _record(job: str, status: str, started: datetime, **kw: object) -> RunRecord:
    env = "production" if job == "prod" else "staging"
    return RunRecord(
        job=job,
        run_id=state.new_run_id(started),
        environment=env,
        database="app",
        status=status,  # type: ignore[arg-type]
        started_at=started,
        **kw,  # type: ignore[arg-type]
    )


def test_run_records_are_listed_newest_first(cfg: Config) -> None:
    stores = StoreCache(cfg)
    store = stores.for_job("prod")
    base = datetime(2026, 11, 20, 23, 0, tzinfo=UTC)
    for i, status in enumerate(["succeeded", "failed", "skipped"]):
        state.write_run(store, _record("prod", status, base + timedelta(hours=i)))
    assert [r.status for r in state.iter_runs(store, "prod")] == ["skipped", "failed", "succeeded"]
    last_ok = state.last_run(store, "prod", ("succeeded",))
    assert last_ok is not None and last_ok.started_at == base


def test_a_bug_is_recorded_without_its_message() -> None:
    secret = "hunter2-password"
    info = ErrorInfo.from_exception(RuntimeError(f"connect failed for postgres://u:{secret}@db"))
    assert secret not in info.model_dump_json()
    assert info.type == "RuntimeError" and info.exit_code == 1
    ferry = ErrorInfo.from_exception(FerryError("upload failed", hint="check the bucket"))
    assert (ferry.message, ferry.hint) == ("upload failed", "check the bucket")


def _hold(scope: state.HoldScope, target: str, until: datetime | None = None) -> Hold:
    return Hold(
        scope=scope,
        target=target,
        reason="pen test",
        created_at=state.now_utc(),
        created_by="ann@h",
        until=until,
    )


@pytest.mark.parametrize(
    ("scope", "target", "env"),
    [("job", "stage", "staging"), ("environment", "staging", "staging"), ("all", "*", "staging")],
)
def test_holds_on_job_environment_and_everything(
    cfg: Config, scope: state.HoldScope, target: str, env: str
) -> None:
    stores = StoreCache(cfg)
    assert state.active_holds(cfg, "stage", stores) == []
    state.write_hold(stores.get(env), _hold(scope, target))
    held = state.active_holds(cfg, "stage", stores)
    assert len(held) == 1 and held[0].reason == "pen test"
    assert state.active_holds(cfg, "prod", stores) == []  # production's store has no hold
    assert state.delete_hold(stores.get(env), scope, target)
    assert state.active_holds(cfg, "stage", stores) == []


def test_an_expired_hold_no_longer_holds(cfg: Config) -> None:
    stores = StoreCache(cfg)
    now = state.now_utc()
    state.write_hold(stores.get("staging"), _hold("job", "stage", until=now + timedelta(seconds=60)))
    assert state.active_holds(cfg, "stage", stores, now=now)
    assert not state.active_holds(cfg, "stage", stores, now=now + timedelta(seconds=61))


def test_a_damaged_hold_fails_safe(cfg: Config) -> None:
    stores = StoreCache(cfg)
    from dataferry.stores import put_bytes

    put_bytes(stores.get("staging"), state.hold_key("environment", "staging"), b"{broken")
    held = state.active_holds(cfg, "stage", stores)
    assert len(held) == 1 and "unreadable" in held[0].reason


def test_global_holds_live_in_the_state_environment_when_set(tmp_path: Path) -> None:
    cfg = parse('[settings]\nstate_environment = "production"\n' + CONFIG, tmp_path / "dataferry.toml")
    assert state.global_hold_environments(cfg) == ["production"]
    stores = StoreCache(cfg)
    state.write_hold(stores.get("production"), _hold("all", "*"))
    assert state.active_holds(cfg, "stage", stores)  # staging's job reads production's store for it
    plain = parse(CONFIG, tmp_path / "dataferry.toml")
    assert state.global_hold_environments(plain) == ["production", "staging"]


def test_after_is_pending_until_a_finished_run_consumed_the_artifact(cfg: Config) -> None:
    stores = StoreCache(cfg)
    assert triggers.pending_after(cfg, "stage", stores) is None  # upstream never published
    t0 = datetime(2026, 11, 20, 23, 0, 5, tzinfo=UTC)
    art = "2026-11-20T230000Z-app"
    state.write_run(stores.for_job("prod"), _record("prod", "succeeded", t0, published_artifact=art))
    assert triggers.pending_after(cfg, "stage", stores) == art
    stage = stores.for_job("stage")
    # a held (skipped) or interrupted run does not consume it: it will run when resumed
    state.write_run(stage, _record("stage", "skipped", t0 + timedelta(minutes=1), upstream_artifact=art))
    state.write_run(stage, _record("stage", "interrupted", t0 + timedelta(minutes=2), upstream_artifact=art))
    assert triggers.pending_after(cfg, "stage", stores) == art
    # a failed run does (failure is loud; an operator re-runs it)
    state.write_run(stage, _record("stage", "failed", t0 + timedelta(minutes=3), upstream_artifact=art))
    assert triggers.pending_after(cfg, "stage", stores) is None
    # a newer upstream artifact is pending again, whatever happened to the old one
    art2 = "2026-11-21T230000Z-app"
    t1 = t0 + timedelta(days=1)
    state.write_run(stores.for_job("prod"), _record("prod", "failed", t1 + timedelta(hours=1)))
    state.write_run(stores.for_job("prod"), _record("prod", "succeeded", t1, published_artifact=art2))
    assert triggers.pending_after(cfg, "stage", stores) == art2
    state.write_run(stage, _record("stage", "succeeded", t1 + timedelta(hours=2), upstream_artifact=art2))
    assert triggers.pending_after(cfg, "stage", stores) is None


def test_schedule_fires_in_its_time_zone(cfg: Config) -> None:
    job = cfg.job("prod")  # 23:00 Europe/London
    summer = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    winter = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    summer_next = triggers.next_fire(job, summer)
    winter_next = triggers.next_fire(job, winter)
    assert summer_next is not None and winter_next is not None
    assert summer_next.astimezone(UTC) == datetime(2026, 7, 1, 22, 0, tzinfo=UTC)  # BST
    assert winter_next.astimezone(UTC) == datetime(2026, 12, 1, 23, 0, tzinfo=UTC)  # GMT


def test_a_fire_is_due_once_and_handled_by_any_run_after_it(cfg: Config) -> None:
    stores = StoreCache(cfg)
    fire = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)
    now = fire + timedelta(minutes=5)
    assert triggers.due_fire(cfg, "prod", stores, now=now) == fire
    store = stores.for_job("prod")
    state.write_run(store, _record("prod", "succeeded", fire - timedelta(days=1)))  # yesterday's
    assert triggers.due_fire(cfg, "prod", stores, now=now) == fire
    state.write_run(store, _record("prod", "interrupted", fire + timedelta(seconds=10)))
    assert triggers.due_fire(cfg, "prod", stores, now=now) == fire  # interrupted: run it again
    state.write_run(store, _record("prod", "skipped", fire + timedelta(seconds=20)))
    assert triggers.due_fire(cfg, "prod", stores, now=now) is None  # held: this fire is let go


def test_a_fire_older_than_the_deadline_is_not_caught_up(cfg: Config) -> None:
    stores = StoreCache(cfg)
    fire = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)
    assert triggers.due_fire(cfg, "prod", stores, now=fire + timedelta(hours=9)) is None
    assert triggers.due_fire(cfg, "stage", stores, now=fire) is None  # no schedule at all
