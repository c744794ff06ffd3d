"""Streaming gzip for the ``govuk`` layout (``mysqldump | gzip -1`` objects), in bounded memory.

GOV.UK's consumers read ``.gz`` objects with ``gunzip``, so MySQL dumps in that layout are gzip,
not zstd. Reading checks gzip's own CRC-32 and length trailer: a truncated or corrupt object fails
the read (``VerificationFailed``) before anything is swapped in, even when the object has no
dataferry manifest to check its sha256 against.
"""

from __future__ import annotations

import gzip
import zlib
from typing import IO, cast

from dataferry.errors import VerificationFailed
from dataferry.streams import CHUNK, ByteSource, Reader

#: ``gzip -1``, as GOV.UK's db-backup scripts use: fast, and dumps compress well anyway.
DEFAULT_LEVEL = 1


class GzipCompressor(Reader):
    """A reader yielding the gzip compression of ``src``; holds at most about one chunk."""

    def __init__(self, src: ByteSource, level: int = DEFAULT_LEVEL) -> None:
        self._src = src
        self._z = zlib.compressobj(level, zlib.DEFLATED, 31)  # wbits 31: gzip header and trailer
        self._buf = bytearray()
        self._eof = False

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` compressed bytes (all of them when ``n`` is negative)."""
        while not self._eof and (n < 0 or len(self._buf) < n):
            chunk = self._src.read(CHUNK)
            if chunk:
                self._buf += self._z.compress(chunk)
            else:
                self._buf += self._z.flush()
                self._eof = True
        size = len(self._buf) if n < 0 else min(n, len(self._buf))
        out = bytes(self._buf[:size])
        del self._buf[:size]
        return out


class GzipDecompressor(Reader):
    """A reader yielding the decompression of gzip ``src`` (all members), checking CRC and length."""

    def __init__(self, src: ByteSource, *, name: str) -> None:
        self._gz = gzip.GzipFile(fileobj=cast(IO[bytes], src), mode="rb")
        self.name = name

    def read(self, n: int = -1) -> bytes:
        """Decompressed bytes; a corrupt or truncated object raises ``VerificationFailed``."""
        try:
            return self._gz.read(n)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise VerificationFailed(
                f"object {self.name} is not a complete gzip stream: {exc}",
                hint="the object is truncated or corrupt; nothing was swapped in. Restore an older "
                "one with -t TIMESTAMP (or --artifact), or take a new backup",
            ) from None


def gunzip_head(data: bytes, limit: int = 4096) -> bytes:
    """The first ``limit`` decompressed bytes of a gzip prefix (for sniffing), or b'' if not gzip."""
    if not data.startswith(b"\x1f\x8b"):
        return b""
    try:
        return zlib.decompressobj(31).decompress(data, limit)
    except zlib.error:
        return b""
