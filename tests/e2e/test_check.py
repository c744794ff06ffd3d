"""`dataferry check` covers sanitisation profiles: a missing salt is found before any restore needs it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from dataferry.cli import cli
from dataferry.progress import NullReporter
from dataferry.quickstart import SALT_ENV, SALT_FILE, run_quickstart


def test_check_reports_a_missing_salt_and_passes_once_it_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_quickstart(tmp_path / "qs", reporter=NullReporter(), echo=lambda _line: None)
    config = str(tmp_path / "qs" / "dataferry.toml")

    missing = CliRunner().invoke(cli, ["--config", config, "check"])
    assert missing.exit_code == 3, missing.output
    assert f"FAIL  email-alert-api: sanitisation profile: environment variable {SALT_ENV}" in missing.output

    salt = (tmp_path / "qs" / SALT_FILE).read_text().strip()
    monkeypatch.setenv(SALT_ENV, salt)
    ok = CliRunner().invoke(cli, ["--config", config, "check"])
    assert ok.exit_code == 0, ok.output
    assert "ok    email-alert-api: sanitisation profile" in ok.output
    assert salt not in ok.output and salt not in missing.output
