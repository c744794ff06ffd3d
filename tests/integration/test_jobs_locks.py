"""Job locks against real stores (a local directory and S3 through moto's server): exclusive,
refreshed while alive, expired when not, and taken over by exactly one of many contenders."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from dataferry.errors import LockBusy
from dataferry.jobs import state
from dataferry.jobs.state import JobLock
from dataferry.stores import Store, put_bytes
from dataferry.stores.local import LocalStore
from dataferry.stores.s3 import S3Store


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """A real store of each kind."""
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    server = request.getfixturevalue("s3_server")
    bucket = request.getfixturevalue("s3_bucket")
    return S3Store.from_url(
        f"s3://{bucket}/env",
        {"endpoint_url": server.endpoint_url, "region": server.region},
    )


@pytest.fixture(autouse=True)
def _s3_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # moto's fake credentials, set after clean_environ stripped the real environment
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def _die(lock: JobLock) -> None:
    """Simulate a killed process: the heartbeat stops and nothing releases the lock."""
    lock._stop.set()
    if lock._thread is not None:
        lock._thread.join()
    lock._held = False


def _race(n: int, attempt: Callable[[], JobLock]) -> tuple[list[JobLock], list[BaseException]]:
    winners: list[JobLock] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def contender() -> None:
        barrier.wait()
        try:
            winners.append(attempt())
        except LockBusy as exc:
            errors.append(exc)

    threads = [threading.Thread(target=contender) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return winners, errors


def test_second_acquire_is_busy_until_released(store: Store) -> None:
    ttl = timedelta(seconds=30)
    first = JobLock(store, "job-a", ttl=ttl, run_id="r1")
    first.acquire()
    try:
        with pytest.raises(LockBusy) as info:
            JobLock(store, "job-a", ttl=ttl, run_id="r2").acquire()
        assert info.value.exit_code == 6
        assert "r1" in info.value.message  # says which run holds it
        other = JobLock(store, "job-b", ttl=ttl)
        other.acquire()  # other jobs are independent
        other.release()
    finally:
        first.release()
    assert state.read_lock(store, "job-a", ttl) is None
    again = JobLock(store, "job-a", ttl=ttl)
    again.acquire()
    again.release()


def test_many_contenders_one_winner(store: Store) -> None:
    ttl = timedelta(seconds=30)

    def attempt() -> JobLock:
        lock = JobLock(store, "job-race", ttl=ttl)
        lock.acquire()
        return lock

    winners, errors = _race(8, attempt)
    try:
        assert len(winners) == 1
        assert len(errors) == 7
    finally:
        for w in winners:
            w.release()


def test_heartbeat_keeps_a_live_lock_past_its_ttl(store: Store) -> None:
    ttl = timedelta(seconds=2)
    lock = JobLock(store, "job-hb", ttl=ttl)
    lock.acquire()
    try:
        time.sleep(4.5)  # two TTLs: only the heartbeat keeps it valid
        current = state.read_lock(store, "job-hb", ttl)
        assert current is not None and current.token == lock.token and not current.expired()
        with pytest.raises(LockBusy):
            JobLock(store, "job-hb", ttl=ttl).acquire()
        assert not lock.lost.is_set()
    finally:
        lock.release()


def test_dead_lock_expires_and_is_taken_over_once(store: Store) -> None:
    ttl = timedelta(seconds=3)
    dead = JobLock(store, "job-dead", ttl=ttl, run_id="dead-run")
    dead.acquire()
    _die(dead)
    with pytest.raises(LockBusy):  # not expired yet
        JobLock(store, "job-dead", ttl=ttl).acquire()
    time.sleep(3.3)

    def attempt() -> JobLock:
        lock = JobLock(store, "job-dead", ttl=timedelta(seconds=30))
        lock.acquire()
        return lock

    winners, errors = _race(6, attempt)
    try:
        assert len(winners) == 1, errors
        assert len(errors) == 5
        winner = winners[0]
        assert winner.takeover is not None and winner.takeover.previous.run_id == "dead-run"
        current = state.read_lock(store, "job-dead", ttl)
        assert current is not None and current.token == winner.token
        assert current.taken_over_from is not None
        assert current.taken_over_from["run_id"] == "dead-run"
    finally:
        for w in winners:
            w.release()


def test_a_stalled_holder_notices_the_takeover(store: Store) -> None:
    ttl = timedelta(seconds=1)
    stalled = JobLock(store, "job-stall", ttl=ttl)
    stalled.acquire()
    _die(stalled)
    stalled._held = True  # it still believes it holds the lock
    time.sleep(1.3)
    taker = JobLock(store, "job-stall", ttl=timedelta(seconds=30))
    taker.acquire()
    try:
        stalled._stop.clear()
        stalled._start()  # the stalled process wakes up: its heartbeat must not overwrite the taker
        assert stalled.lost.wait(3)
        with pytest.raises(LockBusy, match="lost its lock"):
            stalled.check()
        stalled.release()  # must not delete the taker's lock
        current = state.read_lock(store, "job-stall", ttl)
        assert current is not None and current.token == taker.token
    finally:
        taker.release()


def test_an_unreadable_lock_counts_as_held_then_expires(store: Store) -> None:
    ttl = timedelta(seconds=4)  # S3's Last-Modified has whole seconds: leave room for that
    put_bytes(store, state.lock_key("job-junk"), b"not json")
    with pytest.raises(LockBusy):
        JobLock(store, "job-junk", ttl=ttl).acquire()
    time.sleep(4.5)
    lock = JobLock(store, "job-junk", ttl=ttl)
    lock.acquire()
    assert lock.takeover is not None
    lock.release()
