"""The scheduler's child run (``python -m dataferry.jobs.child``): the arguments the scheduler builds,
exit codes and messages like ``dataferry run``'s, and no hidden trigger options left on ``run``."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dataferry.cli import cli
from dataferry.config import load
from dataferry.jobs import state
from dataferry.jobs.child import argv_for, run
from dataferry.jobs.state import Hold, StoreCache

CONFIG = """
[environments.production]
store = "stores/production"

[databases.app]
engine = "sqlite"
[databases.app.environments]
production = { url = "sqlite:///p.db" }

[jobs.prod]
environment = "production"
database = "app"
steps = ["backup"]
schedule = "* * * * *"  # always due within the last minute: the test must not depend on the clock
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "dataferry.toml"
    path.write_text(CONFIG, encoding="utf-8")
    with sqlite3.connect(tmp_path / "p.db") as con:
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    return path


def test_a_scheduled_run_in_a_child_process_runs_and_records_its_trigger(config: Path) -> None:
    argv = argv_for(str(config), "prod", "schedule", "2026-01-01T23:00:00+00:00")
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("job prod: run ") and " succeeded in " in proc.stdout
    cfg = load(config)
    (record,) = state.iter_runs(StoreCache(cfg).for_job("prod"), "prod")
    assert (record.trigger, record.trigger_detail, record.status) == (
        "schedule",
        "2026-01-01T23:00:00+00:00",
        "succeeded",
    )


def test_errors_end_in_their_exit_code_with_a_message_and_a_hint(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = load(config)
    hold = Hold(scope="job", target="prod", reason="test", created_at=state.now_utc(), created_by="me")
    state.write_hold(StoreCache(cfg).for_job("prod"), hold)
    assert run(argv_for(str(config), "prod", "schedule", "x")[2:]) == 5
    err = capsys.readouterr().err
    assert "error: job prod skipped: job prod is held" in err and "hint: 'dataferry resume prod'" in err
    assert run(argv_for(str(config), "nope", "after", "x")[2:]) == 4


def test_with_json_logs_the_error_is_a_json_line_too(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The scheduler passes --json-logs on: then the child's last line is JSON like the others."""
    cfg = load(config)
    hold = Hold(scope="job", target="prod", reason="test", created_at=state.now_utc(), created_by="me")
    state.write_hold(StoreCache(cfg).for_job("prod"), hold)
    assert run(argv_for(str(config), "prod", "schedule", "x", json_logs=True)[2:]) == 5
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    [error] = [e for e in lines if e["level"] == "error"]
    assert error["exit_code"] == 5 and "dataferry resume prod" in error["hint"]


def test_a_bad_trigger_is_a_usage_error(config: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        run(["--config", str(config), "--trigger", "manual", "--trigger-detail=x", "prod"])
    assert exc.value.code == 2


def test_run_can_say_only_that_a_schedule_started_it(config: Path) -> None:
    """``run --trigger schedule`` is how a CronJob's pod records a scheduled run (issue 16); no
    other trigger can be claimed from the command line (an 'after' run names an upstream artifact
    only the scheduler may vouch for)."""
    result = CliRunner().invoke(cli, ["--config", str(config), "run", "prod", "--trigger", "after"])
    assert result.exit_code == 2 and "--trigger" in result.output
