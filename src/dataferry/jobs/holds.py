"""Holds: a pause with a reason and an optional expiry, on a job, an environment or everything.

``_dataferry/holds/job/<job>.json``, ``_dataferry/holds/env/<environment>.json`` and
``_dataferry/holds/all.json`` (see ``global_hold_environments`` for where that one is kept).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Literal

from pydantic import ValidationError

from dataferry.config import Config
from dataferry.config.times import time_or_duration
from dataferry.errors import ConfigError, Held, NotFound
from dataferry.jobs.common import PREFIX, StateModel, StoreCache, now_utc
from dataferry.metrics import Metrics
from dataferry.progress import NullReporter, Reporter
from dataferry.stores import Store, put_bytes, read_bytes

HoldScope = Literal["job", "environment", "all"]


class Hold(StateModel):
    """A pause with a reason and an optional expiry, on a job, an environment or everything."""

    scope: HoldScope
    target: str
    reason: str
    created_at: datetime
    created_by: str
    until: datetime | None = None

    def active(self, now: datetime | None = None) -> bool:
        """True until ``until`` (forever without one)."""
        return self.until is None or (now or now_utc()) < self.until

    def describe(self) -> str:
        """``environment staging held by ann@host since ...: pen test (until ...)``."""
        what = {"job": f"job {self.target}", "environment": f"environment {self.target}", "all": "everything"}
        until = (
            f" until {self.until.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"
            if self.until
            else " until resumed"
        )
        return (
            f"{what[self.scope]} is held by {self.created_by} since "
            f"{self.created_at.strftime('%Y-%m-%dT%H:%M:%SZ')}{until}: {self.reason}"
        )


def hold_key(scope: HoldScope, target: str) -> str:
    """Key of a hold."""
    if scope == "all":
        return f"{PREFIX}holds/all.json"
    folder = "job" if scope == "job" else "env"
    return f"{PREFIX}holds/{folder}/{target}.json"


def read_hold(store: Store, scope: HoldScope, target: str) -> Hold | None:
    """The hold on ``target``, active or not; None if there is none."""
    key = hold_key(scope, target)
    try:
        raw = read_bytes(store, key)
    except NotFound:
        return None
    try:
        return Hold.model_validate(json.loads(raw))
    except (ValueError, ValidationError):
        # A damaged hold still means someone wanted a pause: fail safe, treat it as held.
        return Hold(
            scope=scope,
            target=target,
            reason=f"the hold object {key} is unreadable; resume to remove it",
            created_at=now_utc(),
            created_by="unknown",
        )


def write_hold(store: Store, hold: Hold) -> None:
    """Write a hold (replacing any older hold on the same target)."""
    put_bytes(store, hold_key(hold.scope, hold.target), hold.model_dump_json(indent=2).encode())


def delete_hold(store: Store, scope: HoldScope, target: str) -> bool:
    """Remove a hold; True if there was one."""
    existed = read_hold(store, scope, target) is not None
    store.delete(hold_key(scope, target))
    return existed


def global_hold_environments(cfg: Config) -> list[str]:
    """Where ``pause --all`` writes its hold: the store of ``settings.state_environment`` when set
    (one store every machine can read), else every environment's store, so that each job finds
    every hold that concerns it in its own environment's store and never needs to read another
    environment's bucket (an integration machine may not be allowed to read production's)."""
    if cfg.settings.state_environment:
        return [cfg.settings.state_environment]
    return sorted(cfg.environments)


def global_hold_environment_for(cfg: Config, environment: str) -> str:
    """The store a job of ``environment`` reads the hold on everything from."""
    return cfg.settings.state_environment or environment


def active_holds(cfg: Config, job_name: str, stores: StoreCache, now: datetime | None = None) -> list[Hold]:
    """Every active hold that stops ``job_name``: on the job, on its environment, on everything."""
    job = cfg.job(job_name)
    env_store = stores.get(job.environment)
    found = [
        read_hold(env_store, "job", job_name),
        read_hold(env_store, "environment", job.environment),
        read_hold(stores.get(global_hold_environment_for(cfg, job.environment)), "all", "*"),
    ]
    return [h for h in found if h is not None and h.active(now)]


def jobs_under(cfg: Config, scope: HoldScope, target: str) -> list[str]:
    """The jobs a hold on ``target`` stops."""
    if scope == "job":
        return [target]
    if scope == "environment":
        return [name for name, job in cfg.jobs.items() if job.environment == target]
    return list(cfg.jobs)


def publish_held(cfg: Config, scope: HoldScope, target: str, stores: StoreCache, reporter: Reporter) -> None:
    """Set ``dataferry_job_held`` of every job under a hold that was just added or lifted, from the
    holds now in force (another hold may still hold a job), so alerts see a pause at once rather
    than at the job's next run."""
    metrics = Metrics.from_config(cfg, reporter)
    if not metrics.enabled:
        return
    for name in jobs_under(cfg, scope, target):
        job = cfg.job(name)
        metrics.held(name, job.environment, job.database, bool(active_holds(cfg, name, stores)))


def hold_environments(cfg: Config, scope: HoldScope, target: str) -> list[str]:
    """The environments whose stores keep a hold on ``target`` (``ConfigError`` for an unknown one):
    a job's in its environment's store, an environment's in its own, everything's in
    ``global_hold_environments``."""
    if scope == "job":
        return [cfg.job(target).environment]
    if scope == "environment":
        cfg.environment(target)
        return [target]
    return global_hold_environments(cfg)


def place_hold(
    cfg: Config, hold: Hold, stores: StoreCache, *, replace: bool = False, reporter: Reporter | None = None
) -> None:
    """Write ``hold`` to every store that keeps it and set the held metric at once (what ``dataferry
    pause`` and the status page do). A hold already in force on the same target is kept (``Held``,
    exit 5) unless ``replace``: a second pause must not silently shorten or lengthen someone's hold."""
    envs = hold_environments(cfg, hold.scope, hold.target)
    if not replace:
        _refuse_over(stores, envs, hold)
    for env in envs:
        write_hold(stores.get(env), hold)
    publish_held(cfg, hold.scope, hold.target, stores, reporter or NullReporter())


def _refuse_over(stores: StoreCache, envs: list[str], new: Hold) -> None:
    for env in envs:
        current = read_hold(stores.get(env), new.scope, new.target)
        if current is not None and current.active():
            what = {"job": new.target, "environment": f"--env {new.target}", "all": "--all"}[new.scope]
            raise Held(
                f"not paused again: {current.describe()}",
                hint=f"replace that hold with yours (until {new.until.isoformat() if new.until else 'resumed'}) "
                f"with 'dataferry pause {what} --replace', or resume it first",
            )


def lift_hold(
    cfg: Config, scope: HoldScope, target: str, stores: StoreCache, reporter: Reporter | None = None
) -> bool:
    """Remove the hold on ``target`` from every store that keeps it and set the held metric; True
    if there was one."""
    removed = False
    for env in hold_environments(cfg, scope, target):
        removed = delete_hold(stores.get(env), scope, target) or removed
    publish_held(cfg, scope, target, stores, reporter or NullReporter())
    return removed


def parse_until(value: str | None, now: datetime | None = None, what: str = "--until") -> datetime | None:
    """When a hold ends: ISO 8601, or a duration from now such as ``2h`` or ``3d``; empty or None is
    "until resumed". The CLI's ``pause --until`` and the status page's form read it the same way."""
    if value is None or not value.strip():
        return None
    now = now or now_utc()
    try:
        until = time_or_duration(value.strip(), sign=1, now=now) or now
    except ConfigError as exc:
        raise ConfigError(f"{what}: {exc.message}", hint=exc.hint) from None
    if until <= now:
        raise ConfigError(f"{what} {value} is in the past", hint="give a future time or a duration like 3d")
    return until
