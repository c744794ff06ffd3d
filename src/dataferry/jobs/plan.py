"""A job's dry run (``plan_job``): every check a run makes before it changes anything, and what each
step would do; and ``check_from_step``, shared with the runner."""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass

from dataferry import artifacts, ops, private, sanitise
from dataferry.config import Config, JobConfig
from dataferry.errors import ConfigError, Refused
from dataferry.jobs.common import StoreCache
from dataferry.jobs.holds import Hold, active_holds
from dataferry.jobs.locks import lock_ttl, read_lock
from dataferry.progress import human_bytes, human_duration


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


def refuse_protected_target(job_name: str, job: JobConfig, cfg: Config, source: str) -> None:
    """A job never restores into a protected environment, and ``run`` has no ``--force``: say so
    (``ops`` would refuse too, with a hint about a ``--force`` that only ``restore`` has)."""
    if cfg.environment(job.environment).protected:
        raise Refused(
            f"job {job_name} restores into {job.environment}, which is protected: a job never does",
            hint=f"point the job at another environment; if you really mean to overwrite {job.environment}, "
            f"restore by hand: 'dataferry restore {job.database} --env {job.environment} --from {source} --force'",
        )


@dataclass
class JobPlan:
    """What a run would do, as lines for the operator, and the holds that would stop it."""

    lines: list[str]
    holds: list[Hold]


def plan_job(cfg: Config, job_name: str, from_step: int = 1, stores: StoreCache | None = None) -> JobPlan:
    """Every check a run makes before it changes anything, and what it would do; touches nothing."""
    stores = stores or StoreCache(cfg)
    job = cfg.job(job_name)
    check_from_step(job_name, job, from_step)
    lines = [
        f"job {job_name}: {job.database} in {job.environment}, steps from {from_step} of {len(job.steps)}"
    ]
    holds = active_holds(cfg, job_name, stores)
    lines += [f"  HELD: {h.describe()} (a run would be skipped, exit 5)" for h in holds]
    lock = read_lock(stores.for_job(job_name), job_name, lock_ttl(cfg))
    if lock is not None and not lock.expired():
        lines.append(f"  LOCKED: {lock.describe()} (a run would exit 6)")
    sanitised = False
    for index, step in enumerate(job.steps, 1):
        if index < from_step:
            lines.append(f"  {index}. {step}: skipped (before --from-step)")
            continue
        kind = step.split(":", 1)[0]
        # a backup of data this run did not sanitise is checked live first where the environment
        # requires sanitised data or a skipped sanitise step did it earlier (as the real run does)
        check_live = not sanitised and (
            cfg.environment(job.environment).requires_sanitised or "sanitise" in job.steps[: index - 1]
        )
        lines.append(f"  {index}. {step}: " + _plan_step(cfg, job_name, kind, step, sanitised, check_live))
        sanitised = sanitised or kind == "sanitise"
    return JobPlan(lines=lines, holds=holds)


def _plan_step(
    cfg: Config, job_name: str, kind: str, step: str, sanitised: bool, check_live: bool = False
) -> str:
    job = cfg.job(job_name)
    if kind == "restore":
        source = step.split(":", 1)[1]
        refuse_protected_target(job_name, job, cfg, source)
        req = ops.RestoreRequest(
            database=job.database, environment=job.environment, source=source, max_age=job.max_age
        )
        following = job.steps[job.steps.index(step) + 1 :][:1]
        req = dataclasses.replace(req, sanitise=following == ["sanitise"])
        plan = ops.plan_restore(cfg, req)
        private.release(plan.reservation)  # a dry run spools nothing: give the space back now
        manifest = plan.manifest
        age = artifacts.utcnow() - manifest.finished_at
        target = cfg.database(job.database).environments.get(job.environment)
        forced = ""
        if plan.sanitiser is not None and not req.sanitise:
            forced = f"; not sanitised, so sanitised on the shadow ({job.environment} requires it)"
        return (
            f"would restore {manifest.id} ({human_bytes(manifest.size)}, finished {human_duration(age.total_seconds())} ago"
            f"{', sanitised' if manifest.sanitised else ''}) from {plan.store_url} into {target.url if target else '?'} "
            f"through a shadow and an atomic swap{forced}, {plan.jobs_detail}"
        )
    if kind == "sanitise":
        profile = sanitise.profile_for(cfg, job.database)
        if profile is None:
            raise ConfigError(
                f"job has a sanitise step but database {job.database} has no sanitisation profile",
                hint=f"set sanitise = 'path/to/profile.toml' in [databases.{job.database}]",
            )
        salt = sanitise.load_salt(profile)  # the real run needs it before anything starts: exit 3
        return (
            f"would sanitise the shadow before the swap with profile {_profile_name(profile)} "
            f"(salt {'set in ' + str(profile.salt_env) if salt is not None else 'not needed'}), then run its checks"
        )
    if step == "backup:sanitised":
        store = ops.store_for(cfg, job.environment)
        return (
            f"would copy {job.database} ({job.environment}) into its scratch database, sanitise and check "
            f"it there, and back that up to {store.url} (marked sanitised)"
        )
    if kind == "backup":
        store = ops.store_for(cfg, job.environment)
        if check_live:
            profile = sanitise.require_profile(
                cfg, job.database, f"{job.environment} holds only sanitised data"
            )
            return (
                f"would check the live data with profile {_profile_name(profile)} (read-only), then back up "
                f"{job.database} ({job.environment}) to {store.url} (marked sanitised if every check passes)"
            )
        mark = "marked sanitised" if sanitised else "not sanitised"
        return f"would back up {job.database} ({job.environment}) to {store.url} ({mark})"
    if kind == "prune":
        retention = cfg.environment(job.environment).retention
        if retention is None:
            raise ConfigError(
                f"job has a prune step but {job.environment} has no retention policy",
                hint=f"set retention = {{ keep_last = N, ... }} in [environments.{job.environment}]",
            )
        return f"would prune {job.database} in {job.environment} to {retention.model_dump(exclude_defaults=True)}"
    if kind == "verify":
        return (
            "would re-read the artifact the restore or backup before it handled (else the newest in "
            f"{job.environment}'s store) and check its sha256"
        )
    return f"would run {shlex.split(step.split(':', 1)[1])!r} (no shell) after the steps before it"


def _profile_name(profile: object) -> str:
    for attr in ("name", "path"):
        value = getattr(profile, attr, None)
        if value:
            return str(value)
    return repr(profile)
