"""The gate and trust half of issue 12: nothing runs between the gate and publication, signed
manifests, masked means masked, silent no-ops, interrupted sanitisations and raw leftovers.

SQLite throughout (the quickstart's sample database and profile): these are rules of ``ops`` and the
job runner, the same for every engine."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dataferry import artifacts, ops
from dataferry.config import Config, load
from dataferry.errors import ChecksFailed
from dataferry.jobs import state
from dataferry.jobs.runner import run_job
from dataferry.jobs.state import StoreCache
from dataferry.quickstart import DB, PROFILE, SALT_ENV, make_sample_database, personal_data

SALT = "trust-test-salt-0123456789abcdef"
STAGE = ["restore:production", "sanitise", "backup"]


def chain(root: Path, stage_steps: list[str] | None = None, extra: str = "") -> Config:
    """production -> staging (sanitised) -> integration, SQLite databases and local stores."""
    (root / "profile.toml").write_text(PROFILE)
    for env in ("production", "staging", "integration"):
        (root / "databases" / env).mkdir(parents=True, exist_ok=True)
    make_sample_database(root / "databases" / "production" / f"{DB}.db", subscribers=50)
    steps = ", ".join(f'"{s}"' for s in (stage_steps or STAGE))
    text = f"""
[environments.production]
store = "stores/production"
protected = true
[environments.staging]
store = "stores/staging"
requires_sanitised = true
[environments.integration]
store = "stores/integration"
requires_sanitised = true

[databases.{DB}]
engine = "sqlite"
sanitise = "profile.toml"
[databases.{DB}.environments]
production = {{ url = "sqlite:///databases/production/{DB}.db" }}
staging = {{ url = "sqlite:///databases/staging/{DB}.db" }}
integration = {{ url = "sqlite:///databases/integration/{DB}.db" }}

[jobs.prod]
environment = "production"
database = "{DB}"
steps = ["backup"]
[jobs.stage]
environment = "staging"
database = "{DB}"
steps = [{steps}]
[jobs.integ]
environment = "integration"
database = "{DB}"
steps = ["restore:staging"]
{extra}
"""
    (root / "dataferry.toml").write_text(text)
    return load(root / "dataferry.toml")


@pytest.fixture(autouse=True)
def _salt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SALT_ENV, SALT)


def manifests(cfg: Config, env: str) -> list[str]:
    return artifacts.manifest_keys(ops.store_for(cfg, env), DB)


# -- nothing runs between the gate and publication ----------------------------------------------


LEAK_HOOK = """\
import os, sqlite3
path = os.environ["DATAFERRY_DATABASE_URL"].removeprefix("sqlite:///")
con = sqlite3.connect(path)
with con:
    con.execute("UPDATE subscribers SET phone = '07911 223344' WHERE id = 1")
con.close()
"""


def test_a_hook_between_sanitise_and_backup_is_checked_again_and_its_leak_not_published(
    tmp_path: Path,
) -> None:
    (tmp_path / "leak.py").write_text(LEAK_HOOK)
    cfg = chain(tmp_path, ["restore:production", "sanitise", f"hook:{sys.executable} leak.py", "backup"])
    run_job(cfg, "prod")
    with pytest.raises(ChecksFailed) as info:
        run_job(cfg, "stage")
    assert info.value.exit_code == 8
    assert "phone in subscribers.phone (1)" in info.value.message
    assert manifests(cfg, "staging") == []  # nothing published
    record = state.last_run(StoreCache(cfg).for_job("stage"), "stage")
    assert record is not None and record.status == "failed"
    assert [s.status for s in record.steps] == ["succeeded", "succeeded", "succeeded", "failed"]


def test_without_a_hook_the_backup_trusts_the_restores_gate(tmp_path: Path) -> None:
    cfg = chain(tmp_path)
    run_job(cfg, "prod")
    record = run_job(cfg, "stage")
    assert record is not None and record.status == "succeeded"
    assert record.steps[2].detail == "sanitised"  # not checked again: nothing ran in between
    emails, phones = personal_data(tmp_path / "databases" / "staging" / f"{DB}.db")
    prod_emails, prod_phones = personal_data(tmp_path / "databases" / "production" / f"{DB}.db")
    assert not emails & prod_emails and not phones & prod_phones


def test_a_harmless_hook_before_the_backup_passes_the_second_check_and_says_so(tmp_path: Path) -> None:
    cfg = chain(tmp_path, ["restore:production", "sanitise", f"hook:{sys.executable} -c pass", "backup"])
    run_job(cfg, "prod")
    record = run_job(cfg, "stage")
    assert record is not None and record.status == "succeeded"
    assert record.steps[3].detail == "sanitised, live data checked again after step 3"
    assert len(manifests(cfg, "staging")) == 1
