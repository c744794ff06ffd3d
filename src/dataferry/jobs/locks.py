"""Job locks: ``_dataferry/locks/<job>.json``, created exclusively (S3 conditional write, ``O_EXCL``
locally), refreshed by a heartbeat, taken over only once expired (race-safe, through a marker
``_dataferry/locks/<job>.takeover/<token>``) and released at the end of the run."""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import Field, ValidationError

from dataferry.config import Config
from dataferry.errors import FerryError, LockBusy, NotFound
from dataferry.jobs.common import PREFIX, StateModel, now_utc, whoami
from dataferry.progress import NullReporter, Reporter, human_duration
from dataferry.stores import Store, put_bytes, read_bytes


class LockInfo(StateModel):
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

    def check(self, before: str = "the next step") -> None:
        """Raise ``LockBusy`` if the lock was lost (taken over, or not refreshed in time)."""
        if self.lost.is_set():
            raise LockBusy(
                f"job {self.job} lost its lock while running; stopped before {before}",
                hint="another process may be running this job now: see 'dataferry status'",
            )

    def confirm(self, before: str = "the next step") -> None:
        """Read the lock now and raise ``LockBusy`` unless it is still ours and unexpired: asked
        right before a destructive step, so an ``unlock --force`` or a takeover since the last
        heartbeat stops the run there instead of being noticed only after it."""
        self.check(before)
        current = read_lock(self.store, self.job, self.ttl)
        if current is None or current.token != self.token:
            self._lose("it was taken over or removed (unlock --force?)")
        elif current.expired():
            self._lose("it expired before it was refreshed")
        self.check(before)

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
    """The configured lock TTL (parsed when the configuration was read)."""
    return cfg.settings.lock_ttl


def _human(delta: timedelta) -> str:
    return human_duration(delta.total_seconds())
