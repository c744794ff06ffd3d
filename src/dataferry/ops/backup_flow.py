"""``backup``: publish a database's data into its environment's store, sanitised where required.

Policy here (which flow, whether the data is sanitised); mechanism in ``pipeline``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from dataferry import pipeline
from dataferry.artifacts import Manifest, Sanitisation
from dataferry.config import Config, DatabaseRef, database_ref
from dataferry.engines import Engine, Shadow
from dataferry.layouts import Layout, layout_for
from dataferry.ops.keys import recipients_for
from dataferry.ops.parallelism import auto_connections
from dataferry.ops.restore_flow import RestoreResult
from dataferry.ops.rules import engine_for, refuse_unsanitised, signer_for
from dataferry.pipeline import Publication, require_ready
from dataferry.progress import NullReporter, Reporter

#: A change made on a copy of the live database before it is published (GOV.UK's pre-dump
#: transformation); it returns nothing, so its result is never taken for sanitisation.
Transform = Callable[[Engine, Shadow], None]


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
    what = Publication(
        database=database,
        environment=environment,
        extra=extra,
        recipients=recipients_for(cfg, environment),
        spool_dir=cfg.spool_path(),
    )
    pipeline.sweep_leftovers(cfg.spool_path(), reporter)
    if sanitise or transform is None:
        # the key that will sign a sanitised result, checked before anything is sanitised or dumped
        passed = _sanitised_by(after, database, environment) is not None
        what = _with_signer(cfg, what, sanitise or check_sanitised or passed)
    if sanitise:
        return _sanitised_backup(cfg, layout, engine, ref, what, reporter)
    if transform is not None:
        refuse_unsanitised(cfg, database, environment, None)
        return _transformed_backup(cfg, layout, engine, ref, what, transform, reporter)
    sanitisation = _sanitised_by(after, database, environment)
    if sanitisation is None and (check_sanitised or cfg.environment(environment).requires_sanitised):
        sanitisation = sanitising.check_live(cfg, database, environment, reporter)
    refuse_unsanitised(cfg, database, environment, sanitisation)
    what = dataclasses.replace(what, sanitisation=sanitisation)
    manifest = pipeline.publish(layout, engine, ref, what, _level(cfg, database), reporter)
    return BackupResult(manifest=manifest, store_url=layout.store.url)


def _with_signer(cfg: Config, what: Publication, may_sanitise: bool) -> Publication:
    """``what`` with the signing key of its environment, where it may publish a sanitised artifact
    (a key a ``requires_sanitised`` environment does not trust is refused here, before any work)."""
    if not (may_sanitise or cfg.environment(what.environment).requires_sanitised):
        return what
    signer = signer_for(cfg, what.environment)
    return dataclasses.replace(what, sign=signer.sign if signer else None)


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
    sanitising.execution.target(
        engine, scratch, None
    )  # refuses engines without SQL before anything is dumped
    require_ready(engine.check(source), source)
    require_ready(engine.check(scratch), scratch)
    reporter.info(f"sanitised backup of {what.database} ({what.environment}) through scratch {scratch.url}")
    pipeline.sweep_shadows(engine, scratch, reporter)
    with pipeline.copy_to_shadow(engine, source, scratch) as shadow:
        jobs = auto_connections(engine, scratch, reporter)  # the scan's connections
        sanitisation = sanitising.sanitise_shadow(engine, shadow, profile, salt, reporter, jobs)
        engine.swap(shadow)
    refuse_unsanitised(cfg, what.database, what.environment, sanitisation)
    what = dataclasses.replace(what, sanitisation=sanitisation, dump_as=_database_name(source))
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
    pipeline.sweep_shadows(engine, ref, reporter)
    with pipeline.copy_to_shadow(engine, ref, ref) as shadow:
        try:
            transform(engine, shadow)
            shadow_ref = ref.model_copy(update={"url": _shadow_url(ref, shadow)})
            what = dataclasses.replace(what, dump_as=_database_name(ref))  # not <db>_dfshadow
            manifest = pipeline.publish(
                layout, engine, shadow_ref, what, _level(cfg, what.database), reporter
            )
        finally:
            engine.drop_shadow(shadow)
    return BackupResult(manifest=manifest, store_url=layout.store.url)


def _shadow_url(ref: DatabaseRef, shadow: Shadow) -> str:
    """The URL of the shadow database itself (same server and credentials), for dumping it."""
    base, _, _ = ref.url.rpartition("/")
    return f"{base}/{quote(shadow.name, safe='')}"


def _database_name(ref: DatabaseRef) -> str:
    """The database's name on its server (the last part of its URL's path)."""
    return unquote(urlsplit(ref.url).path.rsplit("/", 1)[-1])
