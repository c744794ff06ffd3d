"""A run's footing on this machine, beside the pipeline: the spool space a parallel restore
reserves, the sweep of what killed runs left (private directories, orphaned loaders, SQLite
shadows), and the stops held back while a manifest is written (the commit). Split from
``pipeline.py`` to keep both small; ``pipeline`` re-exports what ``ops`` calls."""

from __future__ import annotations

import contextlib
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from dataferry import private
from dataferry.artifacts import Manifest
from dataferry.config import DatabaseRef
from dataferry.engines import Engine, SweepsShadows
from dataferry.errors import NotReady
from dataferry.progress import Reporter, human_bytes


@contextlib.contextmanager
def stops_deferred() -> Iterator[list[str]]:
    """Hold SIGTERM and SIGINT back while the block runs, then hand them to the handlers they had.

    The manifest write is the commit (invariant 2): a stop landing on it used to publish the artifact
    and still exit non-zero, saying it failed. Here the write finishes, then the previous handler
    runs: a job runner's flag still stops the job at its next step, but a ``KeyboardInterrupt``
    (the command's own handler, Ctrl-C) is dropped, as what it would stop is done and published.
    The list the block gets names the signals that arrived. Outside the main thread (where signal
    handlers cannot be set) nothing is deferred.
    """
    arrived: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield arrived
        return
    pending: list[tuple[int, FrameType | None]] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        pending.append((signum, frame))
        arrived.append(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield arrived
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum, frame in pending:
            handler = previous[signal.Signals(signum)]
            if callable(handler):
                with contextlib.suppress(KeyboardInterrupt):
                    handler(signum, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)  # no handler of ours: the default action, committed


def sweep_leftovers(spool: Path | None, reporter: Reporter) -> None:
    """Remove what killed runs left in the temp dir and the configured ``spool`` dir: option files
    with passwords, spools with whole databases (``dataferry.private``), after killing the loaders
    they left running, and say so."""
    for base in private.bases(spool):
        for loader in private.kill_orphans(base):
            reporter.warn(f"killed {loader}, a loader left running by a dataferry run that was killed")
        for path in private.sweep(base):
            reporter.warn(f"removed {path}, left by a dataferry run that was killed")


def sweep_shadows(engine: Engine, ref: DatabaseRef, reporter: Reporter) -> None:
    """Remove the shadows killed restores of ``ref`` left beside it (SQLite: files holding the
    unsanitised data), and say so; engines whose shadows are named databases drop them themselves.
    The one sweep: every flow that makes a shadow (restore, ``backup --sanitise``'s scratch copy,
    the pre-dump transformation's copy) calls it first, and ``cleanup`` calls the same engine method."""
    if isinstance(engine, SweepsShadows):
        for path in engine.remove_stale_shadows(ref):
            reporter.warn(f"removed {path}, left by a dataferry run that was killed")


#: Object formats a parallel restore reads straight from the store, one worker per object, with
#: nothing spooled to local disk (PostgreSQL's multi-object directory-format artifacts).
STREAMED_IN_PARALLEL = frozenset({"pg_directory"})
#: Engines whose restore is one file copy: ``jobs`` does not apply, nothing is ever spooled.
_NO_PARALLEL_RESTORE = frozenset({"sqlite"})


def parallel_spools(manifest: Manifest) -> bool:
    """Whether a parallel restore (``jobs`` > 1) of this artifact spools it to local disk first:
    a single-object dump (PostgreSQL's custom format for ``pg_restore -j``, MySQL's SQL cut into
    chunks) does; a ``pg_directory`` artifact, whose objects are restored in parallel straight
    from the store, does not; SQLite never does. The one place that says so: the spool check
    (``spool_dir``) and the choice of ``jobs`` (``ops.parallelism``) both ask here."""
    if manifest.engine in _NO_PARALLEL_RESTORE or not manifest.objects or manifest.by_objects:
        return False  # an artifact of named objects (one per table) streams into its workers
    return not all(o.format in STREAMED_IN_PARALLEL for o in manifest.objects)


#: A per-table backup's room on the spool, against the database's estimated dump size: the same
#: margin a parallel restore asks for (the estimate is the tables' size on disk, not the dump's).
BACKUP_SPOOL_MARGIN = 1.1


def backup_spool(configured: Path | None, estimate: int | None) -> tuple[Path | None, str | None]:
    """Room on the spool for a per-table backup: pg_dump writes each table's file there and it
    stays until dataferry has compressed and stored it, and where pg_dump is faster than the
    compression (a machine short of CPU: measured, 871 MiB of an 877 MiB dump at once on two CPUs)
    that is nearly the whole uncompressed dump. Returns ``(reservation, None)`` when the spool holds
    the estimated dump (reserved until ``private.release``), ``(None, why)`` when it cannot (the
    backup is then one streamed archive), and ``(None, None)`` when the size is not known (or not
    asked for: a backup that streams)."""
    base = configured or Path(tempfile.gettempdir())
    if estimate is None or not base.is_dir():
        return None, None  # nothing to judge by (a missing spool_dir is reported by the dump)
    need = int(estimate * BACKUP_SPOOL_MARGIN)
    with private.space_lock(base):
        free, promised = private.spool_room(base)
        if free - promised >= need:
            return private.reserve(base, need), None
    others = f" ({human_bytes(promised)} of them reserved by runs going on now)" if promised else ""
    return None, (
        f"the spool {base} has {human_bytes(free)} free{others}, less than the {human_bytes(need)} a "
        "per-table backup may hold there at once (the tables dumped and not yet stored); backing up as "
        "one streamed archive instead (its restores stream with one worker): give the spool that much "
        "(settings.spool_dir, or the pod's spool volume) to keep per-table artifacts"
    )


def spool_dir(configured: Path | None, jobs: int, manifest: Manifest) -> tuple[Path | None, Path | None]:
    """Where a parallel restore spools, and its reservation there (invariant 1): the free space,
    less what other running restores reserved there and have not spooled yet, must hold this
    spool; it is then reserved until ``private.release(reservation)`` (or this process ends).
    ``(None, None)`` for a restore that does not spool (``jobs`` 1, or ``parallel_spools`` false)."""
    if jobs <= 1 or not parallel_spools(manifest):
        return None, None
    base = configured or Path(tempfile.gettempdir())
    need = max(o.raw_size or o.size for o in manifest.objects)
    hint = "set settings.spool_dir to a larger disk, or restore with --jobs 1 (streams, no spooling)"
    if not base.is_dir():
        raise NotReady(
            f"a parallel restore spools {human_bytes(need)} to {base}, which does not exist", hint=hint
        )
    with private.space_lock(base):
        free, promised = private.spool_room(base)
        if free - promised < need * 1.1:
            others = (
                f" ({human_bytes(promised)} of them reserved by restores running now)" if promised else ""
            )
            raise NotReady(
                f"a parallel restore spools {human_bytes(need)} to {base}, but only {human_bytes(free)} are free{others}",
                hint=("wait for the other restores to finish, " if promised else "") + hint,
            )
        return base, private.reserve(base, int(need * 1.1))
