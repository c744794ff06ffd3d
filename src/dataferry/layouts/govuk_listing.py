"""What one database's directory in a GOV.UK store holds, listed once per choice: its dumps (both
eras' names), dataferry's manifests (beside the dumps, or in a directory of their own) and the
records of the dumps dataferry started (``_dataferry/pending/<path>/<id>.started``, written before
each upload, outside every directory GOV.UK's readers list)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from dataferry.layouts.govuk_names import MANIFEST_SUFFIX, Naming, parse_name
from dataferry.stores import Store

#: Where dataferry records a dump it starts (``pending_key``).
PENDING_PREFIX = "_dataferry/pending/"
_PENDING_SUFFIX = ".started"


def pending_key(data_key: str) -> str:
    """``_dataferry/pending/<path>/<id>.started``: dataferry started the dump ``data_key``."""
    return PENDING_PREFIX + data_key.removesuffix(".gz") + _PENDING_SUFFIX


@dataclass
class Listing:
    """One directory: dumps by key (time, size), manifest keys, started dumps' keys, every name."""

    dumps: dict[str, tuple[datetime, int]]
    manifests: set[str] = field(default_factory=set)
    pending: set[str] = field(default_factory=set)
    names: list[str] = field(default_factory=list)  # every object directly in the directory


def list_directory(store: Store, naming: Naming, manifest_dir: str | None) -> Listing:
    """List ``naming``'s directory (one level, as GOV.UK's readers do), ``manifest_dir`` (None:
    manifests are beside the dumps) and the records of started dumps."""
    prefix = naming.key("")
    listing = Listing({})
    for obj in store.list(prefix):
        base = obj.key[len(prefix) :]
        if "/" in base:
            continue
        listing.names.append(base)
        if base.endswith(MANIFEST_SUFFIX):
            listing.manifests.add(obj.key)
            continue
        parsed = parse_name(base)
        if parsed and naming.matches(parsed[1]):
            listing.dumps[obj.key] = (parsed[0], obj.size)
    listing.manifests.update(_keys_in(store, manifest_dir))
    started = _keys_in(store, PENDING_PREFIX + prefix)
    listing.pending.update(k[len(PENDING_PREFIX) :].removesuffix(_PENDING_SUFFIX) + ".gz" for k in started)
    return listing


def _keys_in(store: Store, directory: str | None) -> list[str]:
    """The keys directly in ``directory`` (none when it is None)."""
    if directory is None:
        return []
    return [o.key for o in store.list(directory) if "/" not in o.key[len(directory) :]]


def uncommitted(listing: Listing, manifest_key: Callable[[str], str]) -> set[str]:
    """Dumps dataferry started that have no manifest: interrupted backups."""
    return {k for k in listing.pending if k in listing.dumps and manifest_key(k) not in listing.manifests}


def recent(listing: Listing, n: int = 3) -> list[str]:
    """The file names of the ``n`` newest dumps, for hints."""
    ordered = sorted(listing.dumps, key=lambda k: listing.dumps[k][0], reverse=True)
    return [k.rsplit("/", 1)[-1] for k in ordered[:n]]
