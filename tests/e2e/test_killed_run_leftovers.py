"""What a SIGKILLed run leaves on this machine (its private directory: option files with passwords,
spools) is reported by ``check``, removed by ``cleanup`` and by the next backup or restore."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from killed_runs import killed_run_left

pytestmark = pytest.mark.fault

CONFIG = """
[settings]
spool_dir = "spool"

[environments.production]
store = "stores/production"

[databases.app]
engine = "sqlite"
[databases.app.environments]
production = { url = "sqlite:///p.db" }
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "dataferry.toml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "spool").mkdir()
    (tmp_path / "tmp").mkdir()  # the runs' own temp dir: leftovers elsewhere on the machine stay out
    with sqlite3.connect(tmp_path / "p.db") as con:
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    return tmp_path


def _dataferry(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "dataferry", "--config", str(project / "dataferry.toml"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=project,
        env={**os.environ, "TMPDIR": str(project / "tmp")},
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_check_reports_and_cleanup_removes_what_a_killed_run_left(project: Path) -> None:
    left = killed_run_left(project / "spool", "restore.dump", "whole database" * 1000)
    check = _dataferry(project, "check")
    assert check.returncode == 0, check.stderr
    assert "leftovers of killed runs" in check.stdout and str(left) in check.stdout
    dry = _dataferry(project, "cleanup", "app", "--env", "production", "--dry-run")
    assert f"would remove {left}" in dry.stdout and left.exists()
    done = _dataferry(project, "cleanup", "app", "--env", "production")
    assert done.returncode == 0, done.stderr
    assert f"removed {left}" in done.stdout and not left.exists()
    assert "none on this machine" in _dataferry(project, "check").stdout


def test_the_next_backup_removes_it_and_says_so(project: Path) -> None:
    """A backup sweeps the temp dir, where option files and SQLite copies live (and the spool dir,
    as restores do)."""
    left = killed_run_left(project / "tmp", "client.cnf", "password=hunter2")
    backup = _dataferry(project, "backup", "app", "--env", "production")
    assert backup.returncode == 0, backup.stderr
    assert not left.exists() and f"removed {left}" in backup.stderr
