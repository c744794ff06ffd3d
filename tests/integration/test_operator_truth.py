"""What the operator sees is true (issue 14, the state half): status and records after manual
restores, re-runs and failures; holds, locks and skips; recovery procedures that work as the
runbook says; ``check`` that tries what the run will do; a SQLite restore that keeps the live
file's owner and mode. Real ``dataferry`` processes, real SQLite files and local stores."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

from integration.test_jobs_cli import dataferry, set_rows, write_project

pytestmark = pytest.mark.integration


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_a_sqlite_restore_keeps_the_live_files_owner_group_and_mode(tmp_path: Path) -> None:
    config = write_project(tmp_path)
    assert dataferry(config, "run", "prod").returncode == 0
    live = tmp_path / "db" / "staging" / "app.db"
    set_rows(live, "old", 3)
    nobody = pwd.getpwnam("nobody")
    os.chown(live, nobody.pw_uid, nobody.pw_gid)
    os.chmod(live, 0o664)
    restored = dataferry(config, "restore", "app", "--env", "staging", "--from", "production")
    assert restored.returncode == 0, restored.stderr
    st = live.stat()
    assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert stat.S_IMODE(st.st_mode) == 0o664
