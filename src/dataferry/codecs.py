"""How a data object's bytes are encoded in a store: ``zstd`` (dataferry's own), ``gzip`` (GOV.UK's
``.gz`` MySQL dumps) or ``none`` (PostgreSQL custom-format archives that pg_dump compressed itself).

The name is what ``DataObject.compression`` records, so a restore decodes whatever a backup wrote,
whichever layout chose it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, BinaryIO, cast

import zstandard

from dataferry.errors import VerificationFailed
from dataferry.gzipio import GzipCompressor, GzipDecompressor
from dataferry.streams import CHUNK, ByteSource, Reader

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


#: Bytes of input each zstd worker compresses at once. zstd's default at level 3 is 8 MiB (four
#: windows), and the multi-threaded compressor holds several jobs' input and output at once: 52 MiB
#: more RSS with two workers than without threads (bench/s3/memory.py, bench/README.md "Memory").
#: 2 MiB jobs hold 17 MiB, compress 0.1% larger, and cost no measurable CPU; 1 MiB jobs saved 6 MiB
#: more but compressed 0.3% larger.
ZSTD_JOB_SIZE = 2 * 1024 * 1024


def zstd_compress(src: ByteSource, level: int = 3, threads: int = -1) -> BinaryIO:
    """A reader yielding the zstd compression of ``src`` (multi-threaded like ``zstd -T0``, in
    ``ZSTD_JOB_SIZE`` jobs so that its memory stays small and fixed).

    Frames carry zstd's own content checksum, so damage inside a frame is caught by the
    decompressor too, not only by the artifact's sha256 at the end.
    """
    params = zstandard.ZstdCompressionParameters.from_level(
        level, threads=threads, job_size=ZSTD_JOB_SIZE if threads else 0, write_checksum=True
    )
    cctx = zstandard.ZstdCompressor(compression_params=params)
    return cast(BinaryIO, cctx.stream_reader(cast(IO[bytes], src), read_size=CHUNK))


def zstd_decompress(src: ByteSource) -> BinaryIO:
    """A reader yielding the decompression of zstd ``src`` (all frames); corrupt input raises
    ``VerificationFailed``. A stream cut short between blocks is not detected here: callers
    verify the compressed bytes (``VerifyingReader``) before trusting the result."""
    dctx = zstandard.ZstdDecompressor()
    reader = dctx.stream_reader(cast(IO[bytes], src), read_size=CHUNK, read_across_frames=True)
    return cast(BinaryIO, _ZstdErrors(cast(BinaryIO, reader)))


class _ZstdErrors(Reader):
    """Turns the decompressor's errors into ``VerificationFailed``: damaged data, not a bug."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner

    def read(self, n: int = -1) -> bytes:
        """Decompress up to ``n`` bytes."""
        try:
            return self._inner.read(n)
        except zstandard.ZstdError as exc:
            raise VerificationFailed(
                f"the compressed data is corrupt ({exc})",
                hint="the artifact was refused and nothing was changed; restore an older artifact "
                "with --artifact KEY, or take a new backup",
            ) from None

    def close(self) -> None:
        """Release the decompressor."""
        self._inner.close()
