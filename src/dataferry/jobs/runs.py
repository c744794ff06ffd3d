"""Run records: one JSON object per run of a job, ``_dataferry/runs/<job>/<run-id>.json`` in the
store of the job's environment; run ids sort chronologically."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field, ValidationError

from dataferry.errors import FerryError, NotFound
from dataferry.jobs.common import PREFIX, StateModel, now_utc, whoami
from dataferry.stores import Store, put_bytes, read_bytes

RUN_FORMAT_VERSION = 1

RunStatus = Literal["running", "succeeded", "failed", "skipped", "interrupted", "abandoned"]
StepStatus = Literal["pending", "running", "succeeded", "failed", "skipped", "interrupted"]
#: Statuses after which an ``after`` trigger counts as handled (a skipped or interrupted run is retried).
CONSUMING = ("succeeded", "failed", "abandoned")


class ErrorInfo(StateModel):
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


class StepRecord(StateModel):
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
    warnings: list[str] = Field(
        default_factory=list, description="e.g. a script statement that changed 0 rows"
    )
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


class RunRecord(StateModel):
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
