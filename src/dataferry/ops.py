"""The operations behind the commands, with every policy rule written once: backup, plan_restore,
restore, list, verify, cleanup, check.

The CLI, the job runner, the GOV.UK drop-in and Python callers all come through here, so the
invariants hold whoever calls (``docs/architecture.md`` maps each to its one place):

1. check before you destroy: ``plan_restore`` makes every check (artifact, engine, tools, free
   space, sanitisation profile and salt) before ``restore`` changes anything;
5. sanitised means verified: ``_sanitisation_needed`` decides, for a restore, whether the shadow must
   be sanitised (target ``requires_sanitised``, or asked for); ``_refuse_unsanitised`` is the one gate
   in front of a store that ``requires_sanitised``; a store's unsanitised artifact is never restored;
6. production is protected: ``_refuse_protected``.

The mechanism (streams, shadow, checksums, row counts, swap) is ``pipeline``; how a store names and
commits artifacts is its ``layouts`` entry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dataferry import artifacts, pipeline
from dataferry.artifacts import Manifest, Sanitisation
from dataferry.config import Config, DatabaseRef, database_ref
from dataferry.engines import Engine, RestoreOptions, Shadow, get_engine
from dataferry.errors import (
    ConfigError,
    FerryError,
    NotFound,
    Refused,
    SanitisationFailed,
    VerificationFailed,
)
from dataferry.layouts import Layout, layout_for, store_for
from dataferry.pipeline import BeforeSwap, Publication, require_ready
from dataferry.progress import NullReporter, Reporter
from dataferry.stores import CleansIncomplete

__all__ = [
    "BackupResult",
    "BeforeSwap",
    "CheckReport",
    "CleanupReport",
    "RestorePlan",
    "RestoreRequest",
    "RestoreResult",
    "backup",
    "check",
    "cleanup",
    "engine_for",
    "latest_artifact",
    "list_artifacts",
    "plan_restore",
    "require_ready",
    "restore",
    "store_for",
    "verify",
]

#: A change made on a copy of the live database before it is published (GOV.UK's pre-dump
#: transformation); it returns nothing, so its result is never taken for sanitisation.
Transform = Callable[[Engine, Shadow], None]


def engine_for(cfg: Config, database: str) -> Engine:
    """The engine of a configured database."""
    return get_engine(cfg.database(database).engine)


# -- the policy rules, each written once -----------------------------------------------------------


def _refuse_protected(cfg: Config, environment: str, force: bool) -> None:
    """Invariant 6: a protected environment is never a restore target unless forced."""
    if cfg.environment(environment).protected and not force:
        raise Refused(
            f"{environment} is protected: dataferry does not restore into it",
            hint="if you really mean to overwrite it, repeat the command with --force",
        )


def _refuse_unsanitised(
    cfg: Config, database: str, environment: str, sanitisation: Sanitisation | None
) -> None:
    """Invariant 5: a store that requires sanitised artifacts takes only ones whose checks passed."""
    if cfg.environment(environment).requires_sanitised and (sanitisation is None or not sanitisation.passed):
        raise Refused(
            f"the store of {environment} accepts only sanitised artifacts",
            hint=f"use 'dataferry backup {database} --env {environment} --sanitise'",
        )


def _refuse_unsanitised_source(cfg: Config, source: str, manifest: Manifest) -> None:
    """Invariant 5: an unsanitised artifact in a store that requires sanitised ones is never used."""
    if cfg.environment(source).requires_sanitised and not manifest.is_publishable_sanitised():
        raise Refused(
            f"artifact {manifest.id} in {source} is not sanitised, and {source} requires sanitised artifacts",
            hint="restore a sanitised artifact, or fix the job that published this one",
        )


def _sanitisation_needed(cfg: Config, req: RestoreRequest, manifest: Manifest) -> str | None:
    """Invariant 5: why the shadow must be sanitised before the swap, or None if it need not be."""
    if req.sanitise:
        return "sanitising was asked for"
    if cfg.environment(req.environment).requires_sanitised and not manifest.is_publishable_sanitised():
        return f"{req.environment} holds only sanitised data and artifact {manifest.id} is not sanitised"
    return None


# -- backup ----------------------------------------------------------------------------------------


@dataclass
class BackupResult:
    """A published artifact and where it went."""

    manifest: Manifest
    store_url: str


def backup(
    cfg: Config,
    database: str,
    environment: str,
    *,
    sanitise: bool = False,
    after: RestoreResult | None = None,
    check_sanitised: bool = False,
    transform: Transform | None = None,
    reporter: Reporter | None = None,
    extra: dict[str, object] | None = None,
) -> BackupResult:
    """Dump ``database`` in ``environment`` into that environment's store and publish it.

    - ``sanitise``: dump into a scratch copy (``[databases.X] scratch``), sanitise and check it
      there, publish that; the source is only read.
    - ``after``: the restore of this run that put the live data in place; a sanitisation it passed
      marks the artifact sanitised without checking the live data again.
    - otherwise, where ``environment`` requires sanitised data (or ``check_sanitised``), the live
      data is checked read-only first and published only if every check passes.
    - ``transform``: run on a copy of the live database, which is published instead (GOV.UK's
      pre-dump transformation); the live database is not changed.

    The data object is uploaded first; the manifest (the commit) only after the upload succeeded.
    """
    from dataferry import sanitise as sanitising  # imported when used: CLI start-up time

    reporter = reporter or NullReporter()
    engine = engine_for(cfg, database)
    ref = database_ref(cfg, database, environment)
    layout = layout_for(cfg, environment, database)
    what = Publication(database=database, environment=environment, extra=extra)
    if sanitise:
        return _sanitised_backup(cfg, layout, engine, ref, what, reporter)
    if transform is not None:
        _refuse_unsanitised(cfg, database, environment, None)
        return _transformed_backup(cfg, layout, engine, ref, what, transform, reporter)
    sanitisation = _sanitised_by(after, database, environment)
    if sanitisation is None and (check_sanitised or cfg.environment(environment).requires_sanitised):
        sanitisation = sanitising.check_live(cfg, database, environment, reporter)
    _refuse_unsanitised(cfg, database, environment, sanitisation)
    what = dataclasses.replace(what, sanitisation=sanitisation)
    manifest = pipeline.publish(layout, engine, ref, what, _level(cfg, database), reporter)
    return BackupResult(manifest=manifest, store_url=layout.store.url)


def _level(cfg: Config, database: str) -> int:
    return cfg.database(database).compression_level or cfg.settings.compression_level


def _sanitised_by(after: RestoreResult | None, database: str, environment: str) -> Sanitisation | None:
    """The passed sanitisation of a restore of this very database and environment, if any."""
    if after is None or not after.swapped or after.sanitisation is None or not after.sanitisation.passed:
        return None
    if (after.database, after.environment) != (database, environment):
        return None
    return after.sanitisation


def _sanitised_backup(
    cfg: Config, layout: Layout, engine: Engine, source: DatabaseRef, what: Publication, reporter: Reporter
) -> BackupResult:
    """Dump the source into a shadow of the scratch database, sanitise and check it there, swap it
    in as the scratch database, then publish that. The source is only read; a failure before the
    swap drops the shadow and publishes nothing."""
    from dataferry import sanitise as sanitising  # imported when used: CLI start-up time

    profile = sanitising.require_profile(cfg, what.database, "--sanitise was asked for")
    salt = sanitising.load_salt(profile)
    scratch = sanitising.scratch_ref(cfg, what.database)
    sanitising.runner.target(engine, scratch, None)  # refuses engines without SQL before anything is dumped
    require_ready(engine.check(source), source)
    require_ready(engine.check(scratch), scratch)
    reporter.info(f"sanitised backup of {what.database} ({what.environment}) through scratch {scratch.url}")
    with pipeline.copy_to_shadow(engine, source, scratch) as shadow:
        sanitisation = sanitising.sanitise_shadow(engine, shadow, profile, salt, reporter)
        engine.swap(shadow)
    _refuse_unsanitised(cfg, what.database, what.environment, sanitisation)
    what = dataclasses.replace(what, sanitisation=sanitisation)
    manifest = pipeline.publish(layout, engine, scratch, what, _level(cfg, what.database), reporter)
    return BackupResult(manifest=manifest, store_url=layout.store.url)


def _transformed_backup(
    cfg: Config,
    layout: Layout,
    engine: Engine,
    ref: DatabaseRef,
    what: Publication,
    transform: Transform,
    reporter: Reporter,
) -> BackupResult:
    """Copy the live database into a shadow beside it, transform that, publish it, drop it."""
    require_ready(engine.check(ref), ref)
    reporter.info(f"copy {what.database} into a scratch database for the pre-dump transformation")
    with pipeline.copy_to_shadow(engine, ref, ref) as shadow:
        try:
            transform(engine, shadow)
            shadow_ref = ref.model_copy(update={"url": _shadow_url(ref, shadow)})
            manifest = pipeline.publish(
                layout, engine, shadow_ref, what, _level(cfg, what.database), reporter
            )
        finally:
            engine.drop_shadow(shadow)
    return BackupResult(manifest=manifest, store_url=layout.store.url)


def _shadow_url(ref: DatabaseRef, shadow: Shadow) -> str:
    """The URL of the shadow database itself (same server and credentials), for dumping it."""
    from urllib.parse import quote

    base, _, _ = ref.url.rpartition("/")
    return f"{base}/{quote(shadow.name, safe='')}"


# -- restore ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreRequest:
    """What to restore where, and how."""

    database: str
    environment: str
    source: str
    artifact: str | None = None
    at: datetime | None = None
    jobs: int = 1
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
    _refuse_protected(cfg, req.environment, req.force)
    if req.jobs < 1:
        raise ConfigError("--jobs must be at least 1")
    engine = engine_for(cfg, req.database)
    layout = layout_for(cfg, req.source, req.database)
    manifest = layout.select(engine, artifact=req.artifact, at=req.at, reporter=reporter)
    if manifest.engine != engine.name:
        raise ConfigError(
            f"artifact {manifest.id} was made by the {manifest.engine} engine, "
            f"but {req.database} is configured as {engine.name}"
        )
    _refuse_unsanitised_source(cfg, req.source, manifest)
    if req.max_age is not None:
        artifacts.check_fresh(manifest, req.max_age)
    if len(manifest.objects) != 1:
        raise VerificationFailed(
            f"artifact {manifest.id} has {len(manifest.objects)} data objects; expected 1"
        )
    layout.check_readable(manifest, engine)
    reason = _sanitisation_needed(cfg, req, manifest)
    sanitiser = None
    if reason is not None:
        profile = sanitising.require_profile(cfg, req.database, reason)
        sanitiser = sanitising.shadow_sanitiser(profile, sanitising.load_salt(profile), reporter)
    ref = database_ref(cfg, req.database, req.environment)
    require_ready(engine.check(ref), ref)
    spool = pipeline.spool_dir(cfg.settings.spool_dir, req.jobs, manifest)
    pinned = dataclasses.replace(req, artifact=manifest.id, at=None)  # a re-plan finds the same one
    return RestorePlan(cfg, pinned, manifest, layout, engine, ref, spool, sanitiser, reason)


def restore(
    plan: RestorePlan, *, reporter: Reporter | None = None, before_swap: BeforeSwap | None = None
) -> RestoreResult:
    """Execute a plan: shadow, verify, row counts, sanitise (where the plan says), ``before_swap``,
    swap. Nothing destructive happens before the swap; any failure before it drops the shadow and
    leaves the live database exactly as it was.

    The plan's safety rules are checked again (cheaply, without the store), so a plan edited or
    built by hand cannot restore into a protected environment or skip a required sanitisation.
    """
    reporter = reporter or NullReporter()
    req, manifest = plan.request, plan.manifest
    _refuse_protected(plan.config, req.environment, req.force)
    _refuse_unsanitised_source(plan.config, req.source, manifest)
    required = _sanitisation_needed(plan.config, req, manifest)
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
    reporter.info(f"restore {req.database} ({req.environment}) <- {req.source}: {manifest.id}")
    options = RestoreOptions(jobs=req.jobs, spool_dir=plan.spool)
    loaded = pipeline.restore_into(plan.engine, plan.ref, plan.layout, manifest, options, hooks, reporter)
    reporter.info(f"restored {manifest.id} into {req.database} ({req.environment})")
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
        result = sanitiser(engine, shadow)
        if result is None or not result.passed:
            raise SanitisationFailed(
                f"sanitisation of {database} did not pass", hint="nothing was swapped in or published"
            )
        return result

    return gate


# -- cleanup and retention -------------------------------------------------------------------------


@dataclass
class CleanupReport:
    """What ``cleanup`` removed (or, with ``dry_run``, would remove)."""

    orphans: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    incomplete_uploads: int = 0
    dry_run: bool = False


def cleanup(
    cfg: Config,
    database: str,
    environment: str,
    *,
    older_than: timedelta = timedelta(hours=24),
    keep: int | None = None,
    dry_run: bool = False,
) -> CleanupReport:
    """Remove orphaned data (interrupted backups) and, with ``keep``, all but the newest artifacts.

    Only leftovers older than ``older_than`` are touched, so a backup running right now (data
    uploaded, manifest not yet written) is never mistaken for an orphan. An expired artifact loses
    its manifest first, so a cleanup killed halfway leaves an orphan, never a manifest without data.
    """
    layout = layout_for(cfg, environment, database)
    found = layout.orphans()
    if found is None:
        raise Refused(
            f"the store of {environment} uses the {layout.name} layout; dataferry does not clean it up",
            hint="leave expiry to the bucket's lifecycle rules, as GOV.UK does",
        )
    if keep is not None and keep < 1:
        raise ConfigError("--keep must be at least 1: dataferry never deletes the newest artifact")
    store = layout.store
    report = CleanupReport(dry_run=dry_run)
    cutoff = datetime.now(UTC) - older_than
    report.orphans = [o.key for o in found if o.modified is not None and o.modified < cutoff]
    if keep is not None:
        for key in artifacts.manifest_keys(store, database)[keep:]:
            manifest = artifacts.read_manifest(store, key)
            report.expired.append(manifest.id)
            if not dry_run:
                store.delete(key)
                for data in manifest.objects:
                    store.delete(data.key)
    if not dry_run:
        for key in report.orphans:
            store.delete(key)
        if isinstance(store, CleansIncomplete):
            report.incomplete_uploads = store.cleanup_incomplete(older_than)
    return report


# -- list, verify, check ---------------------------------------------------------------------------


def list_artifacts(cfg: Config, database: str, environment: str) -> list[Manifest]:
    """Artifacts of ``database`` in ``environment``'s store, newest first."""
    return layout_for(cfg, environment, database).list_manifests(engine_for(cfg, database))


def latest_artifact(cfg: Config, database: str, environment: str) -> Manifest:
    """The newest artifact of ``database`` in ``environment``'s store, whatever its layout."""
    listed = list_artifacts(cfg, database, environment)
    if not listed:
        raise NotFound(
            f"no artifact of {database} in the store of {environment}",
            hint=f"run 'dataferry backup {database} --env {environment}' first",
        )
    return listed[0]


def verify(cfg: Config, database: str, environment: str, artifact: str | None = None) -> Manifest:
    """Re-read an artifact (default: the latest) and check it against its manifest."""
    layout = layout_for(cfg, environment, database)
    manifest = layout.select(engine_for(cfg, database), artifact=artifact, at=None, reporter=NullReporter())
    if any(not o.sha256 for o in manifest.objects):
        raise VerificationFailed(
            f"{manifest.objects[0].key} has no dataferry manifest, so there is no checksum to verify it against",
            hint="dumps written by GOV.UK's own scripts carry no checksum; a restore still checks their format",
        )
    artifacts.verify(layout.store, manifest)
    return manifest


@dataclass
class CheckReport:
    """The findings of ``dataferry check``: one line per thing checked."""

    findings: list[tuple[str, bool, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return all(ok for _, ok, _ in self.findings)


def check(cfg: Config) -> CheckReport:
    """Validate stores, tools and connections for every configured database; changes nothing."""
    report = CheckReport()
    for env_name in sorted(cfg.environments):
        try:
            store = store_for(cfg, env_name)
            next(iter(store.list("_dataferry/")), None)
            report.findings.append((f"store of {env_name}", True, store.url))
        except Exception as exc:  # a report lists every failure, it does not stop at one
            report.findings.append((f"store of {env_name}", False, str(exc)))
    for db_name in sorted(cfg.databases):
        db_cfg = cfg.databases[db_name]
        for env_name in sorted(db_cfg.environments):
            where = f"{db_name} in {env_name}"
            try:
                ref = database_ref(cfg, db_name, env_name)
                for c in get_engine(db_cfg.engine).check(ref):
                    report.findings.append((f"{where}: {c.what}", c.ok, c.detail))
            except Exception as exc:  # report, and go on to the next database
                report.findings.append((where, False, str(exc)))
        if db_cfg.sanitise:
            report.findings.append(_check_profile(cfg, db_name))
    return report


def _check_profile(cfg: Config, database: str) -> tuple[str, bool, str]:
    """The sanitisation profile loads and its salt is set (a bad one would fail the first restore)."""
    from dataferry import sanitise as sanitising  # imported when used: CLI start-up time

    what = f"{database}: sanitisation profile"
    try:
        profile = sanitising.require_profile(cfg, database, "one is configured")
        sanitising.load_salt(profile)
    except FerryError as exc:
        return what, False, exc.message
    return what, True, f"{profile.name}, salt {'set' if profile.salt_env else 'not needed'}"
