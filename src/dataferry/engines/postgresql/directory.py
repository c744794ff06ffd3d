"""The parallel artifact format, ``pg_directory``: the backup side.

``pg_dump --format=directory --jobs N`` writes one file per table's data (``<dump id>.dat``), then
the table of contents (``toc.dat``; large objects add ``blobs.toc`` and ``blob_<oid>.dat``). Its
leader says when each table is done (``--verbose``: ``finished item <id> TABLE DATA ...``), so every
file is handed on (compressed, checksummed and stored by the pipeline) as soon as it is complete,
while the workers dump the next tables; a file is deleted once handed on, so the local disk holds
only what is dumped and not yet stored. The table of contents comes last, after pg_dump succeeded.
The dump runs in the snapshot the row counter holds open, as the single-stream dump does.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import subprocess
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, BinaryIO

from dataferry.engines import ObjectDump
from dataferry.engines.postgresql.backup import PgRowCounter
from dataferry.private import private_dir
from dataferry.streams import process_failed, spawn

TOC = "toc.dat"
#: pg_dump's leader, in parallel mode, after a worker finished a table's data file.
_FINISHED = re.compile(r"^pg_dump: finished item (\d+) TABLE DATA ")
#: Lines of pg_dump's stderr kept for an error message (its errors come last).
_TAIL_LINES = 40


def message_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with pg_dump's messages in English: the leader's progress lines are parsed."""
    return {**env, "LC_MESSAGES": "C", "LANGUAGE": "C"}


class _Progress:
    """Reads pg_dump's stderr on a thread: finished tables go to a queue, the rest to a tail."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.finished: queue.Queue[str | None] = queue.Queue()
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
                    self.finished.put(f"{m.group(1)}.dat")
                else:
                    self._tail.append(line)
        finally:
            stream.close()
            self.finished.put(None)

    def tail(self) -> str:
        """The last lines pg_dump wrote that were not progress."""
        self._thread.join(timeout=10)
        return "\n".join(
            line for line in self._tail if "pg_dump: error" in line or "detail" in line
        ) or "\n".join(self._tail)


@contextlib.contextmanager
def directory_dump(
    argv: Sequence[str], env: dict[str, str], counter: PgRowCounter, spool: Path | None
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
        dump.files = _files(proc, full, progress, out, counter, dump)
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
) -> Iterator[tuple[str, BinaryIO]]:
    handed: set[str] = set()
    while (name := progress.finished.get()) is not None:
        handed.add(name)
        yield from _hand_on(out / name)
    code = proc.wait()
    if code != 0:
        raise process_failed("pg_dump", argv, code, progress.tail())
    dump.row_counts.update(counter.result())
    # Large objects, and anything else pg_dump wrote, then the table of contents last.
    rest = sorted(p.name for p in out.iterdir() if p.name not in handed and p.name != TOC)
    for name in [*rest, TOC]:
        yield from _hand_on(out / name)


def _hand_on(path: Path) -> Iterator[tuple[str, BinaryIO]]:
    with open(path, "rb") as f:
        yield path.name, f
    os.unlink(path)  # stored: its disk space is free for the tables still being dumped
