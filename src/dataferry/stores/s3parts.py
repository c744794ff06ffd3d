"""How an S3 upload is cut into parts, and the memory that costs.

An artifact is streamed, so its size is unknown when its multipart upload starts: every part has
the configured size, and s3transfer holds each part it has read in memory until S3 has it. What
an upload holds is therefore fixed by two settings, whatever the artifact's size:

    part size x (parts in flight + 1)

(the parts being sent, plus the next one read while it waits for a free slot). The defaults were
measured with ``bench/s3/memory.py`` (generated dump stream -> zstd -3 -> sha256 -> S3Store.put,
moto's server on the same two CPUs; bench/README.md, "Memory"). Peak RSS of the whole process,
whose imports and S3 client alone take about 92 MiB, for a 1 GB stream (glibc's heap as it comes):

    parts MiB x in flight   8x2   8x3   8x4   16x2   16x3
    peak RSS, MiB           132   132   132   148    148

and with the defaults and ``heap.py``: 120, 126 and 130 MiB at 256 MB, 1 GB and 4 GB.
Against moto the parts in flight made no difference to the time (68-91 s for 1 GB on a machine
with a load average of 10-14; the compressor, not the upload, was the bound), so the defaults are
chosen for memory: 8 MiB parts, 3 in flight, at most 32 MiB of parts. The price is S3's limit of
10,000 parts: 8 MiB parts allow an artifact of up to 78 GiB (a database of about 300 GB at the
benchmarks' 4x compression); ``part_size_mib`` raises it, at ``part_size_mib x (concurrency + 1)``
MiB of memory. An upload that would pass the limit is stopped with that advice at the first byte
over it, before S3 refuses it.
"""

from __future__ import annotations

from boto3.s3.transfer import TransferConfig

from dataferry.errors import StoreError
from dataferry.streams import ByteSource

MiB = 1024 * 1024
#: The defaults (``S3Options`` in ``config/models.py`` has the same; a unit test keeps them equal).
PART_SIZE_MIB = 8
CONCURRENCY = 3
#: S3 refuses a part number above this (and a part under 5 MiB, except the last).
MAX_PARTS = 10_000
MIN_PART_MIB = 5


def transfer_config(part_size: int, concurrency: int) -> TransferConfig:
    """boto3's transfer settings for uploads of ``part_size`` parts, ``concurrency`` at once, with
    no more parts in memory than are being sent."""
    config = TransferConfig(
        multipart_threshold=part_size,
        multipart_chunksize=part_size,
        max_concurrency=concurrency,
        use_threads=concurrency > 1,
        # The classic s3transfer client: its memory is the bound above. (The CRT client, which
        # boto3 prefers when awscrt is installed, sizes its own buffers.)
        preferred_transfer_client="classic",
    )
    # A non-seekable source is read part by part, and s3transfer keeps up to 10 read parts in
    # memory whatever the concurrency (boto3's TransferConfig does not take this as an argument).
    config.max_in_memory_upload_chunks = concurrency
    return config


def upload_buffer_bytes(config: TransferConfig) -> int:
    """The most part data an upload with ``config`` holds: parts in flight plus the one waiting."""
    return int(config.multipart_chunksize) * (int(config.max_in_memory_upload_chunks) + 1)


def max_object_bytes(config: TransferConfig) -> int:
    """The largest object an upload with ``config`` can store (S3's 10,000 parts)."""
    return int(config.multipart_chunksize) * MAX_PARTS


class LimitedReader:
    """Counts bytes read (``put`` reports the size without a HEAD request), fills reads, and stops
    an upload that would need more than S3's 10,000 parts.

    s3transfer treats a short read as the end of a part, and a short *first* read as a small
    object that it then finishes with one unbounded ``read()``. Sources such as pipes return less
    than asked, which would silently truncate the object or hold the rest of it in memory, so every
    read here returns exactly ``n`` bytes unless the source is exhausted.
    """

    def __init__(self, src: ByteSource, limit: int, what: str) -> None:
        self._src = src
        self._limit = limit
        self._what = what
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        """Exactly ``n`` bytes unless the source ends first (everything when ``n`` < 0)."""
        if n is None or n < 0:
            return self._read_all()
        chunks: list[bytes] = []
        want = n
        while want > 0:
            data = self._src.read(want)
            if not data:
                break
            chunks.append(data)
            want -= len(data)
        out = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.count += len(out)
        if self.count > self._limit:  # raising here aborts the multipart upload: nothing is stored
            raise StoreError(
                f"cannot {self._what}: it is larger than {self._limit // MiB} MiB, S3's 10,000 parts "
                f"of {self._limit // MAX_PARTS // MiB} MiB",
                hint="raise the store's part_size_mib (memory: part_size_mib x (concurrency + 1) MiB)",
            )
        return out

    def _read_all(self) -> bytes:
        # Only reached after EOF once reads are filled; kept correct (in bounded pieces) regardless.
        chunks: list[bytes] = []
        while data := self.read(MiB):
            chunks.append(data)
        return b"".join(chunks)
