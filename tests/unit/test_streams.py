"""Streams: process readers that fail loudly, hashing and verifying readers, zstd codecs.

Child processes are real (``sh``, ``head``): the point is how their exit status and stderr reach
the consumer of their stdout.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import sys
import time
from pathlib import Path

import pytest
import zstandard

from dataferry.codecs import zstd_compress, zstd_decompress
from dataferry.errors import EngineError, NotReady, VerificationFailed
from dataferry.streams import (
    CHUNK,
    PREFETCH,
    HashingReader,
    Prefetcher,
    ProcessReader,
    ProgressReader,
    VerifyingReader,
    copy_stream,
    copy_to_file,
)


def drain(reader: ProcessReader | VerifyingReader | io.RawIOBase, size: int = CHUNK) -> bytes:
    """Read everything in chunks."""
    out = bytearray()
    while chunk := reader.read(size):
        out += chunk
    return bytes(out)


# -- ProcessReader -------------------------------------------------------------------------------


def test_successful_child_streams_everything() -> None:
    """All of stdout arrives and EOF is clean."""
    reader = ProcessReader(["sh", "-c", "head -c 3000000 /dev/zero; echo done >&2"], what="producer")
    data = drain(reader, 65536)
    assert len(data) == 3_000_000
    assert reader.read(10) == b""  # EOF stays EOF


def test_failing_child_raises_at_eof_with_its_stderr() -> None:
    """Output first, then the failure: exit code and the tail of stderr in the error."""
    reader = ProcessReader(
        ["sh", "-c", "echo hi; echo 'pg_dump: error: connection refused' >&2; exit 3"], what="pg_dump"
    )
    assert reader.read(3) == b"hi\n"
    with pytest.raises(EngineError) as excinfo:
        reader.read(3)
    err = excinfo.value
    assert err.returncode == 3
    assert "pg_dump failed (exit 3)" in err.message
    assert "connection refused" in err.message
    assert "connection refused" in err.stderr_tail
    assert err.exit_code == 1


def test_failure_is_raised_again_on_every_later_read() -> None:
    """A consumer that catches the error and reads on must not see a clean EOF."""
    reader = ProcessReader(["sh", "-c", "echo partial; exit 2"])
    assert drain_until_error(reader) == b"partial\n"
    for _ in range(2):
        with pytest.raises(EngineError, match="exit 2"):
            reader.read(CHUNK)


def drain_until_error(reader: ProcessReader) -> bytes:
    """Read until the reader raises; return what came before."""
    out = bytearray()
    with pytest.raises(EngineError):
        while chunk := reader.read(CHUNK):
            out += chunk
    return bytes(out)


def test_read_all_also_checks_the_exit_status() -> None:
    """read() with no size reads to EOF and still raises for a failed child."""
    with pytest.raises(EngineError, match="exit 4"):
        ProcessReader(["sh", "-c", "echo x; exit 4"]).read()


def test_killed_child_is_reported_as_killed() -> None:
    """A child killed by a signal (OOM killer, operator) says so."""
    reader = ProcessReader(["sh", "-c", "echo before; kill -9 $$"], what="mariadb-dump")
    with pytest.raises(EngineError, match=r"mariadb-dump failed \(killed by signal 9\)"):
        drain(reader)


def test_stderr_tail_is_bounded() -> None:
    """A chatty child's stderr is kept to its last lines, not held whole."""
    script = 'i=0; while [ $i -lt 2000 ]; do echo "warning $i" >&2; i=$((i+1)); done; exit 1'
    with pytest.raises(EngineError) as excinfo:
        drain(ProcessReader(["sh", "-c", script]))
    lines = excinfo.value.stderr_tail.splitlines()
    assert lines[-1] == "warning 1999"
    assert len(lines) <= 8
    assert "warning 0\n" not in excinfo.value.message


def test_missing_tool_is_not_ready() -> None:
    """A tool that is not installed is NotReady (exit 3) with a hint, not FileNotFoundError."""
    with pytest.raises(NotReady) as excinfo:
        ProcessReader(["dataferry-no-such-tool-xyz", "--version"])
    assert excinfo.value.exit_code == 3
    assert "dataferry-no-such-tool-xyz" in excinfo.value.message
    assert excinfo.value.hint


def test_secrets_travel_by_environment_not_argv() -> None:
    """env= reaches the child; nothing secret needs to be on the command line."""
    reader = ProcessReader(
        ["sh", "-c", 'printf %s "$FERRY_TEST_SECRET"'], env={"FERRY_TEST_SECRET": "s3cr3t"}
    )
    assert drain(reader) == b"s3cr3t"
    assert all("s3cr3t" not in arg for arg in reader.argv)


def test_close_stops_a_running_child() -> None:
    """A consumer that gives up (a failed upload) must not leave the dump running."""
    reader = ProcessReader(["sh", "-c", "exec yes"])
    assert reader.read(1000)
    started = time.monotonic()
    reader.close()
    assert time.monotonic() - started < 5
    with pytest.raises(ProcessLookupError):
        os.kill(reader.pid, 0)


# -- hashing and verifying -----------------------------------------------------------------------

DATA = random.Random(5).randbytes(3 * CHUNK + 12345)
SHA = hashlib.sha256(DATA).hexdigest()


def test_hashing_reader_counts_and_hashes() -> None:
    """sha256 and size of exactly what passed through."""
    reader = HashingReader(io.BytesIO(DATA))
    assert drain(reader, 4096) == DATA  # type: ignore[arg-type]
    assert reader.size == len(DATA)
    assert reader.sha256 == SHA


def test_verifying_reader_accepts_the_right_bytes() -> None:
    """Matching size and sha256: every byte passes, then verified."""
    reader = VerifyingReader(io.BytesIO(DATA), size=len(DATA), sha256=SHA, name="db/x")
    assert drain(reader) == DATA
    assert reader.verified


@pytest.mark.parametrize("damage", ["flip", "truncate", "extend", "swap"])
def test_verifying_reader_detects_damage(damage: str) -> None:
    """A flipped byte, truncation, extra bytes or reordered chunks: VerificationFailed naming the object."""
    data = bytearray(DATA)
    if damage == "flip":
        data[len(data) // 3] ^= 0x80
    elif damage == "truncate":
        del data[-1000:]
    elif damage == "extend":
        data += b"\n"
    else:
        data = data[CHUNK:] + data[:CHUNK]
    reader = VerifyingReader(io.BytesIO(bytes(data)), size=len(DATA), sha256=SHA, name="db/x.sql.zst")
    with pytest.raises(VerificationFailed) as excinfo:
        drain(reader)
    assert "db/x.sql.zst" in excinfo.value.message
    assert excinfo.value.exit_code == 7
    assert not reader.verified


def test_extension_is_caught_as_soon_as_it_overruns() -> None:
    """More bytes than the manifest says fail at the overrun, before the consumer sees them all."""
    reader = VerifyingReader(io.BytesIO(DATA + b"x" * CHUNK), size=len(DATA), sha256=SHA, name="o")
    with pytest.raises(VerificationFailed, match="longer than"):
        drain(reader)


def test_drain_verifies_what_the_consumer_left_unread() -> None:
    """A consumer that stops early (a tool that ignores trailing bytes) cannot skip verification."""
    damaged = DATA[:-1] + bytes([DATA[-1] ^ 1])
    reader = VerifyingReader(io.BytesIO(damaged), size=len(DATA), sha256=SHA, name="o")
    reader.read(100)
    with pytest.raises(VerificationFailed):
        reader.drain()
    intact = VerifyingReader(io.BytesIO(DATA), size=len(DATA), sha256=SHA, name="o")
    intact.read(100)
    intact.drain()
    assert intact.verified


def test_zero_length_read_is_not_eof() -> None:
    """read(0) returns nothing and does not trigger the end-of-stream check."""
    reader = VerifyingReader(io.BytesIO(DATA), size=len(DATA), sha256=SHA, name="o")
    assert reader.read(0) == b""
    assert not reader.verified
    assert drain(reader) == DATA


def test_progress_reader_reports_every_byte() -> None:
    """The callback sees exactly the bytes read."""
    seen: list[int] = []
    reader = ProgressReader(io.BytesIO(DATA), seen.append)
    out = io.BytesIO()
    assert copy_stream(reader, out) == len(DATA)
    assert sum(seen) == len(DATA)
    assert out.getvalue() == DATA


def test_progress_reader_says_once_when_the_data_ended() -> None:
    """``on_end`` runs once, at the first empty read (not at ``read(0)``), so a restore can say its
    next phase instead of sitting at 100%."""
    ends: list[int] = []
    reader = ProgressReader(io.BytesIO(DATA), lambda n: None, on_end=lambda: ends.append(1))
    assert reader.read(0) == b"" and ends == []
    drain(reader)
    assert reader.read(10) == b"" and ends == [1]


# -- zstd ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"x", DATA, b"abc" * 2_000_000],
    ids=["empty", "one-byte", "random", "compressible"],
)
def test_zstd_round_trip(data: bytes) -> None:
    """Compress then decompress, streaming in odd-sized reads, gives the same bytes."""
    compressed = drain(zstd_compress(io.BytesIO(data), level=3), 77_777)  # type: ignore[arg-type]
    assert drain(zstd_decompress(io.BytesIO(compressed)), 65_536) == data  # type: ignore[arg-type]
    if len(data) > 1_000_000 and data[:3] * 10 == data[:30]:
        assert len(compressed) < len(data) / 100


def test_zstd_decompresses_concatenated_frames() -> None:
    """Several frames back to back (appended or parallel dumps) decompress as one stream."""
    frames = zstandard.ZstdCompressor().compress(b"first,") + zstandard.ZstdCompressor().compress(b"second")
    assert drain(zstd_decompress(io.BytesIO(frames))) == b"first,second"  # type: ignore[arg-type]


def test_zstd_compress_passes_a_source_failure_through() -> None:
    """A dump failing under the compressor reaches the uploader as the dump's own error."""
    source = ProcessReader(["sh", "-c", "head -c 200000 /dev/urandom; exit 5"], what="pg_dump")
    with pytest.raises(EngineError, match="pg_dump failed"):
        drain(zstd_compress(source))  # type: ignore[arg-type]


@pytest.mark.parametrize("damage", ["garbage", "flip"])
def test_corrupt_zstd_is_a_verification_failure(damage: str) -> None:
    """Garbage or a flipped byte inside a frame: VerificationFailed, never a bare ZstdError."""
    compressed = bytearray(drain(zstd_compress(io.BytesIO(DATA))))  # type: ignore[arg-type]
    if damage == "garbage":
        compressed = bytearray(random.Random(1).randbytes(len(compressed)))
    else:
        compressed[len(compressed) // 2] ^= 0x01
    with pytest.raises(VerificationFailed) as excinfo:
        drain(zstd_decompress(io.BytesIO(bytes(compressed))))  # type: ignore[arg-type]
    assert excinfo.value.exit_code == 7
    assert excinfo.value.hint


def test_truncated_zstd_is_caught_by_the_checksum_beneath_it() -> None:
    """A stream cut short decompresses to less, silently; the VerifyingReader under it (as in a
    restore) refuses it before anything could be swapped in."""
    compressed = drain(zstd_compress(io.BytesIO(DATA)))  # type: ignore[arg-type]
    sha = hashlib.sha256(compressed).hexdigest()
    cut = io.BytesIO(compressed[: len(compressed) // 2])
    verifying = VerifyingReader(cut, size=len(compressed), sha256=sha, name="db/x.zst")
    with pytest.raises(VerificationFailed, match=r"db/x\.zst"):
        drain(zstd_decompress(verifying))  # type: ignore[arg-type]


# -- reading ahead -----------------------------------------------------------------------------------


class _Chunks:
    """A source returning the given pieces one per read, then b'' (or raising ``fail``)."""

    def __init__(self, pieces: list[bytes], fail: Exception | None = None) -> None:
        self.pieces = list(pieces)
        self.fail = fail
        self.reads = 0
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        self.reads += 1
        if self.pieces:
            return self.pieces.pop(0)
        if self.fail is not None:
            raise self.fail
        return b""

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("size", [1, 5, 7, 1 << 20, -1])
def test_prefetcher_returns_the_same_bytes_whatever_the_read_size(size: int) -> None:
    pieces = [bytes([i]) * (i * 3 + 1) for i in range(20)]
    ahead = Prefetcher(_Chunks(pieces))
    out = bytearray()
    while data := ahead.read(size):
        assert size < 0 or len(data) <= size
        out += data
    assert bytes(out) == b"".join(pieces)
    assert ahead.read(10) == b""  # EOF stays EOF


@pytest.mark.parametrize("size", [1, 5, 64, 1000])
def test_prefetcher_reads_are_full_until_the_end_and_whole_chunks_are_not_copied(size: int) -> None:
    pieces = [bytes([i]) * (i * 37 + 1) for i in range(30)]
    ahead = Prefetcher(_Chunks(pieces))
    lengths = []
    while data := ahead.read(size):
        lengths.append(len(data))
    total = sum(len(p) for p in pieces)
    assert lengths == [size] * (total // size) + ([total % size] if total % size else [])
    same = Prefetcher(_Chunks([b"a" * 100, b"b" * 100]))
    first = same.read(100)
    assert first == b"a" * 100 and same.read(30) == b"b" * 30 and same.read(100) == b"b" * 70
    whole = [b"c" * 50]
    assert Prefetcher(_Chunks(whole)).read(50) is whole[0]  # handed on as it is


def test_prefetcher_raises_a_source_failure_in_the_consumer_after_the_bytes_before_it() -> None:
    ahead = Prefetcher(_Chunks([b"abc", b"def"], fail=VerificationFailed("corrupt")))
    assert ahead.read(6) == b"abcdef"
    with pytest.raises(VerificationFailed, match="corrupt"):
        ahead.read(6)


def test_prefetcher_reads_a_bounded_distance_ahead_and_stops_on_close() -> None:
    source = _Chunks([b"x" * 10] * 1000)
    ahead = Prefetcher(source)
    assert ahead.read(10) == b"x" * 10
    time.sleep(0.2)  # let it run ahead as far as it may
    assert source.reads <= 1 + PREFETCH + 1  # the queue, plus one read held while waiting
    ahead.close()
    reads = source.reads
    time.sleep(0.1)
    assert source.reads == reads and source.closed  # nothing reads behind the caller's back


def test_process_reader_reads_ahead_of_a_slow_consumer() -> None:
    """The tool does not wait for the consumer: it finishes while the consumer has read little."""
    reader = ProcessReader([sys.executable, "-c", "import sys; sys.stdout.buffer.write(b'y' * 3_000_000)"])
    first = reader.read(1000)
    deadline = time.monotonic() + 10
    while reader._proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert reader._proc.poll() == 0, "the tool was blocked on a full pipe"
    rest = b""
    while data := reader.read(1 << 16):
        rest += data
    assert len(first) + len(rest) == 3_000_000


# -- spooling on a writer thread -----------------------------------------------------------------------


def test_copy_to_file_writes_every_byte_in_order(tmp_path: Path) -> None:
    pieces = [bytes([i % 251]) * (1000 + i) for i in range(300)]
    with (tmp_path / "spool").open("wb") as out:
        assert copy_to_file(_Chunks(pieces), out) == sum(map(len, pieces))
    assert (tmp_path / "spool").read_bytes() == b"".join(pieces)


def test_copy_to_file_raises_a_write_error_and_stops_reading() -> None:
    class Full(io.BytesIO):
        def write(self, data: object) -> int:
            raise OSError(28, "No space left on device")

    source = _Chunks([b"x" * 10] * 10_000)
    with pytest.raises(OSError, match="No space left"):
        copy_to_file(source, Full())
    assert source.reads < 10_000  # it did not read the whole source first


def test_copy_to_file_raises_a_source_error_after_writing_what_came_before() -> None:
    out = io.BytesIO()
    with pytest.raises(VerificationFailed):
        copy_to_file(_Chunks([b"abc", b"def"], fail=VerificationFailed("corrupt")), out)
    assert out.getvalue() == b"abcdef"
