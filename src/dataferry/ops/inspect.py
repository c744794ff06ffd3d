"""Read-mostly operations: ``list_artifacts``, ``latest_artifact``, ``verify``, ``check`` and
``cleanup`` (which removes only interrupted backups and, when asked, expired artifacts)."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from dataferry import artifacts, private, signing
from dataferry.artifacts import Manifest
from dataferry.config import Config, database_ref
from dataferry.engines import ChecksSource, SweepsShadows, get_engine
from dataferry.errors import ConfigError, FerryError, NotFound, Refused, VerificationFailed
from dataferry.layouts import layout_for, store_for
from dataferry.ops.keys import check_encryption
from dataferry.ops.rules import engine_for, refuse_unsanitised_source
from dataferry.progress import NullReporter, Reporter
from dataferry.stores import CleansIncomplete, Store, put_bytes


@dataclass
class CleanupReport:
    """What ``cleanup`` removed (or, with ``dry_run``, would remove)."""

    orphans: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    #: ids of artifacts whose manifest is damaged (removed with their data objects)
    damaged: list[str] = field(default_factory=list)
    #: uploads killed halfway (multipart uploads, temp files) to this database's keys
    incomplete_uploads: list[str] = field(default_factory=list)
    #: private run directories (option files, spools) that killed runs left on this machine
    private_leftovers: list[str] = field(default_factory=list)
    #: loaders (``program (pid N)``) that killed runs left running on this machine, killed
    orphaned_loaders: list[str] = field(default_factory=list)
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
    _remove_damaged(store, database, cutoff, report)
    if keep is not None:
        for manifest in list(artifacts.iter_manifests(store, database))[keep:]:
            report.expired.append(manifest.id)
            if not dry_run:
                store.delete(manifest.key)
                for data in manifest.objects:
                    store.delete(data.key)
    bases = private.bases(cfg.spool_path())
    if dry_run:
        report.orphaned_loaders = [f"{name} (pid {pid})" for b in bases for pid, name in private.orphans(b)]
    else:
        report.orphaned_loaders = [loader for b in bases for loader in private.kill_orphans(b)]
    clear = private.leftovers if dry_run else private.sweep
    report.private_leftovers = [str(p) for base in private.bases(cfg.spool_path()) for p in clear(base)]
    report.private_leftovers += _shadows(cfg, database, environment, remove=not dry_run)
    if not dry_run:
        for key in report.orphans:
            store.delete(key)
    if isinstance(store, CleansIncomplete):
        report.incomplete_uploads = store.cleanup_incomplete(older_than, layout.prefix(), dry_run=dry_run)
    return report


def _remove_damaged(store: Store, database: str, cutoff: datetime, report: CleanupReport) -> None:
    """Damaged manifests older than ``cutoff`` and their data objects: such an artifact can never be
    restored, and its manifest would be reported by every listing. The manifest goes first, so a
    cleanup killed halfway leaves an orphan, never a manifest without data."""
    for d in artifacts.damaged_manifests(store, database):
        if d.modified is None or d.modified >= cutoff:
            continue
        report.damaged.append(d.id)
        if report.dry_run:
            continue
        store.delete(d.key)
        for obj in store.list(f"{database}/{d.id}."):
            store.delete(obj.key)


# -- list, verify, check ---------------------------------------------------------------------------


def list_artifacts(
    cfg: Config, database: str, environment: str, on_damaged: artifacts.OnDamaged | None = None
) -> list[Manifest]:
    """Artifacts of ``database`` in ``environment``'s store, newest first. An artifact whose manifest
    is damaged is skipped (as choosing skips it; ``cleanup`` removes it) and passed to ``on_damaged``."""
    return layout_for(cfg, environment, database).list_manifests(engine_for(cfg, database), on_damaged)


def latest_artifact(cfg: Config, database: str, environment: str) -> Manifest:
    """The newest artifact of ``database`` in ``environment``'s store, whatever its layout."""
    listed = list_artifacts(cfg, database, environment)
    if not listed:
        raise NotFound(
            f"no artifact of {database} in the store of {environment}",
            hint=f"run 'dataferry backup {database} --env {environment}' first",
        )
    return listed[0]


def verify(
    cfg: Config,
    database: str,
    environment: str,
    artifact: str | None = None,
    reporter: Reporter | None = None,
) -> Manifest:
    """Re-read an artifact (default: the latest) and check it against its manifest, with progress; in a store that
    requires sanitised artifacts, also that it is sanitised and signed by a key it trusts."""
    layout = layout_for(cfg, environment, database)
    manifest = layout.select(engine_for(cfg, database), artifact=artifact, at=None, reporter=NullReporter())
    if any(not o.sha256 for o in manifest.objects):
        raise VerificationFailed(
            f"{manifest.objects[0].key} has no dataferry manifest, so there is no checksum to verify it against",
            hint="dumps written by GOV.UK's own scripts carry no checksum; a restore still checks their format",
        )
    artifacts.verify(layout.store, manifest, reporter)
    refuse_unsanitised_source(cfg, environment, manifest)  # a store that requires sanitised data: signed
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
        report.findings.append(_check_store(cfg, env_name))
        if cfg.environments[env_name].encryption is not None:
            report.findings += check_encryption(cfg, env_name)
    for db_name in sorted(cfg.databases):
        db_cfg = cfg.databases[db_name]
        for env_name in sorted(db_cfg.environments):
            where = f"{db_name} in {env_name}"
            try:
                ref = database_ref(cfg, db_name, env_name)
                engine = get_engine(db_cfg.engine)
                found = engine.check(ref)
                if isinstance(engine, ChecksSource) and _backup_source(cfg, db_name, env_name):
                    found += engine.check_source(ref)
                for c in found:
                    report.findings.append((f"{where}: {c.what}", c.ok, c.detail))
                shadows = _shadows(cfg, db_name, env_name, remove=False)
                if shadows:
                    report.findings.append(
                        (
                            f"{where}: shadows left by killed restores",
                            False,
                            f"{', '.join(shadows)}: 'dataferry cleanup {db_name} --env {env_name}' removes them",
                        )
                    )
            except Exception as exc:  # report, and go on to the next database
                report.findings.append((where, False, str(exc)))
        if db_cfg.sanitise:
            report.findings.append(_check_profile(cfg, db_name))
    report.findings.append(_check_leftovers(cfg))
    report.findings.append(_check_signing(cfg))
    report.findings += _check_signatures(cfg)
    return report


def _check_store(cfg: Config, environment: str) -> tuple[str, bool, str]:
    """List the store, then write and delete a probe object under ``_dataferry/check/``, as every
    backup, run record and lock will: a read-only store fails here, not in the nightly backup. A
    store nothing here writes to (no job, not protected) may be read-only: that is reported."""
    what = f"store of {environment}"
    try:
        store = store_for(cfg, environment)
        next(iter(store.list("_dataferry/")), None)
    except Exception as exc:  # a report lists every failure, it does not stop at one
        return what, False, str(exc)
    key = f"_dataferry/check/probe-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        put_bytes(store, key, b"written by 'dataferry check'; safe to delete\n")
        store.delete(key)
    except Exception as exc:
        detail = f"{store.url} is readable but not writable: {exc}"
        writes = cfg.environment(environment).protected or any(
            j.environment == environment for j in cfg.jobs.values()
        )
        if writes:
            return what, False, detail + " (backups, run records and locks are written there)"
        return what, True, detail + "; fine as a source of restores, but a backup into it would fail"
    return what, True, f"{store.url} (readable, writable: a probe object was written and deleted)"


def _backup_source(cfg: Config, database: str, environment: str) -> bool:
    """The database in ``environment`` is backed up from what is there (so it must exist): the
    environment is protected (never restored into), or a job there backs it up without restoring
    it first."""
    if cfg.environment(environment).protected:
        return True
    for job in cfg.jobs.values():
        if job.environment != environment or job.database != database:
            continue
        for step in job.steps:
            if step.startswith("restore:"):
                break
            if step == "backup":
                return True
    return False


def _check_signatures(cfg: Config) -> list[tuple[str, bool, str]]:
    """The newest artifact of each database in each store that requires sanitised data: would a
    restore take it (sanitised, signed by a trusted key)? Unsigned ones are what an upgrade left."""
    found = []
    for env_name, env in sorted(cfg.environments.items()):
        if not env.requires_sanitised:
            continue
        for db_name, db_cfg in sorted(cfg.databases.items()):
            if env_name not in db_cfg.environments:
                continue
            what = f"newest artifact of {db_name} in {env_name}"
            try:
                layout = layout_for(cfg, env_name, db_name)
                manifest = layout.select(
                    engine_for(cfg, db_name), artifact=None, at=None, reporter=NullReporter()
                )
                refuse_unsanitised_source(cfg, env_name, manifest)
            except (Refused, VerificationFailed) as exc:
                found.append((what, False, exc.message))
                continue
            except FerryError:
                continue  # none yet, or the store is unreachable (reported above)
            found.append((what, True, f"{manifest.id}: sanitised and signed by a trusted key"))
    return found


def _check_signing(cfg: Config) -> tuple[str, bool, str]:
    """The key that signs sanitised manifests: readable, and which environments trust it."""
    what = "manifest signing key"
    name = cfg.settings.signing_key_env
    if name and not os.environ.get(name):
        return what, True, f"${name} is not set here (needed only where sanitised artifacts are published)"
    try:
        signer = signing.load_signer(cfg)
    except FerryError as exc:
        return what, False, exc.message
    if signer is None:
        return what, True, "none configured (this machine publishes no sanitised artifacts)"
    requiring = {n: e for n, e in cfg.environments.items() if e.requires_sanitised}
    trusting = [n for n, e in requiring.items() if signer.fingerprint in signing.fingerprints(e.trusted_keys)]
    others = sorted(set(requiring) - set(trusting))
    detail = f"{signer.fingerprint} ({signer.source}); trusted by {', '.join(trusting) or 'no environment'}"
    return what, bool(trusting) or not requiring, detail + (f"; not by {', '.join(others)}" if others else "")


def _shadows(cfg: Config, database: str, environment: str, *, remove: bool) -> list[str]:
    """Shadow files killed restores of ``database`` in ``environment`` left beside it (SQLite)."""
    engine = get_engine(cfg.database(database).engine)
    if not isinstance(engine, SweepsShadows) or environment not in cfg.database(database).environments:
        return []
    ref = database_ref(cfg, database, environment)
    return engine.remove_stale_shadows(ref) if remove else engine.stale_shadows(ref)


def _check_leftovers(cfg: Config) -> tuple[str, bool, str]:
    """Killed runs' option files (passwords) and spools (whole databases) still on this machine."""
    bases = private.bases(cfg.spool_path())
    found = [str(p) for base in bases for p in private.leftovers(base)]
    if not found:
        return "leftovers of killed runs", True, "none on this machine"
    loaders = [f"{name} (pid {pid})" for base in bases for pid, name in private.orphans(base)]
    running = f"; still running for them: {', '.join(loaders)}" if loaders else ""
    # Reported, not failed: they do not stop the next run, which removes them first.
    return (
        "leftovers of killed runs",
        True,
        f"{len(found)} private run director{'y' if len(found) == 1 else 'ies'} of runs that were killed "
        f"({', '.join(found[:10])}{', ...' if len(found) > 10 else ''}){running}; they may hold passwords or "
        "database copies: 'dataferry cleanup DB --env ENV' or the next backup or restore removes them "
        "(and kills what still runs for them)",
    )


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
