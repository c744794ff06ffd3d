"""``dataferry scheduler``: run due and triggered jobs, a few at a time, until stopped.

Each run is a child process (``python -m dataferry.jobs.child ... JOB``, which runs like
``dataferry run JOB``), so a run can be stopped on its
own (SIGTERM drops its shadow and releases its lock), its memory is its own, and a crash of one run
does not take the others with it. The same job never runs twice at once: locally the scheduler
starts at most one run per job, and across machines the job's lock decides; after taking the lock
a run re-checks that its trigger was not handled meanwhile by another machine.

On SIGTERM or SIGINT the scheduler starts nothing new, forwards SIGTERM to its runs, waits for them
(up to ``grace``), and exits. A run that does not stop in time is killed; a kill cannot leave the
live database half-changed either (the swap is atomic), only a lock that expires by itself.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import FrameType

from dataferry.config import Config
from dataferry.errors import FerryError, Held, LockBusy
from dataferry.jobs import state, triggers
from dataferry.jobs.child import argv_for
from dataferry.jobs.runner import RunOptions, run_job
from dataferry.jobs.state import StoreCache
from dataferry.jobs.triggers import still_due as still_due  # importable here, as before
from dataferry.progress import NullReporter, Reporter


@dataclass(frozen=True)
class Due:
    """A job to start, and why."""

    job: str
    trigger: str  # "schedule" or "after"
    detail: str  # the fire time (ISO 8601) or the upstream artifact id


def due_jobs(
    cfg: Config,
    stores: StoreCache,
    reporter: Reporter | None = None,
    *,
    environment: str | None = None,
    only_after: bool = False,
) -> Iterator[Due]:
    """Jobs whose trigger fired and was not handled yet, in configuration order.

    A job whose lock is held (running here or on another machine) is left alone. A store that
    cannot be read is reported and the job is looked at again on the next pass. ``environment``
    keeps the jobs of one environment; ``only_after`` keeps the ``after`` triggers only (on
    Kubernetes each schedule is its own CronJob, so the scheduler must not start those runs too).
    """
    reporter = reporter or NullReporter()
    ttl = state.lock_ttl(cfg)
    for name, job in cfg.jobs.items():
        if environment is not None and job.environment != environment:
            continue
        try:
            lock = state.read_lock(stores.for_job(name), name, ttl)
            if lock is not None and not lock.expired():
                continue
            pending = triggers.pending_after(cfg, name, stores) if job.after else None
            if pending is not None:
                yield Due(name, "after", pending)
                continue
            fire = triggers.due_fire(cfg, name, stores) if job.schedule and not only_after else None
            if fire is not None:
                yield Due(name, "schedule", fire.isoformat())
        except FerryError as exc:
            reporter.warn(f"scheduler: cannot tell whether job {name} is due: {exc.message}")


@dataclass
class _Child:
    due: Due
    proc: subprocess.Popen[bytes]
    started: float
    max_runtime: timedelta | None


@dataclass
class Scheduler:
    """The daemon loop; ``once`` runs until nothing is due or running (cron, tests, quickstart)."""

    cfg: Config
    config_path: Path
    max_parallel: int = 2
    interval: float = 30.0
    grace: float = 60.0
    once: bool = False
    json_logs: bool = False
    reporter: Reporter = field(default_factory=NullReporter)
    environment: str | None = None
    only_after: bool = False
    _children: dict[str, _Child] = field(default_factory=dict)
    _attempted: dict[Due, int] = field(default_factory=dict)
    _stopping: threading.Event = field(default_factory=threading.Event)
    failed: int = 0

    def stop(self) -> None:
        """Start nothing new; running jobs are asked to stop."""
        self._stopping.set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.reporter.info(f"scheduler: {signal.Signals(signum).name} received, stopping")
        self.stop()

    def run(self) -> int:
        """Loop until stopped (or, with ``once``, until idle). Returns 1 if a run failed."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        jobs = [j for j in self.cfg.jobs.values() if self.environment in (None, j.environment)]
        where = f" of {self.environment}" if self.environment else ""
        self.reporter.info(
            f"scheduler: started with {len(jobs)} job(s){where}, at most {self.max_parallel} at once"
        )
        stores = StoreCache(self.cfg)
        while not self._stopping.is_set():
            self._reap()
            launched = self._launch(stores)
            if self.once and not launched and not self._children:
                break
            self._wait()
        self._shutdown()
        return 1 if self.failed else 0

    def _launch(self, stores: StoreCache) -> int:
        launched = 0
        due_now = due_jobs(
            self.cfg, stores, self.reporter, environment=self.environment, only_after=self.only_after
        )
        for due in due_now:
            if len(self._children) >= self.max_parallel or self._stopping.is_set():
                break
            if due.job in self._children or not self._should_try(due, stores):
                continue
            self._start(due)
            launched += 1
        return launched

    def _should_try(self, due: Due, stores: StoreCache) -> bool:
        """Not the same trigger twice, unless it was held (and no longer is) or busy elsewhere."""
        code = self._attempted.get(due)
        if code is None:
            return True
        if code == Held.exit_code:
            try:
                return not state.active_holds(self.cfg, due.job, stores)
            except FerryError:
                return False
        return code == LockBusy.exit_code

    def _start(self, due: Due) -> None:
        argv = argv_for(str(self.config_path), due.job, due.trigger, due.detail, json_logs=self.json_logs)
        proc = subprocess.Popen([sys.executable, *argv], stdin=subprocess.DEVNULL)
        job = self.cfg.jobs[due.job]
        self._children[due.job] = _Child(due, proc, time.monotonic(), job.max_runtime)
        self.reporter.info(
            f"scheduler: started job {due.job} ({due.trigger} {due.detail}) as pid {proc.pid}",
            job=due.job,
        )

    def _reap(self) -> None:
        for name, child in list(self._children.items()):
            code = child.proc.poll()
            if code is None:
                self._enforce_runtime(child)
                continue
            del self._children[name]
            self._attempted[child.due] = code
            if code in (0, Held.exit_code, LockBusy.exit_code):
                self.reporter.info(f"scheduler: job {name} exited {code}", job=name, exit_code=code)
            elif self._stopping.is_set():
                # Asked to stop: the run recorded itself as interrupted; it is run again later.
                self.reporter.info(f"scheduler: job {name} stopped (exit {code})", job=name, exit_code=code)
            else:
                self.failed += 1
                self.reporter.warn(
                    f"scheduler: job {name} failed with exit code {code}", job=name, exit_code=code
                )

    def _enforce_runtime(self, child: _Child) -> None:
        """A backstop for a run that did not stop itself at its max_runtime."""
        if child.max_runtime is None:
            return
        over = time.monotonic() - child.started - child.max_runtime.total_seconds()
        if over > self.grace:
            self.reporter.warn(f"scheduler: job {child.due.job} is far over its max_runtime; killing it")
            child.proc.kill()
        elif over > 0:
            child.proc.send_signal(signal.SIGTERM)

    def _wait(self) -> None:
        """Sleep until the next pass; wake early when a run ends or a stop comes."""
        deadline = time.monotonic() + (0.2 if self.once else self.interval)
        while time.monotonic() < deadline and not self._stopping.is_set():
            if any(c.proc.poll() is not None for c in self._children.values()):
                return
            self._stopping.wait(0.2)

    def _shutdown(self) -> None:
        if not self._children:
            return
        for child in self._children.values():
            self.reporter.info(f"scheduler: asking job {child.due.job} (pid {child.proc.pid}) to stop")
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while self._children and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.1)
        for child in self._children.values():
            self.reporter.warn(
                f"scheduler: job {child.due.job} did not stop within {self.grace:.0f}s; killed "
                "(its lock expires by itself; the live database is swapped atomically or not at all)"
            )
            child.proc.kill()
            child.proc.wait()
        self._children.clear()


def run_pending_inline(cfg: Config, *, reporter: Reporter | None = None) -> list[state.RunRecord]:
    """Run due and triggered jobs in this process, one at a time, until none is due (quickstart).

    Failures are recorded and reported by each run; a held job is skipped once.
    """
    reporter = reporter or NullReporter()
    stores = StoreCache(cfg)
    done: list[state.RunRecord] = []
    tried: set[Due] = set()
    while True:
        due = next((d for d in due_jobs(cfg, stores, reporter) if d not in tried), None)
        if due is None:
            return done
        tried.add(due)
        try:
            record = run_job(
                cfg,
                due.job,
                RunOptions(trigger=due.trigger, trigger_detail=due.detail),
                reporter=reporter,
                stores=stores,
                still_due=functools.partial(still_due, cfg, due.job, due.trigger, due.detail, stores),
            )
        except FerryError as exc:
            reporter.warn(f"job {due.job}: {exc.message}")
            continue
        if record is not None:
            done.append(record)


def pid_alive(pid: int) -> bool:
    """True if a process with ``pid`` exists on this machine (for status: a lock of a dead run)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
