"""The ``govuk`` layout: what GOV.UK's db-backup (Kubernetes era) writes and its consumers read.

For each database, in the directory ``<path>`` (GOV.UK's DB host, e.g. ``publishing-api-postgres``)::

    <path>/<YYYY-MM-DDTHHMMSSZ>-<name>.gz             the dump (UTC, no colons), written first
    <path>/<YYYY-MM-DDTHHMMSSZ>-<name>.manifest.json  dataferry's manifest (the commit), second
    <path>/latest-<name>.txt                          "<path>/<file>", written last

The dump is what GOV.UK's consumers expect: for PostgreSQL a custom-format archive (``pg_dump -Fc
-Z1`` compresses internally; the ``.gz`` suffix is historical), for MySQL gzip'd SQL. ``govuk-docker``'s
``ls | grep .gz | sort | tail -1`` and the db-backup ``list`` regex both still find the dump and
never the manifest. Where the directory already holds a Puppet-era (colon) dump of the same hour,
which sorts after any compact name of that hour, the new dump gets a colon name too, so that
``sort | tail -1`` still picks the newest.

Before the upload, ``_dataferry/pending/<path>/<id>.started`` records that dataferry started that dump: a
dump without a manifest but with that record is an interrupted backup and is never chosen.

Reads also accept the Puppet era's colon-style names (``govuk_names``). "Latest" is the newest
trusted dump by parsed time: one with a manifest, the pointer's, a colon-named one (the Puppet script
uploads only finished dumps) and, where there is no pointer, any other not left by an interrupted
dataferry backup (db-backup's own fallback). When that is not the pointer's dump the operator is
warned, as for a newer dump that is not trusted. A dump with a manifest is checked against its sha256
and size while it streams in; one without (written by GOV.UK's own scripts) gets a stand-in manifest
with an empty sha256: it is checked by its magic bytes before anything is touched and by gzip's CRC
where it has one, and the operator is warned. Either way the one restore pipeline restores it into a
shadow and swaps it in only at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from dataferry import artifacts
from dataferry.artifacts import DataObject, Manifest
from dataferry.config import Config
from dataferry.engines import DumpOptions, Engine
from dataferry.errors import NotFound, StoreError, VerificationFailed
from dataferry.gzipio import DEFAULT_LEVEL, gunzip_head
from dataferry.layouts import Encoding, NewArtifact
from dataferry.layouts.govuk_listing import (
    Listing,
    list_directory,
    pending_key,
    recent,
    uncommitted,
)
from dataferry.layouts.govuk_names import (
    ID_RE,
    LEGACY_TS_FORMAT,
    MANIFEST_SUFFIX,
    PG_COMPRESSION,
    TS_FORMAT,
    Naming,
    compression_for,
    is_colon_name,
    manifest_key_for,
    naming_for,
    parse_name,
    parse_when,
)
from dataferry.progress import NullReporter, Reporter
from dataferry.stores import Store, put_bytes, read_bytes

__all__ = [
    "GovukLayout",
    "Naming",
    "manifest_key_for",
    "naming_for",
    "parse_name",
    "parse_when",
    "pending_key",
]

_SNIFF_BYTES = 64 * 1024


@dataclass
class GovukLayout:
    """One database's dumps in a ``govuk`` store."""

    name: ClassVar[str] = "govuk"
    #: Whether this layout writes (and reads) ``latest-<name>.txt``.
    has_pointer: ClassVar[bool] = True
    store: Store
    database: str
    environment: str
    naming: Naming

    @classmethod
    def for_config(cls, cfg: Config, environment: str, database: str, store: Store) -> GovukLayout:
        """The layout of a configured database (``store_path``/``store_name`` name its objects)."""
        return cls(store=store, database=database, environment=environment, naming=naming_for(cfg, database))

    # -- where things are ----------------------------------------------------------------------------

    def manifest_key(self, data_key: str) -> str:
        """The manifest of a dump: beside it."""
        return manifest_key_for(data_key)

    def manifest_dir(self) -> str | None:
        """A directory of manifests apart from the dumps (None: they are beside the dumps)."""
        return None

    def name_format(self, same_hour: list[str]) -> str:
        """The timestamp form of a new dump's name, given the names of this hour's dumps of this
        database: the compact form, unless a colon name of this hour (which sorts after it) is there."""
        return LEGACY_TS_FORMAT if any(is_colon_name(n) for n in same_hour) else TS_FORMAT

    # -- writing -----------------------------------------------------------------------------------

    def encoding(self, engine: Engine, level: int) -> Encoding:
        """GOV.UK's: ``pg_dump -Fc -Z1`` stored as it is, or SQL through ``gzip -1``."""
        compression = compression_for(engine)
        if compression == "none":
            return Encoding(compression="none", dump=DumpOptions(native_compression=PG_COMPRESSION))
        return Encoding(compression="gzip", level=DEFAULT_LEVEL)

    def new_key(self, engine: Engine, encoding: Encoding) -> NewArtifact:
        """A data key not taken yet (waits out the second if one is: keys have second resolution),
        recorded under ``_dataferry/pending/`` before anything is uploaded to it."""
        for _ in range(3):
            now = artifacts.utcnow()
            hour = self.naming.key(now.strftime("%Y-%m-%dT%H"))
            taken = {o.key for o in self.store.list(hour)}
            mine = [b for b in (k.rsplit("/", 1)[-1] for k in taken) if self._is_dump_name(b)]
            key = self.naming.data_key(now, self.name_format(mine))
            if key not in taken:
                put_bytes(
                    self.store, pending_key(key), f"dataferry backup started {now.isoformat()}\n".encode()
                )
                return NewArtifact(id=key.rsplit("/", 1)[-1].removesuffix(".gz"), key=key, created=now)
            time.sleep(1.05 - (time.time() % 1))
        raise StoreError(f"cannot find a free key for {self.naming.name} in {self.store.url}")

    def manifest_extra(self, new: NewArtifact) -> dict[str, object]:
        """Where the manifest and the pointer are (a manifest's key does not follow from its id)."""
        return {
            "layout": self.name,
            "path": self.naming.path,
            "name": self.naming.name,
            "manifest_key": self.manifest_key(new.key),
            "pointer_key": self.naming.pointer_key if self.has_pointer else None,
        }

    def publish(self, manifest: Manifest) -> None:
        """The manifest, then the pointer: GOV.UK's consumers trust the pointer, so it moves only
        after everything else."""
        key = manifest.objects[0].key
        put_bytes(self.store, self.manifest_key(key), manifest.model_dump_json(indent=2).encode())
        if self.has_pointer:
            put_bytes(self.store, self.naming.pointer_key, key.encode())

    # -- reading -----------------------------------------------------------------------------------

    def select(
        self, engine: Engine, *, artifact: str | None, at: datetime | None, reporter: Reporter
    ) -> Manifest:
        """``artifact`` (a file name, key or time), else the newest at or before ``at``, else the
        newest trusted dump. A dump without a manifest gets a stand-in (and a warning)."""
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

    def list_manifests(self, engine: Engine, on_damaged: artifacts.OnDamaged | None = None) -> list[Manifest]:
        """Dumps newest first (stand-ins for those without a manifest), but none dataferry started
        and did not commit. (``on_damaged`` is never called: a GOV.UK dump needs no manifest.)"""
        listing = self._list()
        committed = set(listing.dumps) - uncommitted(listing, self._manifest_key_in(listing))
        ordered = sorted(committed, key=lambda k: listing.dumps[k][0], reverse=True)
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

    def pinned_data_keys(self) -> set[str]:
        """Dumps a prune must keep whatever its policy: the pointer's (consumers trust it)."""
        if not self.has_pointer:
            return set()
        try:
            pointer = self._pointer(self._list(), NullReporter())
        except NotFound:  # no pointer, or one naming nothing: nothing to keep for it
            return set()
        return {pointer} if pointer else set()

    def choose(
        self, *, artifact: str | None = None, at: datetime | None = None, reporter: Reporter | None = None
    ) -> tuple[str, str]:
        """The key ``select`` would take, and how it was chosen: explicit, newest at or before,
        pointer, or newest."""
        return self._choose(self._list(), artifact, at, reporter or NullReporter())

    # -- helpers -----------------------------------------------------------------------------------

    def _is_dump_name(self, basename: str) -> bool:
        parsed = parse_name(basename)
        return parsed is not None and self.naming.matches(parsed[1])

    def _list(self) -> Listing:
        """The dumps of this database directly in its directory, the manifests and the records of
        the dumps dataferry started."""
        return list_directory(self.store, self.naming, self.manifest_dir())

    def _choose(
        self, listing: Listing, artifact: str | None, at: datetime | None, reporter: Reporter
    ) -> tuple[str, str]:
        self._warn_about(listing, reporter)
        if artifact:
            return self._explicit_key(listing, artifact), "explicit"
        if at is not None:
            # A time asked for: any dump but one dataferry left unfinished (the restore still checks it).
            candidates = set(listing.dumps) - uncommitted(listing, self._manifest_key_in(listing))
            return self._newest(candidates, listing, at=at), "newest at or before"
        pointer = self._pointer(listing, reporter)
        trusted = self._trusted(listing, pointer)
        newest = self._newest(trusted, listing)
        if pointer is None:
            return newest, "newest key"
        when = listing.dumps[pointer][0]
        untrusted = [k for k in listing.dumps if listing.dumps[k][0] > when and k not in trusted]
        for key in sorted(untrusted, key=lambda k: listing.dumps[k][0]):
            reporter.warn(
                f"{key} is newer than the pointer's {pointer} but has no manifest and the pointer does "
                "not name it (an unfinished backup?): not chosen; name it with -t / --artifact to take it"
            )
        if newest == pointer:
            return pointer, "pointer"
        reporter.warn(
            f"pointer {self.naming.pointer_key} names {pointer}, but {newest} is newer: restoring the "
            "newer one (name a dump with -t / --artifact to take another)"
        )
        return newest, "newest, newer than the pointer"

    def _warn_about(self, listing: Listing, reporter: Reporter) -> None:
        """Say what in the directory would trouble GOV.UK's readers (nothing, in this layout)."""

    def _trusted(self, listing: Listing, pointer: str | None) -> set[str]:
        """Dumps that may be "latest": committed (a manifest), the pointer's, finished by
        construction (colon names: the Puppet script uploads only a finished dump) or, where there is
        no pointer, any other; never one dataferry started and did not commit."""
        pointer_exists = pointer is not None or self._pointer_name() in listing.names
        manifest_key = self._manifest_key_in(listing)

        def trust(key: str) -> bool:
            if manifest_key(key) in listing.manifests or key == pointer:
                return True
            if key in listing.pending:
                return False
            return not pointer_exists or is_colon_name(key.rsplit("/", 1)[-1])

        trusted = {key for key in listing.dumps if trust(key)}
        return trusted

    def _pointer_name(self) -> str:
        return self.naming.pointer_key.rsplit("/", 1)[-1]

    def _manifest_key_in(self, listing: Listing) -> Callable[[str], str]:
        """The key of a dump's manifest in ``listing``: where this layout writes it or, if only
        there, beside the dump (where the govuk layout wrote it: a govuk-puppet reader of a
        directory the govuk layout wrote still verifies its dumps by their manifests)."""

        def key_of(data_key: str) -> str:
            own = self.manifest_key(data_key)
            beside = manifest_key_for(data_key)
            return beside if own not in listing.manifests and beside in listing.manifests else own

        return key_of

    def _manifest_or_standin(self, listing: Listing, key: str, engine: Engine) -> Manifest:
        manifest_key = self._manifest_key_in(listing)(key)
        if manifest_key in listing.manifests:
            return self._manifest_of(key, manifest_key)
        when, size = listing.dumps[key]
        return self._standin(key, when, size, engine)

    def _manifest_of(self, key: str, manifest_key: str) -> Manifest:
        """The manifest of ``key`` (at ``manifest_key``); it must describe exactly that object."""
        manifest = artifacts.read_manifest(self.store, manifest_key)
        if len(manifest.objects) != 1 or manifest.objects[0].key != key:
            raise VerificationFailed(
                f"manifest {manifest_key} does not describe {key}",
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
            extra={"layout": self.name, "legacy": True},
        )

    def _explicit_key(self, listing: Listing, text: str) -> str:
        """The dump named by ``-t``/``--artifact``/``FILENAME``: a file name, a key, an id or a time."""
        base = text.rsplit("/", 1)[-1].removesuffix(MANIFEST_SUFFIX).removesuffix(".gz")
        m = ID_RE.match(base)
        if m and not self.naming.matches(m["db"]):
            raise NotFound(f"{text!r} is not a dump of {self.naming.name}")
        when = parse_when(m["ts"] if m else base)
        for key, (key_when, _) in listing.dumps.items():
            if key_when == when:
                return key
        raise NotFound(
            f"no dump of {self.naming.name} from {when.strftime(TS_FORMAT)} in {self.naming.key('')}",
            hint="newest there: " + (", ".join(recent(listing)) or "none"),
        )

    def _pointer(self, listing: Listing, reporter: Reporter) -> str | None:
        """The key the pointer names (None, with a warning, when there is no pointer)."""
        naming = self.naming
        try:
            text = read_bytes(self.store, naming.pointer_key, limit=4096).decode("utf-8", "replace").strip()
        except NotFound:
            reporter.warn(f"no pointer {naming.pointer_key}: using the newest dump of {naming.name}")
            return None
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
                + (", ".join(recent(listing)) or "none"),
            )
        return key

    def _newest(self, trusted: set[str], listing: Listing, at: datetime | None = None) -> str:
        """The newest trusted dump by its parsed time (at or before ``at``)."""
        keys = [k for k in trusted if at is None or listing.dumps[k][0] <= at]
        if keys:
            return max(keys, key=lambda k: (listing.dumps[k][0], k))
        when = f" at or before {at.isoformat()}" if at else ""
        hint = "check -u/-p (bucket and path) and -d (database), or run the push first"
        if listing.dumps:
            hint = (
                "the dumps there have no manifest and the pointer does not name them (unfinished "
                "backups?): name one with -t / --artifact to take it; newest there: "
                + ", ".join(recent(listing))
            )
        what = "no trusted dump" if listing.dumps else "no dump"
        raise NotFound(
            f"{what} of {self.naming.name}{when} in {self.store.url}{self.naming.key('')}", hint=hint
        )


def _looks_like_sql(text: bytes) -> bool:
    if not text or b"\x00" in text:
        return False
    if any(marker in text for marker in (b"MySQL dump", b"MariaDB dump")):
        return True
    first = text.lstrip().split(b"\n", 1)[0]
    return first.startswith((b"--", b"/*", b"SET ", b"CREATE ", b"DROP ", b"USE "))
