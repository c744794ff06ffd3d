"""Run one job: check its holds, take its lock, run its steps in order, record every step.

Steps: ``restore:<env>`` (shadow, verify, swap; a following ``sanitise`` runs on the shadow before
the swap), ``backup`` (publishes an artifact, marked sanitised when this run sanitised the data),
``verify`` (re-reads the artifact the restore or backup before it handled, else the newest one
in the job's store) and ``hook:<command>``
(post-restore work on the live database, run without a shell).

Stopping: SIGTERM and SIGINT (and ``max_runtime``) raise ``Interrupted``/``RunTimedOut`` where the
run is, so a restore in progress drops its shadow and leaves the live database as it was; only the
swap itself is never interrupted (a stop during it takes effect right after it). The lock is
released and the record says why the run stopped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from dataferry import heap
from dataferry.config import Config
from dataferry.errors import FerryError, Held
from dataferry.errors import HookFailed as HookFailed  # these three were defined here; now in errors.py
from dataferry.errors import Interrupted as Interrupted
from dataferry.errors import RunTimedOut as RunTimedOut
from dataferry.jobs import state, triggers
from dataferry.jobs.context import RunContext
from dataferry.jobs.hooks import expand_dataferry_vars as expand_dataferry_vars
from dataferry.jobs.hooks import hook_environment as hook_environment
from dataferry.jobs.plan import JobPlan as JobPlan
from dataferry.jobs.plan import check_from_step
from dataferry.jobs.plan import plan_job as plan_job
from dataferry.jobs.state import ErrorInfo, JobLock, RunRecord, StepRecord, StoreCache, now_utc
from dataferry.jobs.steps import run_step
from dataferry.jobs.stop import StopGuard as StopGuard
from dataferry.metrics import Metrics
from dataferry.progress import NullReporter, Reporter


@dataclass
class RunOptions:
    """How to run a job: from which step, and what triggered it."""

    from_step: int = 1
    trigger: str = "manual"
    trigger_detail: str | None = None
    stop: threading.Event | None = None


# -- the run --------------------------------------------------------------------------------------


def run_job(
    cfg: Config,
    job_name: str,
    options: RunOptions | None = None,
    *,
    reporter: Reporter | None = None,
    stores: StoreCache | None = None,
    still_due: Callable[[], bool] | None = None,
) -> RunRecord | None:
    """Run ``job_name`` and return its record. Raises ``Held`` (recorded as skipped), ``LockBusy``
    (not recorded: the other run is the record) or the step's error (recorded as failed).

    ``still_due`` is asked after the lock is taken (schedulers use it so that a trigger another
    machine already handled is not run twice); when it says no, nothing is recorded and None is
    returned.
    """
    options = options or RunOptions()
    reporter = reporter or NullReporter()
    stores = stores or StoreCache(cfg)
    job = cfg.job(job_name)
    check_from_step(job_name, job, options.from_step)
    store = stores.for_job(job_name)
    metrics = Metrics.from_config(cfg, reporter)
    record = RunRecord(
        job=job_name,
        run_id=state.new_run_id(),
        environment=job.environment,
        database=job.database,
        trigger=options.trigger,
        trigger_detail=options.trigger_detail,
        from_step=options.from_step,
        started_at=now_utc(),
        steps=[StepRecord(index=i, step=s) for i, s in enumerate(job.steps, 1)],
        upstream_artifact=triggers.upstream_artifact(cfg, job, stores),
    )
    guard = StopGuard(job_name, job.max_runtime, options.stop)
    ctx = RunContext(cfg, job_name, job, record, stores, reporter, metrics, guard)
    if options.trigger == "after" and options.trigger_detail:
        ctx.pinned = options.trigger_detail
    holds = state.active_holds(cfg, job_name, stores)
    if holds:
        _skip(ctx, holds, record=not _skip_recorded(ctx))
    lock = JobLock(store, job_name, ttl=state.lock_ttl(cfg), run_id=record.run_id, reporter=reporter)
    lock.acquire()
    ctx.lock = lock
    try:
        if still_due is not None and not still_due():
            reporter.info(f"job {job_name}: already handled by another run; nothing to do")
            return None
        _note_takeover(ctx, lock)
        _abandon_unlocked(ctx)
        with guard:
            _execute(ctx, options.from_step)
        return record
    finally:
        lock.release()


def _skip_recorded(ctx: RunContext) -> bool:
    """True when this very trigger (not a manual run) was already recorded as skipped: a held job
    gets one skip record per trigger, whether a daemon or ``scheduler --once`` from cron asks."""
    rec = ctx.record
    if rec.trigger == "manual":
        return False
    last = state.last_run(ctx.stores.for_job(ctx.name), ctx.name)
    return (
        last is not None
        and last.status == "skipped"
        and (last.trigger, last.trigger_detail) == (rec.trigger, rec.trigger_detail)
    )


def _skip(ctx: RunContext, holds: list[state.Hold], *, record: bool = True) -> None:
    """Record a skipped run (unless ``record`` is False: this trigger's skip is recorded already)
    and raise ``Held``."""
    why = "; ".join(h.describe() for h in holds)
    ctx.record.status = "skipped"
    ctx.record.skip_reason = why
    ctx.record.finished_at = now_utc()
    for step in ctx.record.steps:
        step.status = "skipped"
    if record:
        ctx.save()
    ctx.metrics.job(
        ctx.name,
        ctx.job.environment,
        ctx.job.database,
        "skipped",
        ended_at=ctx.record.finished_at,
        duration=None,
        held=True,
    )
    ctx.reporter.warn(f"job {ctx.name} skipped: {why}", job=ctx.name, run_id=ctx.record.run_id)
    raise Held(f"job {ctx.name} skipped: {why}", hint=_resume_hint(ctx.name, holds))


def _resume_hint(job: str, holds: list[state.Hold]) -> str:
    """Every resume the job needs: resuming only the first of two holds would leave it held."""
    resumes = [
        f"'dataferry resume {({'job': job, 'environment': f'--env {h.target}', 'all': '--all'})[h.scope]}'"
        for h in holds
    ]
    if len(resumes) == 1:
        return f"{resumes[0]} lifts the hold"
    return f"{', '.join(resumes[:-1])} and {resumes[-1]} lift the holds"


def _note_takeover(ctx: RunContext, lock: JobLock) -> None:
    """Record a lock takeover, and mark the run that died holding the lock as abandoned."""
    if lock.takeover is None:
        return
    previous = lock.takeover.previous
    ctx.record.lock_takeover = lock.takeover.as_dict()
    if not previous.run_id:
        return
    store = ctx.stores.for_job(ctx.name)
    try:
        dead = state.read_run(store, ctx.name, previous.run_id)
    except FerryError:
        return
    if dead.status == "running":
        _mark_abandoned(ctx, dead, f"its lock expired and run {ctx.record.run_id} took it over")


#: How many of the newest runs a new run looks through for runs that died without their lock.
ABANDONED_WINDOW = 20


def _abandon_unlocked(ctx: RunContext) -> None:
    """Runs still recorded as ``running`` while this run holds the job's lock cannot be running:
    they were killed and their lock was removed (``unlock``) rather than taken over. Record them
    as abandoned, so history does not show them running forever."""
    store = ctx.stores.for_job(ctx.name)
    try:
        for index, record in enumerate(state.iter_runs(store, ctx.name)):
            if index >= ABANDONED_WINDOW:
                return
            if record.status in ("succeeded", "failed", "interrupted"):
                return  # that run held the lock after any older one died, and looked already
            if record.status == "running" and record.run_id != ctx.record.run_id:
                _mark_abandoned(
                    ctx, record, f"its lock was removed, and run {ctx.record.run_id} took the job's lock"
                )
    except FerryError as exc:  # history is not worth failing this run for
        ctx.reporter.warn(f"job {ctx.name}: cannot mark abandoned runs: {exc.message}")


def _mark_abandoned(ctx: RunContext, dead: RunRecord, why: str) -> None:
    dead.status = "abandoned"
    dead.finished_at = now_utc()
    dead.error = ErrorInfo(
        type="Abandoned",
        message=f"the run stopped without finishing (killed, or its machine died); {why}",
        exit_code=1,
        hint="look at the log of the machine that ran it; nothing half-made was published",
    )
    for step in dead.steps:
        if step.status == "running":
            step.status = "failed"
    state.write_run(ctx.stores.for_job(ctx.name), dead)
    ctx.metrics.job(
        ctx.name,
        ctx.job.environment,
        ctx.job.database,
        "abandoned",
        ended_at=dead.finished_at,
        duration=dead.duration(),
        held=False,
    )


def _execute(ctx: RunContext, from_step: int) -> None:
    """Run the steps from ``from_step``; record and report the outcome, then re-raise any failure."""
    rec = ctx.record
    for step in rec.steps[: from_step - 1]:
        step.status = "skipped"
        step.detail = "before --from-step"
    if from_step > 1:
        _carry_earlier_steps(ctx, from_step)
    ctx.save()
    ctx.metrics.job(
        ctx.name, ctx.job.environment, ctx.job.database, "running", ended_at=None, duration=None, held=False
    )
    ctx.reporter.info(f"job {ctx.name}: run {rec.run_id} started", job=ctx.name, trigger=rec.trigger)
    try:
        for step in rec.steps[from_step - 1 :]:
            if step.status != "pending":
                continue  # a sanitise step already ran inside its restore
            ctx.guard.check()
            if ctx.lock is not None:
                ctx.lock.confirm(f"step {step.index}")
            run_step(ctx, step)
            heap.return_freed()  # what the step's threads freed, before the next step allocates
    except BaseException as exc:
        _finish(ctx, exc)
        raise
    _finish(ctx, None)


#: How many earlier runs ``--from-step`` looks through for the steps it skips.
EARLIER_RUNS = 50


def _carry_earlier_steps(ctx: RunContext, from_step: int) -> None:
    """A re-run from step N still knows what the steps before N did, from the newest earlier run
    in which they succeeded: the artifact its restore put live (for the hooks'
    ``$DATAFERRY_ARTIFACT``), recorded on the skipped steps as theirs."""
    store = ctx.stores.for_job(ctx.name)
    for index, earlier in enumerate(state.iter_runs(store, ctx.name)):
        if index >= EARLIER_RUNS:
            return
        if earlier.run_id == ctx.record.run_id:
            continue
        done = [s for s in earlier.steps[: from_step - 1] if s.status == "succeeded" and s.artifact]
        if not done:
            continue
        for old in done:
            step = ctx.record.steps[old.index - 1]
            if step.step == old.step:
                step.artifact = old.artifact
                step.detail = f"before --from-step; done by run {earlier.run_id}"
                if old.kind == "restore":
                    ctx.earlier_restored = old.artifact
        return


def _finish(ctx: RunContext, exc: BaseException | None) -> None:
    rec = ctx.record
    rec.finished_at = now_utc()
    if exc is None:
        rec.status = "succeeded"
    else:
        rec.status = "interrupted" if isinstance(exc, Interrupted) else "failed"
        rec.error = ErrorInfo.from_exception(exc)
        for step in rec.steps:
            if step.status == "pending":
                step.status = "skipped"
                step.detail = "not reached"
    try:
        ctx.save()
    except FerryError as save_error:
        if exc is None:
            raise  # a success that cannot be recorded is not a success: downstream would not see it
        # Keep the run's own error as the one reported; the store failure is logged next to it.
        ctx.reporter.warn(f"job {ctx.name}: cannot write the run record: {save_error.message}")
    ctx.metrics.job(
        ctx.name,
        ctx.job.environment,
        ctx.job.database,
        rec.status,
        ended_at=rec.finished_at,
        duration=rec.duration(),
        held=False,
    )
    _freshness(ctx)
    if exc is None:
        ctx.reporter.info(
            f"job {ctx.name}: run {rec.run_id} succeeded", duration=round(rec.duration() or 0, 3)
        )
    else:
        ctx.reporter.warn(
            f"job {ctx.name}: run {rec.run_id} {rec.status}: {rec.error.message if rec.error else ''}"
        )


def _freshness(ctx: RunContext) -> None:
    """Freshness metrics of the job's environment and database, from what this run changed."""
    if not ctx.metrics.enabled or (ctx.data_as_of is None and ctx.published is None):
        return
    ctx.metrics.freshness(
        ctx.job.environment,
        ctx.job.database,
        live=ctx.data_as_of,
        artifact=ctx.published.finished_at if ctx.published else None,
    )
