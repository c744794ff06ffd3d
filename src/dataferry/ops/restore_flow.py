"""``plan_restore`` and ``restore``: every check once, then shadow, verify, sanitise, swap.

``plan_restore`` makes every check before anything is touched (invariant 1) and returns a
``RestorePlan``; ``restore(plan)`` executes it, re-checking the plan's safety rules cheaply so a plan
edited or built by hand cannot skip them. Mechanism in ``pipeline``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from dataferry import artifacts, encryption, pipeline, private
from dataferry.artifacts import Manifest, Sanitisation
from dataferry.config import Config, DatabaseRef, database_ref
from dataferry.engines import Engine, RestoreOptions, Shadow
from dataferry.errors import ConfigError, Refused
from dataferry.layouts import Layout, layout_for
from dataferry.ops import leases
from dataferry.ops.keys import identities_for
from dataferry.ops.live import record_live
from dataferry.ops.parallelism import choose_jobs
from dataferry.ops.rules import (
    engine_for,
    refuse_protected,
    refuse_unsanitised_source,
    require_passed,
    sanitisation_needed,
)
from dataferry.pipeline import BeforeSwap, require_ready
from dataferry.progress import NullReporter, Reporter


@dataclass(frozen=True)
class RestoreRequest:
    """What to restore where, and how."""

    database: str
    environment: str
    source: str
    artifact: str | None = None
    at: datetime | None = None
    #: parallel workers; None: auto (``ops.parallelism``: usable CPUs bounded by the server)
    jobs: int | None = None
    force: bool = False
    max_age: timedelta | None = None
    dry_run: bool = False
    sanitise: bool = False


@dataclass(frozen=True)
class RestorePlan:
    """A restore checked from end to end and ready to run: ``restore(plan)`` executes it.

    ``sanitiser`` is set when the shadow must be sanitised before the swap (``sanitise_reason``
    says why); ``restore`` refuses a plan whose target requires sanitised data without one.
    """

    config: Config
    request: RestoreRequest
    manifest: Manifest
    layout: Layout
    engine: Engine
    ref: DatabaseRef
    spool: Path | None
    sanitiser: BeforeSwap | None = None
    sanitise_reason: str | None = None
    identities: encryption.Identities | None = None  # an encrypted artifact's key; repr hides it
    #: The spool space this plan reserved (``private.reserve``); ``restore`` gives it back.
    reservation: Path | None = None
    #: The workers the restore runs (the request's, or auto's choice) and why, for the log
    jobs: int = 1
    jobs_detail: str = "jobs 1"

    @property
    def store_url(self) -> str:
        """Where the artifact is read from."""
        return self.layout.store.url


@dataclass
class RestoreResult:
    """What was restored where, and what sanitisation (if any) found."""

    manifest: Manifest
    swapped: bool
    database: str = ""
    environment: str = ""
    sanitisation: Sanitisation | None = None
    row_counts: dict[str, int] = field(default_factory=dict)


def plan_restore(cfg: Config, req: RestoreRequest, reporter: Reporter | None = None) -> RestorePlan:
    """Every check a restore makes before touching anything (invariant 1); returns the plan.

    Raises ``Refused`` for a protected target without ``force`` and for an unsanitised artifact from
    a store that requires sanitised ones; loads the sanitisation profile and salt when the target
    requires sanitised data; checks tools, connections and the spool's free space.
    """
    from dataferry import sanitise as sanitising  # imported when used: CLI start-up time

    reporter = reporter or NullReporter()
    refuse_protected(cfg, req.environment, req.force)
    if req.jobs is not None and req.jobs < 1:
        raise ConfigError("--jobs must be at least 1")
    engine = engine_for(cfg, req.database)
    layout = layout_for(cfg, req.source, req.database)
    manifest = layout.select(engine, artifact=req.artifact, at=req.at, reporter=reporter)
    if manifest.engine != engine.name:
        raise ConfigError(
            f"artifact {manifest.id} was made by the {manifest.engine} engine, "
            f"but {req.database} is configured as {engine.name}"
        )
    refuse_unsanitised_source(cfg, req.source, manifest)
    if req.max_age is not None:
        artifacts.check_fresh(manifest, req.max_age)
    pipeline.check_objects(manifest, engine)  # one object, or many this engine restores
    identities = identities_for(cfg, req.source, layout, manifest)
    if identities is None:  # an encrypted object's header was read instead: nothing to sniff
        layout.check_readable(manifest, engine)
    reason = sanitisation_needed(cfg, req.environment, req.sanitise, manifest)
    profile = sanitising.require_profile(cfg, req.database, reason) if reason is not None else None
    salt = sanitising.load_salt(profile) if profile is not None else None
    ref = database_ref(cfg, req.database, req.environment)
    require_ready(engine.check(ref), ref)
    chosen = choose_jobs(cfg, req.jobs, req.database, engine, ref, manifest, reporter)  # and the spool
    sanitiser = None  # its scan uses the restore's workers
    if profile is not None:
        sanitiser = sanitising.shadow_sanitiser(profile, salt, reporter, chosen.jobs)
    pinned = dataclasses.replace(req, artifact=manifest.id, at=None)  # a re-plan finds the same one
    return RestorePlan(
        cfg,
        pinned,
        manifest,
        layout,
        engine,
        ref,
        chosen.spool,
        sanitiser,
        reason,
        identities,
        chosen.reservation,
        chosen.jobs,
        chosen.detail,
    )


def restore(
    plan: RestorePlan,
    *,
    reporter: Reporter | None = None,
    before_swap: BeforeSwap | None = None,
    via: str = "restore",
) -> RestoreResult:
    """Execute a plan: shadow, verify, row counts, sanitise (where the plan says), ``before_swap``,
    swap. Nothing destructive happens before the swap; any failure before it drops the shadow and
    leaves the live database exactly as it was. After the swap, what is now live is recorded in the
    target's store (``ops.live``; ``via`` says who restored it, for ``status``).

    The plan's safety rules are checked again (cheaply, without the store), so a plan edited or
    built by hand cannot restore into a protected environment or skip a required sanitisation.
    """
    try:
        return _restore(plan, reporter or NullReporter(), before_swap, via)
    finally:
        private.release(plan.reservation)  # the spool space it reserved, spooled or not


def _restore(
    plan: RestorePlan, reporter: Reporter, before_swap: BeforeSwap | None, via: str
) -> RestoreResult:
    req, manifest = plan.request, plan.manifest
    refuse_protected(plan.config, req.environment, req.force)
    refuse_unsanitised_source(plan.config, req.source, manifest)
    required = sanitisation_needed(plan.config, req.environment, req.sanitise, manifest)
    if required is not None and plan.sanitiser is None:
        raise Refused(
            f"the restore of {req.database} into {req.environment} must sanitise the shadow ({required}), "
            "and its plan has no sanitisation step",
            hint="build the plan with plan_restore, which adds it",
        )
    if req.dry_run:
        return RestoreResult(
            manifest=manifest, swapped=False, database=req.database, environment=req.environment
        )
    hooks = [_passing(plan.sanitiser, req.database)] if plan.sanitiser is not None else []
    if before_swap is not None:
        hooks.append(before_swap)
    reporter.info(
        f"restore {req.database} ({req.environment}) <- {req.source}: {manifest.id}, {plan.jobs_detail}"
    )
    pipeline.sweep_leftovers(plan.config.spool_path(), reporter)
    pipeline.sweep_shadows(plan.engine, plan.ref, reporter)
    options = RestoreOptions(jobs=plan.jobs, spool_dir=plan.spool)
    with leases.holding(plan.layout.store, plan.layout.database, manifest, reporter):  # kept from prune
        loaded = pipeline.restore_into(
            plan.engine, plan.ref, plan.layout, manifest, options, hooks, reporter, plan.identities
        )
    reporter.info(f"restored {manifest.id} into {req.database} ({req.environment})")
    record_live(
        plan.config,
        database=req.database,
        environment=req.environment,
        source=req.source,
        manifest=manifest,
        via=via,
        reporter=reporter,
    )
    return RestoreResult(
        manifest=manifest,
        swapped=True,
        database=req.database,
        environment=req.environment,
        sanitisation=loaded.sanitisation if plan.sanitiser is not None else None,
        row_counts=loaded.row_counts,
    )


def _passing(sanitiser: BeforeSwap, database: str) -> BeforeSwap:
    """A sanitisation step must return a passing result; anything else never reaches the swap."""

    def gate(engine: Engine, shadow: Shadow) -> Sanitisation:
        return require_passed(sanitiser(engine, shadow), database)

    return gate
