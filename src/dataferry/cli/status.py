"""``dataferry status`` and ``dataferry history``: what the jobs did and will do, rendered from
the library's models (``dataferry.jobs.status``, run records). Loaded when one of them runs."""

from __future__ import annotations

import json
from datetime import UTC

import click

from dataferry.cli._common import Context, pass_ctx, say
from dataferry.errors import FerryError
from dataferry.jobs import state
from dataferry.jobs.state import RunRecord, StoreCache
from dataferry.jobs.status import collect_status, shown_status
from dataferry.jobs.status_text import render_lines
from dataferry.progress import human_bytes, human_duration


@click.command()
@click.option("--env", "environment", help="Only this environment.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
def status(c: Context, environment: str | None, as_json: bool) -> None:
    """Per environment and database: age of the data, last and next run, holds, running now."""
    data = collect_status(c.config, environment)
    if as_json:
        click.echo(json.dumps(data.to_json(), indent=2))
    else:
        for line in render_lines(data):
            click.echo(line)
    broken = data.unreadable
    if broken:
        raise FerryError(
            f"the store of {', '.join(broken)} could not be read; its status is incomplete",
            hint="run 'dataferry check' to see what is wrong with it",
        )


@click.command()
@click.argument("job")
@click.option("--limit", default=20, show_default=True, help="How many runs, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print the run records as JSON.")
@pass_ctx
def history(c: Context, job: str, limit: int, as_json: bool) -> None:
    """Runs of JOB, newest first: status, steps, artifacts and errors."""
    cfg = c.config
    cfg.job(job)
    store = StoreCache(cfg).for_job(job)
    records: list[RunRecord] = []
    for record in state.iter_runs(store, job):
        records.append(record)
        if len(records) >= limit:
            break
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in records], indent=2))
        return
    if not records:
        say(f"job {job} has not run yet", "info", bare=True)
        return
    lock = state.read_lock(store, job, state.lock_ttl(cfg))
    for r in records:
        click.echo(_history_line(r, shown_status(r, lock)))
        for s in r.steps:
            extra = " ".join(
                x
                for x in (
                    s.artifact or "",
                    human_bytes(s.bytes) if s.bytes is not None else "",
                    f"({s.detail})" if s.detail else "",
                    f"attempts={s.attempts}" if s.attempts > 1 else "",
                    f"error: {s.error.message}" if s.error else "",
                )
                if x
            )
            click.echo(f"    {s.index}. {s.step}: {s.status} {extra}".rstrip())
            for warning in s.warnings:
                click.echo(f"       warning: {warning}")


def _history_line(r: RunRecord, shown: str) -> str:
    started = r.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    line = f"{r.run_id}  {started}  {shown:<11} {r.trigger}"
    if r.finished:
        line += f"  {human_duration(r.duration() or 0)}"
    if r.skip_reason:
        line += f"  skipped: {r.skip_reason}"
    if r.error:
        line += f"  error (exit {r.error.exit_code}): {r.error.message}"
    if shown != r.status:
        line += "  (recorded as running, but its lock is gone: it stopped without finishing)"
    if r.lock_takeover:
        line += f"  (took over the expired lock of run {r.lock_takeover.get('run_id')})"
    return line
