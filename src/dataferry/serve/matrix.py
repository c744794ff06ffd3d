"""The freshness matrix: environments as columns, databases as rows, one ``Cell`` each, built from
``dataferry.jobs.status.collect_status`` (the model behind ``dataferry status``).

A cell's ``state`` is what colours it, worst first:

* ``failing``: a job of the cell whose last run failed, was abandoned or interrupted;
* ``stale``: the data (live data, else the newest artifact) is older than the cell's limit, or a
  run's lock expired without being released (a run that died);
* ``running``: a run holds the job's lock now;
* ``held``: a job of the cell is paused;
* ``fresh``: within the limit;
* ``unknown``: no data, no limit to judge it by, or the store could not be read.

The limit is the job's ``max_age`` when it has one, else twice its schedule's period (a nightly
job's data may be a day and a bit old, not two days), else none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from dataferry.config import Config, JobConfig
from dataferry.jobs import triggers
from dataferry.jobs.holds import Hold
from dataferry.jobs.status import ArtifactBrief, ArtifactUnreadable, DatabaseStatus, JobStatus, Status

FAILED = ("failed", "abandoned", "interrupted")
STATES = ("failing", "stale", "running", "held", "fresh", "unknown")


@dataclass(frozen=True)
class Cell:
    """One database in one environment, as the matrix shows it."""

    environment: str
    database: str
    state: str
    data_age_seconds: float | None = None
    live_age_seconds: float | None = None
    artifact_age_seconds: float | None = None
    artifact_error: str | None = None
    sanitised: bool | None = None
    limit_seconds: float | None = None
    jobs: tuple[JobStatus, ...] = ()
    holds: tuple[Hold, ...] = ()
    reasons: tuple[str, ...] = ()

    @property
    def running(self) -> list[JobStatus]:
        """Jobs of the cell with a run in progress (or a lock left by a dead one)."""
        return [j for j in self.jobs if j.running is not None]

    def to_json(self) -> dict[str, object]:
        """The cell for ``/api/matrix``: the state, the ages and why (jobs by name)."""
        return {
            "environment": self.environment,
            "database": self.database,
            "state": self.state,
            "data_age_seconds": self.data_age_seconds,
            "live_age_seconds": self.live_age_seconds,
            "artifact_age_seconds": self.artifact_age_seconds,
            "artifact_error": self.artifact_error,
            "sanitised": self.sanitised,
            "limit_seconds": self.limit_seconds,
            "jobs": [j.name for j in self.jobs],
            "running": [j.name for j in self.running],
            "held": bool(self.holds),
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class Matrix:
    """The whole matrix, as of ``status.time``."""

    status: Status
    environments: list[str]
    databases: list[str]
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def cell(self, database: str, environment: str) -> Cell | None:
        """The cell of ``database`` in ``environment``; None where it is not configured."""
        return self.cells.get((environment, database))

    def to_json(self) -> dict[str, object]:
        """``/api/matrix``."""
        return {
            "time": self.status.to_json()["time"],
            "environments": self.environments,
            "databases": self.databases,
            "unreadable": self.errors,
            "cells": [c.to_json() for c in self.cells.values()],
        }


def schedule_period(job: JobConfig, now: datetime) -> timedelta | None:
    """The time between two fires of the job's schedule after ``now`` (None without one)."""
    if not job.schedule:
        return None
    first = triggers.next_fire(job, now)
    second = triggers.next_fire(job, first) if first else None
    return second - first if first and second else None


def freshness_limit(job: JobConfig, now: datetime) -> timedelta | None:
    """How old a job's data may be before its cell is stale: ``max_age``, else two schedule periods."""
    if job.max_age is not None:
        return job.max_age
    period = schedule_period(job, now)
    return 2 * period if period else None


def build_matrix(cfg: Config, status: Status) -> Matrix:
    """The matrix of ``status``: columns in the configuration's order, rows sorted by name."""
    envs = [e for e in cfg.environments if any(s.name == e for s in status.environments)]
    dbs: set[str] = set()
    cells: dict[tuple[str, str], Cell] = {}
    errors: dict[str, str] = {}
    for env in status.environments:
        if env.error is not None:
            errors[env.name] = env.error
            continue
        env_holds = [*status.global_holds, *env.holds]
        for db in env.databases:
            dbs.add(db.name)
            cells[(env.name, db.name)] = _cell(cfg, env.name, db, env_holds, status.time)
    return Matrix(status=status, environments=envs, databases=sorted(dbs), cells=cells, errors=errors)


def _cell(cfg: Config, env: str, db: DatabaseStatus, env_holds: list[Hold], now: datetime) -> Cell:
    newest = db.newest_artifact
    artifact_age = newest.age_seconds if isinstance(newest, ArtifactBrief) else None
    live_age = db.live_data.age_seconds if db.live_data else None
    data_age = live_age if live_age is not None else artifact_age
    limits = [lim for j in db.jobs if (lim := freshness_limit(cfg.jobs[j.name], now)) is not None]
    limit = min(limits).total_seconds() if limits else None
    holds = _unique([*env_holds, *(h for j in db.jobs for h in j.holds)])
    reasons: list[str] = []
    for j in db.jobs:
        if j.last_run is not None and j.last_run.status in FAILED:
            reasons.append(f"failing: the last run of {j.name} {j.last_run.status}")
        if j.running is not None and j.running.expired:
            reasons.append(f"stale: the lock of {j.name} expired (a run died)")
    if isinstance(newest, ArtifactUnreadable):
        reasons.append(f"unknown: {newest.error}")
    if data_age is not None and limit is not None and data_age > limit:
        reasons.append("stale: the data is older than its limit")
    if any(j.running is not None and not j.running.expired for j in db.jobs):
        reasons.append("running: a run is in progress")
    if holds:
        reasons.append("held: paused")
    if data_age is not None and limit is not None and data_age <= limit:
        reasons.append("fresh: within its limit")
    state = min((r.split(":", 1)[0] for r in reasons), key=STATES.index, default="unknown")
    return Cell(
        environment=env,
        database=db.name,
        state=state,
        data_age_seconds=data_age,
        live_age_seconds=live_age,
        artifact_age_seconds=artifact_age,
        artifact_error=newest.error if isinstance(newest, ArtifactUnreadable) else None,
        sanitised=newest.sanitised if isinstance(newest, ArtifactBrief) else None,
        limit_seconds=limit,
        jobs=tuple(db.jobs),
        holds=tuple(holds),
        reasons=tuple(reasons),
    )


def _unique(holds: list[Hold]) -> list[Hold]:
    seen: set[tuple[str, str]] = set()
    out = []
    for h in holds:
        if (h.scope, h.target) not in seen:
            seen.add((h.scope, h.target))
            out.append(h)
    return out


def all_holds(status: Status) -> list[Hold]:
    """Every active hold in ``status``: on everything, on environments, on jobs (once each)."""
    found = list(status.global_holds)
    for env in status.environments:
        found += env.holds
        found += [h for db in env.databases for j in db.jobs for h in j.holds]
    return _unique(found)
