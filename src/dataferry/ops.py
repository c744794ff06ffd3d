"""The operations behind the commands: backup, restore, list, verify, check.

Each function takes a validated ``Config`` and plain arguments, and is what the CLI, the job runner
and tests all call. The order inside ``backup`` and ``restore`` is where the invariants live:
checks before anything destructive, data before manifest, checksum before swap, swap last.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import zstandard

from dataferry import artifacts
from dataferry.artifacts import DataObject, Manifest, Sanitisation
from dataferry.config import Config, DatabaseRef, database_ref
from dataferry.engines import DumpOptions, Engine, RestoreOptions, Shadow, ToolCheck, get_engine
from dataferry.errors import (
    ConfigError,
    FerryError,
    NotFound,
    NotReady,
    Refused,
    StoreError,
    VerificationFailed,
)
from dataferry.progress import NullReporter, Reporter
from dataferry.stores import CleansIncomplete, Store, open_store
from dataferry.streams import (
    ByteSource,
    CountingReader,
    HashingReader,
    ProgressReader,
    VerifyingReader,
    zstd_compress,
    zstd_decompress,
)

#: Called on the shadow after its checksum and row counts were verified and before the swap.
#: Sanitisation plugs in here; raising aborts the restore and the shadow is dropped.
BeforeSwap = Callable[[Engine, Shadow], Sanitisation | None]


def store_for(cfg: Config, environment: str) -> Store:
    """The store of an environment."""
    store_cfg = cfg.environment(environment).store
    url = store_cfg.url
    if "://" not in url:
        url = str(cfg.resolve_path(url))
    return open_store(url, store_cfg.options())


def uses_govuk_layout(cfg: Config, environment: str) -> bool:
    """True when the environment's store has GOV.UK's key layout (``dataferry.compat.layout``)."""
    return cfg.environment(environment).store.layout == "govuk"


def engine_for(cfg: Config, database: str) -> Engine:
    """The engine of a configured database."""
    return get_engine(cfg.database(database).engine)


def require_ready(checks: list[ToolCheck], ref: DatabaseRef) -> None:
    """Raise ``NotReady`` listing every failed check (invariant 1: check before you destroy)."""
    failed = [c for c in checks if not c.ok]
    if failed:
        lines = "; ".join(f"{c.what}: {c.detail}" for c in failed)
        raise NotReady(
            f"{ref.name} in {ref.environment} is not ready: {lines}",
            hint="run 'dataferry check' for the full report",
        )


# -- backup --------------------------------------------------------------------------------------


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
    reporter: Reporter | None = None,
    sanitisation: Sanitisation | None = None,
    engine: Engine | None = None,
    ref: DatabaseRef | None = None,
    extra: dict[str, object] | None = None,
) -> BackupResult:
    """Dump ``database`` in ``environment`` into that environment's store and publish it.

    The data object is uploaded first; the manifest (the commit) only after the upload succeeded
    and its size matched. ``ref``/``engine`` let callers back up a shadow or scratch database
    (sanitised backups) under the configured name.
    """
    if uses_govuk_layout(cfg, environment):
        from dataferry.compat import layout

        return layout.backup(
            cfg,
            database,
            environment,
            reporter=reporter,
            sanitisation=sanitisation,
            engine=engine,
            ref=ref,
            extra=extra,
        )
    reporter = reporter or NullReporter()
    db_cfg = cfg.database(database)
    engine = engine or get_engine(db_cfg.engine)
    ref = ref or database_ref(cfg, database, environment)
    refuse_unsanitised(cfg, database, environment, sanitisation)
    store = store_for(cfg, environment)
    require_ready(engine.check(ref), ref)
    server_version = engine.server_version(ref)
    # Optional engine hook: structured facts for Manifest.extra (MySQL: character set, dump tool).
    manifest_extra = getattr(engine, "manifest_extra", None)
    engine_extra: dict[str, object] = manifest_extra(ref) if manifest_extra else {}
    level = db_cfg.compression_level or cfg.settings.compression_level
    ident, created = artifacts.new_artifact_id(store, database)
    key = artifacts.data_key(database, ident, f"{engine.dump_format}.zst")
    reporter.info(f"backup {database} ({environment}) -> {store.url}{key}")
    obj, row_counts = upload_dump(
        store,
        key,
        engine,
        ref,
        reporter,
        encode=lambda raw: zstd_compress(raw, level=level),
        compression="zstd",
    )
    manifest = Manifest(
        id=ident,
        database=database,
        engine=engine.name,
        server_version=server_version,
        source_environment=environment,
        created_at=created,
        finished_at=artifacts.utcnow(),
        objects=[obj],
        sanitised=sanitisation is not None and sanitisation.passed,
        sanitisation=sanitisation,
        row_counts=row_counts,
        extra={**engine_extra, **(extra or {})},  # e.g. the job run and the origin time of re-backed-up data
    )
    artifacts.write_manifest(store, manifest)
    reporter.info(f"published {manifest.id}", size=obj.size, sha256=obj.sha256[:12])
    return BackupResult(manifest=manifest, store_url=store.url)


def refuse_unsanitised(
    cfg: Config, database: str, environment: str, sanitisation: Sanitisation | None
) -> None:
    """A store that requires sanitised artifacts takes only ones whose checks passed."""
    if cfg.environment(environment).requires_sanitised and (sanitisation is None or not sanitisation.passed):
        raise Refused(
            f"the store of {environment} accepts only sanitised artifacts",
            hint=f"use 'dataferry backup {database} --env {environment} --sanitise'",
        )


def upload_dump(
    store: Store,
    key: str,
    engine: Engine,
    ref: DatabaseRef,
    reporter: Reporter,
    *,
    encode: Callable[[ByteSource], ByteSource],
    compression: str,
    options: DumpOptions | None = None,
) -> tuple[DataObject, dict[str, int]]:
    """Stream a dump of ``ref`` through ``encode`` into ``key``, hashing the stored bytes.

    A failed dump raises inside ``store.put``, so nothing becomes visible; a size the store did not
    confirm removes the object. Returns the data object and the dump's own row counts.
    """
    transfer = reporter.transfer(f"backup {ref.name}", None)
    try:
        with engine.dump(ref, options or DumpOptions()) as dump:
            raw = CountingReader(
                ProgressReader(dump.stream, transfer.advance)
            )  # only stored bytes need a hash
            hashed = HashingReader(encode(raw))
            info = store.put(key, hashed)
            row_counts = dict(dump.row_counts)
    finally:
        transfer.done()
    if info.size != hashed.size:
        store.delete(key)
        raise StoreError(f"store reported {info.size} bytes for {key}, {hashed.size} were sent")
    obj = DataObject(
        key=key,
        size=hashed.size,
        sha256=hashed.sha256,
        format=engine.dump_format,
        compression=compression,
        raw_size=raw.size,
    )
    return obj, row_counts


# -- restore -------------------------------------------------------------------------------------


@dataclass
class RestoreRequest:
    """What to restore where, and how."""

    database: str
    environment: str
    source: str
    artifact: str | None = None
    at: datetime | None = None
    jobs: int = 1
    force: bool = False
    max_age: object | None = None  # a timedelta; kept loose so jobs can pass their own
    dry_run: bool = False


@dataclass
class RestoreResult:
    """What was restored, and what sanitisation (if any) found."""

    manifest: Manifest
    swapped: bool
    sanitisation: Sanitisation | None = None
    row_counts: dict[str, int] = field(default_factory=dict)


def plan_restore(cfg: Config, req: RestoreRequest) -> tuple[Manifest, Store]:
    """Every check a restore makes before touching anything; returns the chosen artifact.

    Raises ``Refused`` for a protected target without ``force``, and for an unsanitised artifact
    from a store that requires sanitised ones.
    """
    if uses_govuk_layout(cfg, req.source):
        from dataferry.compat import layout

        return layout.plan_restore(cfg, req)
    target_env = cfg.environment(req.environment)
    source_env = cfg.environment(req.source)
    db_cfg = cfg.database(req.database)
    if target_env.protected and not req.force:
        raise Refused(
            f"{req.environment} is protected: dataferry does not restore into it",
            hint="if you really mean to overwrite it, repeat the command with --force",
        )
    if req.jobs < 1:
        raise ConfigError("--jobs must be at least 1")
    store = store_for(cfg, req.source)
    manifest = artifacts.select(store, req.database, artifact=req.artifact, at=req.at)
    if manifest.engine != db_cfg.engine:
        raise ConfigError(
            f"artifact {manifest.id} was made by the {manifest.engine} engine, "
            f"but {req.database} is configured as {db_cfg.engine}"
        )
    if source_env.requires_sanitised and not manifest.is_publishable_sanitised():
        raise Refused(
            f"artifact {manifest.id} in {req.source} is not sanitised, and {req.source} requires "
            "sanitised artifacts",
            hint="restore a sanitised artifact, or fix the job that published this one",
        )
    if req.max_age is not None:
        artifacts.check_fresh(manifest, req.max_age)  # type: ignore[arg-type]
    if len(manifest.objects) != 1:
        raise VerificationFailed(
            f"artifact {manifest.id} has {len(manifest.objects)} data objects; expected 1"
        )
    return manifest, store


def restore(
    cfg: Config,
    req: RestoreRequest,
    *,
    reporter: Reporter | None = None,
    before_swap: BeforeSwap | None = None,
) -> RestoreResult:
    """Restore an artifact of ``req.source`` into ``req.environment``: shadow, verify, swap.

    Nothing destructive happens before the swap. Any failure before it drops the shadow and
    leaves the live database exactly as it was.
    """
    if uses_govuk_layout(cfg, req.source):
        from dataferry.compat import layout

        return layout.restore(cfg, req, reporter=reporter, before_swap=before_swap)
    reporter = reporter or NullReporter()
    manifest, store = plan_restore(cfg, req)
    engine = engine_for(cfg, req.database)
    ref = database_ref(cfg, req.database, req.environment)
    require_ready(engine.check(ref), ref)
    spool = _spool_dir(cfg, req, manifest)
    if req.dry_run:
        return RestoreResult(manifest=manifest, swapped=False)
    obj = manifest.objects[0]
    reporter.info(f"restore {req.database} ({req.environment}) <- {req.source}: {manifest.id}")
    with _shadow_restore(
        engine, ref, store, obj, RestoreOptions(jobs=req.jobs, spool_dir=spool), reporter
    ) as shadow:
        counts = _check_row_counts(engine, ref, shadow, manifest)
        sanitisation = before_swap(engine, shadow) if before_swap else None
        reporter.info(f"swap {shadow.name} -> live {req.database}")
        engine.swap(shadow)
    reporter.info(f"restored {manifest.id} into {req.database} ({req.environment})")
    return RestoreResult(manifest=manifest, swapped=True, sanitisation=sanitisation, row_counts=counts)


@contextlib.contextmanager
def _shadow_restore(
    engine: Engine,
    ref: DatabaseRef,
    store: Store,
    obj: DataObject,
    options: RestoreOptions,
    reporter: Reporter,
) -> Iterator[Shadow]:
    """Stream ``obj`` into a shadow with its checksum verified; drop the shadow unless swapped."""
    transfer = reporter.transfer(f"restore {ref.name}", obj.size)
    shadow: Shadow | None = None
    swapped = False
    try:
        with store.open(obj.key) as raw:
            verifying = VerifyingReader(raw, size=obj.size, sha256=obj.sha256, name=obj.key)
            # Read in this thread, not ahead on another: reading ahead measured no faster here
            # (the spool is write-bound), and a read stuck on a stalled store could not be
            # abandoned safely when a signal stops the restore.
            stream: BinaryIO = zstd_decompress(ProgressReader(verifying, transfer.advance))
            try:
                shadow = engine.restore_shadow(ref, stream, options)
            except Exception as exc:
                _refuse_if_corrupt(verifying, exc)
                raise
            verifying.drain()  # the engine may stop before EOF: verify what it did not read too
        yield shadow
        swapped = True
    finally:
        transfer.done()
        if shadow is not None and not swapped:
            engine.drop_shadow(shadow)


_DRAIN_LIMIT = 256 * 1024 * 1024


def _refuse_if_corrupt(verifying: VerifyingReader, exc: Exception) -> None:
    """Report a restore that failed on damaged bytes as what it is: ``VerificationFailed``.

    The checksum can only be checked at the end of the object, but damaged bytes usually break
    the decompressor or the database tool first; reading the rest of the object tells the two apart.
    """
    if isinstance(exc, VerificationFailed):
        return
    unread = verifying.expected_size - verifying.size
    if unread > _DRAIN_LIMIT:
        # Reading gigabytes just to classify an error (a missing role, a full disk) costs hours:
        # report the tool's error and say how to check the artifact instead.
        if isinstance(exc, FerryError) and not exc.hint:
            exc.hint = (
                f"if the artifact may be damaged, check it with 'dataferry verify' ({unread} bytes unread)"
            )
        return
    try:
        verifying.drain()
    except VerificationFailed as corrupt:
        raise corrupt from exc
    except Exception:  # the store failed as well: the original error is the one to report
        return
    if isinstance(exc, zstandard.ZstdError):
        raise VerificationFailed(
            f"object {verifying.name} matches its checksum but does not decompress: {exc}",
            hint="the backup that wrote it was broken; restore an older artifact with --artifact KEY",
        ) from exc


def _check_row_counts(engine: Engine, ref: DatabaseRef, shadow: Shadow, manifest: Manifest) -> dict[str, int]:
    """Compare the shadow's rows per table with the manifest (a cheap restore check)."""
    if not manifest.row_counts:
        return {}
    counts = engine.row_counts(ref, shadow)
    diffs = [
        f"{t}: {manifest.row_counts[t]} expected, {counts.get(t)} restored"
        for t in sorted(manifest.row_counts)
        if counts.get(t) != manifest.row_counts[t]
    ]
    if diffs:
        raise VerificationFailed(
            f"restored rows differ from the manifest of {manifest.id}: " + "; ".join(diffs[:5]),
            hint="the live database was not changed; the artifact or the restore is broken",
        )
    return counts


def _spool_dir(cfg: Config, req: RestoreRequest, manifest: Manifest) -> Path | None:
    """Where a parallel restore spools; checks free space first (invariant 1)."""
    if req.jobs <= 1:
        return None
    base = Path(cfg.settings.spool_dir) if cfg.settings.spool_dir else Path(tempfile.gettempdir())
    need = max(o.raw_size or o.size for o in manifest.objects)
    free = shutil.disk_usage(base).free if base.exists() else 0
    if free < need * 1.1:
        raise NotReady(
            f"a parallel restore spools {need} bytes to {base}, but only {free} are free",
            hint="set settings.spool_dir to a larger disk, or restore with --jobs 1 (streams, no spooling)",
        )
    return base


# -- cleanup and retention -----------------------------------------------------------------------


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
    cfg.database(database)
    if uses_govuk_layout(cfg, environment):
        # Its directories hold GOV.UK's own dumps and pointers, which have no manifest: never orphans.
        raise Refused(
            f"the store of {environment} uses the govuk layout; dataferry does not clean it up",
            hint="leave expiry to the bucket's lifecycle rules, as GOV.UK does",
        )
    store = store_for(cfg, environment)
    report = CleanupReport(dry_run=dry_run)
    cutoff = datetime.now(UTC) - older_than
    for obj in artifacts.orphans(store, database):
        if obj.modified is not None and obj.modified < cutoff:
            report.orphans.append(obj.key)
    if keep is not None:
        if keep < 1:
            raise ConfigError("--keep must be at least 1: dataferry never deletes the newest artifact")
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


# -- list, verify, check -------------------------------------------------------------------------


def list_artifacts(cfg: Config, database: str, environment: str) -> list[Manifest]:
    """Artifacts of ``database`` in ``environment``'s store, newest first."""
    if uses_govuk_layout(cfg, environment):
        from dataferry.compat import layout

        return layout.list_artifacts(cfg, database, environment)
    cfg.database(database)
    return list(artifacts.iter_manifests(store_for(cfg, environment), database))


def latest_artifact(cfg: Config, database: str, environment: str) -> Manifest:
    """The newest artifact of ``database`` in ``environment``'s store, whatever its layout."""
    cfg.database(database)
    if uses_govuk_layout(cfg, environment):
        listed = list_artifacts(cfg, database, environment)
        if not listed:
            raise NotFound(f"no dump of {database} in the store of {environment}")
        return listed[0]
    return artifacts.latest(store_for(cfg, environment), database)


def verify(cfg: Config, database: str, environment: str, artifact: str | None = None) -> Manifest:
    """Re-read an artifact (default: the latest) and check it against its manifest."""
    cfg.database(database)
    if uses_govuk_layout(cfg, environment):
        from dataferry.compat import layout

        return layout.verify(cfg, database, environment, artifact)
    store = store_for(cfg, environment)
    manifest = artifacts.select(store, database, artifact=artifact)
    artifacts.verify(store, manifest)
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
    from dataferry import sanitise  # sanitise builds on this module

    what = f"{database}: sanitisation profile"
    try:
        profile = sanitise.profile_for(cfg, database)
        assert profile is not None  # only called for databases with a profile
        sanitise.load_salt(profile)
    except FerryError as exc:
        return what, False, exc.message
    return what, True, f"{profile.name}, salt {'set' if profile.salt_env else 'not needed'}"
