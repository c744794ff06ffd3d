"""The ``govuk`` layout: what GOV.UK's db-backup (Kubernetes era) writes and its consumers read.

For each database, in the directory ``<path>`` (GOV.UK's DB host, e.g. ``publishing-api-postgres``)::

    <path>/<YYYY-MM-DDTHHMMSSZ>-<name>.gz             the dump (UTC, no colons), written first
    <path>/<YYYY-MM-DDTHHMMSSZ>-<name>.manifest.json  dataferry's manifest (the commit), second
    <path>/latest-<name>.txt                          "<path>/<file>", written last

The dump is what GOV.UK's consumers expect: for PostgreSQL a custom-format archive (``pg_dump -Fc
-Z1`` compresses internally; the ``.gz`` suffix is historical), for MySQL gzip'd SQL. ``govuk-docker``'s
``ls | grep .gz | sort | tail -1`` and the db-backup ``list`` regex both still find the dump and
never the manifest.

Reads also accept the Puppet era's colon-style names (``2022-06-30T23:00:05-<name>.gz``, local time,
which was UTC on GOV.UK hosts). "Latest" is chosen in this order: an explicit file or time, else the
pointer ``latest-<name>.txt``, else the newest matching key (only keys with a manifest, when the
directory has any: a dump without one there is an interrupted backup). A dump with a manifest is
checked against its sha256 and size while it streams in; one without (written by GOV.UK's own
scripts) gets a stand-in manifest with an empty sha256: it is checked by its magic bytes before
anything is touched and by gzip's CRC where it has one, and the operator is warned. Either way the
one restore pipeline restores it into a shadow and swaps it in only at the end.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from dataferry import artifacts
from dataferry.artifacts import DataObject, Manifest
from dataferry.config import Config
from dataferry.engines import DumpOptions, Engine
from dataferry.errors import ConfigError, NotFound, StoreError, VerificationFailed
from dataferry.gzipio import DEFAULT_LEVEL, gunzip_head
from dataferry.layouts import Encoding, NewArtifact
from dataferry.progress import NullReporter, Reporter
from dataferry.stores import Store, put_bytes, read_bytes

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


@dataclass
class _Listing:
    dumps: dict[str, tuple[datetime, int]]
    manifests: set[str]


@dataclass
class GovukLayout:
    """One database's dumps in a ``govuk`` store."""

    name: ClassVar[str] = "govuk"
    store: Store
    database: str
    environment: str
    naming: Naming

    @classmethod
    def for_config(cls, cfg: Config, environment: str, database: str, store: Store) -> GovukLayout:
        """The layout of a configured database (``store_path``/``store_name`` name its objects)."""
        return cls(store=store, database=database, environment=environment, naming=naming_for(cfg, database))

    # -- writing -----------------------------------------------------------------------------------

    def encoding(self, engine: Engine, level: int) -> Encoding:
        """GOV.UK's: ``pg_dump -Fc -Z1`` stored as it is, or SQL through ``gzip -1``."""
        compression = compression_for(engine)
        if compression == "none":
            return Encoding(compression="none", dump=DumpOptions(native_compression=PG_COMPRESSION))
        return Encoding(compression="gzip", level=DEFAULT_LEVEL)

    def new_key(self, engine: Engine, encoding: Encoding) -> NewArtifact:
        """A data key not taken yet; waits out the second if one is (keys have second resolution)."""
        for _ in range(3):
            now = artifacts.utcnow()
            key = self.naming.data_key(now)
            if not any(o.key == key for o in self.store.list(key)):
                return NewArtifact(id=key.rsplit("/", 1)[-1].removesuffix(".gz"), key=key, created=now)
            time.sleep(1.05 - (time.time() % 1))
        raise StoreError(f"cannot find a free key for {self.naming.name} in {self.store.url}")

    def manifest_extra(self, new: NewArtifact) -> dict[str, object]:
        """Where the manifest and the pointer are (a manifest's key does not follow from its id)."""
        return {
            "layout": "govuk",
            "path": self.naming.path,
            "name": self.naming.name,
            "manifest_key": manifest_key_for(new.key),
            "pointer_key": self.naming.pointer_key,
        }

    def publish(self, manifest: Manifest) -> None:
        """The manifest beside the dump, then the pointer: GOV.UK's consumers trust the pointer, so
        it moves only after everything else."""
        key = manifest.objects[0].key
        put_bytes(self.store, manifest_key_for(key), manifest.model_dump_json(indent=2).encode())
        put_bytes(self.store, self.naming.pointer_key, key.encode())

    # -- reading -----------------------------------------------------------------------------------

    def select(
        self, engine: Engine, *, artifact: str | None, at: datetime | None, reporter: Reporter
    ) -> Manifest:
        """``artifact`` (a file name, key or time), else the newest at or before ``at``, else the
        pointer, else the newest key. A dump without a manifest gets a stand-in (and a warning)."""
        listing = self._list()
        key, how = self._choose(listing, artifact, at, reporter)
        reporter.info(f"{self.naming.name}: chose {key} ({how})")
        manifest = self._manifest_or_standin(listing, key, engine)
        if manifest.objects[0].sha256 == "":
            reporter.warn(
                f"{key} has no dataferry manifest (written by GOV.UK's own scripts?): its checksum "
                "cannot be verified; checking its format instead"
            )
        return manifest

    def list_manifests(self, engine: Engine) -> list[Manifest]:
        """Dumps newest first (stand-ins for those without a manifest)."""
        listing = self._list()
        ordered = sorted(listing.dumps, key=lambda k: listing.dumps[k][0], reverse=True)
        return [self._manifest_or_standin(listing, key, engine) for key in ordered]

    def check_readable(self, manifest: Manifest, engine: Engine) -> None:
        """Check the dump's magic bytes before anything destructive (db-backup's ``dump_is_readable``)."""
        key = manifest.objects[0].key
        with self.store.open(key) as f:
            head = f.read(_SNIFF_BYTES)
        if compression_for(engine) == "none":
            ok, expected = head.startswith(b"PGDMP"), "a PostgreSQL custom-format archive (PGDMP)"
        else:
            ok, expected = _looks_like_sql(gunzip_head(head)), "gzip'd SQL from mysqldump or mariadb-dump"
        if not ok:
            raise VerificationFailed(
                f"{key} is not {expected}",
                hint="nothing was changed; check -D (engine) and the object, or restore another with -t",
            )

    def prefix(self) -> str:
        """``<path>/``: GOV.UK's DB host directory."""
        return self.naming.key("")

    def orphans(self) -> None:
        """Its directories hold GOV.UK's own dumps, which have no manifest: none is an orphan."""
        return None

    # -- helpers -----------------------------------------------------------------------------------

    def _list(self) -> _Listing:
        """The dumps of this database directly in its directory, and the manifests there."""
        prefix = self.naming.key("")
        listing = _Listing({}, set())
        for obj in self.store.list(prefix):
            base = obj.key[len(prefix) :]
            if "/" in base:
                continue  # db-backup lists one directory level, so do we
            if base.endswith(MANIFEST_SUFFIX):
                listing.manifests.add(obj.key)
                continue
            parsed = parse_name(base)
            if parsed and self.naming.matches(parsed[1]):
                listing.dumps[obj.key] = (parsed[0], obj.size)
        return listing

    def choose(
        self, *, artifact: str | None = None, at: datetime | None = None, reporter: Reporter | None = None
    ) -> tuple[str, str]:
        """The key ``select`` would take, and how it was chosen: explicit, newest at or before,
        pointer, or newest key."""
        return self._choose(self._list(), artifact, at, reporter or NullReporter())

    def _choose(
        self, listing: _Listing, artifact: str | None, at: datetime | None, reporter: Reporter
    ) -> tuple[str, str]:
        if artifact:
            return self._explicit_key(listing, artifact), "explicit"
        if at is not None:
            return self._newest(listing, at=at), "newest at or before"
        return self._from_pointer(listing, reporter)

    def _manifest_or_standin(self, listing: _Listing, key: str, engine: Engine) -> Manifest:
        if manifest_key_for(key) in listing.manifests:
            return self._manifest_of(key)
        when, size = listing.dumps[key]
        return self._standin(key, when, size, engine)

    def _manifest_of(self, key: str) -> Manifest:
        """The manifest beside ``key``; it must describe exactly that object."""
        manifest = artifacts.read_manifest(self.store, manifest_key_for(key))
        if len(manifest.objects) != 1 or manifest.objects[0].key != key:
            raise VerificationFailed(
                f"manifest {manifest_key_for(key)} does not describe {key}",
                hint="the manifest was copied or edited; the dump cannot be trusted",
            )
        return manifest

    def _standin(self, key: str, when: datetime, size: int, engine: Engine) -> Manifest:
        """A stand-in manifest for a dump GOV.UK's scripts wrote: no checksum to verify against."""
        obj = DataObject(
            key=key, size=size, sha256="", format=engine.dump_format, compression=compression_for(engine)
        )
        return Manifest(
            id=key.rsplit("/", 1)[-1].removesuffix(".gz"),
            database=self.database,
            engine=engine.name,
            source_environment=self.environment,
            created_at=when,
            finished_at=when,
            objects=[obj],
            tool="unknown (no manifest)",
            extra={"layout": "govuk", "legacy": True},
        )

    def _explicit_key(self, listing: _Listing, text: str) -> str:
        """The dump named by ``-t``/``--artifact``/``FILENAME``: a file name, a key, an id or a time."""
        base = text.rsplit("/", 1)[-1].removesuffix(MANIFEST_SUFFIX).removesuffix(".gz")
        m = _ID_RE.match(base)
        if m and not self.naming.matches(m["db"]):
            raise NotFound(f"{text!r} is not a dump of {self.naming.name}")
        when = parse_when(m["ts"] if m else base)
        for key, (key_when, _) in listing.dumps.items():
            if key_when == when:
                return key
        raise NotFound(
            f"no dump of {self.naming.name} from {when.strftime(TS_FORMAT)} in {self.naming.key('')}",
            hint="newest there: " + (", ".join(_recent(listing)) or "none"),
        )

    def _from_pointer(self, listing: _Listing, reporter: Reporter) -> tuple[str, str]:
        """The pointer's dump, or the newest key when there is no pointer (db-backup's fallback)."""
        naming = self.naming
        try:
            text = read_bytes(self.store, naming.pointer_key, limit=4096).decode("utf-8", "replace").strip()
        except NotFound:
            reporter.warn(f"no pointer {naming.pointer_key}: using the newest dump of {naming.name}")
            return self._newest(listing), "newest key"
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

    def _newest(self, listing: _Listing, at: datetime | None = None) -> str:
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
                f"no dump of {self.naming.name}{when} in {self.store.url}{self.naming.key('')}",
                hint="check -u/-p (bucket and path) and -d (database), or run the push first",
            )
        return max(keys, key=lambda k: (listing.dumps[k][0], k))


def _recent(listing: _Listing, n: int = 3) -> list[str]:
    ordered = sorted(listing.dumps, key=lambda k: listing.dumps[k][0], reverse=True)
    return [k.rsplit("/", 1)[-1] for k in ordered[:n]]


def _looks_like_sql(text: bytes) -> bool:
    if not text or b"\x00" in text:
        return False
    if any(marker in text for marker in (b"MySQL dump", b"MariaDB dump")):
        return True
    first = text.lstrip().split(b"\n", 1)[0]
    return first.startswith((b"--", b"/*", b"SET ", b"CREATE ", b"DROP ", b"USE "))
