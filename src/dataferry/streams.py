"""Streaming building blocks: process readers that raise when the producer fails, zstd codecs,
hashing and verifying readers. Nothing here holds a whole dump in memory.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import os
import queue
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Protocol

from dataferry.environ import child_environment
from dataferry.errors import EngineError, NotReady, VerificationFailed

CHUNK = 1024 * 1024


class ByteSource(Protocol):
    """Anything with ``read(n) -> bytes``: files, process pipes, our readers, S3 bodies."""

    def read(self, n: int = -1, /) -> bytes:
        """Up to ``n`` bytes; b'' at EOF."""
        ...


class Reader:
    """Minimal binary reader base: subclasses implement ``read``; the rest makes it file-like enough."""

    def read(self, n: int = -1) -> bytes:  # pragma: no cover - abstract
        """Read up to ``n`` bytes (all when negative); b'' at EOF."""
        raise NotImplementedError

    def readable(self) -> bool:
        """Always readable."""
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:
        """Fill ``buf`` from ``read`` (used by some consumers such as zstandard)."""
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def close(self) -> None:
        """Nothing to release by default."""


class StderrTail:
    """Collects the last lines of a child's stderr in a thread (bounded memory)."""

    def __init__(self, stream: IO[bytes], lines: int = 40) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=lines)
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self._lines.append(raw.decode("utf-8", "replace").rstrip())
        stream.close()

    def text(self) -> str:
        """The collected tail, after the stream closed."""
        self._thread.join(timeout=10)
        return "\n".join(self._lines)


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: int | IO[bytes] | None = subprocess.DEVNULL,
    stdout: int | IO[bytes] | None = subprocess.PIPE,
) -> subprocess.Popen[bytes]:
    """Start a tool with a clean, explicit environment (``child_environment``: the allow-listed part
    of ours, plus ``env``); a missing binary is ``NotReady``."""
    full_env = child_environment(env)
    try:
        return subprocess.Popen(list(argv), stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=full_env)
    except FileNotFoundError:
        raise NotReady(
            f"{argv[0]} is not installed or not on PATH",
            hint="install the database client tools (see README: requirements)",
        ) from None


#: Chunks a ``Prefetcher`` reads ahead of its consumer: bounds its memory to PREFETCH * CHUNK.
PREFETCH = 8
#: Linux pipes hold 64 KiB by default; a dump tool writing into a bigger pipe stalls less often.
PIPE_BYTES = 1024 * 1024


def widen_pipe(stream: IO[bytes]) -> None:
    """Ask Linux for a 1 MiB pipe buffer (best effort: other systems and limits keep the default)."""
    setpipe = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setpipe is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(stream.fileno(), setpipe, PIPE_BYTES)


class Prefetcher(Reader):
    """Reads ``stream`` on a thread, up to ``PREFETCH`` chunks ahead of the consumer.

    A dump tool writing into a pipe stops whenever the pipe is full. Without read-ahead that
    happens every time the consumer compresses, hashes or writes a chunk, so the tool and the
    consumer take turns instead of running at once (measured: ``mariadb-dump`` took 1.9-2.1 s
    instead of 1.45 s for a 256 MB database). The thread keeps the pipe drained while the
    consumer works; memory stays bounded by the queue.
    """

    def __init__(self, stream: ByteSource) -> None:
        self._stream = stream
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=PREFETCH)
        self._stopping = threading.Event()
        self._buf = b""  # the chunk being read, from ``_pos``
        self._pos = 0
        self._eof = False
        self._thread = threading.Thread(target=self._pump, name="dataferry-prefetch", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            while not self._stopping.is_set():
                data = self._stream.read(CHUNK)
                self._put(data)
                if not data:
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(exc)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(queue.Full):
                self._queue.put(item, timeout=0.1)
                return

    def _next(self) -> bytes:
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._eof = True
            raise item
        if not item:
            self._eof = True
        return item

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (everything when negative); fewer only at EOF.

        A chunk is handed on as it is when the read takes all of it, and otherwise read from an
        offset, so each byte is copied once at most: re-slicing the rest of a 1 MiB chunk at every
        read copied four bytes for each byte of a MariaDB dump once a 64 KiB read had shifted the
        reads off the chunks (1.6 s of a 1 GB backup's CPU).
        """
        want = None if n is None or n < 0 else n
        parts: list[bytes | memoryview] = []
        have = 0
        while want is None or have < want:
            if self._pos >= len(self._buf):
                if self._eof:
                    break
                self._buf, self._pos = self._next(), 0
                continue
            part = self._take(len(self._buf) if want is None else want - have)
            parts.append(part)
            have += len(part)
        if len(parts) == 1:
            return parts[0] if isinstance(parts[0], bytes) else bytes(parts[0])
        return b"".join(parts)

    def _take(self, most: int) -> bytes | memoryview:
        """Up to ``most`` bytes of the current chunk: the chunk itself when all of it is taken."""
        buf, start = self._buf, self._pos
        self._pos = end = min(len(buf), start + most)
        return buf if start == 0 and end == len(buf) else memoryview(buf)[start:end]

    def close(self) -> None:
        """Stop reading ahead and close the stream."""
        self._stopping.set()
        # No timeout: the stream must not be closed under a read still running on the thread.
        # ProcessReader kills its tool first, so that read ends at once (EOF on the pipe); a
        # source that can stall for ever (a store) is why restores do not read ahead.
        self._thread.join()
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


class ProcessReader(Reader):
    """Reads a child's stdout; at EOF waits for it and raises ``EngineError`` if it failed.

    This puts the failure *inside* the consumer's read loop, so a store upload fed by a failed
    dump is aborted rather than completed with a truncated object.
    """

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, what: str = "") -> None:
        self.argv = list(argv)
        self.what = what or os.path.basename(self.argv[0])
        self._proc = spawn(argv, env=env)
        assert self._proc.stdout is not None and self._proc.stderr is not None
        widen_pipe(self._proc.stdout)
        self._out = Prefetcher(self._proc.stdout)
        self._err = StderrTail(self._proc.stderr)
        self._done = False
        self._failure: EngineError | None = None

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._proc.pid

    def read(self, n: int = -1) -> bytes:
        """Read from the child; at EOF check its exit status.

        A failure is raised again on every later read: a consumer that catches it and reads on
        must never mistake the end of a failed dump for a clean EOF.
        """
        if self._failure is not None:
            raise self._failure
        read_all = n is None or n < 0
        data = self._out.read(-1 if read_all else n) if n else b""
        if read_all or (n != 0 and not data):
            self._finish()  # read(-1) has reached EOF even when it returned data
        return data

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        code = self._proc.wait()
        if code != 0:
            self._failure = process_failed(self.what, self.argv, code, self._err.text())
            raise self._failure

    def close(self) -> None:
        """Stop the child if it is still running (the consumer gave up) and reap it."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._out.close()
        self._done = True


def process_failed(what: str, argv: Sequence[str], code: int, stderr: str) -> EngineError:
    """The error for a tool that exited non-zero, with a short stderr tail and no secrets."""
    tail = "\n".join(stderr.strip().splitlines()[-8:])
    detail = f": {tail}" if tail else ""
    reason = f"killed by signal {-code}" if code < 0 else f"exit {code}"
    return EngineError(
        f"{what} failed ({reason}){detail}",
        argv=list(argv),
        returncode=code,
        stderr_tail=tail,
        hint="the message above is the tool's own; fix its cause and re-run",
    )


class CountingReader(Reader):
    """Passes bytes through while counting them (``size``)."""

    def __init__(self, src: ByteSource) -> None:
        self._src = src
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        """Read and count."""
        data = self._src.read(n)
        self.size += len(data)
        return data


class HashingReader(CountingReader):
    """Passes bytes through while computing sha256 and counting them."""

    def __init__(self, src: ByteSource) -> None:
        super().__init__(src)
        self._sha = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        """Read and account."""
        data = super().read(n)
        self._sha.update(data)
        return data

    @property
    def sha256(self) -> str:
        """Hex digest of everything read so far."""
        return self._sha.hexdigest()


class VerifyingReader(HashingReader):
    """Raises ``VerificationFailed`` at EOF (or earlier, on overrun) if size or sha256 differ."""

    def __init__(self, src: ByteSource, *, size: int, sha256: str, name: str) -> None:
        super().__init__(src)
        self.expected_size = size
        self.expected_sha256 = sha256
        self.name = name
        self.verified = False

    def read(self, n: int = -1) -> bytes:
        """Read, and verify when the source is exhausted."""
        data = super().read(n)
        if self.size > self.expected_size:
            raise self._mismatch(f"longer than the {self.expected_size} bytes in its manifest")
        if not data and n != 0:
            self._verify()
        return data

    def drain(self) -> None:
        """Read whatever the consumer left unread, then verify; call before trusting the data."""
        while self.read(CHUNK):
            pass
        self._verify()

    def _verify(self) -> None:
        if self.verified:
            return
        if self.size != self.expected_size:
            raise self._mismatch(f"{self.size} bytes, manifest says {self.expected_size}")
        if self.sha256 != self.expected_sha256:
            raise self._mismatch("sha256 differs from its manifest")
        self.verified = True

    def _mismatch(self, what: str) -> VerificationFailed:
        return VerificationFailed(
            f"object {self.name} is corrupt or truncated: {what}",
            hint="the artifact was refused and nothing was changed; restore an older artifact "
            "with --artifact KEY, or take a new backup",
        )


class ProgressReader(Reader):
    """Calls ``on_bytes(n)`` for every chunk read (progress bars, metrics), and ``on_end()`` once
    at the end of the data (what follows, such as a database building indexes, is another phase)."""

    def __init__(
        self, src: ByteSource, on_bytes: Callable[[int], None], on_end: Callable[[], None] | None = None
    ) -> None:
        self._src = src
        self._on_bytes = on_bytes
        self._on_end = on_end

    def read(self, n: int = -1) -> bytes:
        """Read and report."""
        data = self._src.read(n)
        if data:
            self._on_bytes(len(data))
        elif n != 0 and self._on_end is not None:
            on_end, self._on_end = self._on_end, None
            on_end()
        return data


def copy_to_file(src: ByteSource, dst: IO[bytes]) -> int:
    """Copy until EOF like ``copy_stream``, writing on a second thread while this one reads.

    For spooling to a local file: reading (hash and decompress) and writing then overlap instead
    of taking turns, as ``zstd -d`` does with its own I/O threads. Measured on an 880 MB spool:
    1.4-2.1 s in one thread, against 1.0-1.5 s for ``zstd -d``. Only local files: a write always
    finishes, so the writer can be waited for when the copy stops early (unlike a read from a
    store, which may stall). A write error is raised here; the queue bounds memory to a few chunks.
    """
    pending: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
    failed: list[BaseException] = []

    def write() -> None:
        while (chunk := pending.get()) is not None:
            if not failed:
                try:
                    dst.write(chunk)
                except BaseException as exc:  # handed to the reading thread
                    failed.append(exc)

    writer = threading.Thread(target=write, name="dataferry-spool-writer", daemon=True)
    writer.start()
    total = 0
    try:
        while not failed and (chunk := src.read(CHUNK)):
            pending.put(chunk)
            total += len(chunk)
    finally:
        pending.put(None)  # also after a failure here: the writer ends, nothing is left half-written
        writer.join()
    if failed:
        raise failed[0]
    return total


def copy_stream(src: ByteSource, dst: IO[bytes]) -> int:
    """Copy until EOF in fixed chunks; returns the byte count."""
    total = 0
    while chunk := src.read(CHUNK):
        dst.write(chunk)
        total += len(chunk)
    return total
