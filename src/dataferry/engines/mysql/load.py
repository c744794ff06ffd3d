"""The ``mariadb``/``mysql`` clients that load a dump into the shadow database.

``jobs == 1`` streams the dump through one client: nothing is written to local disk.

``jobs > 1`` (``parallel``) spools the dump into files (``spooler``) that several clients load at
once (``_Loads``, ``parallel_load``: one client per file, a deadlock victim loaded again), while
one more client (``SchemaClient``) creates the tables as the dump is read.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Collection, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from dataferry.engines.mysql.conn import MAX_PACKET, OptionFile, Tool
from dataferry.engines.mysql.dumpfile import Part, Segment
from dataferry.engines.mysql.objects import SchemaObjects
from dataferry.errors import EngineError
from dataferry.streams import StderrTail, process_failed, spawn

#: Unique and foreign-key checks are off while rows load (the dump's rows are already consistent).
INIT_COMMAND = "SET SESSION unique_checks=0, foreign_key_checks=0"
#: MariaDB also checks each row against the table's CHECK constraints, a JSON column's
#: ``json_valid`` among them: 5% of the server's CPU in a 1 GB restore (bench/README.md). The rows
#: are production's, so they are loaded as they are, like the keys (MySQL cannot skip the checks).
MARIADB_INIT_COMMAND = INIT_COMMAND + ", check_constraint_checks=0"


@dataclass(frozen=True)
class Client:
    """How to run the ``mariadb``/``mysql`` client against one database."""

    tool: Tool
    opts: OptionFile
    database: str
    #: The server is MariaDB (``load_argv``).
    mariadb: bool = False

    def argv(self, *extra: str) -> list[str]:
        """The command line: the option file FIRST, then batch mode without client commands."""
        return [
            self.tool.path,
            self.opts.arg,
            "--batch",
            "--binary-mode",  # no shell escapes or client commands from a dump (DELIMITER still works)
            f"--max-allowed-packet={MAX_PACKET}",
            f"--database={self.database}",
            *extra,
        ]

    def load_argv(self, *extra: str) -> list[str]:
        """The command line of a client that loads rows: checks off (``INIT_COMMAND``)."""
        init = MARIADB_INIT_COMMAND if self.mariadb else INIT_COMMAND
        return self.argv(f"--init-command={init}", *extra)

    def run(self, script: bytes, what: str) -> None:
        """Run a script held in memory (schema objects: small); a failure raises ``EngineError``."""
        argv = self.argv()
        proc = spawn(argv, env=self.opts.env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        assert proc.stdin is not None and proc.stderr is not None
        err = StderrTail(proc.stderr)
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(script)
            proc.stdin.close()
        code = proc.wait()
        if code != 0:
            raise process_failed(what, argv, code, err.text())


# -- jobs = 1: stream -------------------------------------------------------------------------------


def stream_load(client: Client, segs: Iterable[Segment], objects: SchemaObjects) -> None:
    """Pipe the dump into one client, keeping the schema objects aside; events stay out of the shadow
    (they are created disabled, so the scheduler does not run them on a copy)."""
    argv = client.load_argv()
    proc = spawn(argv, env=client.opts.env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stderr is not None
    err = StderrTail(proc.stderr)
    what = f"{client.tool.name} (loading shadow {client.database})"
    try:
        _feed(proc.stdin, segs, objects)
    except BrokenPipeError:
        pass  # the client stopped reading: its exit status and stderr say why
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    code = proc.wait()
    if code != 0:
        raise process_failed(what, argv, code, err.text())


def _feed(stdin: IO[bytes], segs: Iterable[Segment], objects: SchemaObjects) -> None:
    write = stdin.write
    for part, name, seg in segs:
        write(seg if part is Part.DATA else objects.add(part, name, seg))
    stdin.close()


# -- jobs > 1: clients that load spooled files, and the one that creates the tables ---------------


class _Loads:
    """The client processes of a parallel load; the first failure stops all of them."""

    def __init__(self, client: Client, local_infile: Collection[Path] = ()) -> None:
        self.client = client
        self.argv = client.load_argv()
        self.local_infile = local_infile
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen[bytes]] = set()
        self.cancelled = False

    def load(self, path: Path) -> None:
        """Load one chunk file; a chunk rolled back by a deadlock or lock timeout is loaded again."""
        for attempt in range(1, RETRIES + 1):
            code, stderr = self._load_once(path)
            if code is None or code == 0:
                return
            if attempt < RETRIES and _retryable(stderr):
                time.sleep(0.2 * attempt)  # the chunk's transaction was rolled back whole: safe to redo
                continue
            what = f"{self.client.tool.name} (loading {path.name} into shadow {self.client.database})"
            raise process_failed(what, self.argv, code, stderr)

    def _load_once(self, path: Path) -> tuple[int | None, str]:
        """Run one client on ``path``: its exit code (None when cancelled) and stderr tail."""
        with self._lock:
            if self.cancelled:
                return None, ""
            argv = [*self.argv, "--local-infile=1"] if path in self.local_infile else self.argv
            with path.open("rb") as f:
                proc = spawn(argv, env=self.client.opts.env, stdin=f, stdout=subprocess.DEVNULL)
            self._procs.add(proc)
        assert proc.stderr is not None
        err = StderrTail(proc.stderr)
        code = proc.wait()
        with self._lock:
            self._procs.discard(proc)
            return (None if self.cancelled else code), err.text()

    def cancel(self) -> None:
        """Stop every running client; chunks not started yet are skipped."""
        with self._lock:
            self.cancelled = True
            for proc in self._procs:
                proc.kill()


#: Attempts per chunk when InnoDB rolls it back as a deadlock victim or after a lock wait timeout.
RETRIES = 5


def _retryable(stderr: str) -> bool:
    """ERROR 1213 (deadlock) and 1205 (lock wait timeout) roll back a transaction; retrying may work."""
    return "ERROR 1213 " in stderr or "ERROR 1205 " in stderr


def parallel_load(
    client: Client, chunks: Sequence[tuple[Path, int]], jobs: int, local_infile: Collection[Path] = ()
) -> None:
    """Load ``chunks`` with ``jobs`` clients at once, largest first (shortest total time)."""
    loads = _Loads(client, local_infile)
    ordered = sorted(chunks, key=lambda c: c[1], reverse=True)
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="dataferry-mysql-load") as pool:
        futures = [pool.submit(loads.load, path) for path, _ in ordered]
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                loads.cancel()
                exc = failed[0].exception()
                assert exc is not None
                raise exc
        except BaseException:
            loads.cancel()
            raise


#: The statement whose output tells ``SchemaClient`` how far the schema has run.
_MARK = b"dataferry-schema-mark-"


class SchemaClient:
    """One client that runs the schema script while the dump is still being read (its stdin is the
    spooler's schema sink), so that a table's rows can load as soon as its ``CREATE TABLE`` ran.

    ``mark`` writes a ``SELECT`` that echoes a number after what was written so far; the client runs
    statements in order, so once the number is read back from its output, every earlier statement
    has run. A failing statement stops the client (batch mode): waiters are told, and ``close``
    raises the client's own message.
    """

    def __init__(self, client: Client) -> None:
        self.what = f"{client.tool.name} (creating the shadow's tables)"
        self.argv = client.load_argv("--skip-column-names", "--unbuffered")
        self.proc = spawn(self.argv, env=client.opts.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdin is not None and self.proc.stderr is not None
        self._stdin = self.proc.stdin
        self._err = StderrTail(self.proc.stderr)
        self._cond = threading.Condition()
        self._sent = self._reached = 0
        self._ended = False
        self._reader = threading.Thread(target=self._read, name="dataferry-mysql-schema", daemon=True)
        self._reader.start()

    def write(self, data: bytes) -> int:
        """Schema text (the spooler's sink); a client that stopped fails on ``close``."""
        with contextlib.suppress(BrokenPipeError, ValueError):
            self._stdin.write(data)
        return len(data)

    def mark(self) -> int:
        """A number ``wait`` returns on once everything written so far has run."""
        self._sent += 1
        with contextlib.suppress(BrokenPipeError, ValueError):
            self._stdin.write(b"SELECT '" + _MARK + b"%d';\n" % self._sent)
            self._stdin.flush()
        return self._sent

    def wait(self, mark: int, stop: threading.Event) -> bool:
        """Wait until ``mark`` ran (True), the client ended without it, or ``stop`` is set (False)."""
        with self._cond:
            while self._reached < mark and not self._ended and not stop.is_set():
                self._cond.wait(0.1)
            return self._reached >= mark

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            for line in iter(self.proc.stdout.readline, b""):
                if line.startswith(_MARK):
                    with self._cond:
                        self._reached = int(line[len(_MARK) :])
                        self._cond.notify_all()
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def close(self) -> None:
        """End the script and wait for the client; a failure raises ``EngineError``."""
        with contextlib.suppress(BrokenPipeError, ValueError):
            self._stdin.close()
        code = self.proc.wait()
        self._reader.join()
        if code != 0:
            raise self.failure(code)

    def failure(self, code: int | None = None) -> EngineError:
        """The client's error (it stopped: waits for its exit status)."""
        return process_failed(
            self.what, self.argv, self.proc.wait() if code is None else code, self._err.text()
        )

    def kill(self) -> None:
        """Stop the client (after another failure); idempotent."""
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(BrokenPipeError, ValueError, OSError):
            self._stdin.close()
        self.proc.wait()
