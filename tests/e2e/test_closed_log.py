"""A command whose log reader went away (``dataferry run JOB 2>&1 | head``, a pager quit early)
goes on: the logs were only a view of the run, whose record says how it ended. A closed pipe used to
fail the run in the middle of a step as "unexpected BrokenPipeError (a bug)".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

DATAFERRY = str(Path(sys.executable).with_name("dataferry"))
JOB = "email-alert-api-staging"


def test_a_run_whose_stderr_is_closed_still_succeeds(tmp_path: Path) -> None:
    quickstart = subprocess.run(
        [DATAFERRY, "quickstart", "qs"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert quickstart.returncode == 0, quickstart.stderr
    env = {
        **os.environ,
        "DATAFERRY_CONFIG": str(tmp_path / "qs" / "dataferry.toml"),
        "EMAIL_ALERT_API_QUICKSTART_SALT": (tmp_path / "qs" / "sanitise-salt").read_text().strip(),
    }
    run = subprocess.Popen(
        [DATAFERRY, "run", JOB], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert run.stderr is not None
    run.stderr.close()  # the reader is gone before the first line: every log line hits a closed pipe
    assert run.wait(timeout=300) == 0
    history = subprocess.run(
        [DATAFERRY, "history", JOB, "--limit", "1", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    (record,) = json.loads(history.stdout)
    assert record["trigger"] == "manual" and record["status"] == "succeeded", record
