"""The ``govuk`` key layout: what GOV.UK's db-backup (Kubernetes era) writes and its consumers read.

For each database, in the directory ``<path>`` (GOV.UK's DB host, e.g. ``publishing-api-postgres``)::

    <path>/<YYYY-MM-DDTHHMMSSZ>-<name>.gz             the dump (UTC, no colons), written first
    <path>/<YYYY-MM-DDTHHMMSSZ>-<name>.manifest.json  dataferry's manifest (the commit), second
    <path>/latest-<name>.txt                          "<path>/<file>", written last

The dump is what GOV.UK's consumers expect: for PostgreSQL a custom-format archive (``pg_dump -Fc``
compresses internally; the ``.gz`` suffix is historical), for MySQL gzip'd SQL. ``govuk-docker``'s
``ls | grep .gz | sort | tail -1`` and the db-backup ``list`` regex both still find the dump and
never the manifest.

Reads also accept the Puppet era's colon-style names (``2022-06-30T23:00:05-<name>.gz``, local time,
which was UTC on GOV.UK hosts). "Latest" is chosen in this order: an explicit file or time, else the
pointer ``latest-<name>.txt``, else the newest matching key (only keys with a manifest, when the
directory has any: a dump without one there is an interrupted backup). A dump with a manifest is
checked against its sha256 and size while it streams in; one without (written by GOV.UK's own
scripts) is checked by its magic bytes before anything is touched and by gzip's CRC where it has one,
and the operator is warned. Either way it is restored into a shadow and swapped in only at the end.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

from dataferry import artifacts, ops
from dataferry.artifacts import DataObject, Manifest, Sanitisation
from dataferry.compat.gzipio import GzipCompressor, GzipDecompressor, gunzip_head
from dataferry.config import Config, DatabaseRef, database_ref
from dataferry.engines import DumpOptions, Engine, RestoreOptions, Shadow, get_engine
from dataferry.errors import ConfigError, NotFound, Refused, StoreError, VerificationFailed
from dataferry.progress import NullReporter, Reporter
from dataferry.stores import Store, put_bytes, read_bytes
from dataferry.streams import (
    CHUNK,
    ByteSource,
    HashingReader,
    ProgressReader,
    VerifyingReader,
)

TS_FORMAT = "%Y-%m-%dT%H%M%SZ"
LEGACY_TS_FORMAT = "%Y-%m-%dT%H:%M:%S"
MANIFEST_SUFFIX = ".manifest.json"
_TS = r"\d{4}-\d{2}-\d{2}T(?:\d{6}Z|\d{2}:\d{2}:\d{2}Z?)"
_NAME_RE = re.compile(rf"^(?P<ts>{_TS})-(?P<db>.+)\.gz$")
_ID_RE = re.compile(rf"^(?P<ts>{_TS})-(?P<db>.+)$")
_SNIFF_BYTES = 64 * 1024

#: Engine dump format -> how the ``.gz`` object holds it. PostgreSQL's custom format is already
#: compressed (GOV.UK: ``pg_dump -Fc -Z1``), MySQL's SQL is gzip'd (``mysqldump | gzip -1``).
COMPRESSION = {"pg_custom": "none", "sql": "gzip"}


#: pg_dump's own compression level for custom-format dumps in this layout (GOV.UK: ``-Z1``).
PG_COMPRESSION = 1


@dataclass(frozen=True)
class Naming:
    """Where one database's objects live in a ``govuk`` store."""

    path: str
    name: str

    def key(self, basename: str) -> str:
        """The key of ``basename`` in this database's directory."""
        return f"{self.path}/{basename}" if self.path else basename

    def data_key(self, when: datetime) -> str:
        """``<path>/<YYYY-MM-DDTHHMMSSZ>-<name>.gz``."""
        return self.key(f"{when.astimezone(UTC).strftime(TS_FORMAT)}-{self.name}.gz")

    @property
    def pointer_key(self) -> str:
        """``<path>/latest-<name>.txt``."""
        return self.key(f"latest-{self.name}.txt")

    def matches(self, db: str) -> bool:
        """Whether ``db`` (from an object name) is this database; ``-`` and ``_`` are interchangeable,
        as in db-backup's ``list`` (``tr _- .``)."""
        return db.replace("-", "_") == self.name.replace("-", "_")


def naming_for(cfg: Config, database: str) -> Naming:
    """The naming of a configured database: ``store_path`` and ``store_name``, else its name."""
    db = cfg.database(database)
    return Naming(path=(db.store_path or database).strip("/"), name=db.store_name or database)


def manifest_key_for(data_key: str) -> str:
    """The manifest beside a dump: ``….gz`` -> ``….manifest.json``."""
    return data_key.removesuffix(".gz") + MANIFEST_SUFFIX


def parse_when(text: str) -> datetime:
    """A time as GOV.UK writes it (``…T030405Z`` or legacy ``…T03:04:05``) or any ISO 8601; UTC."""
    for fmt in (TS_FORMAT, LEGACY_TS_FORMAT, LEGACY_TS_FORMAT + "Z"):
        with contextlib.suppress(ValueError):
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"cannot read time {text!r}",
            hint="use the object's timestamp (2026-01-05T230501Z or 2022-06-30T23:00:05) or its file name",
        ) from None
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)


def parse_name(basename: str) -> tuple[datetime, str] | None:
    """``(time, db)`` of a dump's file name, or None if it is not one."""
    m = _NAME_RE.match(basename)
    return (parse_when(m["ts"]), m["db"]) if m else None


def compression_for(engine: Engine) -> str:
    """How this engine's dumps are held in a ``.gz`` object; other engines have no GOV.UK layout."""
    try:
        return COMPRESSION[engine.dump_format]
    except KeyError:
        raise ConfigError(
            f"the govuk layout holds PostgreSQL (custom format) and MySQL dumps; {engine.name} "
            f"dumps ({engine.dump_format}) have no GOV.UK form",
            hint='use layout = "dataferry" for this environment\'s store',
        ) from None


# -- finding a dump --------------------------------------------------------------------------------


@dataclass
class Found:
    """A dump chosen for a restore, its manifest if dataferry wrote it, and how it was chosen."""

    key: str
    size: int
    when: datetime
    manifest: Manifest | None
    how: str


@dataclass
class _Listing:
    dumps: dict[str, tuple[datetime, int]]
    manifests: set[str]


def _list(store: Store, naming: Naming) -> _Listing:
    """The dumps of this database directly in its directory, and the manifests there."""
    prefix = naming.key("")
    listing = _Listing({}, set())
    for obj in store.list(prefix):
        base = obj.key[len(prefix) :]
        if "/" in base:
            continue  # db-backup lists one directory level, so do we
        if base.endswith(MANIFEST_SUFFIX):
            listing.manifests.add(obj.key)
            continue
        parsed = parse_name(base)
        if parsed and naming.matches(parsed[1]):
            listing.dumps[obj.key] = (parsed[0], obj.size)
    return listing


def find(
    store: Store,
    naming: Naming,
    *,
    explicit: str | None = None,
    at: datetime | None = None,
    reporter: Reporter | None = None,
) -> Found:
    """Choose a dump: ``explicit`` (a file name, key or time), else the newest at or before ``at``,
    else the pointer, else the newest key. Its manifest, when there is one, is read and checked."""
    reporter = reporter or NullReporter()
    listing = _list(store, naming)
    if explicit:
        key, how = _explicit_key(listing, naming, explicit), "explicit"
    elif at is not None:
        key, how = _newest(listing, naming, store, at=at), "newest at or before"
    else:
        key, how = _from_pointer(store, listing, naming, reporter)
    when, size = listing.dumps[key]
    manifest = _manifest_of(store, key) if manifest_key_for(key) in listing.manifests else None
    return Found(key=key, size=size, when=when, manifest=manifest, how=how)


def _explicit_key(listing: _Listing, naming: Naming, text: str) -> str:
    """The dump named by ``-t``/``--artifact``/``FILENAME``: a file name, a key, an id or a time."""
    base = text.rsplit("/", 1)[-1].removesuffix(MANIFEST_SUFFIX).removesuffix(".gz")
    m = _ID_RE.match(base)
    if m and not naming.matches(m["db"]):
        raise NotFound(f"{text!r} is not a dump of {naming.name}")
    when = parse_when(m["ts"] if m else base)
    for key, (key_when, _) in listing.dumps.items():
        if key_when == when:
            return key
    raise NotFound(
        f"no dump of {naming.name} from {when.strftime(TS_FORMAT)} in {naming.key('')}",
        hint="newest there: " + (", ".join(_recent(listing)) or "none"),
    )


def _from_pointer(store: Store, listing: _Listing, naming: Naming, reporter: Reporter) -> tuple[str, str]:
    """The pointer's dump, or the newest key when there is no pointer (db-backup's fallback)."""
    try:
        text = read_bytes(store, naming.pointer_key, limit=4096).decode("utf-8", "replace").strip()
    except NotFound:
        reporter.warn(f"no pointer {naming.pointer_key}: using the newest dump of {naming.name}")
        return _newest(listing, naming, store), "newest key"
    base = text.rsplit("/", 1)[-1]
    parsed = parse_name(base)
    if parsed is None or not naming.matches(parsed[1]):
        raise VerificationFailed(
            f"pointer {naming.pointer_key} names {text[:200]!r}, which is not a dump of {naming.name}",
            hint="fix or delete the pointer, or name the dump with -t / --artifact",
        )
    key = naming.key(base)
    if key not in listing.dumps:
        raise NotFound(
            f"pointer {naming.pointer_key} names {key}, which does not exist",
            hint="it may have expired: name a dump with -t / --artifact; newest there: "
            + (", ".join(_recent(listing)) or "none"),
        )
    return key, "pointer"


def _newest(listing: _Listing, naming: Naming, store: Store, at: datetime | None = None) -> str:
    """The newest dump (at or before ``at``); where manifests exist, only dumps that have one."""
    keys = list(listing.dumps)
    committed = [k for k in keys if manifest_key_for(k) in listing.manifests]
    if committed:
        keys = committed
    if at is not None:
        keys = [k for k in keys if listing.dumps[k][0] <= at]
    if not keys:
        when = f" at or before {at.isoformat()}" if at else ""
        raise NotFound(
            f"no dump of {naming.name}{when} in {store.url}{naming.key('')}",
            hint="check -u/-p (bucket and path) and -d (database), or run the push first",
        )
    return max(keys, key=lambda k: (listing.dumps[k][0], k))


def _recent(listing: _Listing, n: int = 3) -> list[str]:
    ordered = sorted(listing.dumps, key=lambda k: listing.dumps[k][0], reverse=True)
    return [k.rsplit("/", 1)[-1] for k in ordered[:n]]


def _manifest_of(store: Store, key: str) -> Manifest:
    """The manifest beside ``key``; it must describe exactly that object."""
    manifest = artifacts.read_manifest(store, manifest_key_for(key))
    if len(manifest.objects) != 1 or manifest.objects[0].key != key:
        raise VerificationFailed(
            f"manifest {manifest_key_for(key)} does not describe {key}",
            hint="the manifest was copied or edited; the dump cannot be trusted",
        )
    return manifest


# -- backup ----------------------------------------------------------------------------------------


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
) -> ops.BackupResult:
    """``ops.backup`` for a ``govuk`` store: dump, then manifest, then the pointer, in that order."""
    reporter = reporter or NullReporter()
    engine = engine or get_engine(cfg.database(database).engine)
    ref = ref or database_ref(cfg, database, environment)
    ops.refuse_unsanitised(cfg, database, environment, sanitisation)
    compression = compression_for(engine)
    naming = naming_for(cfg, database)
    store = ops.store_for(cfg, environment)
    ops.require_ready(engine.check(ref), ref)
    server_version = engine.server_version(ref)
    manifest_extra = getattr(engine, "manifest_extra", None)  # optional engine hook, as in ops.backup
    engine_extra: dict[str, object] = manifest_extra(ref) if manifest_extra else {}
    key, created = _free_key(store, naming)
    reporter.info(f"backup {database} ({environment}) -> {store.url}{key}")
    encode: Callable[[ByteSource], ByteSource] = GzipCompressor if compression == "gzip" else _as_is
    obj, row_counts = ops.upload_dump(
        store,
        key,
        engine,
        ref,
        reporter,
        encode=encode,
        compression=compression,
        options=DumpOptions(native_compression=PG_COMPRESSION if compression == "none" else 0),
    )
    manifest = Manifest(
        id=key.rsplit("/", 1)[-1].removesuffix(".gz"),
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
        extra={**engine_extra, **(extra or {}), **_extra(naming, key)},
    )
    put_bytes(store, manifest_key_for(key), manifest.model_dump_json(indent=2).encode())
    # The pointer is GOV.UK's commit: its consumers trust it, so it moves only after everything else.
    put_bytes(store, naming.pointer_key, key.encode())
    reporter.info(f"published {key}", size=obj.size, sha256=obj.sha256[:12])
    return ops.BackupResult(manifest=manifest, store_url=store.url)


def _extra(naming: Naming, key: str) -> dict[str, object]:
    return {
        "layout": "govuk",
        "path": naming.path,
        "name": naming.name,
        "manifest_key": manifest_key_for(key),
        "pointer_key": naming.pointer_key,
    }


def _free_key(store: Store, naming: Naming) -> tuple[str, datetime]:
    """A data key not taken yet; waits out the second if one is (keys have second resolution)."""
    for _ in range(3):
        now = artifacts.utcnow()
        key = naming.data_key(now)
        if not any(o.key == key for o in store.list(key)):
            return key, now
        time.sleep(1.05 - (time.time() % 1))
    raise StoreError(f"cannot find a free key for {naming.name} in {store.url}")


def _as_is(raw: ByteSource) -> ByteSource:
    """PostgreSQL custom-format dumps are compressed by pg_dump itself (-Z1): stored as they come."""
    return raw


# -- restore ---------------------------------------------------------------------------------------


def restore(
    cfg: Config,
    req: ops.RestoreRequest,
    *,
    reporter: Reporter | None = None,
    before_swap: ops.BeforeSwap | None = None,
) -> ops.RestoreResult:
    """``ops.restore`` from a ``govuk`` store: choose, sniff, shadow, verify, sanitise, swap."""
    reporter = reporter or NullReporter()
    found, store, engine = plan(cfg, req, reporter)
    ref = database_ref(cfg, req.database, req.environment)
    ops.require_ready(engine.check(ref), ref)
    manifest = found.manifest or _legacy_manifest(found, req, engine)
    spool = ops._spool_dir(cfg, req, manifest)
    if req.dry_run:
        return ops.RestoreResult(manifest=manifest, swapped=False)
    reporter.info(f"restore {req.database} ({req.environment}) <- {store.url}{found.key} ({found.how})")
    options = RestoreOptions(jobs=req.jobs, spool_dir=spool)
    with _shadow_restore(engine, ref, store, found, options, reporter) as shadow:
        counts = ops._check_row_counts(engine, ref, shadow, manifest)
        sanitisation = before_swap(engine, shadow) if before_swap else None
        reporter.info(f"swap {shadow.name} -> live {req.database}")
        engine.swap(shadow)
    reporter.info(f"restored {found.key} into {req.database} ({req.environment})")
    return ops.RestoreResult(manifest=manifest, swapped=True, sanitisation=sanitisation, row_counts=counts)


def plan_restore(cfg: Config, req: ops.RestoreRequest) -> tuple[Manifest, Store]:
    """``ops.plan_restore`` for a ``govuk`` store: the chosen dump's manifest (a stand-in for a dump
    without one; its id names the dump for a later ``--artifact``) after every check."""
    found, store, engine = plan(cfg, req, NullReporter())
    return found.manifest or _legacy_manifest(found, req, engine), store


def plan(cfg: Config, req: ops.RestoreRequest, reporter: Reporter) -> tuple[Found, Store, Engine]:
    """Every check before anything is touched (invariant 1); returns the chosen dump."""
    target_env = cfg.environment(req.environment)
    source_env = cfg.environment(req.source)
    engine = get_engine(cfg.database(req.database).engine)
    if target_env.protected and not req.force:
        raise Refused(
            f"{req.environment} is protected: dataferry does not restore into it",
            hint="if you really mean to overwrite it, repeat the command with --force",
        )
    if req.jobs < 1:
        raise ConfigError("--jobs must be at least 1")
    store = ops.store_for(cfg, req.source)
    found = find(store, naming_for(cfg, req.database), explicit=req.artifact, at=req.at, reporter=reporter)
    _check_found(found, req, engine, source_env.requires_sanitised, reporter)
    _sniff(store, found, engine)
    return found, store, engine


def _check_found(
    found: Found, req: ops.RestoreRequest, engine: Engine, requires_sanitised: bool, reporter: Reporter
) -> None:
    m = found.manifest
    if m is not None and m.engine != engine.name:
        raise ConfigError(
            f"{found.key} was made by the {m.engine} engine, but {req.database} is {engine.name}"
        )
    if requires_sanitised and (m is None or not m.is_publishable_sanitised()):
        raise Refused(
            f"{found.key} in {req.source} is not a sanitised artifact, and {req.source} requires them",
            hint="restore a dump that dataferry published after sanitising it",
        )
    if req.max_age is not None:
        artifacts.check_fresh(m or _legacy_manifest(found, req, engine), req.max_age)  # type: ignore[arg-type]
    if m is None:
        reporter.warn(
            f"{found.key} has no dataferry manifest (written by GOV.UK's own scripts?): its checksum "
            "cannot be verified; checking its format instead"
        )


def _legacy_manifest(found: Found, req: ops.RestoreRequest, engine: Engine) -> Manifest:
    """A stand-in manifest for a dump GOV.UK's scripts wrote (no checksum to verify against)."""
    obj = DataObject(
        key=found.key,
        size=found.size,
        sha256="",
        format=engine.dump_format,
        compression=compression_for(engine),
    )
    return Manifest(
        id=found.key.rsplit("/", 1)[-1].removesuffix(".gz"),
        database=req.database,
        engine=engine.name,
        source_environment=req.source,
        created_at=found.when,
        finished_at=found.when,
        objects=[obj],
        tool="unknown (no manifest)",
        extra={"layout": "govuk", "legacy": True},
    )


def _sniff(store: Store, found: Found, engine: Engine) -> None:
    """Check the dump's magic bytes before anything destructive (db-backup's ``dump_is_readable``)."""
    with store.open(found.key) as f:
        head = f.read(_SNIFF_BYTES)
    if compression_for(engine) == "none":
        ok, expected = head.startswith(b"PGDMP"), "a PostgreSQL custom-format archive (PGDMP)"
    else:
        text = gunzip_head(head)
        ok, expected = _looks_like_sql(text), "gzip'd SQL from mysqldump or mariadb-dump"
    if not ok:
        raise VerificationFailed(
            f"{found.key} is not {expected}",
            hint="nothing was changed; check -D (engine) and the object, or restore another with -t",
        )


def _looks_like_sql(text: bytes) -> bool:
    if not text or b"\x00" in text:
        return False
    if any(marker in text for marker in (b"MySQL dump", b"MariaDB dump")):
        return True
    first = text.lstrip().split(b"\n", 1)[0]
    return first.startswith((b"--", b"/*", b"SET ", b"CREATE ", b"DROP ", b"USE "))


@contextlib.contextmanager
def _shadow_restore(
    engine: Engine, ref: DatabaseRef, store: Store, found: Found, options: RestoreOptions, reporter: Reporter
) -> Iterator[Shadow]:
    """Stream the dump into a shadow, checked while it streams; drop the shadow unless swapped."""
    transfer = reporter.transfer(f"restore {ref.name}", found.size)
    shadow: Shadow | None = None
    swapped = False
    try:
        with store.open(found.key) as raw:
            check = _checker(raw, found)
            counted = ProgressReader(check, transfer.advance)
            gzip = compression_for(engine) == "gzip"
            stream: BinaryIO = GzipDecompressor(counted, name=found.key) if gzip else counted  # type: ignore[assignment]
            try:
                shadow = engine.restore_shadow(ref, stream, options)
            except Exception as exc:
                if isinstance(check, VerifyingReader):
                    ops._refuse_if_corrupt(check, exc)  # damaged bytes are VerificationFailed
                raise
            _drain(stream, check, found)
        yield shadow
        swapped = True
    finally:
        transfer.done()
        if shadow is not None and not swapped:
            engine.drop_shadow(shadow)


def _checker(raw: ByteSource, found: Found) -> HashingReader:
    if found.manifest is None:
        return HashingReader(raw)
    obj = found.manifest.objects[0]
    return VerifyingReader(raw, size=obj.size, sha256=obj.sha256, name=obj.key)


def _drain(stream: ByteSource, check: HashingReader, found: Found) -> None:
    """Read what the engine left, so the sha256 (or gzip's CRC) covers the whole object."""
    while stream.read(CHUNK):
        pass
    if isinstance(check, VerifyingReader):
        check.drain()
    elif check.size != found.size:
        raise VerificationFailed(
            f"read {check.size} bytes of {found.key}, the store listed {found.size}",
            hint="the object changed or the read was cut short; nothing was swapped in",
        )


# -- list and verify -------------------------------------------------------------------------------


def list_artifacts(cfg: Config, database: str, environment: str) -> list[Manifest]:
    """Dumps of ``database`` in a ``govuk`` store, newest first (stand-ins for those without manifest)."""
    engine = get_engine(cfg.database(database).engine)
    naming = naming_for(cfg, database)
    store = ops.store_for(cfg, environment)
    listing = _list(store, naming)
    out: list[Manifest] = []
    for key in sorted(listing.dumps, key=lambda k: listing.dumps[k][0], reverse=True):
        when, size = listing.dumps[key]
        if manifest_key_for(key) in listing.manifests:
            out.append(_manifest_of(store, key))
        else:
            found = Found(key=key, size=size, when=when, manifest=None, how="list")
            req = ops.RestoreRequest(database=database, environment=environment, source=environment)
            out.append(_legacy_manifest(found, req, engine))
    return out


def verify(cfg: Config, database: str, environment: str, artifact: str | None = None) -> Manifest:
    """Re-read a dump (default: the pointer's) and check it against its manifest."""
    store = ops.store_for(cfg, environment)
    found = find(store, naming_for(cfg, database), explicit=artifact)
    if found.manifest is None:
        raise VerificationFailed(
            f"{found.key} has no dataferry manifest, so there is no checksum to verify it against",
            hint="dumps written by GOV.UK's own scripts carry no checksum; a restore still checks their format",
        )
    artifacts.verify(store, found.manifest)
    return found.manifest
