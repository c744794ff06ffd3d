"""Private run directories: 0700, named after their owner, removed at the end; what a killed run
left is found and swept (issue 19: option files with passwords and cleartext spools stayed on disk)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from dataferry import private
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
