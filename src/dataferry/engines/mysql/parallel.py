"""A parallel restore (``jobs > 1``): the dump is spooled and loaded at the same time.

The dump is read once, on the calling thread, by the ``spooler``: its schema goes straight into a
``SchemaClient`` that creates the tables as they are read, and its rows into chunk files of about
32 MiB. Each complete chunk is loaded at once by one of ``jobs`` clients (one transaction each,
unique and foreign-key checks off, a deadlock victim loaded again), after the client creating the
tables has run that table's ``CREATE TABLE``; the file is removed once loaded. When every row of a
table is in, its held-back secondary keys are built by one ``ALTER TABLE`` (while other tables'
rows still load). A free client takes a ready key build first, else a chunk of the table with the
most bytes still queued (``_Workers``). After the dump ended and was found complete (the caller
checks), the foreign keys are added, one table after another, unchecked, and then the triggers,
events (disabled), routines and views. The first failure anywhere stops every client; the caller drops the shadow.

Why overlap: a 1 GB dump took seconds to decompress and cut (one CPU) while the server waited
for it, then the server loaded while the spool's CPU was idle (bench/README.md).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from dataferry.engines.mysql.dumpfile import Segment
from dataferry.engines.mysql.load import Client, SchemaClient, _Loads
from dataferry.engines.mysql.objects import SchemaObjects
from dataferry.engines.mysql.spooler import Spooler


@dataclass
class _Table:
    """A table's chunks still loading, and whether its rows were all spooled."""

    pending: int = 0
    read: bool = False
    keys: Path | None = None
    failed: bool = False


Job = Callable[[], None]


class _Workers:
    """``jobs`` threads running jobs: a table's key build (one long ``ALTER TABLE``) as soon as it
    is ready, ahead of any chunk; then a chunk of the table with the most bytes still queued (the
    first queued of it), so the tables' loads end together instead of one after another. A table's
    key build can only start once its last chunk is in: when the tables end one after another, the
    last one's build runs alone at the end, leaving the other workers idle (bench/README.md); when
    they end together, their builds run side by side."""

    def __init__(self, jobs: int) -> None:
        lock = threading.Lock()  # guards the state below
        self._cond = threading.Condition(lock)  # told when a job ends
        self._ready = threading.Condition(lock)  # told when a job is queued, and on close
        self._keys: deque[Job] = deque()
        self._chunks: dict[str, deque[tuple[int, Job]]] = {}
        self._queued: dict[str, int] = {}  # bytes of each table's chunks not started yet
        self._outstanding = 0
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"dataferry-mysql-load-{n}", daemon=True)
            for n in range(jobs)
        ]
        for thread in self._threads:
            thread.start()

    def submit_keys(self, job: Job) -> None:
        """Run a key build next (``job`` reports its own failure)."""
        with self._cond:
            self._outstanding += 1
            self._keys.append(job)
            self._ready.notify()

    def submit_chunk(self, table: str, size: int, job: Job) -> None:
        """Queue loading a chunk of ``size`` bytes of ``table``'s rows."""
        with self._cond:
            self._outstanding += 1
            self._chunks.setdefault(table, deque()).append((size, job))
            self._queued[table] = self._queued.get(table, 0) + size
            self._ready.notify()

    def _next(self) -> Job | None:
        """The next job (the class docstring), None once closed and drained."""
        with self._cond:
            while not self._keys and not self._chunks:
                if self._closed:
                    return None
                self._ready.wait()
            if self._keys:
                return self._keys.popleft()
            table = max(self._chunks, key=lambda t: self._queued[t])  # the first such table on a tie
            size, job = self._chunks[table].popleft()
            self._queued[table] -= size
            if not self._chunks[table]:
                del self._chunks[table]
            return job

    def _work(self) -> None:
        while (job := self._next()) is not None:
            try:
                job()
            finally:
                with self._cond:
                    self._outstanding -= 1
                    self._cond.notify_all()

    def wait(self) -> None:
        """Until every job submitted (also by running jobs) has ended."""
        with self._cond:
            while self._outstanding:
                self._cond.wait()

    def close(self) -> None:
        """Stop the workers once the jobs queued before have run (they return at once when stopped)."""
        with self._cond:
            self._closed = True
            self._ready.notify_all()
        for thread in self._threads:
            thread.join()


class ParallelLoad:
    """Spool ``segs`` and load them into the shadow with ``jobs`` clients (module docstring)."""

    def __init__(
        self,
        client: Client,
        objects: SchemaObjects,
        directory: Path,
        chunk_bytes: int,
        jobs: int,
        load_data: bool,
    ) -> None:
        self.client = client
        self.objects = objects
        self.loads = _Loads(client)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._tables: dict[str, _Table] = {}
        self._error: BaseException | None = None
        self.schema = SchemaClient(client)
        self.workers = _Workers(jobs)
        self.spooler = Spooler(directory, objects, chunk_bytes, load_data, schema=self.schema, events=self)
        self.loads.local_infile = self.spooler.plan.local_infile  # filled as chunks are spooled

    # -- the spool's events (on the reading thread) -------------------------------------------

    def chunk(self, table: str, script: Path, size: int) -> None:
        """Load a complete chunk once its table exists."""
        self._raise_if_failed()
        with self._lock:
            self._tables.setdefault(table, _Table()).pending += 1
        job = self._job(self.schema.mark(), script, lambda ok: self._chunk_done(table, ok))
        self.workers.submit_chunk(table, size, job)

    def table_read(self, table: str, keys: Path | None) -> None:
        """Every row of ``table`` is spooled: its keys are built once its chunks are loaded."""
        with self._lock:
            state = self._tables.setdefault(table, _Table())
            state.read, state.keys = True, keys
            ready = state.pending == 0 and keys is not None
        if ready and keys is not None:
            self.workers.submit_keys(self._job(self.schema.mark(), keys))

    # -- jobs ---------------------------------------------------------------------------------

    def _job(self, mark: int, script: Path, then: Callable[[bool], None] | None = None) -> Job:
        return lambda: self._run(mark, script, then)

    def _run(self, mark: int, script: Path, then: Callable[[bool], None] | None) -> None:
        ok = False
        try:
            if not self.schema.wait(mark, self._stop):
                if self._stop.is_set():
                    return
                raise self.schema.failure()
            self.loads.load(script)
            ok = not self.loads.cancelled
            if ok:  # loaded: the spool need not hold it any more
                script.unlink()
                script.with_suffix(".rows").unlink(missing_ok=True)
        except BaseException as exc:
            self._fail(exc)
        finally:
            if then is not None:
                then(ok)

    def _chunk_done(self, table: str, ok: bool) -> None:
        with self._lock:
            state = self._tables[table]
            state.pending -= 1
            state.failed |= not ok
            keys = state.keys if state.read and state.pending == 0 and not state.failed else None
        if keys is not None and not self._stop.is_set():
            self.workers.submit_keys(self._job(0, keys))  # the table exists: its chunks loaded

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = exc
        self._stop.set()
        self.loads.cancel()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    # -- the whole load -----------------------------------------------------------------------

    def feed(self, segs: Iterable[Segment]) -> None:
        """Read the whole dump, loading chunks as they are complete."""
        for part, name, seg in segs:
            self.spooler.line(part, name, seg)
        self.spooler.finish()
        self.schema.close()

    def finish(self) -> None:
        """Wait for every chunk and key; then the foreign keys and the schema objects."""
        self.workers.wait()
        self._raise_if_failed()
        client = self.client
        if foreign_keys := self.spooler.plan.foreign_keys:  # one table after another: see ``tables``
            script = bytes(self.objects.preamble) + b"SET SESSION foreign_key_checks=0;\n" + foreign_keys
            client.run(script, f"{client.tool.name} (adding the shadow's foreign keys)")
        client.run(
            self.objects.shadow_script(), f"{client.tool.name} (creating the shadow's triggers and views)"
        )

    def abort(self) -> None:
        """After a failure: stop every client and job, close every file."""
        self._stop.set()
        self.loads.cancel()
        self.schema.kill()
        self.workers.close()
        self.spooler.close()


def load_parallel(
    client: Client,
    segs: Iterable[Segment],
    objects: SchemaObjects,
    directory: Path,
    *,
    chunk_bytes: int,
    jobs: int,
    load_data: bool,
    complete: Callable[[], None],
) -> None:
    """Spool and load ``segs`` into ``client``'s database (module docstring). ``complete`` raises
    when the dump that was read is not whole; it runs before the foreign keys and the schema
    objects are added (a failure drops the shadow: the caller's part)."""
    load = ParallelLoad(client, objects, directory, chunk_bytes, jobs, load_data)
    try:
        load.feed(segs)
        complete()
        load.finish()
    except BaseException:
        load.abort()
        raise
    load.workers.close()
    load.spooler.close()
