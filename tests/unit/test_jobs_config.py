"""Job configuration: durations, cron, time zones, step order and ``after`` chains are validated."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from dataferry.config import parse, parse_duration
from dataferry.errors import ConfigError

BASE = """
[environments.production]
store = "stores/production"
[environments.staging]
store = "stores/staging"

[databases.app]
engine = "sqlite"
[databases.app.environments]
production = { url = "sqlite:///p.db" }
staging = { url = "sqlite:///s.db" }

[jobs.prod]
environment = "production"
database = "app"
steps = ["backup"]
"""


def _job(body: str) -> str:
    return BASE + '\n[jobs.stage]\nenvironment = "staging"\ndatabase = "app"\n' + body


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text, Path("/tmp/dataferry.toml"))
    assert info.value.exit_code == 2
    return info.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("26h", timedelta(hours=26)),
        ("7d", timedelta(days=7)),
        ("90m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
        ("1d12h", timedelta(hours=36)),
        ("1.5h", timedelta(minutes=90)),
    ],
)
def test_durations_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "26", "h", "5x", "1h x", "-3h"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_a_valid_job_loads_with_its_durations() -> None:
    cfg = parse(
        _job(
            'steps = ["restore:production", "backup"]\nafter = "prod"\nmax_age = "26h"\n'
            'max_runtime = "12h"\nschedule = "36 1 * * 1-5"\ntimezone = "Europe/London"\n'
        ),
        Path("/tmp/dataferry.toml"),
    )
    job = cfg.job("stage")
    # parsed once, at load: the fields are timedeltas
    assert job.max_age == timedelta(hours=26) and job.max_runtime == timedelta(hours=12)
    assert job.retry_delay == timedelta(seconds=30) and cfg.job("prod").max_age is None
    assert cfg.settings.lock_ttl == timedelta(minutes=10)


def test_a_duration_must_be_written_as_a_string() -> None:
    """A bare number has no unit: refused at its key rather than guessed as seconds."""
    msg = _error(_job('steps = ["restore:production"]\nretry_delay = 30\n'))
    assert "jobs.stage.retry_delay" in msg and "a duration such as 26h" in msg


def test_bad_max_age_names_the_key_and_line() -> None:
    msg = _error(_job('steps = ["restore:production"]\nmax_age = "26 hours please"\n'))
    assert "jobs.stage.max_age" in msg and "not a duration" in msg
    assert "dataferry.toml:" in msg  # a line number is given


def test_bad_cron_is_refused() -> None:
    msg = _error(_job('steps = ["restore:production"]\nschedule = "61 25 * * *"\n'))
    assert "jobs.stage.schedule" in msg and "cron" in msg


def test_unknown_time_zone_is_refused() -> None:
    msg = _error(_job('steps = ["restore:production"]\nschedule = "0 1 * * *"\ntimezone = "Mars/Olympus"\n'))
    assert "jobs.stage.timezone" in msg and "Mars/Olympus" in msg


@pytest.mark.parametrize(
    "steps",
    ['["sanitise", "backup"]', '["restore:production", "backup", "sanitise"]', '["backup", "sanitise"]'],
)
def test_sanitise_must_directly_follow_a_restore(steps: str) -> None:
    msg = _error(_job(f"steps = {steps}\n"))
    assert "'sanitise' step must directly follow" in msg


def test_after_must_name_a_job_that_publishes() -> None:
    text = BASE.replace('steps = ["backup"]', 'steps = ["hook:true"]') + (
        '\n[jobs.stage]\nenvironment = "staging"\ndatabase = "app"\nsteps = ["restore:production"]\nafter = "prod"\n'
    )
    assert "has no backup step" in _error(text)


def test_after_cycles_are_refused() -> None:
    text = BASE.replace('steps = ["backup"]', 'steps = ["backup"]\nafter = "stage"') + _job(
        'steps = ["restore:production", "backup"]\nafter = "prod"\n'
    ).removeprefix(BASE)
    assert "loops back" in _error(text)


def test_restoring_an_environment_into_itself_is_refused() -> None:
    assert "into itself" in _error(_job('steps = ["restore:staging"]\n'))


def test_unknown_state_environment_is_refused() -> None:
    assert "settings.state_environment" in _error('[settings]\nstate_environment = "nowhere"\n' + BASE)


def test_lock_ttl_must_be_a_duration() -> None:
    assert "settings.lock_ttl" in _error('[settings]\nlock_ttl = "soon"\n' + BASE)


def test_backup_sanitised_needs_a_profile_and_a_scratch_database() -> None:
    message = _error(_job('steps = ["backup:sanitised"]\n'))
    assert "'backup:sanitised' needs [databases.app] sanitise and scratch" in message
    assert "backup or backup:sanitised" in _error(_job('steps = ["backup:checked"]\n'))
    text = BASE.replace(
        'engine = "sqlite"\n',
        'engine = "sqlite"\nsanitise = "app.toml"\nscratch = { url = "sqlite:///scratch.db" }\n',
    )
    cfg = parse(
        text + '\n[jobs.stage]\nenvironment = "staging"\ndatabase = "app"\nsteps = ["backup:sanitised"]\n'
        'after = "prod"\n',
        Path("/tmp/dataferry.toml"),
    )
    assert cfg.jobs["stage"].steps == ["backup:sanitised"]
