"""The settings that bound dataferry's own memory (issue 15): S3 parts, zstd jobs, glibc's heap.

What these settings cost was measured (bench/s3/memory.py, bench/README.md "Memory"); the tests
here pin the settings, so a change that would raise the bound has to change a test too. The
measured bound itself is pinned out of process in tests/integration/test_memory_bound.py.
"""

from __future__ import annotations

import io
import platform

import pytest
import zstandard

from dataferry import codecs, heap
from dataferry.config import S3Options
from dataferry.errors import StoreError
from dataferry.stores.s3 import S3Store
from dataferry.stores.s3parts import (
    CONCURRENCY,
    MAX_PARTS,
    PART_SIZE_MIB,
    LimitedReader,
    max_object_bytes,
    transfer_config,
    upload_buffer_bytes,
)

MiB = 1024 * 1024
#: What the default upload may hold in part data: the rest of the 150 MiB is the interpreter with
#: its imports and S3 client (about 92 MiB), zstd (17 MiB) and the dump's read-ahead (8 MiB).
UPLOAD_BUDGET = 32 * MiB


def test_default_upload_holds_at_most_its_budget() -> None:
    """Part size x (parts in flight + 1) of the defaults stays within the budget."""
    store = S3Store.from_url("s3://bucket", {"region": "x"})
    config = store._transfer
    assert upload_buffer_bytes(config) <= UPLOAD_BUDGET
    assert config.multipart_chunksize == PART_SIZE_MIB * MiB
    assert config.max_request_concurrency == CONCURRENCY
    # s3transfer would otherwise keep 10 parts read ahead of the upload, whatever the concurrency.
    assert config.max_in_memory_upload_chunks == CONCURRENCY


def test_configured_defaults_are_the_stores() -> None:
    """The configuration's defaults are the measured ones (they live in two layers)."""
    options = S3Options()
    assert options.part_size_mib == PART_SIZE_MIB
    assert options.concurrency == CONCURRENCY


@pytest.mark.parametrize(("part_mib", "concurrency"), [(5, 1), (8, 3), (16, 2), (64, 8)])
def test_upload_memory_follows_part_size_and_concurrency(part_mib: int, concurrency: int) -> None:
    """The documented formula holds for any setting, and the classic client (whose bound it is)
    is used even where awscrt is installed."""
    config = transfer_config(part_mib * MiB, concurrency)
    assert upload_buffer_bytes(config) == part_mib * MiB * (concurrency + 1)
    assert config.max_in_memory_upload_chunks == concurrency
    assert config.preferred_transfer_client == "classic"
    assert max_object_bytes(config) == part_mib * MiB * MAX_PARTS


class _Dribble:
    """A source that returns at most 1000 bytes a read, ``size`` in all."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, n: int = -1) -> bytes:
        size = min(self.left, 1000, n if n >= 0 else 1000)
        self.left -= size
        return b"x" * size


def test_limited_reader_fills_reads_and_counts() -> None:
    """Short reads are filled (s3transfer takes a short read for the last part)."""
    reader = LimitedReader(_Dribble(5000), limit=10_000, what="upload k")
    assert len(reader.read(3000)) == 3000
    assert len(reader.read(3000)) == 2000
    assert reader.read(3000) == b""
    assert reader.count == 5000


def test_upload_past_s3s_part_limit_stops_with_advice() -> None:
    """An object larger than 10,000 parts is stopped at the first byte over, not refused by S3
    after hours of uploading (and the error aborts the multipart upload)."""
    reader = LimitedReader(_Dribble(5000), limit=4000, what="upload k")
    assert len(reader.read(4000)) == 4000
    with pytest.raises(StoreError, match="10,000 parts") as excinfo:
        reader.read(4000)
    assert "part_size_mib" in (excinfo.value.hint or "")


def test_zstd_jobs_are_small_and_the_stream_still_reads_back() -> None:
    """The compressor works in ZSTD_JOB_SIZE jobs (not zstd's 8 MiB default, 52 MiB of RSS with two
    workers); the result is one ordinary frame with a checksum and a 2 MiB window."""
    job = codecs.ZSTD_JOB_SIZE
    assert job == 2 * MiB
    data = b"".join(b"row %d of a table with some text in it\n" % i for i in range(200_000))
    compressed = codecs.zstd_compress(io.BytesIO(data), level=3).read()
    params = zstandard.get_frame_parameters(compressed)
    assert params.has_checksum
    assert params.window_size <= 2 * MiB  # what a restore's decompressor must hold
    assert codecs.zstd_decompress(io.BytesIO(compressed)).read() == data


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_large_buffers_are_returned_to_the_system_on_glibc() -> None:
    """The mmap threshold is fixed (freed parts are unmapped, not kept on a fragmenting heap)."""
    assert heap.release_large_buffers() is True
    threshold = heap.MMAP_THRESHOLD
    assert threshold <= 5 * MiB  # below the smallest S3 part


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_memory_goes_back_between_a_jobs_steps() -> None:
    """glibc's malloc_trim is found and called: 64 MiB of 1 MiB blocks (under the fixed mmap
    threshold, so on a heap) allocated by a worker thread, as a restore's workers do, and freed, no
    longer count in the process's resident set after ``return_freed``."""
    import re
    import threading
    from pathlib import Path

    def rss_kib() -> int:
        m = re.search(r"VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text())
        assert m
        return int(m.group(1))

    assert heap.release_large_buffers() is True
    assert heap._malloc_trim() is not None
    held: list[int] = []

    def work() -> None:
        blocks = [bytearray(b"x" * (1024 * 1024)) for _ in range(64)]
        held.append(rss_kib())
        del blocks

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    heap.return_freed()
    assert rss_kib() < held[0] - 32 * 1024


def test_every_s3_store_of_a_process_shares_one_copy_of_the_s3_model() -> None:
    """Each store has its own session (credentials, profile), but botocore's parsed service model
    is loaded once per process: a job reading one S3 store and writing another held two copies
    (12 MiB each). Measured in a fresh process: the second and third stores' clients add at most
    3 MiB together."""
    import subprocess
    import sys

    script = """
import re
from pathlib import Path
from dataferry.stores.s3 import S3Store

def rss():
    return int(re.search(r"VmRSS:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))

opts = {"region": "eu-west-2", "endpoint_url": "http://127.0.0.1:9"}
stores = [S3Store.from_url("s3://first/a", opts)]
one = rss()
stores += [S3Store.from_url("s3://second/b", opts), S3Store.from_url("s3://third/c", opts)]
assert stores[0]._client._loader is stores[2]._client._loader
print(rss() - one)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert int(out.stdout) <= 3 * 1024, f"two more S3 stores took {int(out.stdout) // 1024} MiB"
