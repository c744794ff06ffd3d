"""Private run directories: 0700, named after their owner, removed at the end; what a killed run
left is found and swept (issue 19: option files with passwords and cleartext spools stayed on disk)."""

from __future__ import annotations

import errno
import os
import shutil
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dataferry import pipeline, private
from dataferry.artifacts import DataObject, Manifest
from dataferry.errors import NotReady
from killed_runs import killed_run_left


def test_a_private_dir_is_0700_named_after_its_owner_and_removed(tmp_path: Path) -> None:
    with private.private_dir(tmp_path) as d:
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
        assert d.name.startswith(f"{private.PREFIX}{os.getpid()}-")
        (d / "client.cnf").write_text("password=x")
        assert private.leftovers(tmp_path) == []  # ours, and we are alive
    assert list(tmp_path.iterdir()) == []


def test_it_is_removed_when_the_block_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), private.private_dir(tmp_path) as d:
        (d / "spool").write_bytes(b"rows")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_what_a_killed_run_left_is_found_and_swept(tmp_path: Path) -> None:
    left = killed_run_left(tmp_path, "client.cnf", "password=hunter2")
    with private.private_dir(tmp_path) as mine:
        assert private.leftovers(tmp_path) == [left]
        assert private.sweep(tmp_path) == [left]
        assert not left.exists() and mine.exists()  # a live run's directory is never touched


def test_a_reused_pid_does_not_keep_a_leftover_alive(tmp_path: Path) -> None:
    """The owner is the pid *and* its start time: a new process with the same pid is not the owner."""
    fake = tmp_path / f"{private.PREFIX}{os.getpid()}-1-abc"
    fake.mkdir()
    assert private.leftovers(tmp_path) == [fake]


def test_other_names_are_never_touched(tmp_path: Path) -> None:
    (tmp_path / "dataferry-run-notapid").mkdir()
    (tmp_path / "something-else").mkdir()
    assert private.sweep(tmp_path) == []
    assert len(list(tmp_path.iterdir())) == 2


def test_a_full_disk_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NotReady) as info, private.disk_full_is_clear(tmp_path):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert "filled up while spooling" in info.value.message and str(tmp_path) in info.value.message
    assert "settings.spool_dir" in (info.value.hint or "")
    with pytest.raises(PermissionError), private.disk_full_is_clear(tmp_path):
        raise PermissionError(errno.EACCES, "denied")


# -- spool space reserved by parallel restores (issue 19, item 7) -------------------------------------


def test_a_reservation_counts_until_it_is_spooled_or_released(tmp_path: Path) -> None:
    """What a live run reserved and has not written yet is promised; what it wrote is already
    gone from the free space, so it no longer counts twice."""
    reservation = private.reserve(tmp_path, 1000)
    assert private.spool_room(tmp_path)[1] == 1000
    with private.private_dir(tmp_path) as spool:
        (spool / "restore.dump").write_bytes(b"x" * 400)
        assert private.spool_room(tmp_path)[1] == 600
    private.release(reservation)
    private.release(reservation)  # idempotent
    assert private.spool_room(tmp_path)[1] == 0 and list(tmp_path.iterdir()) == []


def test_a_killed_runs_reservation_is_ignored_and_swept(tmp_path: Path) -> None:
    left = killed_run_left(tmp_path, private.RESERVED, str(10**12))
    assert private.spool_room(tmp_path)[1] == 0
    assert private.sweep(tmp_path) == [left]


def _manifest(raw_size: int) -> Manifest:
    now = datetime.now(UTC)
    obj = DataObject(key="k", size=1, sha256="0" * 64, format="pg_custom", raw_size=raw_size)
    return Manifest(
        id="a",
        database="app",
        engine="postgresql",
        source_environment="p",
        created_at=now,
        finished_at=now,
        objects=[obj],
    )


def test_two_restores_sharing_a_spool_cannot_both_pass_on_the_same_free_space(tmp_path: Path) -> None:
    """Each spool alone fits, both do not: the first reserves, the second is refused and says why;
    once the first gave its reservation back the second passes. (Function level: nothing this big is
    written; tests/integration/test_spool_space.py runs two real restores on a small tmpfs.)"""
    half = int(shutil.disk_usage(tmp_path).free * 0.6)
    base, first = pipeline.spool_dir(tmp_path, 2, _manifest(half))
    assert base == tmp_path and first is not None
    with pytest.raises(NotReady, match="reserved by restores running now") as refused:
        pipeline.spool_dir(tmp_path, 2, _manifest(half))
    assert "wait for the other restores" in (refused.value.hint or "")
    private.release(first)
    _, second = pipeline.spool_dir(tmp_path, 2, _manifest(half))
    private.release(second)
    assert pipeline.spool_dir(tmp_path, 1, _manifest(half)) == (None, None)  # --jobs 1 streams


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [("10Gi", 10 * 1024**3), ("500M", 500 * 1000**2), ("1.5Gi", int(1.5 * 1024**3)), ("1048576", 1048576)],
)
def test_a_kubernetes_quantity_is_read_as_bytes(quantity: str, expected: int) -> None:
    assert private.size_limit(quantity) == expected


@pytest.mark.parametrize("quantity", ["", "ten", "10GB", "-1Gi"])
def test_an_unreadable_quantity_sets_no_limit(quantity: str) -> None:
    assert private.size_limit(quantity) is None


def test_a_pods_spool_room_is_its_volume_limit_less_what_is_on_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a rendered pod the spool is an emptyDir whose free space (statvfs) is the node disk's;
    the kubelet evicts the pod past the volume's sizeLimit, so that limit is what a restore may use."""
    (tmp_path / "already-there").write_bytes(b"x" * 3000)
    monkeypatch.setenv(private.SIZE_LIMIT_ENV, "10k")
    free, promised = private.spool_room(tmp_path)
    assert (free, promised) == (10_000 - 3000, 0)
    monkeypatch.setenv(private.SIZE_LIMIT_ENV, "1k")  # already over: nothing is free
    assert private.spool_room(tmp_path)[0] == 0
    monkeypatch.delenv(private.SIZE_LIMIT_ENV)
    assert private.spool_room(tmp_path)[0] > 10_000  # no limit: the disk's free space
