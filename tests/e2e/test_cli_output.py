"""What a person (or a log collector) reads: global options anywhere on the line, JSON lines that
are all JSON, units and times, and the summaries around errors. SQLite and local stores only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_cli_errors import Project, make_project


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """Production has 50 rows and one artifact; staging has 5 other rows."""
    return make_project(tmp_path)


@pytest.mark.parametrize(
    "args",
    [
        ("list", "app", "--env", "production", "--config", "{config}"),
        ("list", "--config", "{config}", "app", "--env", "production"),
        ("--config", "{config}", "list", "app", "--env", "production"),
    ],
    ids=["after", "between", "before"],
)
def test_config_is_accepted_anywhere(project: Project, args: tuple[str, ...]) -> None:
    """``--config`` works before or after the subcommand, as users type it."""
    argv = [a.format(config=project.config) for a in args]
    proc = project.run(*argv, config=False)
    assert proc.returncode == 0, proc.stderr
    assert project.artifact_id in proc.stdout


def test_json_logs_and_quiet_after_the_subcommand(project: Project) -> None:
    """``--json-logs`` and ``-q`` after the subcommand act as they do before it."""
    proc = project.run("backup", "app", "--env", "production", "--json-logs")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines, "a backup logs what it does"
    assert all(json.loads(line) for line in lines), proc.stderr
    quiet = project.run("backup", "app", "--env", "production", "-q")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
