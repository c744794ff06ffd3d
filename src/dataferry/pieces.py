"""Storing and reading data objects, one at a time or an artifact of many (``pg_directory``: one
object per table's data plus the table of contents), for ``pipeline``.

Every object is encoded with the layout's codec (and age-encrypted for ``recipients``), hashed as it
streams out and confirmed by the store's size (invariant 3). An artifact of many objects is stored
object by object as the dump finishes them; its manifest, written last by the pipeline, lists them
all (invariant 2: a backup stopped between objects publishes nothing, and a failed one removes what
it stored). A restore reads each object straight from the store, verified as it streams; before
the swap every listed object must have been read to its end and matched its checksum.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from typing import BinaryIO

from dataferry import codecs, cpus, encryption
from dataferry.artifacts import DataObject, Encryption, Manifest
from dataferry.config import DatabaseRef
from dataferry.engines import (
    DumpsObjects,
    Engine,
    RestoreOptions,
    Shadow,
    drop_after_failure,
    estimated_dump_size,
)
from dataferry.errors import NotReady, StoreError, VerificationFailed
from dataferry.layouts import Encoding, Layout
from dataferry.progress import Estimate, Reporter, Transfer, finish
from dataferry.stores import Store
from dataferry.streams import (
    CHUNK,
    ByteSource,
    CountingReader,
    HashingReader,
    ProgressReader,
    VerifyingReader,
)

#: What an object's key ends with for each compression (the ``.age`` of encryption comes after).
SUFFIXES = {"zstd": ".zst", "gzip": ".gz", "none": ""}


def put_object(
    store: Store,
    key: str,
    raw: ByteSource,
    encoding: Encoding,
    stack: contextlib.ExitStack,
    recipients: tuple[str, ...] = (),
    fmt: str = "",
    name: str | None = None,
) -> DataObject:
    """Encode ``raw`` (and encrypt it for ``recipients``; the worker is stopped when ``stack``
    closes) into ``key``, hashing the stored bytes; a size the store did not confirm removes it."""
    counted = CountingReader(raw)
    encoded = codecs.encoder(encoding.compression, encoding.level)(counted)
    if recipients:  # after compression: ciphertext does not compress
        keys = encryption.parse_recipients(recipients, "encryption.recipients")
        encoded = stack.enter_context(encryption.encrypting(encoded, keys))
    hashed = HashingReader(encoded)  # only stored bytes need a hash
    info = store.put(key, hashed)
    if info.size != hashed.size:
        store.delete(key)
        raise StoreError(f"store reported {info.size} bytes for {key}, {hashed.size} were sent")
    return DataObject(
        key=key,
        size=hashed.size,
        sha256=hashed.sha256,
        format=fmt,
        compression=encoding.compression,
        raw_size=counted.size,
        encryption=Encryption(recipients=list(recipients)) if recipients else None,
        name=name,
    )


def dump_workers() -> int:
    """How many workers dump an artifact of many objects: the usable CPUs (``cpus``: a container's
    quota included), at least two (pg_dump reports finished tables only in parallel mode) and at
    most eight (each holds a connection to the production server)."""
    return min(8, max(2, cpus.usable_cpus()))


def object_key(prefix: str, name: str, encoding: Encoding, recipients: tuple[str, ...]) -> str:
    """``<prefix>/<name>.zst`` (``.age`` after it when encrypted): what ``zstd -d`` (and ``age -d``)
    turn back into pg_dump's own file."""
    return f"{prefix}/{name}{SUFFIXES[encoding.compression]}{encryption.SUFFIX if recipients else ''}"


def upload_objects(
    store: Store,
    prefix: str,
    engine: DumpsObjects,
    ref: DatabaseRef,
    encoding: Encoding,
    on_bytes: Callable[[int], None],
    recipients: tuple[str, ...],
    jobs: int,
) -> tuple[list[DataObject], dict[str, int], list[str]]:
    """Dump ``ref`` as files with ``jobs`` workers and store each as it is finished, table of
    contents last. On any failure the objects already stored are removed (best effort: ``cleanup``
    removes what a killed backup left). Returns the objects, the row counts and the warnings."""
    stored: list[DataObject] = []
    try:
        with engine.dump_objects(ref, encoding.dump, jobs) as dump:
            for name, stream in dump.files:
                key = object_key(prefix, name, encoding, recipients)
                with contextlib.ExitStack() as stack:
                    obj = put_object(
                        store,
                        key,
                        ProgressReader(stream, on_bytes),
                        encoding,
                        stack,
                        recipients,
                        engine.objects_format,
                        name,
                    )
                stored.append(obj)
            return stored, dict(dump.row_counts), list(dump.warnings)
    except BaseException:
        for obj in stored:
            with contextlib.suppress(Exception):
                store.delete(obj.key)
        raise


# -- restore ---------------------------------------------------------------------------------------


def decrypting(
    stored: ByteSource, obj: DataObject, identities: encryption.Identities | None
) -> contextlib.AbstractContextManager[BinaryIO]:
    """The decryption of an encrypted object's stored bytes (on a worker thread, closed with the
    context); an unknown format or a missing identity is refused."""
    if obj.encryption is None or obj.encryption.format != encryption.AGE:
        fmt = obj.encryption.format if obj.encryption else None
        raise VerificationFailed(
            f"object {obj.key} is encrypted as {fmt!r}, which this dataferry cannot read"
        )
    if identities is None:
        raise NotReady(
            f"object {obj.key} is encrypted and no age identity was given",
            hint="set encryption.identity_env for the environment it comes from",
        )
    return encryption.decrypting(stored, identities, obj.key)


def drain(stream: BinaryIO, check: HashingReader, obj: DataObject) -> None:
    """Read what the consumer left, so the sha256 (or the codec's checksum) covers the whole object."""
    while stream.read(CHUNK):
        pass
    if isinstance(check, VerifyingReader):
        check.drain()
    elif check.size != obj.size:
        raise VerificationFailed(
            f"read {check.size} bytes of {obj.key}, the store listed {obj.size}",
            hint="the object changed or the read was cut short; nothing was swapped in",
        )


class StoreObjects:
    """An artifact's named objects as an engine's restore reads them (``engines.ObjectSource``):
    each verified against its manifest entry while it streams; thread-safe."""

    def __init__(
        self,
        store: Store,
        manifest: Manifest,
        identities: encryption.Identities | None,
        on_bytes: Callable[[int], None],
    ) -> None:
        self._store = store
        self._objects = {o.name: o for o in manifest.objects if o.name}
        self._identities = identities
        self._on_bytes = on_bytes
        self._lock = threading.Lock()
        self._opened: set[str] = set()
        self._verified: set[str] = set()

    def names(self) -> list[str]:
        """The objects' names, as the manifest lists them."""
        return list(self._objects)

    def size(self, name: str) -> int:
        """Stored bytes of ``name`` (0 for a name the manifest does not list)."""
        obj = self._objects.get(name)
        return obj.size if obj else 0

    def _advance(self, n: int) -> None:
        with self._lock:
            self._on_bytes(n)

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        """The decoded bytes of ``name``; verified at its end, and the rest read and verified when
        the block ends without an error."""
        obj = self._objects.get(name)
        if obj is None:
            raise VerificationFailed(
                f"the dump needs an object {name!r}, which the manifest does not list",
                hint="the artifact is incomplete: nothing was changed; restore another with --artifact",
            )
        with self._lock:
            if name in self._opened:
                raise VerificationFailed(f"object {obj.key} was asked for twice by one restore")
            self._opened.add(name)
        with contextlib.ExitStack() as stack, self._store.open(obj.key) as raw:
            check = VerifyingReader(raw, size=obj.size, sha256=obj.sha256, name=obj.key)
            stored: ByteSource = ProgressReader(check, self._advance)
            if obj.encryption is not None:
                stored = stack.enter_context(decrypting(stored, obj, self._identities))
            stream = codecs.decode(obj.compression, stored, obj.key)
            yield stream
            drain(stream, check, obj)
        with self._lock:
            self._verified.add(name)

    def require_all_verified(self) -> None:
        """Every listed object was read to its end and matched its checksum: else the restore
        did not load all of the artifact, and is refused before the swap."""
        unread = [o.key for n, o in self._objects.items() if n not in self._verified]
        if unread:
            raise VerificationFailed(
                f"{len(unread)} object(s) of the artifact were not restored, e.g. {unread[0]}",
                hint="the artifact and its table of contents disagree: nothing was changed; restore another",
            )


def check_objects(manifest: Manifest, engine: Engine) -> None:
    """Refuse, before anything is touched, an artifact whose objects this engine cannot restore."""
    if not manifest.by_objects:
        if len(manifest.objects) != 1:
            raise VerificationFailed(
                f"artifact {manifest.id} has {len(manifest.objects)} data objects; expected 1"
            )
        return
    formats = {o.format for o in manifest.objects}
    if not isinstance(engine, DumpsObjects) or formats != {engine.objects_format}:
        raise VerificationFailed(
            f"artifact {manifest.id} is made of {len(manifest.objects)} objects of format "
            f"{', '.join(sorted(formats))}, which the {engine.name} engine cannot restore",
            hint="restore it with the engine that made it, or upgrade dataferry",
        )


@contextlib.contextmanager
def objects_restore(
    engine: Engine,
    ref: DatabaseRef,
    store: Store,
    manifest: Manifest,
    options: RestoreOptions,
    reporter: Reporter,
    identities: encryption.Identities | None = None,
) -> Iterator[Shadow]:
    """Restore an artifact of named objects into a shadow, every object verified; drop the shadow
    unless it was swapped inside the block."""
    check_objects(manifest, engine)
    assert isinstance(engine, DumpsObjects)
    transfer = reporter.transfer(f"restore {ref.name}", manifest.size)
    source = StoreObjects(store, manifest, identities, transfer.advance)
    shadow: Shadow | None = None
    finished = swapped = False
    try:
        reporter.info(f"restore {ref.name}: {len(manifest.objects)} objects, {options.jobs} at once")
        shadow = engine.restore_shadow_objects(ref, source, options)
        source.require_all_verified()
        finished = True
        finish(transfer, ok=True)
        yield shadow
        swapped = True
    finally:
        if not finished:
            finish(transfer, ok=False)
        if shadow is not None and not swapped:
            drop_after_failure(engine, shadow, sys.exc_info()[1])


@contextlib.contextmanager
def backup_transfer(engine: Engine, ref: DatabaseRef, reporter: Reporter) -> Iterator[Transfer]:
    """A backup's progress, ended as done or failed. The dump's size is known only at its end: the
    database's size gives an estimate and an ETA."""
    estimate = estimated_dump_size(engine, ref)
    transfer = reporter.transfer(f"backup {ref.name}", Estimate(estimate) if estimate else None)
    ok = False
    try:
        yield transfer
        ok = True
    finally:
        finish(transfer, ok=ok)


def upload_many(
    layout: Layout,
    prefix: str,
    engine: Engine,
    ref: DatabaseRef,
    encoding: Encoding,
    reporter: Reporter,
    recipients: tuple[str, ...] = (),
) -> tuple[list[DataObject], dict[str, int]]:
    """Dump ``ref`` as one object per table's data plus a table of contents under ``prefix``, each
    stored as soon as the dump finished it (``pieces.upload_objects``)."""
    assert isinstance(engine, DumpsObjects)  # Encoding.by_objects chose this path
    with backup_transfer(engine, ref, reporter) as transfer:
        objects, row_counts, warnings = upload_objects(
            layout.store, prefix, engine, ref, encoding, transfer.advance, recipients, dump_workers()
        )
    for warning in warnings:
        reporter.warn(warning)
    return objects, row_counts
