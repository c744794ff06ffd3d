"""How many workers a restore runs (``jobs``), and the spool space it reserves for them.

Asked for (``--jobs N``, ``databases.<db>.restore_jobs``, ``settings.restore_jobs``, in that
order): exactly that many, and a restore that would spool refuses when the spool has no room
(exit 3), as it always did. Not asked for, **auto**: the fastest choice that is safe here:

- as many workers as there are usable CPUs (``dataferry.cpus``: the affinity mask bounded by a
  container's cgroup quota), bounded by the connections the server, the role or the account can
  still give (``engines.LimitsJobs``), at least 1;
- but a parallel restore that would first spool the artifact to local disk
  (``runspace.parallel_spools``) only where the spool pays: MySQL/MariaDB (41 s streamed against
  17 s in parallel at 1 GB, bench/results), when the spool has room; otherwise one stream, with
  a warning that says how to get the parallel restore. A PostgreSQL single-object (``pg_custom``)
  artifact streams into ``pg_restore``: spooled, ``-j 2`` saved 13% at 1 GB for a local copy of
  the whole database (the disk a pod must be sized for); a multi-object ``pg_directory`` artifact
  is restored in parallel straight from the store, so auto gives it every worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dataferry import cpus, runspace
from dataferry.artifacts import Manifest
from dataferry.config import Config, DatabaseRef
from dataferry.engines import Engine, LimitsJobs
from dataferry.errors import ConfigError, FerryError, NotReady
from dataferry.progress import Reporter

#: Engines whose parallel restore is worth its local spool when nobody asked for one.
_SPOOL_PAYS = frozenset({"mysql"})


@dataclass(frozen=True)
class JobsChoice:
    """The workers a restore runs, why (``detail``, for the log and ``--dry-run``), and where it
    spools with the space it reserved there (None: it streams)."""

    jobs: int
    detail: str
    spool: Path | None = None
    reservation: Path | None = None


def choose_jobs(
    cfg: Config,
    asked: int | None,
    database: str,
    engine: Engine,
    ref: DatabaseRef,
    manifest: Manifest,
    reporter: Reporter,
) -> JobsChoice:
    """The jobs of a restore of ``manifest`` into ``ref``: ``asked`` (the request's ``jobs``) or the
    configuration's, else auto (see the module). Reserves the spool space a parallel restore
    needs; ``NotReady`` when an asked-for parallel restore has no room for its spool."""
    jobs, source = _asked(cfg, asked, database)
    if jobs is not None:
        if jobs < 1:
            raise ConfigError(f"{source} must be at least 1")
        spool, reservation = runspace.spool_dir(cfg.spool_path(), jobs, manifest)
        return JobsChoice(jobs, f"jobs {jobs} ({source})", spool, reservation)
    return _auto(cfg, engine, ref, manifest, reporter)


def _asked(cfg: Config, asked: int | None, database: str) -> tuple[int | None, str]:
    if asked is not None:
        return asked, "as asked"
    db = cfg.databases.get(database)
    if db is not None and db.restore_jobs is not None:
        return db.restore_jobs, f"databases.{database}.restore_jobs"
    if cfg.settings.restore_jobs is not None:
        return cfg.settings.restore_jobs, "settings.restore_jobs"
    return None, ""


def _auto(
    cfg: Config, engine: Engine, ref: DatabaseRef, manifest: Manifest, reporter: Reporter
) -> JobsChoice:
    jobs, note = _auto_count(engine, ref, reporter)
    if jobs == 1 or not runspace.parallel_spools(manifest):
        return JobsChoice(jobs, f"jobs {jobs} ({note})")
    formats = ", ".join(sorted({o.format for o in manifest.objects}))
    if manifest.engine not in _SPOOL_PAYS:
        return JobsChoice(1, f"jobs 1 ({note}; a {formats} artifact streams, without a spool)")
    try:
        spool, reservation = runspace.spool_dir(cfg.spool_path(), jobs, manifest)
    except NotReady as exc:
        reporter.warn(
            f"restoring with one stream instead of {jobs} parallel workers: {exc.message}; for the "
            "parallel restore, set settings.spool_dir to a disk with room for the uncompressed dump "
            "(or set restore_jobs = 1 to stream without this warning)"
        )
        return JobsChoice(1, f"jobs 1 ({note}; no room to spool, streamed)")
    return JobsChoice(jobs, f"jobs {jobs} ({note})", spool, reservation)


def auto_connections(engine: Engine, ref: DatabaseRef, reporter: Reporter) -> int:
    """What auto gives outside a restore (the scan of a sanitised backup's scratch copy): the
    usable CPUs, bounded by the connections ``ref``'s server allows now."""
    return _auto_count(engine, ref, reporter)[0]


def _auto_count(engine: Engine, ref: DatabaseRef, reporter: Reporter) -> tuple[int, str]:
    """Auto's number (the usable CPUs, bounded by the server's free connections, at least 1) and
    how to say where it came from."""
    usable = cpus.usable_cpus()
    allowed, said = _server_allows(engine, ref, reporter)
    return max(1, min(usable, allowed)), f"auto: {usable} CPU{'s' if usable != 1 else ''}, {said}"


def _server_allows(engine: Engine, ref: DatabaseRef, reporter: Reporter) -> tuple[int, str]:
    """The workers the server can take now, and how to say so."""
    if not isinstance(engine, LimitsJobs):
        return 1, f"the {engine.name} engine does not say how many connections its server allows"
    try:
        allowed = engine.max_jobs(ref)
    except FerryError as exc:
        reporter.warn(f"restoring with one worker: cannot read the server's connection limits: {exc.message}")
        return 1, "server limits unknown"
    if allowed is None:
        return cpus.usable_cpus(), "server sets no limit"
    if engine.name == "sqlite":
        return allowed, "SQLite restores one file"
    return allowed, f"server allows {max(allowed, 0)}"
