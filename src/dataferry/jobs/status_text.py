"""The status as plain text, as ``dataferry status`` prints it and the quickstart shows it."""

from __future__ import annotations

from datetime import UTC, datetime

from dataferry.jobs.status import ArtifactUnreadable, DatabaseStatus, JobStatus, Status
from dataferry.progress import human_bytes, human_duration


def age(when: datetime | None, now: datetime) -> str:
    """``3d 4h``, ``4h``, ``12m 5s``, ``40s`` (``progress.human_duration``, the one format); ``-``
    for never."""
    if when is None:
        return "-"
    return human_duration(int(max((now - when).total_seconds(), 0)))


def render_lines(status: Status) -> list[str]:
    """The status as plain text lines, as ``dataferry status`` prints it."""
    now = status.time
    lines = ["HELD: " + hold.describe() for hold in status.global_holds]
    for env in status.environments:
        if env.error is not None:
            lines.append(f"{env.name}  ERROR: {env.error}")
            continue
        lines.append(f"{env.name}  ({env.store})")
        lines += ["  HELD: " + hold.describe() for hold in env.holds]
        for db in env.databases:
            lines += _db_lines(db, now)
    return lines


def _db_lines(db: DatabaseStatus, now: datetime) -> list[str]:
    newest = db.newest_artifact
    if newest is None:
        art = "no artifact"
    elif isinstance(newest, ArtifactUnreadable):
        art = f"store error: {newest.error}"
    else:
        art = (
            f"newest artifact {newest.id} ({age(newest.finished_at, now)} old, "
            f"{human_bytes(newest.size)}{', sanitised' if newest.sanitised else ''})"
        )
    live = f"; live data as of {age(db.live_data.data_as_of, now)} ago" if db.live_data else ""
    return [f"  {db.name}: {art}{live}"] + [f"    job {j.name}: {_job_line(j, now)}" for j in db.jobs]


def _job_line(j: JobStatus, now: datetime) -> str:
    last = j.last_run
    if last is None:
        text = "never ran"
    else:
        text = f"last run {last.status} {age(last.started_at, now)} ago"
        if last.error:
            text += f" ({last.error})"
    nxt = j.next_run
    if nxt.at is not None:
        text += f"; next {nxt.at.astimezone(UTC).isoformat()}"
    if nxt.after:
        text += f"; after {nxt.after}" + (
            f" (new artifact waiting: {nxt.pending_artifact})" if nxt.pending_artifact else ""
        )
    if j.running:
        text += f"; {'STALE LOCK' if j.running.expired else 'RUNNING'}: {j.running.description}"
    for hold in j.holds:
        text += "; HELD: " + hold.describe()
    return text
