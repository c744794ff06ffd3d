"""The Store protocol and what every store returns, in a module of their own so that the
implementations (``local``, ``s3``) and the registry (``stores/__init__``) import them without a cycle."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import BinaryIO, Protocol, runtime_checkable

from dataferry.streams import ByteSource


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: its key, size in bytes and last-modified time (UTC) when known."""

    key: str
    size: int
    modified: datetime | None = None


class Store(Protocol):
    """Artifacts of one environment. ``put`` is atomic: a key is visible only once fully written."""

    url: str

    def put(self, key: str, src: ByteSource) -> ObjectInfo:
        """Stream ``src`` to ``key`` until EOF. If reading ``src`` raises, nothing becomes visible."""
        ...

    def open(self, key: str) -> AbstractContextManager[BinaryIO]:
        """Open ``key`` for streaming reads. Raises ``NotFound`` if it does not exist."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, in no particular order."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""
        ...

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Create ``key`` with ``data`` only if it does not exist; False if it already does."""
        ...


@runtime_checkable
class CleansIncomplete(Protocol):
    """Optional capability: remove what uploads killed halfway left behind (never visible objects)."""

    def cleanup_incomplete(
        self, older_than: timedelta, prefix: str = "", *, dry_run: bool = False
    ) -> list[str]:
        """Remove leftovers older than ``older_than`` of uploads to keys under ``prefix`` (only
        those: one database's cleanup leaves another's running uploads alone); returns their keys.
        ``dry_run`` only lists them."""
        ...
