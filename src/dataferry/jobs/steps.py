"""The steps of a job (``restore:<env>`` with a following ``sanitise`` on its shadow, ``backup``,
``verify``, ``hook:``), each calling ``ops``, and ``run_step``: one step with its retries and records."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from datetime import datetime

from dataferry import ops
from dataferry.artifacts import Sanitisation
from dataferry.engines import Engine, Shadow
from dataferry.errors import FerryError, Interrupted, Transient
from dataferry.jobs.common import now_utc
from dataferry.jobs.context import RunContext
from dataferry.jobs.hooks import run_hook
from dataferry.jobs.plan import refuse_protected_target
from dataferry.jobs.runs import ErrorInfo, StepRecord
from dataferry.jobs.stop import StopGuard
from dataferry.metrics import step_labels
from dataferry.ops.live import data_as_of, read_live
from dataferry.ops.rules import require_passed


def run_step(ctx: RunContext, step: StepRecord) -> None:
    """One step, with retries for transient failures; the record is written at start and end."""
    with _recorded_step(ctx, step, save=True):
        ctx.reporter.info(f"job {ctx.name}: step {step.index} {step.step}")
        delay = ctx.job.retry_delay.total_seconds()
        while True:
            step.attempts += 1
            try:
                with ctx.guard.armed():
                    STEPS[step.kind](ctx, step)
                break
            except FerryError as exc:
                if not isinstance(exc, Transient) or step.attempts > ctx.job.retries:
                    raise
                ctx.reporter.warn(
                    f"job {ctx.name}: step {step.index} failed transiently ({exc.message}); "
                    f"retry {step.attempts} of {ctx.job.retries} in {delay:.1f}s"
                )
                _sleep(ctx.guard, delay)
                delay *= 2


@contextlib.contextmanager
def _recorded_step(ctx: RunContext, step: StepRecord, *, save: bool) -> Iterator[None]:
    """Mark ``step`` running, then failed (and re-raise) or succeeded, with its metrics. ``save``
    writes the run record at start and end (not for a step inside another, such as sanitise)."""
    labels = step_labels(ctx.cfg, ctx.name, step.index)
    stem = f"{ctx.name}-{step.index}"
    step.status = "running"
    step.started_at = now_utc()
    if save:
        ctx.save()
    ctx.metrics.step(labels, stem, "started", started_at=step.started_at)
    try:
        yield
    except BaseException as exc:
        stopped = isinstance(exc, Interrupted) or (ctx.guard.stop.is_set() and not ctx.guard.timed_out)
        step.status = "interrupted" if stopped else "failed"
        step.finished_at = now_utc()
        step.error = ErrorInfo.from_exception(exc)
        ctx.metrics.step(labels, stem, "failed", started_at=step.started_at, finished_at=step.finished_at)
        raise
    step.status = "succeeded"
    step.finished_at = now_utc()
    if save:
        ctx.save()
    ctx.metrics.step(
        labels, stem, "succeeded", started_at=step.started_at, finished_at=step.finished_at, size=step.bytes
    )


def _sleep(guard: StopGuard, seconds: float) -> None:
    """Wait between retries; a stop request ends the wait (and the run)."""
    with guard.armed():
        guard.stop.wait(seconds)
    guard.check()


def _restore(ctx: RunContext, step: StepRecord) -> None:
    source = step.step.split(":", 1)[1]
    job = ctx.job
    refuse_protected_target(ctx.name, job, ctx.cfg, source)
    following = ctx.record.steps[step.index] if step.index < len(ctx.record.steps) else None
    sanitise_step = following if following is not None and following.step == "sanitise" else None
    req = ops.RestoreRequest(
        database=job.database,
        environment=job.environment,
        source=source,
        artifact=_pinned_for(ctx, source),
        max_age=job.max_age,
        sanitise=sanitise_step is not None,
    )
    # ops decides whether the shadow is sanitised (a 'sanitise' step, or a target that requires
    # sanitised data and an artifact that is not); the run only records that step.
    plan = ops.plan_restore(ctx.cfg, req, ctx.reporter)
    if plan.sanitiser is not None:
        plan = dataclasses.replace(plan, sanitiser=_recorded(ctx, sanitise_step, plan.sanitiser))

    def before_swap(engine: Engine, shadow: Shadow) -> None:
        ctx.guard.check()  # the last moment a stop can still leave the live database untouched
        if ctx.lock is not None:  # a run that lost its lock must not swap: another may be running
            ctx.lock.confirm("the swap")
        ctx.guard.enter_critical()  # from here to the end of the swap a stop waits

    try:
        via = f"job {ctx.name}, run {ctx.record.run_id}"
        result = ops.restore(plan, reporter=ctx.reporter, before_swap=before_swap, via=via)
    finally:
        ctx.guard.leave_critical()
    manifest = result.manifest
    step.artifact = manifest.id
    step.bytes = manifest.size
    step.detail = f"from {source}, {sum(result.row_counts.values())} rows checked"
    if plan.sanitiser is not None and sanitise_step is None:
        step.detail += f"; sanitised on the shadow because {job.environment} requires sanitised data"
        step.warnings = warnings_of(result.sanitisation)
    ctx.record.restored_artifact = manifest.id
    ctx.restored = result
    ctx.data_as_of = data_as_of(manifest)
    ctx.record.data_as_of = ctx.data_as_of
    ctx.sanitisation = result.sanitisation


def _recorded(ctx: RunContext, step: StepRecord | None, sanitiser: ops.BeforeSwap) -> ops.BeforeSwap:
    """The plan's sanitisation step, recorded as the job's ``sanitise`` step when it has one."""

    def run(engine: Engine, shadow: Shadow) -> Sanitisation:
        return _sanitise_shadow(ctx, step, sanitiser, engine, shadow)

    return run


def _pinned_for(ctx: RunContext, source: str) -> str | None:
    """An ``after`` run restores exactly the upstream artifact that triggered it, when it is the
    same database from the upstream job's environment; otherwise the newest verified artifact."""
    if ctx.pinned is None or ctx.job.after is None:
        return None
    upstream = ctx.cfg.job(ctx.job.after)
    if upstream.environment == source and upstream.database == ctx.job.database:
        return ctx.pinned
    return None


def _live_data_as_of(ctx: RunContext, step: StepRecord) -> datetime | None:
    """When the live data was taken from its origin, for a backup whose restore did not run in this
    run (``--from-step`` skipped it): from what the last restore recorded as live. Without it the
    artifact would claim its own creation time, newer than production's dump it came from."""
    if not any(s.kind == "restore" for s in ctx.record.steps[: step.index - 1]):
        return None  # a job that does not restore (production's backup): its data is its own
    live = read_live(ctx.stores.get(ctx.job.environment), ctx.job.database)
    return live.data_as_of if live is not None else None


def _sanitise_shadow(
    ctx: RunContext, step: StepRecord | None, hook: ops.BeforeSwap, engine: Engine, shadow: Shadow
) -> Sanitisation:
    """Sanitise the shadow inside the restore, before the swap; recorded as the ``sanitise`` step."""
    if step is None:
        return _stopped_or(ctx, lambda: require_passed(hook(engine, shadow), ctx.job.database))
    with _recorded_step(ctx, step, save=False):
        step.attempts += 1
        result = _stopped_or(ctx, lambda: require_passed(hook(engine, shadow), ctx.job.database))
        step.detail = (
            f"profile {result.profile} ({result.profile_sha256[:12]}), {len(result.checks)} check(s) passed"
        )
        step.warnings = warnings_of(result)
    ctx.ran_sanitise = True
    return result


def warnings_of(result: Sanitisation | None) -> list[str]:
    """The warnings a sanitisation result carries (a script statement that changed 0 rows)."""
    found = (result.model_extra or {}).get("warnings") if result is not None else None
    return [str(w) for w in found] if isinstance(found, list) else []


def _stopped_or(ctx: RunContext, sanitise: Callable[[], Sanitisation]) -> Sanitisation:
    """Run ``sanitise``; a failure that follows a stop request is the stop (``Interrupted``, not a
    failed profile): SQLite runs the rules' Python functions inside its statements, so the stop
    surfaces there as a failed statement."""
    try:
        return sanitise()
    except FerryError:
        ctx.guard.check()  # raises Interrupted (or RunTimedOut) when a stop was requested
        raise


def _backup(ctx: RunContext, step: StepRecord) -> None:
    job = ctx.job
    # A run that sanitised earlier but not now (--from-step skipped the restore) has its live data
    # checked read-only instead of trusted; ops does the same wherever the target requires it.
    sanitise_before = any(s.step == "sanitise" for s in ctx.record.steps[: step.index - 1])
    # The gate runs on exactly what is published: a hook that ran after the restore may have
    # changed the data its sanitisation checked, so the live data is checked again instead.
    changed_by = _hooks_since_restore(ctx, step)
    after = None if changed_by else ctx.restored
    recheck = sanitise_before or bool(changed_by and ctx.restored and ctx.restored.sanitisation)
    extra: dict[str, object] = {"job": ctx.name, "run_id": ctx.record.run_id}
    origin = ctx.data_as_of or _live_data_as_of(ctx, step)
    if origin is not None:
        extra["data_as_of"] = origin.isoformat()
    result = ops.backup(
        ctx.cfg,
        job.database,
        job.environment,
        # 'backup:sanitised': sanitise a copy in the scratch database and publish that
        sanitise=step.step == "backup:sanitised",
        after=after,
        check_sanitised=recheck,
        reporter=ctx.reporter,
        extra=extra,
    )
    manifest = result.manifest
    step.artifact = manifest.id
    step.bytes = manifest.size
    checked = manifest.sanitisation is not None and (manifest.sanitisation.model_extra or {}).get("mode")
    step.detail = ("sanitised" if manifest.sanitised else "not sanitised") + (
        ", live data checked" if checked == "checked live" else ""
    )
    if changed_by and checked == "checked live":
        step.detail += f" again after {', '.join(changed_by)}"
    ctx.record.published_artifact = manifest.id
    ctx.published = manifest


def _hooks_since_restore(ctx: RunContext, step: StepRecord) -> list[str]:
    """The hook steps that ran between this run's last restore and ``step`` ("step 3", ...)."""
    ran: list[str] = []
    for earlier in ctx.record.steps[: step.index - 1]:
        if earlier.kind == "restore":
            ran = []
        elif earlier.kind == "hook" and earlier.status != "skipped":
            ran.append(f"step {earlier.index}")
    return ran


def _verify(ctx: RunContext, step: StepRecord) -> None:
    """Re-read the artifact of the nearest ``restore:`` or ``backup`` step before this one (in the
    store it is in: the source's for a restore), else the newest in the job's environment's store."""
    environment, ident = ctx.job.environment, None
    for before in reversed(ctx.record.steps[: step.index - 1]):
        if before.kind == "backup" and ctx.published is not None:
            ident = ctx.published.id
            break
        if before.kind == "restore":
            environment = before.step.split(":", 1)[1]
            ident = ctx.restored.manifest.id if ctx.restored is not None else ctx.earlier_restored
            break
    manifest = ops.verify(ctx.cfg, ctx.job.database, environment, ident)
    step.artifact = manifest.id
    step.bytes = manifest.size
    step.detail = f"in the store of {environment}"


def _prune(ctx: RunContext, step: StepRecord) -> None:
    from dataferry.jobs.pins import after_pins
    from dataferry.ops.prune import prune

    job = ctx.job
    pins = after_pins(ctx.cfg, job.environment, job.database, ctx.stores)
    report = prune(ctx.cfg, job.database, job.environment, pinned=pins, reporter=ctx.reporter)
    step.detail = (
        f"kept {len(report.kept)}, removed {len(report.removed)} artifact(s), {len(report.orphans)} orphan(s)"
    )


STEPS: dict[str, Callable[[RunContext, StepRecord], None]] = {
    "restore": _restore,
    "backup": _backup,
    "verify": _verify,
    "prune": _prune,
    "hook": run_hook,
}
