"""Operator commands for jobs: run, pause, resume, scheduler, unlock (``status`` and ``history``
are in ``dataferry.cli.status``). Loaded by ``dataferry.cli`` when one of them runs."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dataferry.cli._common import Context, duration_arg, pass_ctx, say
from dataferry.config import find_config_path
from dataferry.errors import ConfigError, Held, LockBusy
from dataferry.jobs import scheduler, state, triggers
from dataferry.jobs.child import run_summary
from dataferry.jobs.holds import lift_hold, parse_until, place_hold
from dataferry.jobs.plan import plan_job
from dataferry.jobs.runner import RunOptions, run_job
from dataferry.jobs.state import Hold, HoldScope, StoreCache, now_utc

# -- run -----------------------------------------------------------------------------------------


@click.command("run")
@click.argument("job")
@click.option("--from-step", type=int, default=1, show_default=True, help="Start at step N (1-based).")
@click.option("--dry-run", is_flag=True, help="Show which artifact would go where; change nothing.")
@click.option(
    "--trigger",
    type=click.Choice(["manual", "schedule"]),
    default="manual",
    show_default=True,
    help="schedule: started by the job's own cron (a rendered CronJob); recorded as the run of the "
    "schedule's latest fire, which no scheduler then starts again.",
)
@pass_ctx
def run_cmd(c: Context, job: str, from_step: int, dry_run: bool, trigger: str) -> None:
    """Run JOB now: the operator's re-run. Exit 5 if held, 6 if it is already running."""
    cfg = c.config
    stores = StoreCache(cfg)
    if dry_run:
        plan = plan_job(cfg, job, from_step, stores)
        for line in plan.lines:
            click.echo(line)
        if plan.holds:
            raise Held(f"job {job} is held", hint=f"'dataferry resume {job}' (or --env/--all) lifts it")
        return
    options = RunOptions(from_step=from_step)
    if trigger == "schedule":  # always runs: a one-off Job made from the CronJob is a re-run too
        fire = triggers.fired_now(job, cfg.job(job))
        options = RunOptions(from_step=from_step, trigger="schedule", trigger_detail=fire)
    record = run_job(cfg, job, options, reporter=c.reporter(), stores=stores)
    if record is not None:
        click.echo(run_summary(record))


# -- pause / resume --------------------------------------------------------------------------------


def _scope(job: str | None, env: str | None, all_: bool) -> tuple[HoldScope, str]:
    given = [x for x in (job, env, all_ or None) if x]
    if len(given) != 1:
        raise ConfigError("name exactly one of: a JOB, --env ENV, or --all")
    if job:
        return "job", job
    if env:
        return "environment", env
    return "all", "*"


@click.command()
@click.argument("job", required=False)
@click.option("--env", "environment", help="Hold every job of this environment.")
@click.option("--all", "all_", is_flag=True, help="Hold every job.")
@click.option("--reason", required=True, help="Why (shown by status and in skipped runs).")
@click.option("--until", help="Expiry: ISO 8601 time or a duration such as 3d (default: until resumed).")
@click.option("--replace", is_flag=True, help="Replace a hold already in force on the same target.")
@pass_ctx
def pause(
    c: Context,
    job: str | None,
    environment: str | None,
    all_: bool,
    reason: str,
    until: str | None,
    replace: bool,
) -> None:
    """Hold JOB, an environment (--env) or everything (--all): runs are skipped and recorded.
    A hold already in force on the same target is kept (exit 5) unless --replace is given."""
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
    place_hold(cfg, hold, StoreCache(cfg), replace=replace, reporter=c.reporter())
    click.echo(hold.describe())


@click.command()
@click.argument("job", required=False)
@click.option("--env", "environment", help="Lift the hold on this environment.")
@click.option("--all", "all_", is_flag=True, help="Lift the hold on everything.")
@pass_ctx
def resume(c: Context, job: str | None, environment: str | None, all_: bool) -> None:
    """Lift the hold on JOB, an environment (--env) or everything (--all)."""
    cfg = c.config
    scope, target = _scope(job, environment, all_)
    stores = StoreCache(cfg)
    removed = lift_hold(cfg, scope, target, stores, c.reporter())
    what = {"job": f"job {target}", "environment": f"environment {target}", "all": "everything"}[scope]
    click.echo(f"resumed {what}" if removed else f"{what} was not held")
    if scope == "job":
        for hold in state.active_holds(cfg, target, stores):
            say(f"still held: {hold.describe()}")


# -- scheduler, unlock ----------------------------------------------------------------------------


@click.command("scheduler")
@click.option("--once", is_flag=True, help="Run what is due (and what that triggers), then exit.")
@click.option("--max-parallel", type=int, help="Jobs at once (default: settings.max_parallel_jobs).")
@click.option("--interval", default="30s", show_default=True, help="How often to look for due jobs.")
@click.option("--grace", default="60s", show_default=True, help="On SIGTERM, how long runs get to stop.")
@click.option("--env", "environment", help="Only the jobs of this environment.")
@click.option(
    "--only-after",
    is_flag=True,
    help="Only jobs triggered by 'after' (schedules run elsewhere, e.g. CronJobs).",
)
@pass_ctx
def scheduler_cmd(
    c: Context,
    once: bool,
    max_parallel: int | None,
    interval: str,
    grace: str,
    environment: str | None,
    only_after: bool,
) -> None:
    """Run due and triggered jobs until stopped (SIGTERM stops cleanly)."""
    cfg = c.config
    if environment is not None:
        cfg.environment(environment)
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
        environment=environment,
        only_after=only_after,
    )
    code = sched.run()
    if code:
        say(f"scheduler: {sched.failed} run(s) failed; see 'dataferry status'", "error", bare=True)
        sys.exit(code)


@click.command()
@click.argument("job")
@click.option("--force", is_flag=True, help="Remove the lock even though it has not expired.")
@pass_ctx
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
