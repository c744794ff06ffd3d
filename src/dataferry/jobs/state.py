"""Run records, locks and holds: small JSON objects in an environment's store under ``_dataferry/``.

Layout (in the store of the job's environment)::

    _dataferry/runs/<job>/<run-id>.json        one record per run; run ids sort chronologically
    _dataferry/locks/<job>.json                the job's lock (created exclusively)
    _dataferry/locks/<job>.takeover/<token>    one marker per expired lock that was taken over
    _dataferry/holds/job/<job>.json            a hold on one job
    _dataferry/holds/env/<environment>.json    a hold on every job of an environment
    _dataferry/holds/all.json                  a hold on everything (see ``global_hold_stores``)

Nothing here needs a server besides the store: a lock is an object created with ``create_exclusive``
(S3 conditional write, ``O_EXCL`` locally), so two machines sharing a bucket share locks, holds and
history. Clocks matter only for lock expiry and hold expiry; keep machines NTP-synced and the lock
TTL far above any clock skew.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dataferry.config import Config, parse_duration
from dataferry.errors import ConfigError, FerryError, LockBusy, NotFound
from dataferry.progress import NullReporter, Reporter
from dataferry.stores import Store, put_bytes, read_bytes

PREFIX = "_dataferry/"
RUN_FORMAT_VERSION = 1

RunStatus = Literal["running", "succeeded", "failed", "skipped", "interrupted", "abandoned"]
StepStatus = Literal["pending", "running", "succeeded", "failed", "skipped"]
#: Statuses after which an ``after`` trigger counts as handled (a skipped or interrupted run is retried).
CONSUMING = ("succeeded", "failed", "abandoned")


def now_utc() -> datetime:
    """Now, in UTC (microseconds kept: run ids and heartbeats need sub-second order)."""
    return datetime.now(UTC)


def whoami() -> str:
    """``user@host`` for records and holds (who did it, from where)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- run records ---------------------------------------------------------------------------------


class ErrorInfo(_Model):
    """A failure as recorded: the error's class, message, hint and exit code (no secrets: see below)."""

    type: str
    message: str
    exit_code: int
    hint: str | None = None

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        """Record a ``FerryError`` as it is; anything else is a bug, recorded by type only, because
        its message was not written with invariant 7 (secrets stay secret) in mind."""
        if isinstance(exc, FerryError):
            return cls(type=type(exc).__name__, message=exc.message, exit_code=exc.exit_code, hint=exc.hint)
        return cls(
            type=type(exc).__name__,
            message=f"unexpected {type(exc).__name__} (a bug): the traceback is in the log",
            exit_code=1,
        )


class StepRecord(_Model):
    """One step of a run: when it ran, what it moved and what came of it."""

    index: int = Field(description="1-based position in the job's steps")
    step: str
    status: StepStatus = "pending"
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    bytes: int | None = None
    artifact: str | None = None
    detail: str | None = None
    error: ErrorInfo | None = None

    @property
    def kind(self) -> str:
        """``restore``, ``sanitise``, ``backup``, ``verify`` or ``hook``."""
        return self.step.split(":", 1)[0]

    def duration(self) -> float | None:
        """Seconds between start and end, when both are known."""
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class RunRecord(_Model):
    """One execution of a job, written when it starts, after each step and when it ends."""

    format_version: int = RUN_FORMAT_VERSION
    job: str
    run_id: str
    environment: str
    database: str
    status: RunStatus = "running"
    trigger: str = "manual"
    trigger_detail: str | None = None
    from_step: int = 1
    started_at: datetime
    finished_at: datetime | None = None
    owner: str = Field(default_factory=whoami)
    pid: int = Field(default_factory=os.getpid)
    steps: list[StepRecord] = Field(default_factory=list)
    upstream_artifact: str | None = Field(
        None, description="the 'after' job's newest published artifact when this run started"
    )
    restored_artifact: str | None = None
    data_as_of: datetime | None = Field(
        None, description="when the restored data was taken from its origin (production)"
    )
    published_artifact: str | None = None
    skip_reason: str | None = None
    lock_takeover: dict[str, Any] | None = None
    error: ErrorInfo | None = None

    @property
    def finished(self) -> bool:
        """True once the run reached a final status."""
        return self.status != "running"

    def duration(self) -> float | None:
        """Seconds the run took (so far, if still running)."""
        end = self.finished_at or now_utc()
        return (end - self.started_at).total_seconds()


def new_run_id(when: datetime | None = None) -> str:
    """``2026-11-26T012033.123456Z-1a2b3c``: sorts chronologically, unique across machines."""
    when = (when or now_utc()).astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H%M%S.%fZ") + "-" + secrets.token_hex(3)


def run_key(job: str, run_id: str) -> str:
    """Key of a run record."""
    return f"{PREFIX}runs/{job}/{run_id}.json"


def write_run(store: Store, record: RunRecord) -> None:
    """Write (or rewrite) a run record."""
    put_bytes(store, run_key(record.job, record.run_id), record.model_dump_json(indent=2).encode())


def read_run(store: Store, job: str, run_id: str) -> RunRecord:
    """One run record; ``NotFound`` if missing."""
    return _parse_run(read_bytes(store, run_key(job, run_id)), run_key(job, run_id))


def _parse_run(raw: bytes, key: str) -> RunRecord:
    try:
        return RunRecord.model_validate(json.loads(raw))
    except (ValueError, ValidationError):
        raise FerryError(
            f"run record {key} is not valid JSON of a run",
            hint="it was edited or damaged; delete it to drop it from the history",
        ) from None


def run_ids(store: Store, job: str) -> list[str]:
    """Run ids of ``job``, newest first."""
    prefix = f"{PREFIX}runs/{job}/"
    ids = [o.key[len(prefix) : -len(".json")] for o in store.list(prefix) if o.key.endswith(".json")]
    return sorted(ids, reverse=True)


def iter_runs(store: Store, job: str) -> Iterator[RunRecord]:
    """Run records of ``job``, newest first; a record deleted while listing is skipped."""
    for run_id in run_ids(store, job):
        try:
            yield read_run(store, job, run_id)
        except NotFound:
            continue


def last_run(store: Store, job: str, statuses: tuple[str, ...] | None = None) -> RunRecord | None:
    """The newest run of ``job`` (with one of ``statuses``, when given)."""
    for record in iter_runs(store, job):
        if statuses is None or record.status in statuses:
            return record
    return None


# -- holds ---------------------------------------------------------------------------------------

HoldScope = Literal["job", "environment", "all"]


class Hold(_Model):
    """A pause with a reason and an optional expiry, on a job, an environment or everything."""

    scope: HoldScope
    target: str
    reason: str
    created_at: datetime
    created_by: str
    until: datetime | None = None

    def active(self, now: datetime | None = None) -> bool:
        """True until ``until`` (forever without one)."""
        return self.until is None or (now or now_utc()) < self.until

    def describe(self) -> str:
        """``environment staging held by ann@host since ...: pen test (until ...)``."""
        what = {"job": f"job {self.target}", "environment": f"environment {self.target}", "all": "everything"}
        until = f" until {self.until.isoformat()}" if self.until else " until resumed"
        return (
            f"{what[self.scope]} is held by {self.created_by} since "
            f"{self.created_at.strftime('%Y-%m-%dT%H:%M:%SZ')}{until}: {self.reason}"
        )


def hold_key(scope: HoldScope, target: str) -> str:
    """Key of a hold."""
    if scope == "all":
        return f"{PREFIX}holds/all.json"
    folder = "job" if scope == "job" else "env"
    return f"{PREFIX}holds/{folder}/{target}.json"


def read_hold(store: Store, scope: HoldScope, target: str) -> Hold | None:
    """The hold on ``target``, active or not; None if there is none."""
    key = hold_key(scope, target)
    try:
        raw = read_bytes(store, key)
    except NotFound:
        return None
    try:
        return Hold.model_validate(json.loads(raw))
    except (ValueError, ValidationError):
        # A damaged hold still means someone wanted a pause: fail safe, treat it as held.
        return Hold(
            scope=scope,
            target=target,
            reason=f"the hold object {key} is unreadable; resume to remove it",
            created_at=now_utc(),
            created_by="unknown",
        )


def write_hold(store: Store, hold: Hold) -> None:
    """Write a hold (replacing any older hold on the same target)."""
    put_bytes(store, hold_key(hold.scope, hold.target), hold.model_dump_json(indent=2).encode())


def delete_hold(store: Store, scope: HoldScope, target: str) -> bool:
    """Remove a hold; True if there was one."""
    existed = read_hold(store, scope, target) is not None
    store.delete(hold_key(scope, target))
    return existed


def global_hold_environments(cfg: Config) -> list[str]:
    """Where ``pause --all`` writes its hold: the store of ``settings.state_environment`` when set
    (one store every machine can read), else every environment's store, so that each job finds
    every hold that concerns it in its own environment's store and never needs to read another
    environment's bucket (an integration machine may not be allowed to read production's)."""
    if cfg.settings.state_environment:
        return [cfg.settings.state_environment]
    return sorted(cfg.environments)


def global_hold_environment_for(cfg: Config, environment: str) -> str:
    """The store a job of ``environment`` reads the hold on everything from."""
    return cfg.settings.state_environment or environment


def active_holds(cfg: Config, job_name: str, stores: StoreCache, now: datetime | None = None) -> list[Hold]:
    """Every active hold that stops ``job_name``: on the job, on its environment, on everything."""
    job = cfg.job(job_name)
    env_store = stores.get(job.environment)
    found = [
        read_hold(env_store, "job", job_name),
        read_hold(env_store, "environment", job.environment),
        read_hold(stores.get(global_hold_environment_for(cfg, job.environment)), "all", "*"),
    ]
    return [h for h in found if h is not None and h.active(now)]


class StoreCache:
    """One store object per environment for the life of a command (stores hold connections)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._stores: dict[str, Store] = {}

    def get(self, environment: str) -> Store:
        """The store of ``environment``."""
        if environment not in self._stores:
            from dataferry.ops import store_for

            self._stores[environment] = store_for(self.cfg, environment)
        return self._stores[environment]

    def for_job(self, job_name: str) -> Store:
        """The store that keeps ``job_name``'s records, lock and hold: its environment's."""
        return self.get(self.cfg.job(job_name).environment)


# -- locks ---------------------------------------------------------------------------------------


class LockInfo(_Model):
    """What a lock object says: who holds it, since when, and until when it is valid."""

    job: str
    token: str
    run_id: str | None = None
    owner: str = Field(default_factory=whoami)
    host: str = Field(default_factory=socket.gethostname)
    pid: int = Field(default_factory=os.getpid)
    acquired_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
    taken_over_from: dict[str, Any] | None = None

    def expired(self, now: datetime | None = None) -> bool:
        """True once the holder stopped refreshing it for a whole TTL."""
        return (now or now_utc()) >= self.expires_at

    def describe(self) -> str:
        """``run 2026-... by ann@host (pid 123), heartbeat 12s ago``."""
        ago = (now_utc() - self.heartbeat_at).total_seconds()
        return (
            f"run {self.run_id or '?'} by {self.owner} (pid {self.pid} on {self.host}), "
            f"last heartbeat {ago:.0f}s ago, expires {self.expires_at.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        )


def lock_key(job: str) -> str:
    """Key of a job's lock."""
    return f"{PREFIX}locks/{job}.json"


def takeover_key(job: str, token: str) -> str:
    """Key of the marker that makes taking over one expired lock race-safe."""
    return f"{PREFIX}locks/{job}.takeover/{token}"


def read_lock(store: Store, job: str, ttl: timedelta) -> LockInfo | None:
    """The current lock of ``job``, or None when it is free.

    A lock object that cannot be parsed is either being created right now (a local exclusive
    create writes after it creates) or damaged: it is retried briefly, then treated as a lock
    that expires ``ttl`` after the object was last modified.
    """
    key = lock_key(job)
    for _ in range(5):
        try:
            raw = read_bytes(store, key)
        except NotFound:
            return None
        try:
            return LockInfo.model_validate(json.loads(raw))
        except (ValueError, ValidationError):
            time.sleep(0.1)
    info = next((o for o in store.list(key) if o.key == key), None)
    if info is None:
        return None
    modified = info.modified or now_utc()
    return LockInfo(
        job=job,
        token=f"unreadable-{int(modified.timestamp())}-{info.size}",
        owner="unknown",
        host="unknown",
        pid=0,
        acquired_at=modified,
        heartbeat_at=modified,
        expires_at=modified + ttl,
    )


@dataclass
class Takeover:
    """An expired lock that was taken over, for the log and the run record."""

    previous: LockInfo

    def as_dict(self) -> dict[str, Any]:
        """The previous holder, as recorded in the new lock and the run record."""
        return self.previous.model_dump(mode="json")


class JobLock:
    """The lock of one job: created exclusively, refreshed by a heartbeat thread, taken over only
    once expired, and released at the end.

    Taking over an expired lock is itself race-safe: the taker must first create a marker named
    after the expired lock's token exclusively, so of many processes that see the same expired
    lock exactly one wins; it then re-reads the lock and proceeds only if it is still that same
    expired lock.
    """

    def __init__(
        self,
        store: Store,
        job: str,
        *,
        ttl: timedelta,
        run_id: str | None = None,
        reporter: Reporter | None = None,
    ) -> None:
        self.store = store
        self.job = job
        self.ttl = ttl
        self.run_id = run_id
        self.reporter = reporter or NullReporter()
        self.token = secrets.token_hex(12)
        self.takeover: Takeover | None = None
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._held = False

    # -- acquire ------------------------------------------------------------------------------

    def _info(self, acquired_at: datetime | None = None) -> LockInfo:
        now = now_utc()
        return LockInfo(
            job=self.job,
            token=self.token,
            run_id=self.run_id,
            acquired_at=acquired_at or now,
            heartbeat_at=now,
            expires_at=now + self.ttl,
            taken_over_from=self.takeover.as_dict() if self.takeover else None,
        )

    def acquire(self) -> None:
        """Take the lock or raise ``LockBusy`` (exit 6); starts the heartbeat."""
        key = lock_key(self.job)
        for _ in range(3):
            if self.store.create_exclusive(key, self._encode(self._info())):
                self._start()
                return
            current = read_lock(self.store, self.job, self.ttl)
            if current is None:
                continue  # released between our create and our read: try again
            if not current.expired():
                raise self._busy(current)
            self._take_over(current)
            self._start()
            return
        raise LockBusy(
            f"the lock of job {self.job} keeps changing hands", hint="another run is starting; try again"
        )

    def _take_over(self, expired: LockInfo) -> None:
        marker = takeover_key(self.job, expired.token)
        if not self.store.create_exclusive(marker, self._encode(self._info())):
            raise LockBusy(
                f"job {self.job}: another process is taking over the expired lock of {expired.describe()}",
                hint="wait for that run to finish, or see 'dataferry status'",
            )
        current = read_lock(self.store, self.job, self.ttl)
        self.takeover = Takeover(previous=expired)
        if current is None:
            # The expired lock was removed meanwhile: compete for a fresh one like anybody else.
            if not self.store.create_exclusive(lock_key(self.job), self._encode(self._info())):
                raise LockBusy(f"job {self.job} was locked by another run just now", hint="try again later")
        elif current.token != expired.token:
            raise self._busy(current)
        else:
            put_bytes(self.store, lock_key(self.job), self._encode(self._info()))
        self.reporter.warn(
            f"took over the expired lock of job {self.job}: {expired.describe()}",
            job=self.job,
            previous_run=expired.run_id,
        )

    def _busy(self, current: LockInfo) -> LockBusy:
        return LockBusy(
            f"job {self.job} is already running: {current.describe()}",
            hint="wait for it to finish; a lock whose holder died expires by itself after "
            f"{_human(self.ttl)} (see 'dataferry status' and docs/runbook.md)",
        )

    @staticmethod
    def _encode(info: LockInfo) -> bytes:
        return info.model_dump_json(indent=2).encode()

    # -- heartbeat ----------------------------------------------------------------------------

    def _start(self) -> None:
        self._held = True
        self._acquired_at = now_utc()
        self._thread = threading.Thread(target=self._beat, name=f"lock-{self.job}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        interval = max(self.ttl.total_seconds() / 4, 0.2)
        valid_until = self._acquired_at + self.ttl
        while not self._stop.wait(interval):
            started = now_utc()
            if started >= valid_until:
                # Someone may already have taken it over: refreshing now could overwrite theirs.
                self._lose("it was not refreshed before it expired (the process was stalled)")
                return
            try:
                current = read_lock(self.store, self.job, self.ttl)
                if current is None or current.token != self.token:
                    self._lose("it was taken over or removed")
                    return
                put_bytes(self.store, lock_key(self.job), self._encode(self._info(self._acquired_at)))
                valid_until = started + self.ttl
            except Exception as exc:  # the thread must not die silently: retry until expiry
                # A store hiccup: keep trying; once our lock would have expired, it is lost (above).
                self.reporter.warn(f"cannot refresh the lock of job {self.job}: {exc}")

    def _lose(self, why: str) -> None:
        self.reporter.warn(f"lost the lock of job {self.job}: {why}", job=self.job)
        self.lost.set()

    def check(self) -> None:
        """Raise ``LockBusy`` if the lock was lost (taken over, or not refreshed in time)."""
        if self.lost.is_set():
            raise LockBusy(
                f"job {self.job} lost its lock while running; stopped before the next step",
                hint="another process may be running this job now: see 'dataferry status'",
            )

    # -- release ------------------------------------------------------------------------------

    def release(self) -> None:
        """Stop the heartbeat and delete the lock if it is still ours."""
        if not self._held:
            return
        self._held = False
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            current = read_lock(self.store, self.job, self.ttl)
            if current is not None and current.token == self.token:
                self.store.delete(lock_key(self.job))
            elif not self.lost.is_set():
                self.reporter.warn(f"the lock of job {self.job} was no longer ours at the end of the run")
        except FerryError as exc:
            self.reporter.warn(
                f"could not release the lock of job {self.job}: {exc.message}; it expires by itself "
                f"after {_human(self.ttl)}"
            )

    def __enter__(self) -> JobLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def break_lock(store: Store, job: str, ttl: timedelta) -> LockInfo | None:
    """Delete ``job``'s lock whatever its state (the operator's ``unlock --force``); returns it."""
    current = read_lock(store, job, ttl)
    store.delete(lock_key(job))
    return current


def lock_ttl(cfg: Config) -> timedelta:
    """The configured lock TTL."""
    try:
        return parse_duration(cfg.settings.lock_ttl)
    except ValueError as exc:  # validated already; kept for configs built in code
        raise ConfigError(str(exc)) from None


def _human(delta: timedelta) -> str:
    secs = int(delta.total_seconds())
    if secs >= 3600:
        return f"{secs / 3600:.1f}h"
    if secs >= 60:
        return f"{secs // 60}m"
    return f"{secs}s"
