"""The mechanism of every backup and restore, written once: what ``ops`` puts in order.

Backup (``publish``)::

    engine.dump -> count -> encode (layout's codec) -> [age encrypt] -> sha256 -> store.put
    -> layout.publish(manifest)

Restore (``restore_into``)::

    store.open -> verify sha256 and size while streaming -> [age decrypt] -> decode
    -> engine.restore_shadow (or, for an artifact of many objects, engine.restore_shadow_objects
       reading each object the same way through ``pieces.StoreObjects``, every one read and verified)
    -> row counts against the manifest -> before-swap hooks (sanitisation) -> engine.swap

Invariants enforced here: 2 (the manifest is written by ``layout.publish`` only after the data object
was stored and its size confirmed), 3 (checksums computed on the way out and verified on the way in,
before the swap), 4 (the live database is touched only by ``engine.swap``, last; a failure before it
drops the shadow) and 8 (everything streams; only ``--jobs N`` spools, after a free-space check).
Policy (whether to do it at all) lives in ``ops``; this module never decides that.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

from dataferry import artifacts, codecs, encryption, private, runspace
from dataferry.artifacts import DataObject, Manifest, Sanitisation
from dataferry.config import DatabaseRef
from dataferry.engines import (
    Engine,
    RestoreOptions,
    Shadow,
    ToolCheck,
    drop_after_failure,
    estimated_dump_size,
)
from dataferry.engines import manifest_extra as describe_dump
from dataferry.errors import FerryError, NotReady, VerificationFailed
from dataferry.layouts import Encoding, Layout
from dataferry.pieces import backup_transfer, decrypting, drain, objects_restore, put_object, upload_many
from dataferry.pieces import check_objects as check_objects
from dataferry.progress import Reporter, finish, human_bytes
from dataferry.runspace import spool_dir as spool_dir
from dataferry.runspace import stops_deferred
from dataferry.runspace import sweep_leftovers as sweep_leftovers
from dataferry.runspace import sweep_shadows as sweep_shadows
from dataferry.streams import (
    CHUNK,
    ByteSource,
    HashingReader,
    ProgressReader,
    VerifyingReader,
)

#: Called on the shadow after its checksum and row counts were verified and before the swap.
#: Sanitisation plugs in here; raising aborts the restore and the shadow is dropped.
BeforeSwap = Callable[[Engine, Shadow], Sanitisation | None]

_DRAIN_LIMIT = 256 * 1024 * 1024


def require_ready(checks: list[ToolCheck], ref: DatabaseRef) -> None:
    """Raise ``NotReady`` listing every failed check (invariant 1: check before you destroy)."""
    failed = [c for c in checks if not c.ok]
    if failed:
        lines = "; ".join(f"{c.what}: {c.detail}" for c in failed)
        raise NotReady(
            f"{ref.name} in {ref.environment} is not ready: {lines}",
            hint="run 'dataferry check' for the full report",
        )


# -- backup ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Publication:
    """What a backup records about itself beyond the dump: who, where from, how sanitised."""

    database: str
    environment: str
    sanitisation: Sanitisation | None = None
    extra: dict[str, object] | None = None
    #: the database name the dump records when a copy is dumped in its place (not ``<db>_dfshadow``)
    dump_as: str | None = None
    #: signs the manifest of a sanitised artifact before it is written (``ops`` chooses the key)
    sign: Callable[[Manifest], Manifest] | None = None
    #: age recipients (public keys) to encrypt the data object for; empty: not encrypted
    recipients: tuple[str, ...] = ()
    #: where a dump that writes files before they are stored may put them (settings.spool_dir)
    spool_dir: Path | None = None


def publish(
    layout: Layout, engine: Engine, ref: DatabaseRef, what: Publication, level: int, reporter: Reporter
) -> Manifest:
    """Dump ``ref`` into ``layout``'s store and commit it: data object first, manifest last."""
    require_ready(engine.check(ref), ref)
    server_version = engine.server_version(ref)
    engine_extra = describe_dump(engine, ref)  # optional capability (MySQL: character set, tool)
    encoding = layout.encoding(engine, level)
    encoding = dataclasses.replace(
        encoding,
        dump=dataclasses.replace(
            encoding.dump, spool_dir=what.spool_dir, database_name=what.dump_as or encoding.dump.database_name
        ),
    )
    many = encoding.by_objects(engine)
    # a per-table dump may hold the whole dump on the spool: room reserved, or one streamed archive
    reservation, too_small = runspace.backup_spool(
        what.spool_dir, estimated_dump_size(engine, ref) if many else None
    )
    if too_small:
        reporter.warn(f"backup {what.database}: {too_small}")
        many, encoding = False, dataclasses.replace(encoding, objects=False)
    new = layout.new_key(engine, encoding)
    if what.recipients and not many:  # say what the bytes are: <id>.<format>.zst.age is `age -d | zstd -d`
        new = dataclasses.replace(new, key=f"{new.key}{encryption.SUFFIX}")
    reporter.info(f"backup {what.database} ({what.environment}) -> {layout.store.url}{new.key}")
    if many:
        try:
            objects, row_counts = upload_many(
                layout, new.key, engine, ref, encoding, reporter, what.recipients
            )
        finally:
            private.release(reservation)  # the dump's files are stored and gone
    else:
        obj, row_counts = upload(layout, new.key, engine, ref, encoding, reporter, what.recipients)
        objects = [obj]
    sanitisation = what.sanitisation
    manifest = Manifest(
        id=new.id,
        database=what.database,
        engine=engine.name,
        server_version=server_version,
        source_environment=what.environment,
        created_at=new.created,
        finished_at=artifacts.utcnow(),
        objects=objects,
        format_version=artifacts.FORMAT_VERSION if many else artifacts.SINGLE_OBJECT_VERSION,
        sanitised=sanitisation is not None and sanitisation.passed,
        sanitisation=sanitisation,
        row_counts=row_counts,
        extra={**engine_extra, **(what.extra or {}), **layout.manifest_extra(new)},
    )
    if manifest.sanitised and what.sign is not None:
        manifest = what.sign(manifest)
    with stops_deferred() as stopped:
        layout.publish(manifest)  # the commit: a stop asked for meanwhile waits until it is done
        reporter.info(f"published {manifest.id}", size=manifest.size, objects=len(objects))
    if stopped:
        reporter.warn(f"{stopped[0]} arrived while the manifest was written; {manifest.id} is published")
    return manifest


def upload(
    layout: Layout,
    key: str,
    engine: Engine,
    ref: DatabaseRef,
    encoding: Encoding,
    reporter: Reporter,
    recipients: tuple[str, ...] = (),
) -> tuple[DataObject, dict[str, int]]:
    """Stream a dump of ``ref`` through the layout's codec (and age, for ``recipients``) into
    ``key``, hashing the stored bytes.

    A failed dump raises inside ``store.put``, so nothing becomes visible; a size the store did not
    confirm removes the object. Returns the data object and the dump's own row counts.
    """
    # The encrypting worker is stopped after the dump ends (a dump that stalls is killed first, so
    # a worker blocked reading it is released and the stop never waits on it).
    with (
        backup_transfer(engine, ref, reporter) as transfer,
        contextlib.ExitStack() as stack,
        engine.dump(ref, encoding.dump) as dump,
    ):
        raw = ProgressReader(dump.stream, transfer.advance)
        obj = put_object(layout.store, key, raw, encoding, stack, recipients, engine.dump_format)
        row_counts = dict(dump.row_counts)
        for warning in dump.warnings:
            reporter.warn(warning)
    return obj, row_counts


@contextlib.contextmanager
def copy_to_shadow(engine: Engine, source: DatabaseRef, dest: DatabaseRef) -> Iterator[Shadow]:
    """Dump ``source`` straight into a shadow of ``dest`` (no store), its rows checked against the
    dump's own counts; the shadow is dropped on any failure inside the block, unless swapped there."""
    shadow: Shadow | None = None
    try:
        with engine.dump(source) as dump:
            shadow = engine.restore_shadow(dest, dump.stream, RestoreOptions())
            while dump.stream.read(CHUNK):  # a dump that failed late raises here, before any use
                pass
            if dump.row_counts:
                restored = engine.row_counts(shadow)
                diffs = sorted(t for t, n in dump.row_counts.items() if restored.get(t) != n)
                if diffs:
                    raise VerificationFailed(
                        f"the copy's rows differ from the dump in {', '.join(diffs[:5])}",
                        hint="nothing was published; the dump or the restore is broken",
                    )
        yield shadow
    except BaseException:
        if shadow is not None:
            engine.drop_shadow(shadow)  # idempotent; restore_shadow drops its own when it fails
        raise


# -- restore ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    """What a restore found on the shadow before it swapped it in."""

    row_counts: dict[str, int]
    sanitisation: Sanitisation | None


def restore_into(
    engine: Engine,
    ref: DatabaseRef,
    layout: Layout,
    manifest: Manifest,
    options: RestoreOptions,
    hooks: list[BeforeSwap],
    reporter: Reporter,
    identities: encryption.Identities | None = None,
) -> Loaded:
    """Shadow, verify, row counts, hooks, swap. The first hook's result is the sanitisation.
    ``identities`` decrypt an encrypted data object."""
    if manifest.by_objects:  # one object per table: streamed by workers, no spool
        restoring = objects_restore(engine, ref, layout.store, manifest, options, reporter, identities)
    else:
        restoring = shadow_restore(engine, ref, layout, manifest.objects[0], options, reporter, identities)
    with restoring as shadow:
        counts = check_row_counts(engine, ref, shadow, manifest, reporter)
        results = [hook(engine, shadow) for hook in hooks]
        reporter.info(f"swap {shadow.name} -> live {ref.target} ({ref.name} in {ref.environment})")
        engine.swap(shadow)
    return Loaded(row_counts=counts, sanitisation=results[0] if results else None)


@contextlib.contextmanager
def shadow_restore(
    engine: Engine,
    ref: DatabaseRef,
    layout: Layout,
    obj: DataObject,
    options: RestoreOptions,
    reporter: Reporter,
    identities: encryption.Identities | None = None,
) -> Iterator[Shadow]:
    """Stream ``obj`` into a shadow, checked as it streams; drop the shadow unless it was swapped.
    An encrypted object is decrypted with ``identities`` after its stored bytes were hashed.

    An object with a sha256 is verified against it (and its size); one without (a dump another tool
    wrote) is checked against the size the store listed, and by its codec's own checksum where it
    has one.
    """
    transfer = reporter.transfer(f"restore {ref.name}", obj.size)
    streamed = False
    shadow: Shadow | None = None
    swapped = False

    def data_streamed() -> None:
        # The bar is full, but the database still has work to do: say which, not sit at 100%.
        nonlocal streamed
        streamed = True
        transfer.done()
        reporter.info(
            f"restore {ref.name}: data streamed; the database finishes the shadow (indexes, constraints)"
        )

    try:
        with contextlib.ExitStack() as stack, layout.store.open(obj.key) as raw:
            check = _checker(raw, obj)
            # Read in this thread, not ahead on another: reading ahead measured no faster here
            # (the spool is write-bound), and a read stuck on a stalled store could not be
            # abandoned safely when a signal stops the restore. (age's decryption has to run on a
            # worker thread: pyrage pushes; its queue is bounded and closed with the restore.)
            stored: ByteSource = ProgressReader(check, transfer.advance, on_end=data_streamed)
            if obj.encryption is not None:
                stored = stack.enter_context(decrypting(stored, obj, identities))
            stream = codecs.decode(obj.compression, stored, obj.key)
            try:
                shadow = engine.restore_shadow(ref, stream, options)
            except Exception as exc:
                stack.close()  # stop a decrypting worker before this thread reads the store
                if isinstance(check, VerifyingReader):
                    refuse_if_corrupt(check, exc)  # damaged bytes are VerificationFailed
                raise
            drain(stream, check, obj)  # the engine may stop before EOF: verify what it did not read
        yield shadow
        swapped = True
    finally:
        if not streamed:
            finish(transfer, ok=False)
        if shadow is not None and not swapped:
            drop_after_failure(engine, shadow, sys.exc_info()[1])


def _checker(raw: BinaryIO, obj: DataObject) -> HashingReader:
    if not obj.sha256:
        return HashingReader(raw)
    return VerifyingReader(raw, size=obj.size, sha256=obj.sha256, name=obj.key)


def refuse_if_corrupt(verifying: VerifyingReader, exc: Exception) -> None:
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
            exc.hint = f"if the artifact may be damaged, check it with 'dataferry verify' ({human_bytes(unread)} unread)"
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


def check_row_counts(
    engine: Engine, ref: DatabaseRef, shadow: Shadow, manifest: Manifest, reporter: Reporter | None = None
) -> dict[str, int]:
    """Compare the shadow's rows per table with the manifest (a cheap restore check).

    A table the manifest does not list must hold no rows: a dump that carries data the backup did
    not count (an edited or forged dump) is refused before the swap.
    """
    if not manifest.row_counts:
        return {}
    if reporter is not None:
        reporter.info(f"restore {ref.name}: counting the shadow's rows against the manifest")
    counts = engine.row_counts(shadow)
    diffs = [
        f"{t}: {manifest.row_counts[t]} expected, {counts.get(t)} restored"
        for t in sorted(manifest.row_counts)
        if counts.get(t) != manifest.row_counts[t]
    ]
    diffs += [
        f"{t}: {n} rows restored, not in the manifest"
        for t, n in sorted(counts.items())
        if t not in manifest.row_counts and n > 0
    ]
    if diffs:
        raise VerificationFailed(
            f"restored rows differ from the manifest of {manifest.id}: " + "; ".join(diffs[:5]),
            hint="the live database was not changed; the artifact or the restore is broken",
        )
    return counts
