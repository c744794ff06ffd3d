"""Read-mostly operations: ``list_artifacts``, ``latest_artifact``, ``verify``, ``check`` and
``cleanup`` (which removes only interrupted backups and, when asked, expired artifacts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from dataferry import artifacts, private
from dataferry.artifacts import Manifest
from dataferry.config import Config, database_ref
from dataferry.engines import get_engine
from dataferry.errors import ConfigError, FerryError, NotFound, Refused, VerificationFailed
from dataferry.layouts import layout_for, store_for
from dataferry.ops.rules import engine_for
from dataferry.progress import NullReporter
from dataferry.stores import CleansIncomplete


@dataclass
class CleanupReport:
    """What ``cleanup`` removed (or, with ``dry_run``, would remove)."""

    orphans: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
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
    if keep is not None:
        for key in artifacts.manifest_keys(store, database)[keep:]:
            manifest = artifacts.read_manifest(store, key)
            report.expired.append(manifest.id)
            if not dry_run:
                store.delete(key)
                for data in manifest.objects:
                    store.delete(data.key)
    bases = private.bases(cfg.spool_path())
    if dry_run:
        report.orphaned_loaders = [f"{name} (pid {pid})" for b in bases for pid, name in private.orphans(b)]
    else:
        report.orphaned_loaders = [loader for b in bases for loader in private.kill_orphans(b)]
    clear = private.leftovers if dry_run else private.sweep
    report.private_leftovers = [str(p) for base in private.bases(cfg.spool_path()) for p in clear(base)]
    if not dry_run:
        for key in report.orphans:
            store.delete(key)
    if isinstance(store, CleansIncomplete):
        report.incomplete_uploads = store.cleanup_incomplete(older_than, layout.prefix(), dry_run=dry_run)
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
    report.findings.append(_check_leftovers(cfg))
    return report


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
