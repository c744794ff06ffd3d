"""What a person (or a log collector) reads: global options anywhere on the line, JSON lines that
are all JSON, units and times, and the summaries around errors. SQLite and local stores only."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from dataferry import artifacts
from dataferry.stores.local import LocalStore

from .test_cli_errors import DATAFERRY, Project, digest, make_project


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


def _json_lines(stderr: str) -> list[dict[str, object]]:
    """Every non-empty stderr line, parsed: fails on a line that is not JSON."""
    out = []
    for line in stderr.splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                pytest.fail(f"not a JSON line: {line!r}")
    return out


def test_json_logs_error_lines_are_json(project: Project) -> None:
    """The final error, its notes and hint are JSON too, with the exit code as a number."""
    proc = project.run("--json-logs", "restore", "app", "--env", "production", "--from", "staging")
    assert proc.returncode == 9
    [error] = [e for e in _json_lines(proc.stderr) if e["level"] == "error"]
    assert "production is protected" in str(error["message"])
    assert "--force" in str(error["hint"]) and error["exit_code"] == 9


def test_json_logs_usage_errors_are_json(project: Project) -> None:
    """click's own usage errors (exit 2) are JSON lines too when --json-logs is given."""
    proc = project.run("--json-logs", "restore", "app", "--env", "staging")
    assert proc.returncode == 2
    [error] = _json_lines(proc.stderr)
    assert "--from" in str(error["message"]) and error["exit_code"] == 2


def test_json_logs_fields_are_typed(project: Project) -> None:
    """Rates, durations and sizes are numbers (bytes, seconds), not text such as '1.2 MiB/s'."""
    proc = project.run("backup", "app", "--env", "production", "--json-logs")
    assert proc.returncode == 0, proc.stderr
    events = _json_lines(proc.stderr)
    typed = [e for e in events if "rate" in e]
    assert typed, proc.stderr
    for event in typed:
        assert isinstance(event["rate"], int | float) and isinstance(event["duration"], int | float), event
        assert isinstance(event["bytes"], int), event


def test_text_logs_show_units_people_read(project: Project) -> None:
    """Without --json-logs, the same fields read as IEC units and seconds."""
    proc = project.run("backup", "app", "--env", "production")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"rate=\d+(\.\d)? (B|KiB|MiB|GiB)/s", proc.stderr), proc.stderr
    assert re.search(r"size=\d+(\.\d)? (B|KiB|MiB)\b", proc.stderr), proc.stderr


def test_ctrl_c_on_a_real_restore_prints_the_interrupted_message(project: Project) -> None:
    """The installed command, a restore stuck reading its artifact (a pipe nobody writes), Ctrl-C:
    'error: interrupted' and a hint, exit 1, staging untouched, no shadow left."""
    store = LocalStore(project.root / "stores/production")
    data = project.root / "stores/production" / artifacts.latest(store, "app").objects[0].key
    data.unlink()
    os.mkfifo(data)
    before = digest(project.staging)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAFERRY_")}
    argv = [
        DATAFERRY,
        "--config",
        str(project.config),
        "restore",
        "app",
        "--env",
        "staging",
        "--from",
        "production",
    ]
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # the restore has begun once its transfer starts
        seen.append(line)
        if "restore app: started" in line:
            break
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 1, "".join(seen) + rest
    assert "error: interrupted" in rest and "\nhint: " in rest, rest
    assert "Aborted!" not in rest and "Traceback" not in rest
    assert digest(project.staging) == before
    assert sorted(p.name for p in project.staging.parent.iterdir()) == ["app.db"]


def test_a_restore_says_which_phase_it_is_in(project: Project) -> None:
    """After the data stream: what the database is doing, the row count check, then the swap,
    which names the real target database (the staging file), not only the configuration's name."""
    proc = project.run("restore", "app", "--env", "staging", "--from", "production")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()

    def where(fragment: str) -> int:
        found = [i for i, line in enumerate(lines) if fragment in line]
        assert found, f"{fragment!r} not in {proc.stderr}"
        return found[0]

    streamed = where("restore app: data streamed; the database finishes the shadow")
    counted = where("restore app: counting the shadow's rows")
    swapped = where(f"-> live {project.staging} (app in staging)")
    assert where("restore app: started") < streamed < counted < swapped
    assert not any("stopped after" in line for line in lines)


def test_a_failed_backup_prints_no_success_looking_summary(project: Project) -> None:
    """A backup that fails says 'stopped after', never 'N B in 0.0s' just before the error."""
    project.production.unlink()
    project.production.mkdir()  # not a database file: the dump fails
    proc = project.run("backup", "app", "--env", "production")
    assert proc.returncode != 0
    assert not re.search(r"backup app: \d+(\.\d)? \w*B in ", proc.stderr), proc.stderr


def test_verify_shows_progress_with_a_total(project: Project) -> None:
    """verify said nothing for seconds on a large artifact: it logs a transfer with its total."""
    proc = project.run("verify", "app", "--env", "production", "--json-logs")
    assert proc.returncode == 0, proc.stderr
    events = _json_lines(proc.stderr)
    started = [e for e in events if str(e["message"]).startswith("verify ") and "total_bytes" in e]
    assert started and isinstance(started[0]["total_bytes"], int), proc.stderr
    assert any(e.get("bytes") == started[0]["total_bytes"] for e in events), proc.stderr


def test_backup_estimates_its_total_from_the_database_size(project: Project) -> None:
    """A dump's size is unknown until it ends: the engine's database size gives an estimate (for
    SQLite the file's size), so the progress has a total and an ETA."""
    proc = project.run("backup", "app", "--env", "production", "--json-logs")
    assert proc.returncode == 0, proc.stderr
    [started] = [e for e in _json_lines(proc.stderr) if e["message"] == "backup app: started"]
    assert started["estimated_bytes"] == project.production.stat().st_size


def test_times_are_shown_in_whole_seconds(project: Project) -> None:
    """``pause --until 3d`` printed the expiry with microseconds."""
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(
        text + '\n[jobs.nightly]\nenvironment = "production"\ndatabase = "app"\nsteps = ["backup"]\n',
        encoding="utf-8",
    )
    proc = project.run("pause", "nightly", "--reason", "migration", "--until", "3d")
    assert proc.returncode == 0, proc.stderr
    assert not re.search(r"\d\.\d{6}", proc.stdout), proc.stdout
    # in the same form as the time it was made
    assert re.search(
        r"since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ:", proc.stdout
    )


@pytest.mark.parametrize("command", ["restore", "pull"])
def test_jobs_defaults_to_auto(project: Project, command: str) -> None:
    """``--jobs`` is auto unless given (issue 15): the help says so and how auto chooses."""
    proc = project.run(command, "--help", config=False)
    assert proc.returncode == 0, proc.stderr
    help_text = " ".join(proc.stdout.split())
    assert "--jobs INTEGER" in help_text and "[default: (auto)]" in help_text
    assert "usable CPUs" in help_text


def test_restore_dry_run_says_the_jobs_it_would_use(project: Project) -> None:
    """A SQLite restore copies one file: auto is 1 worker, and the dry run says why; an asked-for
    value is shown as asked."""
    dry = project.run("restore", "app", "--env", "staging", "--from", "production", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert re.search(r", jobs 1 \(auto: \d+ CPUs?, SQLite restores one file\)$", dry.stdout.strip()), (
        dry.stdout
    )
    asked = project.run("restore", "app", "--env", "staging", "--from", "production", "--dry-run", "-j", "3")
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout.strip().endswith(", jobs 3 (as asked)"), asked.stdout
