"""Artifacts a prune must keep for the job layer: those an ``after`` trigger still needs.

A job with ``after = UPSTREAM`` restores exactly the artifact UPSTREAM's newest successful run
published (``triggers.pending_after``) until one of its runs consumed it; if UPSTREAM published into
the environment being pruned, that artifact must stay, even when newer backups exist.
"""

from __future__ import annotations

from dataferry.config import Config
from dataferry.jobs.common import StoreCache
from dataferry.jobs.triggers import pending_after


def after_pins(cfg: Config, environment: str, database: str, stores: StoreCache | None = None) -> set[str]:
    """Ids of ``database``'s artifacts in ``environment`` that a pending ``after`` run needs."""
    stores = stores or StoreCache(cfg)
    pins: set[str] = set()
    for name, job in cfg.jobs.items():
        upstream = cfg.jobs.get(job.after) if job.after else None
        if upstream is None or (upstream.environment, upstream.database) != (environment, database):
            continue
        wanted = pending_after(cfg, name, stores)
        if wanted is not None:
            pins.add(wanted)
    return pins
