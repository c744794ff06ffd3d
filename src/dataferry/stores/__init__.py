"""Stores: where artifacts live. One protocol, a registry by URL scheme, and helpers written once.

Every implementation must pass ``tests/contract/test_store_contract.py``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

from dataferry.config import S3Options
from dataferry.errors import ConfigError, NotFound
from dataferry.stores.base import CleansIncomplete, ObjectInfo, Store


def read_bytes(store: Store, key: str, *, limit: int = 16 * 1024 * 1024) -> bytes:
    """Read a small object (a manifest, a lock) whole; refuses anything over ``limit`` bytes."""
    with store.open(key) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise NotFound(f"object {key!r} is larger than {limit} bytes; it is not a small metadata object")
    return data


def put_bytes(store: Store, key: str, data: bytes) -> ObjectInfo:
    """Atomically write a small object."""
    return store.put(key, io.BytesIO(data))


def exists(store: Store, key: str) -> bool:
    """True if ``key`` exists in ``store``."""
    return any(o.key == key for o in store.list(key))


def open_store(url: str, options: S3Options | Mapping[str, object] | None = None) -> Store:
    """Build the store for ``url``: ``s3://bucket/prefix``, ``file:///path`` or a plain directory path.
    ``options`` are the S3 options (``StoreConfig.options()``; a plain mapping of them is accepted too);
    local stores ignore them."""
    if url.startswith("s3://"):
        from dataferry.stores.s3 import S3Store

        return S3Store.from_url(url, options if options is not None else S3Options())
    if url.startswith("file://") or "://" not in url:
        from dataferry.stores.local import LocalStore

        return LocalStore.from_url(url)
    scheme = url.split("://", 1)[0]
    raise ConfigError(
        f"unknown store scheme {scheme!r} in {url!r}",
        hint="use s3://bucket/prefix for object storage or a directory path for a local store",
    )


__all__ = ["CleansIncomplete", "ObjectInfo", "Store", "exists", "open_store", "put_bytes", "read_bytes"]
