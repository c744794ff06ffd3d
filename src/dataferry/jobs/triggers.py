"""When a job is due: its cron schedule (in its time zone), or a new artifact of its ``after`` job.

``after`` uses no clocks: a job is pending when its upstream job's newest successful run published
an artifact that no finished run of this job has consumed yet (runs record the upstream artifact
they started for). Schedules use the run records too, so several schedulers sharing a store agree
on whether a fire time was already handled.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from dataferry import artifacts
from dataferry.config import Config, JobConfig
from dataferry.errors import ConfigError, NotFound
from dataferry.jobs.state import CONSUMING, StoreCache, iter_runs, now_utc

#: A schedule fire older than this is not caught up (like Kubernetes' startingDeadlineSeconds).
STARTING_DEADLINE = timedelta(hours=8)


def upstream_artifact(cfg: Config, job: JobConfig, stores: StoreCache) -> str | None:
    """The artifact published by the newest successful run of ``job.after`` (None without one)."""
    if job.after is None:
        return None
    store = stores.for_job(job.after)
    for record in iter_runs(store, job.after):
        if record.status == "succeeded" and record.published_artifact:
            return record.published_artifact
    return None


def pending_after(cfg: Config, job_name: str, stores: StoreCache) -> str | None:
    """The upstream artifact ``job_name`` has not consumed yet, or None when there is nothing new.

    A run consumes an artifact once it finished (succeeded, failed, abandoned); a skipped (held) or
    interrupted run does not, so the job runs for that artifact when the hold ends or on restart.
    """
    job = cfg.job(job_name)
    wanted = upstream_artifact(cfg, job, stores)
    if wanted is None:
        return None
    try:
        published_at, _ = artifacts.parse_id(wanted)
    except NotFound:
        published_at = None
    for record in iter_runs(stores.for_job(job_name), job_name):
        if record.upstream_artifact == wanted and record.status in (*CONSUMING, "running"):
            return None
        if published_at is not None and record.started_at < published_at:
            break  # older runs cannot have consumed an artifact made after they started
    return wanted


def last_fire(job: JobConfig, now: datetime | None = None) -> datetime | None:
    """The most recent time ``job.schedule`` fired, in UTC (None without a schedule)."""
    if not job.schedule:
        return None
    local = (now or now_utc()).astimezone(ZoneInfo(job.timezone))
    fire: datetime = croniter(job.schedule, local).get_prev(datetime)
    return fire


def fired_now(job_name: str, job: JobConfig, now: datetime | None = None) -> str:
    """The fire time a run started by the job's own cron (a Kubernetes CronJob: ``dataferry run
    JOB --trigger schedule``) handles: the schedule's most recent fire, as ISO 8601."""
    fire = last_fire(job, now)
    if fire is None:
        raise ConfigError(
            f"job {job_name} has no schedule, so a run cannot be recorded as scheduled",
            hint="drop --trigger schedule (the run is then manual), or give the job a schedule",
        )
    return fire.isoformat()


def next_fire(job: JobConfig, now: datetime | None = None) -> datetime | None:
    """The next time ``job.schedule`` fires (None without a schedule)."""
    if not job.schedule:
        return None
    local = (now or now_utc()).astimezone(ZoneInfo(job.timezone))
    fire: datetime = croniter(job.schedule, local).get_next(datetime)
    return fire


def due_fire(
    cfg: Config,
    job_name: str,
    stores: StoreCache,
    now: datetime | None = None,
    deadline: timedelta = STARTING_DEADLINE,
) -> datetime | None:
    """The schedule fire time ``job_name`` still has to handle, or None.

    Handled means some run (any status but interrupted, including a held skip) started at or after
    it. A fire older than ``deadline`` is let go: the next one will come.
    """
    job = cfg.job(job_name)
    now = now or now_utc()
    fire = last_fire(job, now)
    if fire is None or now - fire > deadline:
        return None
    for record in iter_runs(stores.for_job(job_name), job_name):
        if record.started_at < fire:
            break
        if record.status != "interrupted":
            return None
    return fire


def still_due(cfg: Config, name: str, trigger: str, detail: str | None, stores: StoreCache) -> bool:
    """Asked by a run after it took the lock: is its trigger still unhandled?"""
    if trigger == "after":
        return pending_after(cfg, name, stores) == detail
    if trigger == "schedule":
        return due_fire(cfg, name, stores) is not None
    return True
