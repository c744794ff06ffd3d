"""Run one job: check its holds, take its lock, run its steps in order, record every step.

Steps: ``restore:<env>`` (shadow, verify, swap; a following ``sanitise`` runs on the shadow before
the swap), ``backup`` (publishes an artifact, marked sanitised when this run sanitised the data),
``verify`` (re-reads the artifact this run published, else the newest one) and ``hook:<command>``
(post-restore work on the live database, run without a shell).

Stopping: SIGTERM and SIGINT (and ``max_runtime``) raise ``Interrupted``/``RunTimedOut`` where the
run is, so a restore in progress drops its shadow and leaves the live database as it was; only the
swap itself is never interrupted (a stop during it takes effect right after it). The lock is
released and the record says why the run stopped.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import FrameType
from typing import Any

from dataferry import artifacts, ops, sanitise
from dataferry.artifacts import Manifest, Sanitisation
from dataferry.config import Config, JobConfig
from dataferry.engines import Engine, Shadow
from dataferry.errors import (
    ConfigError,
    FerryError,
    Held,
    HookFailed,
    Interrupted,
    NotReady,
    RunTimedOut,
    SanitisationFailed,
    Transient,
)
from dataferry.jobs import state, triggers
from dataferry.jobs.state import ErrorInfo, JobLock, RunRecord, StepRecord, StoreCache, now_utc
from dataferry.metrics import Metrics, step_labels
from dataferry.progress import NullReporter, Reporter


@dataclass
class RunOptions:
    """How to run a job: from which step, and what triggered it."""

    from_step: int = 1
    trigger: str = "manual"
    trigger_detail: str | None = None
    stop: threading.Event | None = None


# -- stopping ------------------------------------------------------------------------------------


class _StopNow(BaseException):
    """Raised by the signal handler inside a step. A ``BaseException`` so that no ``except
    Exception`` cleanup on the way out (such as reading the rest of a stream to classify an
    error) runs; ``finally`` blocks (dropping the shadow) still do. It becomes ``Interrupted`` or
    ``RunTimedOut`` at the step boundary."""


class StopGuard:
    """Turns SIGTERM/SIGINT and the runtime limit into exceptions at safe points.

    While ``armed`` (a step is running) a stop raises at once, wherever the step is; inside
    ``enter_critical``/``leave_critical`` (the swap) it is deferred to the next step boundary. Signal handlers only exist in the
    main thread; elsewhere (an in-process scheduler) stops are seen between steps via ``stop``.
    """

    def __init__(self, job: str, max_runtime: timedelta | None, stop: threading.Event | None) -> None:
        self.job = job
        self.max_runtime = max_runtime
        self.stop = stop or threading.Event()
        self.reason: str | None = None
        self.timed_out = False
        self._armed = False
        self._critical = False
        self._started = time.monotonic()
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> StopGuard:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._saved[sig] = signal.signal(sig, self._on_signal)
            if self.max_runtime is not None:
                self._saved[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._on_signal)
                signal.setitimer(signal.ITIMER_REAL, max(self.max_runtime.total_seconds(), 0.01))
        return self

    def __exit__(self, *exc: object) -> None:
        if signal.SIGALRM in self._saved:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGALRM:
            self.timed_out = True
            self.reason = "max_runtime"
        else:
            self.reason = signal.Signals(signum).name
        self.stop.set()
        if self._armed and not self._critical:
            raise _StopNow()

    def error(self) -> FerryError:
        """The exception that reports why the run stopped."""
        if self.timed_out:
            return RunTimedOut(
                f"job {self.job} ran longer than its max_runtime and was stopped",
                hint="raise max_runtime if this database needs longer, or find out why it was slow",
            )
        return Interrupted(
            f"job {self.job} was stopped by {self.reason or 'a stop request'}",
            hint="nothing half-made was published and the live database was not swapped mid-way; "
            "run the job again (see 'dataferry history')",
        )

    def check(self) -> None:
        """Raise if a stop was requested or the runtime limit passed (between steps)."""
        if (
            self.max_runtime is not None
            and time.monotonic() - self._started > self.max_runtime.total_seconds()
        ):
            self.timed_out = True
            self.stop.set()
        if self.stop.is_set():
            raise self.error()

    @contextlib.contextmanager
    def armed(self) -> Iterator[None]:
        """A step runs: a stop raises immediately."""
        self.check()
        self._armed = True
        try:
            yield
        except _StopNow:
            raise self.error() from None
        finally:
            self._armed = False

    def enter_critical(self) -> None:
        """The swap is about to run: from now on a stop waits until ``leave_critical``."""
        self._critical = True

    def leave_critical(self) -> None:
        """The swap is over (or never happened): stops raise again (at the next safe point)."""
        self._critical = False


# -- the run -------------------------------------------------------------------------------------


@dataclass
class _Ctx:
    """What the steps of one run share."""

    cfg: Config
    name: str
    job: JobConfig
    record: RunRecord
    stores: StoreCache
    reporter: Reporter
    metrics: Metrics
    guard: StopGuard
    lock: JobLock | None = None
    pinned: str | None = None
    sanitisation: Sanitisation | None = None
    ran_sanitise: bool = False
    restored: Manifest | None = None
    published: Manifest | None = None
    data_as_of: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def save(self) -> None:
        """Write the run record to the job's store."""
        state.write_run(self.stores.for_job(self.name), self.record)


def check_from_step(job_name: str, job: JobConfig, from_step: int) -> None:
    """``--from-step`` must name a step, and not a ``sanitise`` (it belongs to its restore)."""
    if not 1 <= from_step <= len(job.steps):
        raise ConfigError(
            f"job {job_name} has {len(job.steps)} step(s); --from-step {from_step} is out of range",
            hint="steps are numbered from 1, as 'dataferry history' shows them",
        )
    if job.steps[from_step - 1] == "sanitise":
        raise ConfigError(
            f"step {from_step} of job {job_name} is 'sanitise', which runs inside the restore before it",
            hint=f"use --from-step {from_step - 1} to restore and sanitise again",
        )


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
    guard = StopGuard(job_name, job.max_runtime_delta(), options.stop)
    ctx = _Ctx(cfg, job_name, job, record, stores, reporter, metrics, guard)
    if options.trigger == "after" and options.trigger_detail:
        ctx.pinned = options.trigger_detail
    holds = state.active_holds(cfg, job_name, stores)
    if holds:
        _skip(ctx, holds)
    lock = JobLock(store, job_name, ttl=state.lock_ttl(cfg), run_id=record.run_id, reporter=reporter)
    lock.acquire()
    ctx.lock = lock
    try:
        if still_due is not None and not still_due():
            reporter.info(f"job {job_name}: already handled by another run; nothing to do")
            return None
        _note_takeover(ctx, lock)
        with guard:
            _execute(ctx, options.from_step)
        return record
    finally:
        lock.release()


def _skip(ctx: _Ctx, holds: list[state.Hold]) -> None:
    """Record a skipped run and raise ``Held``."""
    why = "; ".join(h.describe() for h in holds)
    ctx.record.status = "skipped"
    ctx.record.skip_reason = why
    ctx.record.finished_at = now_utc()
    for step in ctx.record.steps:
        step.status = "skipped"
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
    scope = holds[0]
    target = {"job": ctx.name, "environment": f"--env {scope.target}", "all": "--all"}[scope.scope]
    raise Held(f"job {ctx.name} skipped: {why}", hint=f"'dataferry resume {target}' lifts the hold")


def _note_takeover(ctx: _Ctx, lock: JobLock) -> None:
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
        dead.status = "abandoned"
        dead.finished_at = now_utc()
        dead.error = ErrorInfo(
            type="Abandoned",
            message=f"the run stopped without finishing (killed, or its machine died); its lock "
            f"expired and run {ctx.record.run_id} took it over",
            exit_code=1,
            hint="look at the log of the machine that ran it; nothing half-made was published",
        )
        for step in dead.steps:
            if step.status == "running":
                step.status = "failed"
        state.write_run(store, dead)
        ctx.metrics.job(
            ctx.name,
            ctx.job.environment,
            ctx.job.database,
            "abandoned",
            ended_at=dead.finished_at,
            duration=dead.duration(),
            held=False,
        )


def _execute(ctx: _Ctx, from_step: int) -> None:
    """Run the steps from ``from_step``; record and report the outcome, then re-raise any failure."""
    rec = ctx.record
    for step in rec.steps[: from_step - 1]:
        step.status = "skipped"
        step.detail = "before --from-step"
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
                ctx.lock.check()
            _run_step(ctx, step)
    except BaseException as exc:
        _finish(ctx, exc)
        raise
    _finish(ctx, None)


def _finish(ctx: _Ctx, exc: BaseException | None) -> None:
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
        ctx.reporter.info(f"job {ctx.name}: run {rec.run_id} succeeded", duration=f"{rec.duration():.1f}s")
    else:
        ctx.reporter.warn(
            f"job {ctx.name}: run {rec.run_id} {rec.status}: {rec.error.message if rec.error else ''}"
        )


def _freshness(ctx: _Ctx) -> None:
    """Freshness metrics of the job's environment and database, from what this run changed."""
    if not ctx.metrics.enabled or (ctx.data_as_of is None and ctx.published is None):
        return
    ctx.metrics.freshness(
        ctx.job.environment,
        ctx.job.database,
        live=ctx.data_as_of,
        artifact=ctx.published.finished_at if ctx.published else None,
    )


# -- steps ---------------------------------------------------------------------------------------


def _run_step(ctx: _Ctx, step: StepRecord) -> None:
    """One step, with retries for transient failures; the record is written at start and end."""
    labels = step_labels(ctx.cfg, ctx.name, step.index)
    stem = f"{ctx.name}-{step.index}"
    step.status = "running"
    step.started_at = now_utc()
    ctx.save()
    ctx.metrics.step(labels, stem, "started", started_at=step.started_at)
    ctx.reporter.info(f"job {ctx.name}: step {step.index} {step.step}")
    delay = ctx.job.retry_delay_delta().total_seconds()
    try:
        while True:
            step.attempts += 1
            try:
                with ctx.guard.armed():
                    _STEPS[step.kind](ctx, step)
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
    except BaseException as exc:
        step.status = "failed"
        step.finished_at = now_utc()
        step.error = ErrorInfo.from_exception(exc)
        ctx.metrics.step(labels, stem, "failed", started_at=step.started_at, finished_at=step.finished_at)
        raise
    step.status = "succeeded"
    step.finished_at = now_utc()
    ctx.save()
    ctx.metrics.step(
        labels, stem, "succeeded", started_at=step.started_at, finished_at=step.finished_at, size=step.bytes
    )


def _sleep(guard: StopGuard, seconds: float) -> None:
    """Wait between retries; a stop request ends the wait (and the run)."""
    with guard.armed():
        guard.stop.wait(seconds)
    guard.check()


def _restore(ctx: _Ctx, step: StepRecord) -> None:
    source = step.step.split(":", 1)[1]
    job = ctx.job
    req = ops.RestoreRequest(
        database=job.database,
        environment=job.environment,
        source=source,
        artifact=_pinned_for(ctx, source),
        max_age=job.max_age_delta(),
    )
    following = ctx.record.steps[step.index] if step.index < len(ctx.record.steps) else None
    sanitise_step = following if following is not None and following.step == "sanitise" else None
    # The agreed restore semantics (sanitise.restore_hook): a 'sanitise' step sanitises the shadow,
    # and so does a target that requires sanitised data when the artifact is not sanitised.
    req, hook = sanitise.restore_hook(ctx.cfg, req, ctx.reporter, sanitise=sanitise_step is not None)

    def before_swap(engine: Engine, shadow: Shadow) -> Sanitisation | None:
        result = _sanitise_shadow(ctx, sanitise_step, hook, engine, shadow) if hook else None
        ctx.guard.check()  # the last moment a stop can still leave the live database untouched
        ctx.guard.enter_critical()  # from here to the end of the swap a stop waits
        return result

    try:
        result = ops.restore(ctx.cfg, req, reporter=ctx.reporter, before_swap=before_swap)
    finally:
        ctx.guard.leave_critical()
    manifest = result.manifest
    step.artifact = manifest.id
    step.bytes = manifest.size
    step.detail = f"from {source}, {sum(result.row_counts.values())} rows checked"
    if hook is not None and sanitise_step is None:
        step.detail += f"; sanitised on the shadow because {job.environment} requires sanitised data"
    ctx.record.restored_artifact = manifest.id
    ctx.restored = manifest
    ctx.data_as_of = _data_as_of(manifest)
    ctx.record.data_as_of = ctx.data_as_of
    ctx.sanitisation = result.sanitisation


def _pinned_for(ctx: _Ctx, source: str) -> str | None:
    """An ``after`` run restores exactly the upstream artifact that triggered it, when it is the
    same database from the upstream job's environment; otherwise the newest verified artifact."""
    if ctx.pinned is None or ctx.job.after is None:
        return None
    upstream = ctx.cfg.job(ctx.job.after)
    if upstream.environment == source and upstream.database == ctx.job.database:
        return ctx.pinned
    return None


def _data_as_of(manifest: Manifest) -> datetime:
    """When the data in an artifact was taken from its origin: carried through re-backups."""
    origin = manifest.extra.get("data_as_of") if isinstance(manifest.extra, dict) else None
    if isinstance(origin, str):
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(origin)
    return manifest.created_at


def _sanitise_shadow(
    ctx: _Ctx, step: StepRecord | None, hook: ops.BeforeSwap, engine: Engine, shadow: Shadow
) -> Sanitisation:
    """Sanitise the shadow inside the restore, before the swap; recorded as the ``sanitise`` step."""
    if step is None:
        return _passed(hook(engine, shadow), ctx.job.database)
    labels = step_labels(ctx.cfg, ctx.name, step.index)
    stem = f"{ctx.name}-{step.index}"
    step.status = "running"
    step.started_at = now_utc()
    step.attempts += 1
    ctx.metrics.step(labels, stem, "started", started_at=step.started_at)
    try:
        result = _passed(hook(engine, shadow), ctx.job.database)
    except BaseException as exc:
        step.status = "failed"
        step.finished_at = now_utc()
        step.error = ErrorInfo.from_exception(exc)
        ctx.metrics.step(labels, stem, "failed", started_at=step.started_at, finished_at=step.finished_at)
        raise
    step.status = "succeeded"
    step.finished_at = now_utc()
    step.detail = (
        f"profile {result.profile} ({result.profile_sha256[:12]}), {len(result.checks)} check(s) passed"
    )
    ctx.ran_sanitise = True
    ctx.metrics.step(labels, stem, "succeeded", started_at=step.started_at, finished_at=step.finished_at)
    return result


def _passed(result: Sanitisation | None, database: str) -> Sanitisation:
    """A sanitisation hook must return a passing result; anything else never reaches the swap."""
    if result is None or not result.passed:
        raise SanitisationFailed(
            f"sanitisation of {database} did not pass", hint="nothing was swapped in or published"
        )
    return result


def _backup(ctx: _Ctx, step: StepRecord) -> None:
    job = ctx.job
    sanitisation = ctx.sanitisation
    sanitise_before = any(s.step == "sanitise" for s in ctx.record.steps[: step.index - 1])
    requires = ctx.cfg.environment(job.environment).requires_sanitised
    if sanitisation is None and (sanitise_before or requires):
        # Not sanitised in this run (--from-step skipped it, or the data came sanitised): check the
        # live data read-only instead of trusting it (the agreed semantics of sanitise.backup_for).
        sanitisation = sanitise.check_live(ctx.cfg, job.database, job.environment, ctx.reporter)
        step.detail = "live data checked"
    extra: dict[str, object] = {"job": ctx.name, "run_id": ctx.record.run_id}
    if ctx.data_as_of is not None:
        extra["data_as_of"] = ctx.data_as_of.isoformat()
    result = ops.backup(
        ctx.cfg, job.database, job.environment, reporter=ctx.reporter, sanitisation=sanitisation, extra=extra
    )
    manifest = result.manifest
    step.artifact = manifest.id
    step.bytes = manifest.size
    step.detail = ("sanitised" if manifest.sanitised else "not sanitised") + (
        f", {step.detail}" if step.detail else ""
    )
    ctx.record.published_artifact = manifest.id
    ctx.published = manifest


def _verify(ctx: _Ctx, step: StepRecord) -> None:
    ident = ctx.published.id if ctx.published else None
    manifest = ops.verify(ctx.cfg, ctx.job.database, ctx.job.environment, ident)
    step.artifact = manifest.id
    step.bytes = manifest.size


def _hook(ctx: _Ctx, step: StepRecord) -> None:
    command = step.step.split(":", 1)[1]
    context = hook_environment(ctx)
    argv = [expand_dataferry_vars(arg, context) for arg in shlex.split(command)]
    if not argv:
        raise ConfigError(f"job {ctx.name}: step {step.index} has an empty hook command")
    env = dict(os.environ)
    env.update(context)
    cwd = ctx.cfg.path.parent if ctx.cfg.path else None
    try:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd
        )
    except OSError as exc:
        raise NotReady(
            f"job {ctx.name}: hook {argv[0]!r} cannot be started: {exc.strerror}",
            hint="check the command in the job's steps and the PATH",
        ) from None
    try:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            ctx.reporter.info(
                f"hook: {raw.decode('utf-8', 'replace').rstrip()}", job=ctx.name, step=step.index
            )
        code = proc.wait()
    finally:
        _stop_process(proc)
    step.detail = f"exit {code}"
    if code != 0:
        raise HookFailed(
            f"job {ctx.name}: hook {argv[0]!r} (step {step.index}) exited with {code}",
            hint="its output is in the log above; fix it and re-run with "
            f"'dataferry run {ctx.name} --from-step {step.index}'",
        )


def hook_environment(ctx: _Ctx) -> dict[str, str]:
    """What a hook learns about its run (no secrets: the URL carries none)."""
    job = ctx.job
    conn = ctx.cfg.database(job.database).environments.get(job.environment)
    env = {
        "DATAFERRY_JOB": ctx.name,
        "DATAFERRY_RUN_ID": ctx.record.run_id,
        "DATAFERRY_ENVIRONMENT": job.environment,
        "DATAFERRY_DATABASE": job.database,
        "DATAFERRY_DATABASE_URL": conn.url if conn else "",
    }
    if ctx.restored is not None:
        env["DATAFERRY_ARTIFACT"] = ctx.restored.id
    if ctx.cfg.path is not None:
        env["DATAFERRY_CONFIG"] = str(ctx.cfg.path)
    return env


_VAR_RE = re.compile(r"\$(?:\{(DATAFERRY_[A-Z_]+)\}|(DATAFERRY_[A-Z_]+))")


def expand_dataferry_vars(arg: str, context: dict[str, str]) -> str:
    """Expand ``$DATAFERRY_*`` in a hook argument (hooks run without a shell). Only these are
    expanded, so a secret in the environment can never be put on a command line by accident."""
    return _VAR_RE.sub(lambda m: context.get(m.group(1) or m.group(2), m.group(0)), arg)


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Make sure a hook does not outlive an interrupted run."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


_STEPS: dict[str, Callable[[_Ctx, StepRecord], None]] = {
    "restore": _restore,
    "backup": _backup,
    "verify": _verify,
    "hook": _hook,
}


# -- dry run -------------------------------------------------------------------------------------


@dataclass
class Plan:
    """What a run would do, as lines for the operator, and the holds that would stop it."""

    lines: list[str]
    holds: list[state.Hold]


def plan_job(cfg: Config, job_name: str, from_step: int = 1, stores: StoreCache | None = None) -> Plan:
    """Every check a run makes before it changes anything, and what it would do; touches nothing."""
    stores = stores or StoreCache(cfg)
    job = cfg.job(job_name)
    check_from_step(job_name, job, from_step)
    lines = [
        f"job {job_name}: {job.database} in {job.environment}, steps from {from_step} of {len(job.steps)}"
    ]
    holds = state.active_holds(cfg, job_name, stores)
    lines += [f"  HELD: {h.describe()} (a run would be skipped, exit 5)" for h in holds]
    lock = state.read_lock(stores.for_job(job_name), job_name, state.lock_ttl(cfg))
    if lock is not None and not lock.expired():
        lines.append(f"  LOCKED: {lock.describe()} (a run would exit 6)")
    sanitised = False
    for index, step in enumerate(job.steps, 1):
        if index < from_step:
            lines.append(f"  {index}. {step}: skipped (before --from-step)")
            continue
        kind = step.split(":", 1)[0]
        lines.append(f"  {index}. {step}: " + _plan_step(cfg, job, kind, step, sanitised))
        sanitised = sanitised or kind == "sanitise"
    return Plan(lines=lines, holds=holds)


def _plan_step(cfg: Config, job: JobConfig, kind: str, step: str, sanitised: bool) -> str:
    if kind == "restore":
        source = step.split(":", 1)[1]
        req = ops.RestoreRequest(
            database=job.database, environment=job.environment, source=source, max_age=job.max_age_delta()
        )
        manifest, store = ops.plan_restore(cfg, req)
        age = artifacts.utcnow() - manifest.finished_at
        target = cfg.database(job.database).environments.get(job.environment)
        following = job.steps[job.steps.index(step) + 1 :][:1]
        forced = ""
        if (
            following != ["sanitise"]
            and cfg.environment(job.environment).requires_sanitised
            and not manifest.is_publishable_sanitised()
        ):
            sanitise.require_profile(cfg, job.database, f"{job.environment} requires sanitised data")
            forced = f"; not sanitised, so sanitised on the shadow ({job.environment} requires it)"
        return (
            f"would restore {manifest.id} ({manifest.size} bytes, finished {age.total_seconds() / 3600:.1f}h ago"
            f"{', sanitised' if manifest.sanitised else ''}) from {store.url} into {target.url if target else '?'} "
            f"through a shadow and an atomic swap{forced}"
        )
    if kind == "sanitise":
        profile = sanitise.profile_for(cfg, job.database)
        if profile is None:
            raise ConfigError(
                f"job has a sanitise step but database {job.database} has no sanitisation profile",
                hint=f"set sanitise = 'path/to/profile.toml' in [databases.{job.database}]",
            )
        return f"would sanitise the shadow before the swap with profile {_profile_name(profile)}, then run its checks"
    if kind == "backup":
        store = ops.store_for(cfg, job.environment)
        mark = "marked sanitised" if sanitised else "not sanitised"
        return f"would back up {job.database} ({job.environment}) to {store.url} ({mark})"
    if kind == "verify":
        return "would re-read the artifact this run publishes (else the newest) and check its sha256"
    return f"would run {shlex.split(step.split(':', 1)[1])!r} (no shell) after the steps before it"


def _profile_name(profile: object) -> str:
    for attr in ("name", "path"):
        value = getattr(profile, attr, None)
        if value:
            return str(value)
    return repr(profile)
