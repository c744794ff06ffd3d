"""Restore leases: a restore marks the artifact it reads, so a concurrent ``prune`` keeps it.

A lease is an object ``_dataferry/leases/<database>/<artifact id>/<uuid>.json`` in the source store,
written before the restore reads the data and deleted when it ends. The order makes the race safe:

- restore: write the lease, then check the artifact is still committed, then read the data;
- prune: skip a leased artifact, delete its manifest, look for a lease again, and only then delete
  its data (a lease that appeared meanwhile leaves the data for a later prune, as an orphan).

So either the restore sees the manifest gone (``NotFound`` before any shadow exists) or the prune
sees the lease and keeps the data. A lease of a restore that was killed expires after ``LEASE_TTL``.
A store the restore may not write to (read-only credentials) gets no lease: the restore says so and
goes on, and a prune racing it can only make it fail before the swap (invariant 4).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from dataferry.artifacts import Manifest
from dataferry.errors import NotFound, StoreError
from dataferry.progress import Reporter
from dataferry.stores import Store, exists, put_bytes

PREFIX = "_dataferry/leases/"
#: A lease older than this belongs to a restore that was killed (restores take hours, not days).
LEASE_TTL = timedelta(hours=24)


def lease_prefix(database: str, artifact_id: str) -> str:
    """Where the leases of one artifact live."""
    return f"{PREFIX}{database}/{artifact_id}/"


def committed_key(manifest: Manifest) -> str:
    """The object whose presence means the artifact is committed: its manifest, or the dump itself
    for a GOV.UK dump without one (a stand-in manifest)."""
    if manifest.extra.get("legacy"):
        return manifest.objects[0].key
    return manifest.key


@contextlib.contextmanager
def holding(store: Store, database: str, manifest: Manifest, reporter: Reporter) -> Iterator[None]:
    """Hold a lease on ``manifest`` while the block reads it; ``NotFound`` if it was pruned first."""
    key = f"{lease_prefix(database, manifest.id)}{uuid.uuid4().hex}.json"
    body = {"owner": f"{socket.gethostname()}:{os.getpid()}", "created_at": datetime.now(UTC).isoformat()}
    try:
        put_bytes(store, key, json.dumps(body).encode())
    except StoreError as exc:
        reporter.warn(
            f"could not record a restore lease in {store.url} ({exc.message}); a prune running now "
            "could remove the artifact, which would fail this restore before the swap"
        )
        key = ""
    try:
        if not exists(store, committed_key(manifest)):
            raise NotFound(
                f"artifact {manifest.id} was removed (pruned) after it was chosen",
                hint="nothing was changed; run the restore again to take the newest artifact",
            )
        yield
    finally:
        if key:
            with contextlib.suppress(StoreError):
                store.delete(key)


def leased(store: Store, database: str, artifact_id: str, now: datetime | None = None) -> bool:
    """True if a restore that is still alive (a lease younger than ``LEASE_TTL``) reads the artifact."""
    cutoff = (now or datetime.now(UTC)) - LEASE_TTL
    return any(
        o.modified is None or o.modified >= cutoff for o in store.list(lease_prefix(database, artifact_id))
    )
