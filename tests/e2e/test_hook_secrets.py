"""Hooks get the run's ``DATAFERRY_*`` variables, not the credentials (issue 19, item 8): a hook that
prints its whole environment logs no database password, store key or salt, and a secret a job
passes to its hook on purpose (``hook_env``) is still scrubbed from the log."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from dataferry.config import load
from dataferry.environ import child_environment
from dataferry.jobs.runner import run_job
from dataferry.progress import NullReporter

PG_PASSWORD = "pg-Secret-4c9e1f0b"
AWS_SECRET = "aws-Secret-9d2b7a11"
TOKEN = "app-Token-5e3a2c77"

CONFIG = """
[environments.production]
store = "stores/production"
[environments.remote]
store = "stores/remote"

[databases.app]
engine = "sqlite"
[databases.app.environments]
production = {{ url = "sqlite:///p.db" }}

[databases.other]
engine = "postgresql"
[databases.other.environments]
remote = {{ url = "postgresql://app@db.internal/other", password_env = "OTHER_PG_PASSWORD" }}

[jobs.prod]
environment = "production"
database = "app"
steps = ["backup", "hook:/usr/bin/env", "hook:/bin/sh -c 'echo token=$APP_TOKEN'"]
{extra}
"""


class Lines(NullReporter):
    """Keeps what was logged."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str, **fields: Any) -> None:
        self.lines.append(message)


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str = "") -> list[str]:
    (tmp_path / "dataferry.toml").write_text(CONFIG.format(extra=extra), encoding="utf-8")
    with sqlite3.connect(tmp_path / "p.db") as con:
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    monkeypatch.setenv("OTHER_PG_PASSWORD", PG_PASSWORD)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("APP_TOKEN", TOKEN)
    reporter = Lines()
    run_job(load(tmp_path / "dataferry.toml"), "prod", reporter=reporter)
    return [line.removeprefix("hook: ") for line in reporter.lines if line.startswith("hook: ")]


def test_a_hook_gets_its_run_but_no_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hook_lines = _run(tmp_path, monkeypatch)
    env = dict(line.split("=", 1) for line in hook_lines if "=" in line and not line.startswith("token="))
    assert env["DATAFERRY_JOB"] == "prod" and env["DATAFERRY_DATABASE"] == "app"
    assert "PATH" in env
    assert not {"OTHER_PG_PASSWORD", "AWS_SECRET_ACCESS_KEY", "APP_TOKEN"} & set(env)
    text = "\n".join(hook_lines)
    assert PG_PASSWORD not in text and AWS_SECRET not in text and TOKEN not in text
    assert "token=" in hook_lines  # the hook ran; the variable was simply not there


def test_a_secret_passed_on_purpose_reaches_the_hook_but_not_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook_lines = _run(tmp_path, monkeypatch, extra='hook_env = ["APP_TOKEN"]')
    assert "token=***" in hook_lines
    assert "APP_TOKEN=***" in hook_lines
    assert TOKEN not in "\n".join(hook_lines)


def test_database_tools_inherit_no_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every child tool starts from the allow-list, plus the one secret its engine passes."""
    monkeypatch.setenv("OTHER_PG_PASSWORD", PG_PASSWORD)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("PGPASSWORD", "inherited-would-be-wrong")
    monkeypatch.setenv("PGSSLMODE", "require")
    env = child_environment({"PGPASSWORD": "the-right-one"})
    assert env["PGPASSWORD"] == "the-right-one" and env["PGSSLMODE"] == "require"
    assert "OTHER_PG_PASSWORD" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert child_environment().get("PGPASSWORD") is None
