"""The order in which a parallel MySQL restore's workers take their jobs (``parallel._Workers``).

A ready key build goes first; then a chunk of the table with the most bytes still queued, so the
tables' loads end together and their key builds run side by side instead of the last table's alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from dataferry.engines.mysql.parallel import _Workers


class Recorder:
    """Jobs that record their name; the first one holds the only worker until released, so the
    others queue up and the order they then run in is the scheduler's choice alone."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.release = threading.Event()
        self.started = threading.Event()

    def blocker(self) -> None:
        """Hold the worker until released."""
        self.started.set()
        self.release.wait(10)

    def job(self, name: str) -> Callable[[], None]:
        """A job that records ``name``."""
        return lambda: self.order.append(name)


def run_queued(submit: list[tuple[str, str, int]]) -> list[str]:
    """Queue ``(kind, name, size)`` jobs behind a blocker on one worker; the order they ran in."""
    rec = Recorder()
    workers = _Workers(1)
    workers.submit_chunk("blocker", 1, rec.blocker)
    assert rec.started.wait(10)
    for kind, name, size in submit:
        if kind == "keys":
            workers.submit_keys(rec.job(name))
        else:
            workers.submit_chunk(kind, size, rec.job(name))
    rec.release.set()
    workers.wait()
    workers.close()
    return rec.order


def test_chunks_of_the_table_with_the_most_bytes_queued_go_first_and_the_tables_end_together() -> None:
    order = run_queued(
        [
            ("a", "a1", 10),
            ("a", "a2", 10),
            ("a", "a3", 10),
            ("b", "b1", 10),
            ("b", "b2", 10),
            ("c", "c1", 5),
        ]
    )
    # a has 30 queued against b's 20: a1; then 20 each (a, queued first, wins the tie): a2; then b's
    # 20 against a's 10: b1; 10 each: a3, b2; c (5 bytes) last.
    assert order == ["a1", "a2", "b1", "a3", "b2", "c1"]


def test_a_ready_key_build_goes_before_every_chunk() -> None:
    order = run_queued([("a", "a1", 10), ("b", "b1", 10), ("keys", "keys-a", 0), ("a", "a2", 10)])
    assert order == ["keys-a", "a1", "a2", "b1"]  # then a's 20 bytes before b's 10


def test_chunks_of_one_table_run_in_the_order_they_were_queued() -> None:
    order = run_queued([("a", f"a{n}", size) for n, size in enumerate([1, 50, 7, 30])])
    assert order == ["a0", "a1", "a2", "a3"]


def test_jobs_queued_by_a_running_job_are_waited_for_and_every_worker_stops_on_close() -> None:
    workers = _Workers(3)
    ran: list[str] = []

    def first() -> None:
        ran.append("first")
        workers.submit_keys(lambda: ran.append("second"))

    workers.submit_chunk("a", 1, first)
    workers.wait()
    assert ran == ["first", "second"]
    workers.close()
    assert not any(t.is_alive() for t in workers._threads)
