"""The freshness matrix's rules: the limit each cell is judged by, and which state colours it when
several apply (failing, then stale, running, held, fresh, unknown)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dataferry.config import Config, JobConfig
from dataferry.jobs.holds import Hold
from dataferry.jobs.locks import LockInfo
from dataferry.jobs.status import (
    ArtifactBrief,
    ArtifactUnreadable,
    DatabaseStatus,
    EnvironmentStatus,
    JobStatus,
    LiveData,
    NextRun,
    RunBrief,
    Running,
    Status,
)
from dataferry.serve.charts import bar_chart
from dataferry.serve.matrix import build_matrix, freshness_limit

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def _job(**kw: object) -> JobConfig:
    return JobConfig.model_validate({"environment": "staging", "database": "db", "steps": ["backup"], **kw})


def test_the_limit_is_max_age_else_two_schedule_periods() -> None:
    assert freshness_limit(_job(max_age="26h", schedule="0 2 * * *"), NOW) == timedelta(hours=26)
    assert freshness_limit(_job(schedule="0 2 * * *"), NOW) == timedelta(days=2)
    assert freshness_limit(_job(schedule="*/15 * * * *"), NOW) == timedelta(minutes=30)
    assert freshness_limit(_job(), NOW) is None


def _cfg(**job: object) -> Config:
    return Config.model_validate(
        {
            "environments": {"staging": {"store": "/tmp/nowhere"}},
            "databases": {"db": {"engine": "sqlite", "environments": {"staging": {"url": "sqlite:///x.db"}}}},
            "jobs": {"j": {"environment": "staging", "database": "db", "steps": ["backup"], **job}},
        }
    )


def _status(
    *,
    data_age: timedelta | None = timedelta(hours=1),
    last: str | None = "succeeded",
    running: bool | None = None,
    held: bool = False,
    unreadable: bool = False,
) -> Status:
    hold = Hold(scope="job", target="j", reason="why", created_at=NOW, created_by="ann")
    lock = LockInfo(job="j", token="t", acquired_at=NOW, heartbeat_at=NOW, expires_at=NOW)
    live = LiveData("a", NOW - data_age, data_age.total_seconds()) if data_age else None
    job = JobStatus(
        name="j",
        steps=["backup"],
        last_run=RunBrief("r", last, "manual", NOW, NOW, 1.0, None, None) if last else None,
        next_run=NextRun(),
        holds=[hold] if held else [],
        running=Running(lock, expired=not running, description="run r") if running is not None else None,
        live_data=live,
    )
    newest: ArtifactBrief | ArtifactUnreadable | None = (
        ArtifactUnreadable("no access") if unreadable else None
    )
    db = DatabaseStatus(name="db", newest_artifact=newest, live_data=live, jobs=[job])
    return Status(
        time=NOW, global_holds=[], environments=[EnvironmentStatus("staging", "x", databases=(db,))]
    )


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (_status(), "fresh"),
        (_status(data_age=timedelta(hours=30)), "stale"),
        (_status(data_age=None), "unknown"),
        (_status(unreadable=True, data_age=None), "unknown"),
        (_status(last="failed", data_age=timedelta(hours=30)), "failing"),  # failing beats stale
        (_status(last="abandoned"), "failing"),
        (_status(running=True, held=True), "running"),  # running beats held
        (_status(running=False), "stale"),  # an expired lock: the run died
        (_status(held=True), "held"),  # held beats fresh
        (_status(held=True, data_age=timedelta(hours=30)), "stale"),  # a long hold still shows stale data
    ],
)
def test_the_worst_state_colours_the_cell(status: Status, state: str) -> None:
    cell = build_matrix(_cfg(max_age="26h"), status).cell("db", "staging")
    assert cell is not None
    assert cell.state == state, cell.reasons


def test_without_a_limit_data_is_not_judged() -> None:
    cell = build_matrix(_cfg(), _status(data_age=timedelta(days=300))).cell("db", "staging")
    assert cell is not None and cell.state == "unknown" and cell.limit_seconds is None


def test_an_unreadable_environment_is_reported_not_dropped() -> None:
    status = Status(time=NOW, global_holds=[], environments=[EnvironmentStatus("staging", error="denied")])
    matrix = build_matrix(_cfg(), status)
    assert matrix.errors == {"staging": "denied"} and matrix.cells == {}


def test_charts_start_at_zero_and_skip_unknown_values() -> None:
    chart = bar_chart("t", [("a", 10.0, "succeeded"), ("b", None, "running"), ("c", 5.0, "failed")], str)
    assert [b.label for b in chart.bars] == ["a: 10.0", "c: 5.0"]
    assert chart.bars[1].height == pytest.approx(chart.bars[0].height / 2, abs=0.1)
    assert chart.bars[1].css == "failed"
    assert bar_chart("t", [("a", None, "running")], str).empty
