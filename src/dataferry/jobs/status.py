"""What ``dataferry status`` reports: per environment and database, the age of the data, the last
and next run of each job, holds and runs in progress, as a typed model (``collect_status``).

``Status.to_json()`` is the ``--json`` output (a stable shape); ``status_text.render_lines`` is the
plain text that ``dataferry status`` and the quickstart print.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dataferry import ops
from dataferry.config import Config
from dataferry.errors import FerryError, NotFound
from dataferry.jobs import triggers
from dataferry.jobs.common import StoreCache, now_utc
from dataferry.jobs.holds import Hold, active_holds, global_hold_environment_for, read_hold
from dataferry.jobs.locks import LockInfo, lock_ttl, read_lock
from dataferry.jobs.runs import RunRecord, iter_runs
from dataferry.ops.live import LiveRecord, read_live

#: How far back ``status`` looks for the run that restored the live data, once it has the last run.
HISTORY_WINDOW = timedelta(days=60)


def _iso(when: datetime | None) -> str | None:
    return when.astimezone(UTC).isoformat() if when else None


def _holds_json(holds: list[Hold]) -> list[dict[str, Any]]:
    return [h.model_dump(mode="json") for h in holds]


@dataclass(frozen=True)
class ArtifactBrief:
    """The newest artifact of a database in its environment's store."""

    id: str
    finished_at: datetime
    age_seconds: float
    size: int
    sanitised: bool

    def to_json(self) -> dict[str, Any]:
        """As in ``status --json``."""
        return {
            "id": self.id,
            "finished_at": _iso(self.finished_at),
            "age_seconds": self.age_seconds,
            "size": self.size,
            "sanitised": self.sanitised,
        }


@dataclass(frozen=True)
class ArtifactUnreadable:
    """The newest artifact could not be looked up (a store error)."""

    error: str

    def to_json(self) -> dict[str, Any]:
        """As in ``status --json``."""
        return {"error": self.error}


@dataclass(frozen=True)
class LiveData:
    """What is live in a database: the artifact the last restore swapped in (by a job or by hand),
    when its data was taken from its origin, and when and by what it was restored."""

    artifact: str | None
    data_as_of: datetime
    age_seconds: float
    restored_at: datetime | None = None
    via: str | None = None

    def to_json(self) -> dict[str, Any]:
        """As in ``status --json``."""
        return {
            "artifact": self.artifact,
            "data_as_of": _iso(self.data_as_of),
            "age_seconds": self.age_seconds,
            "restored_at": _iso(self.restored_at),
            "via": self.via,
        }

    @classmethod
    def of(cls, record: LiveRecord, now: datetime) -> LiveData:
        """From the live record the last restore wrote (``ops.live``)."""
        return cls(
            artifact=record.artifact,
            data_as_of=record.data_as_of,
            age_seconds=(now - record.data_as_of).total_seconds(),
            restored_at=record.restored_at,
            via=record.via,
        )


@dataclass(frozen=True)
class RunBrief:
    """A job's last run, in short."""

    run_id: str
    status: str
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    duration_seconds: float | None
    error: str | None
    skip_reason: str | None

    @classmethod
    def of(cls, r: RunRecord, lock: LockInfo | None = None) -> RunBrief:
        """The brief of a run record (``lock``: the job's lock now, to tell a dead run)."""
        return cls(
            run_id=r.run_id,
            status=shown_status(r, lock),
            trigger=r.trigger,
            started_at=r.started_at,
            finished_at=r.finished_at,
            duration_seconds=r.duration() if r.finished else None,
            error=r.error.message if r.error else None,
            skip_reason=r.skip_reason,
        )

    def to_json(self) -> dict[str, Any]:
        """As in ``status --json``."""
        return {
            "run_id": self.run_id,
            "status": self.status,
            "trigger": self.trigger,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_seconds": self.duration_seconds,
            "error": self.error,
            "skip_reason": self.skip_reason,
        }


@dataclass(frozen=True)
class NextRun:
    """When a job runs next: its schedule's next fire time, and/or its upstream job."""

    schedule: str | None = None
    at: datetime | None = None
    after: str | None = None
    pending_artifact: str | None = None

    def to_json(self) -> dict[str, Any]:
        """As in ``status --json``: only the keys of the triggers the job has."""
        out: dict[str, Any] = {}
        if self.schedule is not None:
            out["schedule"] = self.schedule
            out["at"] = _iso(self.at)
        if self.after is not None:
            out["after"] = self.after
            out["pending_artifact"] = self.pending_artifact
        return out


@dataclass(frozen=True)
class Running:
    """The lock of a run in progress (or of one that died: ``expired``)."""

    lock: LockInfo
    expired: bool
    description: str

    def to_json(self) -> dict[str, Any]:
        """As in ``status --json``: the lock's fields, and these two."""
        return self.lock.model_dump(mode="json") | {"expired": self.expired, "description": self.description}


@dataclass(frozen=True)
class JobStatus:
    """One job: its last and next run, holds, a run in progress and the data it made live."""

    name: str
    steps: list[str]
    last_run: RunBrief | None
    next_run: NextRun
    holds: list[Hold]
    running: Running | None
    live_data: LiveData | None

    def to_json(self) -> dict[str, Any]:
        """As in ``status --json``."""
        return {
            "name": self.name,
            "steps": self.steps,
            "last_run": self.last_run.to_json() if self.last_run else None,
            "next_run": self.next_run.to_json(),
            "holds": _holds_json(self.holds),
            "running": self.running.to_json() if self.running else None,
            "live_data": self.live_data.to_json() if self.live_data else None,
        }


@dataclass(frozen=True)
class DatabaseStatus:
    """One database in one environment: its newest artifact, its live data and its jobs."""

    name: str
    newest_artifact: ArtifactBrief | ArtifactUnreadable | None
    live_data: LiveData | None
    jobs: list[JobStatus]

    def to_json(self) -> dict[str, Any]:
        """As in ``status --json``."""
        return {
            "name": self.name,
            "newest_artifact": self.newest_artifact.to_json() if self.newest_artifact else None,
            "live_data": self.live_data.to_json() if self.live_data else None,
            "jobs": [j.to_json() for j in self.jobs],
        }


@dataclass(frozen=True)
class EnvironmentStatus:
    """One environment; ``error`` when its store could not be read (then nothing else is known)."""

    name: str
    store: str | None = None
    holds: tuple[Hold, ...] = ()
    databases: tuple[DatabaseStatus, ...] = ()
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """As in ``status --json``."""
        if self.error is not None:
            return {"name": self.name, "error": self.error, "holds": [], "databases": []}
        return {
            "name": self.name,
            "store": self.store,
            "holds": _holds_json(list(self.holds)),
            "databases": [d.to_json() for d in self.databases],
        }


@dataclass(frozen=True)
class Status:
    """Everything ``dataferry status`` shows, as of ``time``."""

    time: datetime
    global_holds: list[Hold]
    environments: list[EnvironmentStatus]

    @property
    def unreadable(self) -> list[str]:
        """Environments whose store could not be read."""
        return [e.name for e in self.environments if e.error is not None]

    def to_json(self) -> dict[str, Any]:
        """The ``status --json`` document."""
        return {
            "time": _iso(self.time),
            "global_holds": _holds_json(self.global_holds),
            "environments": [e.to_json() for e in self.environments],
        }


def shown_status(record: RunRecord, lock: LockInfo | None, now: datetime | None = None) -> str:
    """A run's status as an operator should see it: a run recorded as ``running`` whose lock is
    gone, expired or someone else's has stopped without finishing (killed, and its lock removed
    by ``unlock``): ``abandoned``, as the next run also records it."""
    if record.status != "running":
        return record.status
    if lock is not None and lock.run_id == record.run_id and not lock.expired(now):
        return "running"
    return "abandoned"


def collect_status(cfg: Config, environment: str | None = None) -> Status:
    """Per environment and database: data age, last run, next run, holds, running now."""
    if environment is not None:
        cfg.environment(environment)
    stores = StoreCache(cfg)
    now = now_utc()
    envs = [environment] if environment else sorted(cfg.environments)
    global_holds: list[Hold] = []
    for env in envs:
        try:
            hold = read_hold(stores.get(global_hold_environment_for(cfg, env)), "all", "*")
        except FerryError:
            continue  # reported with the environment below
        if hold is not None and hold.active(now):
            global_holds.append(hold)
            break
    out: list[EnvironmentStatus] = []
    for env in envs:
        try:
            out.append(_env_status(cfg, env, stores, now))
        except FerryError as exc:  # one unreachable store must not hide the others
            out.append(EnvironmentStatus(name=env, error=exc.message))
    return Status(time=now, global_holds=global_holds, environments=out)


def _env_status(cfg: Config, env: str, stores: StoreCache, now: datetime) -> EnvironmentStatus:
    store = stores.get(env)
    hold = read_hold(store, "environment", env)
    names = sorted(
        {d for d, db in cfg.databases.items() if env in db.environments}
        | {j.database for j in cfg.jobs.values() if j.environment == env}
    )
    return EnvironmentStatus(
        name=env,
        store=store.url,
        holds=(hold,) if hold is not None and hold.active(now) else (),
        databases=tuple(_db_status(cfg, env, name, stores, now) for name in names),
    )


def _db_status(cfg: Config, env: str, database: str, stores: StoreCache, now: datetime) -> DatabaseStatus:
    newest: ArtifactBrief | ArtifactUnreadable | None = None
    try:
        m = ops.latest_artifact(cfg, database, env)
        newest = ArtifactBrief(
            id=m.id,
            finished_at=m.finished_at,
            age_seconds=(now - m.finished_at).total_seconds(),
            size=m.size,
            sanitised=m.sanitised,
        )
    except NotFound:
        pass
    except FerryError as exc:
        newest = ArtifactUnreadable(exc.message)
    jobs = [
        _job_status(cfg, name, stores, now)
        for name, j in cfg.jobs.items()
        if j.environment == env and j.database == database
    ]
    # The newest restore wins: the live record every restore writes, or (stores written before it
    # existed, or a record that could not be written) the newest restore a job recorded.
    recorded = read_live(stores.get(env), database)
    candidates = [j.live_data for j in jobs if j.live_data is not None]
    if recorded is not None:
        candidates.append(LiveData.of(recorded, now))
    epoch = datetime.min.replace(tzinfo=UTC)
    live = max(candidates, key=lambda d: d.restored_at or epoch, default=None)
    return DatabaseStatus(name=database, newest_artifact=newest, live_data=live, jobs=jobs)


def _job_status(cfg: Config, name: str, stores: StoreCache, now: datetime) -> JobStatus:
    job = cfg.jobs[name]
    store = stores.for_job(name)
    last: RunRecord | None = None
    restored: RunRecord | None = None
    for record in iter_runs(store, name):
        last = last or record
        if record.data_as_of is not None:  # it swapped, even if a later step failed
            restored = record
            break
        if last is not None and (now - record.started_at) > HISTORY_WINDOW:
            break  # enough history for a status line
    lock = read_lock(store, name, lock_ttl(cfg))
    running = Running(lock, lock.expired(now), lock.describe()) if lock is not None else None
    next_run = NextRun(
        schedule=f"{job.schedule} ({job.timezone})" if job.schedule else None,
        at=triggers.next_fire(job, now) if job.schedule else None,
        after=job.after or None,
        pending_artifact=triggers.pending_after(cfg, name, stores) if job.after else None,
    )
    live = None
    if restored is not None and restored.data_as_of is not None:
        restore_step = next((s for s in restored.steps if s.kind == "restore" and s.finished_at), None)
        live = LiveData(
            artifact=restored.restored_artifact,
            data_as_of=restored.data_as_of,
            age_seconds=(now - restored.data_as_of).total_seconds(),
            restored_at=restore_step.finished_at if restore_step else restored.finished_at,
            via=f"job {name}, run {restored.run_id}",
        )
    return JobStatus(
        name=name,
        steps=list(job.steps),
        last_run=RunBrief.of(last, lock) if last is not None else None,
        next_run=next_run,
        holds=active_holds(cfg, name, stores, now),
        running=running,
        live_data=live,
    )
