"""The parallel artifact format, ``pg_directory``: the backup side.

``pg_dump --format=directory --jobs N`` writes one file per table's data (``<dump id>.dat``), then
the table of contents (``toc.dat``; large objects add ``blobs.toc`` and ``blob_<oid>.dat``). Each
table's file is handed on (compressed, checksummed and stored by the pipeline) while pg_dump writes
it, read as it grows, until pg_dump's leader says it is done (``--verbose``: ``finished item <id>
TABLE DATA ...``), so dumping and storing overlap as in a single stream; files that other workers
finished meanwhile follow. A file is deleted once stored, so the local disk holds only what is
dumped and not stored yet. The table of contents comes last, after pg_dump succeeded.
The dump runs in the snapshot the row counter holds open, as the single-stream dump does.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, BinaryIO, cast

from dataferry.engines import ObjectDump
from dataferry.engines.postgresql.backup import PgRowCounter
from dataferry.private import private_dir
from dataferry.streams import CHUNK, Reader, process_failed, spawn

TOC = "toc.dat"
#: pg_dump's leader, in parallel mode, after a worker finished a table's data file.
_FINISHED = re.compile(r"^pg_dump: finished item (\d+) TABLE DATA ")
#: Lines of pg_dump's stderr kept for an error message (its errors come last).
_TAIL_LINES = 40
#: A table's data file (``<dump id>.dat``; large objects are ``blob_<oid>.dat``).
_TABLE_FILE = re.compile(r"^\d+\.dat$")
#: How long to wait for pg_dump to write more (it writes megabytes between two polls).
_POLL = 0.01


def message_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with pg_dump's messages in English: the leader's progress lines are parsed."""
    return {**env, "LC_MESSAGES": "C", "LANGUAGE": "C"}


class _Progress:
    """Reads pg_dump's stderr on a thread: which tables' files are finished, and a tail of the rest."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._finished: set[str] = set()
        self._lock = threading.Lock()
        self.ended = threading.Event()  # pg_dump closed its stderr: it exited
        self._tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self._thread = threading.Thread(
            target=self._pump, args=(stream,), name="dataferry-pg-dump", daemon=True
        )
        self._thread.start()

    def _pump(self, stream: IO[bytes]) -> None:
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip()
                m = _FINISHED.match(line)
                if m:
                    with self._lock:
                        self._finished.add(f"{m.group(1)}.dat")
                else:
                    self._tail.append(line)
        finally:
            stream.close()
            self.ended.set()

    def done(self, name: str) -> bool:
        """pg_dump finished ``name`` (or exited: nothing more will be written)."""
        with self._lock:
            return name in self._finished or self.ended.is_set()

    def tail(self) -> str:
        """The last lines pg_dump wrote that were not progress (its errors, where there are some)."""
        self._thread.join(timeout=10)
        errors = [line for line in self._tail if "pg_dump: error" in line or "detail" in line]
        return "\n".join(errors or self._tail)


class _Growing(Reader):
    """A table's file that pg_dump may still be writing: at its current end, a read waits for
    more until ``finished()`` says pg_dump is done with it. So a large table is compressed and
    stored while it is dumped, as a single-stream dump is, instead of after."""

    def __init__(self, f: BinaryIO, finished: Callable[[], bool]) -> None:
        self._f = f
        self._finished = finished

    def read(self, n: int = -1) -> bytes:
        """The next bytes; empty only once the file is finished and read to its end."""
        while True:
            finished = self._finished()  # before the read: then it read the last bytes
            data = self._f.read(n if n > 0 else CHUNK)
            if data or finished:
                return data
            time.sleep(_POLL)


@contextlib.contextmanager
def directory_dump(
    argv: Sequence[str], env: dict[str, str], counter: PgRowCounter, spool: Path | None, serial: bool = False
) -> Iterator[ObjectDump]:
    """Run ``argv`` (pg_dump ``--format=directory --jobs N --verbose``, without ``--file``) into a
    private run directory under ``spool``; the ``ObjectDump`` hands each file on when it is done."""
    with private_dir(spool) as directory:
        out = directory / "dump"
        full = [*argv, f"--file={out}"]
        proc = spawn(full, env=message_env(env), stdout=subprocess.DEVNULL)
        assert proc.stderr is not None
        progress = _Progress(proc.stderr)
        dump = ObjectDump(files=iter(()))
        dump.files = _files(proc, full, progress, out, counter, dump, serial)
        try:
            yield dump
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            counter.stop()


def _files(
    proc: subprocess.Popen[bytes],
    argv: Sequence[str],
    progress: _Progress,
    out: Path,
    counter: PgRowCounter,
    dump: ObjectDump,
    serial: bool,
) -> Iterator[tuple[str, BinaryIO]]:
    handed: set[str] = set()
    while (name := _next_table(out, handed, progress)) is not None:
        handed.add(name)
        yield from _hand_on(out / name, _finished(out, name, progress, serial))
    code = proc.wait()
    if code != 0:
        error = process_failed("pg_dump", argv, code, progress.tail())
        if "No space left" in error.stderr_tail or "Disk quota" in error.stderr_tail:
            error.hint = (
                f"the disk under {out.parent.parent} filled up with tables not yet stored; nothing was "
                "published: set settings.spool_dir to a larger disk (it holds about the largest tables)"
            )
        raise error
    dump.row_counts.update(counter.result())
    # Large objects, and anything else pg_dump wrote, then the table of contents last.
    rest = sorted(p.name for p in out.iterdir() if p.name not in handed and p.name != TOC)
    for name in [*rest, TOC]:
        yield from _hand_on(out / name, None)


def _next_table(out: Path, handed: set[str], progress: _Progress) -> str | None:
    """The next table file to store: a finished one first (quick), else the one pg_dump started
    first (read as it grows); None once pg_dump has exited and every table file was handed on."""
    while True:
        ended = progress.ended.is_set()  # before listing: then the listing is complete
        try:
            found = sorted(n for n in os.listdir(out) if _TABLE_FILE.match(n) and n not in handed)
        except FileNotFoundError:
            found = []  # pg_dump has not created its directory yet
        if found:
            finished = [n for n in found if progress.done(n)]
            return finished[0] if finished else min(found, key=lambda n: os.stat(out / n).st_mtime_ns)
        if ended:
            return None
        time.sleep(_POLL)


def _finished(out: Path, name: str, progress: _Progress, serial: bool) -> Callable[[], bool]:
    """When pg_dump is done with the table file ``name``: its leader said so (``--jobs`` 2 or more),
    or, dumping serially (one file open at a time), the next table's file exists; or pg_dump exited."""

    def finished() -> bool:
        if progress.done(name):
            return True
        return serial and any(_TABLE_FILE.match(n) and n != name for n in os.listdir(out))

    return finished


def _hand_on(path: Path, finished: Callable[[], bool] | None) -> Iterator[tuple[str, BinaryIO]]:
    with open(path, "rb") as f:
        yield path.name, (cast(BinaryIO, _Growing(f, finished)) if finished else f)
    os.unlink(path)  # stored: its disk space is free for the tables still being dumped
