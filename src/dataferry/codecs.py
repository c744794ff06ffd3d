"""How a data object's bytes are encoded in a store: ``zstd`` (dataferry's own), ``gzip`` (GOV.UK's
``.gz`` MySQL dumps) or ``none`` (PostgreSQL custom-format archives that pg_dump compressed itself).

The name is what ``DataObject.compression`` records, so a restore decodes whatever a backup wrote,
whichever layout chose it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO, cast

from dataferry.errors import VerificationFailed
from dataferry.gzipio import GzipCompressor, GzipDecompressor
from dataferry.streams import ByteSource, zstd_compress, zstd_decompress

Encoder = Callable[[ByteSource], ByteSource]

NAMES = ("zstd", "gzip", "none")


def encoder(compression: str, level: int) -> Encoder:
    """The function that encodes a dump stream as ``compression`` at ``level``."""
    if compression == "zstd":
        return lambda raw: zstd_compress(raw, level=level)
    if compression == "gzip":
        return lambda raw: GzipCompressor(raw, level=level)
    if compression == "none":
        return lambda raw: raw
    raise ValueError(f"unknown compression {compression!r}")


def decode(compression: str, stored: ByteSource, name: str) -> BinaryIO:
    """The decoded stream of object ``name``; an unknown encoding is ``VerificationFailed``."""
    if compression == "zstd":
        return zstd_decompress(stored)
    if compression == "gzip":
        return cast(BinaryIO, GzipDecompressor(stored, name=name))
    if compression == "none":
        return cast(BinaryIO, stored)
    raise VerificationFailed(
        f"object {name} is compressed as {compression!r}, which this dataferry cannot read",
        hint=f"known: {', '.join(NAMES)}; upgrade dataferry",
    )
