"""Artifacts: key naming, the manifest model, ``latest`` and ``verify``.

An artifact is one or more data objects plus a manifest (JSON) written last. The manifest is the
commit: no manifest, no artifact. "Latest" is the newest *manifest*; a listing of data objects is
never trusted.

Keys: ``<database>/<YYYY-MM-DDTHHMMSSZ>-<database>.<format>`` with the manifest beside the data as
``<YYYY-MM-DDTHHMMSSZ>-<database>.manifest.json``. Timestamps are UTC and sort chronologically.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dataferry._version import __version__
from dataferry.errors import ManifestDamaged, NotFound, StoreError, VerificationFailed
from dataferry.progress import NullReporter, Reporter, finish, human_duration
from dataferry.stores import ObjectInfo, Store, put_bytes, read_bytes
from dataferry.streams import CHUNK, VerifyingReader

#: The newest manifest format read here: 2 is named objects (``pg_directory``), refused by readers of 1.
FORMAT_VERSION, SINGLE_OBJECT_VERSION = 2, 1
MANIFEST_SUFFIX = ".manifest.json"
TS_FORMAT = "%Y-%m-%dT%H%M%SZ"
_ID_RE = re.compile(r"^(?P<ts>\d{4}-\d{2}-\d{2}T\d{6}Z)-(?P<db>.+)$")


class Encryption(BaseModel):
    """How a data object is encrypted: the format and its recipients (public keys, not secret)."""

    model_config = ConfigDict(extra="allow")

    format: str = "age"
    recipients: list[str] = Field(default_factory=list)


class DataObject(BaseModel):
    """One data object of an artifact, with the checksum taken while it streamed out."""

    model_config = ConfigDict(extra="allow")

    key: str
    size: int
    sha256: str
    format: str = Field(description="what the decompressed bytes are: pg_custom, sql, sqlite, ...")
    compression: str = "zstd"
    raw_size: int = Field(0, description="bytes before compression (for capacity checks)")
    encryption: Encryption | None = Field(
        None, description="set when the stored bytes are encrypted (after compression); sha256 is theirs"
    )
    name: str | None = Field(
        None, description="the file's name inside a dump of several objects (pg_directory: toc.dat, 3351.dat)"
    )


class Sanitisation(BaseModel):
    """How an artifact was sanitised and what its checks found (no personal values, ever)."""

    model_config = ConfigDict(extra="allow")

    profile: str
    profile_sha256: str
    rules: list[str] = Field(default_factory=list)
    checks: list[dict[str, Any]] = Field(default_factory=list)
    passed: bool


class Signature(BaseModel):
    """An Ed25519 signature over the rest of the manifest (``signing.py``); ``key`` is the public
    key's fingerprint, never a key."""

    algorithm: str
    key: str
    value: str


class Manifest(BaseModel):
    """The commit record of an artifact."""

    model_config = ConfigDict(extra="allow")

    format_version: int = SINGLE_OBJECT_VERSION
    id: str
    database: str
    engine: str
    server_version: str = ""
    tool: str = f"dataferry {__version__}"
    source_environment: str
    created_at: datetime
    finished_at: datetime
    objects: list[DataObject]
    sanitised: bool = False
    sanitisation: Sanitisation | None = None
    row_counts: dict[str, int] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)
    signature: Signature | None = None

    @field_validator("created_at", "finished_at")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        # Manifests written by hand or by other tools may omit the zone: they mean UTC, and
        # comparing a naive time with an aware one would fail deep inside a freshness check.
        return v if v.tzinfo else v.replace(tzinfo=UTC)

    @property
    def key(self) -> str:
        """The manifest's own key (a compatibility layout records where it put it)."""
        return str(self.extra.get("manifest_key") or manifest_key(self.database, self.id))

    @property
    def size(self) -> int:
        """Total stored bytes of the data objects."""
        return sum(o.size for o in self.objects)

    @property
    def by_objects(self) -> bool:
        """True for an artifact of named objects (one per table, and a table of contents)."""
        return any(o.name for o in self.objects)

    def is_publishable_sanitised(self) -> bool:
        """True only for an artifact that was sanitised and whose checks all passed."""
        return self.sanitised and self.sanitisation is not None and self.sanitisation.passed


def utcnow() -> datetime:
    """Now, in UTC, to the second (keys have second resolution)."""
    return datetime.now(UTC).replace(microsecond=0)


def artifact_id(database: str, when: datetime) -> str:
    """``<YYYY-MM-DDTHHMMSSZ>-<database>``."""
    return f"{when.astimezone(UTC).strftime(TS_FORMAT)}-{database}"


def data_key(database: str, ident: str, fmt: str) -> str:
    """Key of a data object: ``<database>/<id>.<format>``."""
    return f"{database}/{ident}.{fmt}"


def manifest_key(database: str, ident: str) -> str:
    """Key of a manifest: ``<database>/<id>.manifest.json``."""
    return f"{database}/{ident}{MANIFEST_SUFFIX}"


def parse_id(ident: str) -> tuple[datetime, str]:
    """Split an artifact id into its time and database name."""
    m = _ID_RE.match(ident)
    if not m:
        raise NotFound(f"{ident!r} is not an artifact id (expected YYYY-MM-DDTHHMMSSZ-<database>)")
    return datetime.strptime(m["ts"], TS_FORMAT).replace(tzinfo=UTC), m["db"]


def new_artifact_id(store: Store, database: str) -> tuple[str, datetime]:
    """A fresh id for ``database``; waits out the second if a manifest already has this one."""
    for _ in range(3):
        now = utcnow()
        ident = artifact_id(database, now)
        taken = any(o.key.startswith(f"{database}/{ident}.") for o in store.list(f"{database}/{ident}."))
        if not taken:
            return ident, now
        time.sleep(1.05 - (time.time() % 1))
    # Not a verification failure: nothing is wrong with any artifact, the clock or another
    # backup of the same database keeps taking the id.
    raise StoreError(
        f"cannot find a free artifact id for {database}: three seconds in a row were taken",
        hint="another backup of this database is writing to the same store; check the clock, or "
        "run the backups one at a time",
    )


def write_manifest(store: Store, manifest: Manifest) -> ObjectInfo:
    """Write the manifest: the single step that publishes the artifact."""
    body = manifest.model_dump_json(indent=2).encode()
    return put_bytes(store, manifest.key, body)


@dataclass(frozen=True)
class Damaged:
    """A damaged manifest found while listing: its artifact id, key, why, and when it was written."""

    id: str
    key: str
    reason: str
    modified: datetime | None = None


def read_manifest(store: Store, key: str) -> Manifest:
    """Read and validate one manifest; a corrupt one is ``ManifestDamaged``."""
    raw = read_bytes(store, key)
    try:
        data = json.loads(raw)
        manifest = Manifest.model_validate(data)
    except (ValueError, ValidationError) as exc:
        raise ManifestDamaged(
            f"manifest {key} in {store.url} is not valid: {str(exc).splitlines()[0]}",
            hint="the artifact cannot be trusted; 'dataferry list' shows the others, and "
            "'dataferry cleanup' removes damaged ones",
        ) from None
    if manifest.format_version > FORMAT_VERSION:
        raise VerificationFailed(
            f"manifest {key} has format version {manifest.format_version}; this dataferry reads "
            f"up to {FORMAT_VERSION}",
            hint="upgrade dataferry",
        )
    return manifest


def manifest_keys(store: Store, database: str) -> list[str]:
    """Manifest keys of ``database``, newest first (keys sort chronologically).

    Only keys named like artifacts count: a stray ``notes.manifest.json`` would otherwise sort
    after every timestamp and become "latest".
    """
    pattern = re.compile(rf"^{re.escape(database)}/\d{{4}}-\d{{2}}-\d{{2}}T\d{{6}}Z-{re.escape(database)}")
    keys = [
        o.key
        for o in store.list(f"{database}/")
        if o.key.endswith(MANIFEST_SUFFIX) and pattern.fullmatch(o.key.removesuffix(MANIFEST_SUFFIX))
    ]
    return sorted(keys, reverse=True)


def _read_listed(store: Store, database: str, key: str) -> Manifest:
    """Read a manifest found under ``database``'s keys and check it describes that very artifact."""
    manifest = read_manifest(store, key)
    if manifest.database != database or manifest.key != key:
        raise ManifestDamaged(
            f"manifest {key} in {store.url} describes {manifest.database} artifact {manifest.id}, "
            "not the artifact its key names",
            hint="it was copied or renamed by hand: the artifact cannot be trusted; delete or move it",
        )
    return manifest


#: Called with each damaged manifest that listing or choosing skipped (to warn about it).
OnDamaged = Callable[[Damaged], None]


def iter_manifests(store: Store, database: str, on_damaged: OnDamaged | None = None) -> Iterator[Manifest]:
    """Manifests of ``database``, newest first; a damaged one is skipped (and passed to
    ``on_damaged``), so one truncated manifest cannot hide every good artifact."""
    for key in manifest_keys(store, database):
        try:
            yield _read_listed(store, database, key)
        except ManifestDamaged as exc:
            if on_damaged is not None:
                on_damaged(Damaged(id=_key_id(key), key=key, reason=exc.message))


def damaged_manifests(store: Store, database: str) -> list[Damaged]:
    """The damaged manifests of ``database``, newest first, with when each was written."""
    modified = {o.key: o.modified for o in store.list(f"{database}/") if o.key.endswith(MANIFEST_SUFFIX)}
    found: list[Damaged] = []
    for _ in iter_manifests(store, database, found.append):
        pass
    return [Damaged(d.id, d.key, d.reason, modified.get(d.key)) for d in found]


def _key_id(key: str) -> str:
    return key.rsplit("/", 1)[-1].removesuffix(MANIFEST_SUFFIX)  # the artifact id


def latest(store: Store, database: str, on_damaged: OnDamaged | None = None) -> Manifest:
    """The newest artifact of ``database``: the newest readable manifest, never the newest data
    object, and never a damaged manifest."""
    skipped: list[Damaged] = []

    def note(d: Damaged) -> None:
        skipped.append(d)
        if on_damaged is not None:
            on_damaged(d)

    for manifest in iter_manifests(store, database, note):
        return manifest
    if skipped:
        raise ManifestDamaged(
            f"no readable artifact of {database} in {store.url}: {len(skipped)} damaged manifest(s), "
            f"the newest: {skipped[0].reason}",
            hint=f"take a new backup; 'dataferry cleanup {database} --env ENV' removes damaged artifacts",
        )
    raise NotFound(
        f"no artifact of {database} in {store.url}",
        hint=f"run 'dataferry backup {database} --env ENV' first",
    )


def select(
    store: Store,
    database: str,
    *,
    artifact: str | None = None,
    at: datetime | None = None,
    on_damaged: OnDamaged | None = None,
) -> Manifest:
    """Pick an artifact: an explicit id or key, else the newest at or before ``at``, else the latest."""
    if artifact:
        ident = _id_from(artifact, database)
        return _read_listed(store, database, manifest_key(database, ident))
    if at is not None:
        at = at if at.tzinfo else at.replace(tzinfo=UTC)  # naive means UTC, as on the command line
        oldest = None
        for key in manifest_keys(store, database):
            oldest = _key_id(key)
            when, _ = parse_id(key.rsplit("/", 1)[1][: -len(MANIFEST_SUFFIX)])
            if when <= at:
                try:
                    return _read_listed(store, database, key)
                except ManifestDamaged as exc:
                    if on_damaged is not None:
                        on_damaged(Damaged(id=_key_id(key), key=key, reason=exc.message))
        there = f"the oldest there is {oldest}" if oldest else "there is none at all"
        raise NotFound(
            f"no artifact of {database} in {store.url} at or before {at.isoformat()}",
            hint=f"{there}; 'dataferry list {database} --env ENV' shows them",
        )
    return latest(store, database, on_damaged)


def _id_from(artifact: str, database: str) -> str:
    """Accept an id, a manifest key or a data key (``<id>.pg_directory/toc.dat.zst`` too)."""
    pattern = re.compile(rf"^(\d{{4}}-\d{{2}}-\d{{2}}T\d{{6}}Z-{re.escape(database)})(\..+)?$")
    parts = [p.removesuffix(MANIFEST_SUFFIX) for p in reversed(artifact.split("/"))]
    m = next((m for m in map(pattern.match, parts) if m), None)
    if not m:
        raise NotFound(
            f"{artifact!r} is not an artifact of {database}",
            hint=f"use an id from 'dataferry list {database} --env ENV'",
        )
    return m.group(1)


def verify(store: Store, manifest: Manifest, reporter: Reporter | None = None) -> None:
    """Re-read every data object and check size and sha256 against the manifest (a transfer of
    ``reporter``'s each, with its total and ETA: a large artifact takes a while)."""
    for obj in manifest.objects:
        transfer = (reporter or NullReporter()).transfer(f"verify {obj.key}", obj.size)
        ok = False
        try:
            with store.open(obj.key) as raw:
                reader = VerifyingReader(raw, size=obj.size, sha256=obj.sha256, name=obj.key)
                while chunk := reader.read(CHUNK):
                    transfer.advance(len(chunk))
                reader.drain()
            ok = True
        finally:
            finish(transfer, ok)


def check_fresh(manifest: Manifest, max_age: timedelta, now: datetime | None = None) -> None:
    """Refuse an artifact older than ``max_age``."""
    now = now or datetime.now(UTC)
    age = now - manifest.finished_at
    if age > max_age:
        shown_age, shown_limit = _human_pair(age, max_age)
        raise VerificationFailed(
            f"newest artifact of {manifest.database} ({manifest.id}) is {shown_age} old, "
            f"over the limit of {shown_limit}",
            hint="the upstream backup has not run or failed: check it, or restore a specific "
            "artifact with --artifact if stale data is acceptable",
        )


def orphans(store: Store, database: str) -> list[ObjectInfo]:
    """Data objects that no manifest names (interrupted backups), for cleanup."""
    named: set[str] = set()
    damaged: list[Damaged] = []
    for m in iter_manifests(store, database, damaged.append):
        named.update(o.key for o in m.objects)
    # A damaged manifest's data is not an orphan: cleanup removes it with its manifest.
    prefixes = tuple(f"{database}/{d.id}." for d in damaged)
    return [
        o
        for o in store.list(f"{database}/")
        if not o.key.endswith(MANIFEST_SUFFIX) and o.key not in named and not o.key.startswith(prefixes)
    ]


def _human_pair(age: timedelta, limit: timedelta) -> tuple[str, str]:
    """Both rounded (``2d``, ``1d 2h``), or both exact (``1d 2h 1s``, ``1d 2h``) when rounding
    would make an age just over the limit read the same as the limit."""
    rounded = human_duration(age.total_seconds()), human_duration(limit.total_seconds())
    return rounded if rounded[0] != rounded[1] else (_exact(age), _exact(limit))


def _exact(delta: timedelta) -> str:
    secs = int(delta.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, secs = divmod(secs, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts) or "0s"
