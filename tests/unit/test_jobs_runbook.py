"""The runbook is part of the feature: its exit codes, metrics and commands must match the code."""

from __future__ import annotations

import re
from pathlib import Path

import click

from dataferry.cli import cli
from dataferry.errors import EXIT_CODES
from dataferry.metrics import HELP

RUNBOOK = (Path(__file__).resolve().parents[2] / "docs" / "runbook.md").read_text(encoding="utf-8")


def test_runbook_exit_codes_match_the_code() -> None:
    rows = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", RUNBOOK, flags=re.M))
    assert {int(k): v for k, v in rows.items()} == EXIT_CODES


def test_every_metric_is_explained() -> None:
    missing = [name for name in HELP if f"`{name}" not in RUNBOOK]
    assert not missing


def test_every_job_command_is_in_the_runbook() -> None:
    for name in ("run", "pause", "resume", "status", "history", "scheduler", "unlock", "restore", "list"):
        assert cli.get_command(click.Context(cli), name) is not None, name
        assert re.search(rf"dataferry {name}\b", RUNBOOK), name
