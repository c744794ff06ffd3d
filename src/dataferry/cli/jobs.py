"""Operator commands for jobs: run, pause, resume, status, history, scheduler, unlock.

Registered on the main ``dataferry`` group by ``register`` (called at the bottom of ``cli.py``);
import ``dataferry.cli`` rather than this module.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from dataferry import ops
from dataferry.cli import Context, duration_arg, handle_errors, parse_time
from dataferry.config import Config, find_config_path, parse_duration
from dataferry.errors import ConfigError, FerryError, LockBusy, NotFound
from dataferry.jobs import runner, scheduler, state, triggers
from dataferry.jobs.state import Hold, HoldScope, RunRecord, StoreCache, now_utc
from dataferry.progress import human_bytes

pass_ctx = click.make_pass_decorator(Context)

# -- run -----------------------------------------------------------------------------------------


@click.command("run")
@click.argument("job")
@click.option("--from-step", type=int, default=1, show_default=True, help="Start at step N (1-based).")
@click.option("--dry-run", is_flag=True, help="Show which artifact would go where; change nothing.")
@click.option("--trigger", default="manual", hidden=True)
@click.option("--trigger-detail", default=None, hidden=True)
@pass_ctx
@handle_errors
def run_cmd(
    c: Context, job: str, from_step: int, dry_run: bool, trigger: str, trigger_detail: str | None
) -> None:
    """Run JOB now: the operator's re-run. Exit 5 if held, 6 if it is already running."""
    cfg = c.config
    stores = StoreCache(cfg)
    if dry_run:
        plan = runner.plan_job(cfg, job, from_step, stores)
        for line in plan.lines:
            click.echo(line)
        if plan.holds:
            from dataferry.errors import Held

            raise Held(f"job {job} is held", hint=f"'dataferry resume {job}' (or --env/--all) lifts it")
        return
    if trigger not in ("manual", "schedule", "after"):
        raise ConfigError(f"unknown trigger {trigger!r}")
    still_due = None
    if trigger != "manual":

        def still_due() -> bool:
            return scheduler.still_due(cfg, job, trigger, trigger_detail, stores)

    options = runner.RunOptions(from_step=from_step, trigger=trigger, trigger_detail=trigger_detail)
    record = runner.run_job(cfg, job, options, reporter=c.reporter(), stores=stores, still_due=still_due)
    if record is not None:
        click.echo(_run_summary(record))


def _run_summary(r: RunRecord) -> str:
    parts = [f"job {r.job}: run {r.run_id} {r.status} in {r.duration() or 0:.1f}s"]
    if r.restored_artifact:
        parts.append(f"restored {r.restored_artifact}")
    if r.published_artifact:
        parts.append(f"published {r.published_artifact}")
    return "; ".join(parts)


# -- pause / resume ------------------------------------------------------------------------------


def _scope(job: str | None, env: str | None, all_: bool) -> tuple[HoldScope, str]:
    given = [x for x in (job, env, all_ or None) if x]
    if len(given) != 1:
        raise ConfigError("name exactly one of: a JOB, --env ENV, or --all")
    if job:
        return "job", job
    if env:
        return "environment", env
    return "all", "*"


def _hold_stores(cfg: Config, stores: StoreCache, scope: HoldScope, target: str) -> list[str]:
    """Environments whose stores keep this hold."""
    if scope == "job":
        return [cfg.job(target).environment]
    if scope == "environment":
        cfg.environment(target)
        return [target]
    return state.global_hold_environments(cfg)


def parse_until(value: str | None, now: datetime | None = None) -> datetime | None:
    """``--until``: an ISO 8601 time, or a duration from now such as ``2h`` or ``3d``."""
    if value is None:
        return None
    now = now or now_utc()
    try:
        until = now + parse_duration(value)
    except ValueError:
        until = parse_time(value) or now
    if until <= now:
        raise ConfigError(f"--until {value} is in the past", hint="give a future time or a duration like 3d")
    return until


@click.command()
@click.argument("job", required=False)
@click.option("--env", "environment", help="Hold every job of this environment.")
@click.option("--all", "all_", is_flag=True, help="Hold every job.")
@click.option("--reason", required=True, help="Why (shown by status and in skipped runs).")
@click.option("--until", help="Expiry: ISO 8601 time or a duration such as 3d (default: until resumed).")
@pass_ctx
@handle_errors
def pause(
    c: Context, job: str | None, environment: str | None, all_: bool, reason: str, until: str | None
) -> None:
    """Hold JOB, an environment (--env) or everything (--all): runs are skipped and recorded."""
    cfg = c.config
    scope, target = _scope(job, environment, all_)
    if not reason.strip():
        raise ConfigError("--reason must say why")
    hold = Hold(
        scope=scope,
        target=target,
        reason=reason.strip(),
        created_at=now_utc(),
        created_by=state.whoami(),
        until=parse_until(until),
    )
    stores = StoreCache(cfg)
    for env in _hold_stores(cfg, stores, scope, target):
        state.write_hold(stores.get(env), hold)
    click.echo(hold.describe())


@click.command()
@click.argument("job", required=False)
@click.option("--env", "environment", help="Lift the hold on this environment.")
@click.option("--all", "all_", is_flag=True, help="Lift the hold on everything.")
@pass_ctx
@handle_errors
def resume(c: Context, job: str | None, environment: str | None, all_: bool) -> None:
    """Lift the hold on JOB, an environment (--env) or everything (--all)."""
    cfg = c.config
    scope, target = _scope(job, environment, all_)
    stores = StoreCache(cfg)
    removed = False
    for env in _hold_stores(cfg, stores, scope, target):
        removed = state.delete_hold(stores.get(env), scope, target) or removed
    what = {"job": f"job {target}", "environment": f"environment {target}", "all": "everything"}[scope]
    click.echo(f"resumed {what}" if removed else f"{what} was not held")
    if scope == "job":
        for hold in state.active_holds(cfg, target, stores):
            click.echo(f"note: still held: {hold.describe()}", err=True)


# -- status --------------------------------------------------------------------------------------


def _age(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "-"
    secs = max((now - when).total_seconds(), 0)
    if secs >= 86400:
        return f"{secs / 86400:.1f}d"
    if secs >= 3600:
        return f"{secs / 3600:.1f}h"
    if secs >= 60:
        return f"{secs / 60:.0f}m"
    return f"{secs:.0f}s"


def _iso(when: datetime | None) -> str | None:
    return when.astimezone(UTC).isoformat() if when else None


def collect_status(cfg: Config, environment: str | None = None) -> dict[str, Any]:
    """Per environment and database: data age, last run, next run, holds, running now."""
    if environment is not None:
        cfg.environment(environment)
    stores = StoreCache(cfg)
    now = now_utc()
    envs = [environment] if environment else sorted(cfg.environments)
    global_holds: list[dict[str, Any]] = []
    for env in envs:
        try:
            hold = state.read_hold(stores.get(state.global_hold_environment_for(cfg, env)), "all", "*")
        except FerryError:
            continue  # reported with the environment below
        if hold is not None and hold.active(now):
            global_holds.append(hold.model_dump(mode="json"))
            break
    out: dict[str, Any] = {"time": _iso(now), "global_holds": global_holds, "environments": []}
    for env in envs:
        try:
            out["environments"].append(_env_status(cfg, env, stores, now))
        except FerryError as exc:  # one unreachable store must not hide the others
            out["environments"].append({"name": env, "error": exc.message, "holds": [], "databases": []})
    return out


def _env_status(cfg: Config, env: str, stores: StoreCache, now: datetime) -> dict[str, Any]:
    store = stores.get(env)
    hold = state.read_hold(store, "environment", env)
    names = sorted(
        {d for d, db in cfg.databases.items() if env in db.environments}
        | {j.database for j in cfg.jobs.values() if j.environment == env}
    )
    return {
        "name": env,
        "store": store.url,
        "holds": [hold.model_dump(mode="json")] if hold is not None and hold.active(now) else [],
        "databases": [_db_status(cfg, env, name, stores, now) for name in names],
    }


def _db_status(cfg: Config, env: str, database: str, stores: StoreCache, now: datetime) -> dict[str, Any]:
    newest: dict[str, Any] | None = None
    try:
        m = ops.latest_artifact(cfg, database, env)
        newest = {
            "id": m.id,
            "finished_at": _iso(m.finished_at),
            "age_seconds": (now - m.finished_at).total_seconds(),
            "size": m.size,
            "sanitised": m.sanitised,
        }
    except NotFound:
        pass
    except FerryError as exc:
        newest = {"error": exc.message}
    jobs = [
        _job_status(cfg, name, stores, now)
        for name, j in cfg.jobs.items()
        if j.environment == env and j.database == database
    ]
    live = None
    for j in jobs:
        data = j.get("live_data")
        if data and (live is None or data["data_as_of"] > live["data_as_of"]):
            live = data
    return {"name": database, "newest_artifact": newest, "live_data": live, "jobs": jobs}


def _job_status(cfg: Config, name: str, stores: StoreCache, now: datetime) -> dict[str, Any]:
    job = cfg.jobs[name]
    store = stores.for_job(name)
    last: RunRecord | None = None
    restored: RunRecord | None = None
    for record in state.iter_runs(store, name):
        last = last or record
        if record.status == "succeeded" and record.data_as_of is not None:
            restored = record
            break
        if last is not None and (now - record.started_at) > timedelta(days=60):
            break  # enough history for a status line
    lock = state.read_lock(store, name, state.lock_ttl(cfg))
    running = None
    if lock is not None:
        running = lock.model_dump(mode="json") | {
            "expired": lock.expired(now),
            "description": lock.describe(),
        }
    holds = [h.model_dump(mode="json") for h in state.active_holds(cfg, name, stores, now)]
    next_run: dict[str, Any] = {}
    if job.schedule:
        next_run["schedule"] = f"{job.schedule} ({job.timezone})"
        next_run["at"] = _iso(triggers.next_fire(job, now))
    if job.after:
        next_run["after"] = job.after
        next_run["pending_artifact"] = triggers.pending_after(cfg, name, stores)
    return {
        "name": name,
        "steps": job.steps,
        "last_run": _run_brief(last),
        "next_run": next_run,
        "holds": holds,
        "running": running,
        "live_data": (
            {
                "artifact": restored.restored_artifact,
                "data_as_of": _iso(restored.data_as_of),
                "age_seconds": (now - restored.data_as_of).total_seconds(),
            }
            if restored is not None and restored.data_as_of is not None
            else None
        ),
    }


def _run_brief(r: RunRecord | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {
        "run_id": r.run_id,
        "status": r.status,
        "trigger": r.trigger,
        "started_at": _iso(r.started_at),
        "finished_at": _iso(r.finished_at),
        "duration_seconds": r.duration() if r.finished else None,
        "error": r.error.message if r.error else None,
        "skip_reason": r.skip_reason,
    }


def _status_lines(data: dict[str, Any]) -> list[str]:
    now = datetime.fromisoformat(data["time"])
    lines = []
    for hold in data["global_holds"]:
        lines.append("HELD: " + Hold.model_validate(hold).describe())
    for env in data["environments"]:
        if "error" in env:
            lines.append(f"{env['name']}  ERROR: {env['error']}")
            continue
        lines.append(f"{env['name']}  ({env['store']})")
        for hold in env["holds"]:
            lines.append("  HELD: " + Hold.model_validate(hold).describe())
        for db in env["databases"]:
            lines += _db_lines(db, now)
    return lines


def _db_lines(db: dict[str, Any], now: datetime) -> list[str]:
    newest = db["newest_artifact"]
    if newest is None:
        art = "no artifact"
    elif "error" in newest:
        art = f"store error: {newest['error']}"
    else:
        art = (
            f"newest artifact {newest['id']} ({_age(datetime.fromisoformat(newest['finished_at']), now)} old, "
            f"{human_bytes(newest['size'])}{', sanitised' if newest['sanitised'] else ''})"
        )
    live = db["live_data"]
    live_text = (
        f"; live data as of {_age(datetime.fromisoformat(live['data_as_of']), now)} ago" if live else ""
    )
    lines = [f"  {db['name']}: {art}{live_text}"]
    for j in db["jobs"]:
        lines.append(f"    job {j['name']}: {_job_line(j, now)}")
    return lines


def _job_line(j: dict[str, Any], now: datetime) -> str:
    last = j["last_run"]
    if last is None:
        text = "never ran"
    else:
        when = datetime.fromisoformat(last["started_at"])
        text = f"last run {last['status']} {_age(when, now)} ago"
        if last["error"]:
            text += f" ({last['error']})"
    nxt = j["next_run"]
    if nxt.get("at"):
        text += f"; next {nxt['at']}"
    if nxt.get("after"):
        text += f"; after {nxt['after']}" + (
            f" (new artifact waiting: {nxt['pending_artifact']})" if nxt["pending_artifact"] else ""
        )
    if j["running"]:
        run = j["running"]
        text += f"; {'STALE LOCK' if run['expired'] else 'RUNNING'}: {run['description']}"
    for hold in j["holds"]:
        text += "; HELD: " + Hold.model_validate(hold).describe()
    return text


@click.command()
@click.option("--env", "environment", help="Only this environment.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
@handle_errors
def status(c: Context, environment: str | None, as_json: bool) -> None:
    """Per environment and database: age of the data, last and next run, holds, running now."""
    data = collect_status(c.config, environment)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        for line in _status_lines(data):
            click.echo(line)
    broken = [e["name"] for e in data["environments"] if "error" in e]
    if broken:
        raise FerryError(
            f"the store of {', '.join(broken)} could not be read; its status is incomplete",
            hint="run 'dataferry check' to see what is wrong with it",
        )


# -- history -------------------------------------------------------------------------------------


@click.command()
@click.argument("job")
@click.option("--limit", default=20, show_default=True, help="How many runs, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print the run records as JSON.")
@pass_ctx
@handle_errors
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
        click.echo(f"job {job} has not run yet", err=True)
        return
    for r in records:
        click.echo(_history_line(r))
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


def _history_line(r: RunRecord) -> str:
    started = r.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    line = f"{r.run_id}  {started}  {r.status:<11} {r.trigger}"
    if r.finished:
        line += f"  {r.duration() or 0:.1f}s"
    if r.skip_reason:
        line += f"  skipped: {r.skip_reason}"
    if r.error:
        line += f"  error (exit {r.error.exit_code}): {r.error.message}"
    if r.lock_takeover:
        line += f"  (took over the expired lock of run {r.lock_takeover.get('run_id')})"
    return line


# -- scheduler, unlock ---------------------------------------------------------------------------


@click.command("scheduler")
@click.option("--once", is_flag=True, help="Run what is due (and what that triggers), then exit.")
@click.option("--max-parallel", type=int, help="Jobs at once (default: settings.max_parallel_jobs).")
@click.option("--interval", default="30s", show_default=True, help="How often to look for due jobs.")
@click.option("--grace", default="60s", show_default=True, help="On SIGTERM, how long runs get to stop.")
@pass_ctx
@handle_errors
def scheduler_cmd(c: Context, once: bool, max_parallel: int | None, interval: str, grace: str) -> None:
    """Run due and triggered jobs until stopped (SIGTERM stops cleanly)."""
    cfg = c.config
    interval_s = duration_arg(interval, "--interval").total_seconds()
    grace_s = duration_arg(grace, "--grace").total_seconds()
    if max_parallel is not None and max_parallel < 1:
        raise ConfigError("--max-parallel must be at least 1")
    path = cfg.path or Path(find_config_path(c.config_path)).resolve()
    sched = scheduler.Scheduler(
        cfg,
        path,
        max_parallel=max_parallel or cfg.settings.max_parallel_jobs,
        interval=interval_s,
        grace=grace_s,
        once=once,
        json_logs=c.json_logs,
        reporter=c.reporter(),
    )
    code = sched.run()
    if code:
        click.echo(f"scheduler: {sched.failed} run(s) failed; see 'dataferry status'", err=True)
        sys.exit(code)


@click.command()
@click.argument("job")
@click.option("--force", is_flag=True, help="Remove the lock even though it has not expired.")
@pass_ctx
@handle_errors
def unlock(c: Context, job: str, force: bool) -> None:
    """Remove JOB's lock (only an expired one without --force). Runs take expired locks over anyway."""
    cfg = c.config
    store = StoreCache(cfg).for_job(job)
    ttl = state.lock_ttl(cfg)
    lock = state.read_lock(store, job, ttl)
    if lock is None:
        click.echo(f"job {job} is not locked")
        return
    if not lock.expired() and not force:
        raise LockBusy(
            f"job {job} is locked by a live run: {lock.describe()}",
            hint="stop that process first; --force removes the lock anyway (two runs could then overlap)",
        )
    state.break_lock(store, job, ttl)
    click.echo(f"removed the lock of job {job}: {lock.describe()}")
