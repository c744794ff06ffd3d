"""The command line with user mistakes: a message and a hint, the documented exit code, no traceback.

Everything runs on SQLite and local stores through the installed ``dataferry`` command, so what is
checked is exactly what an operator sees: stderr and the exit status.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import subprocess
import sys
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from dataferry import artifacts, ops
from dataferry.cli import cli
from dataferry.config import load
from dataferry.errors import EXIT_CODES
from dataferry.stores.local import LocalStore

DATAFERRY = str(Path(sys.executable).with_name("dataferry"))

CONFIG = """\
[environments.production]
store = "stores/production"
protected = true

[environments.staging]
store = "stores/staging"

[databases.app]
engine = "sqlite"
[databases.app.environments]
production = { url = "sqlite:///db/production/app.db" }
staging = { url = "sqlite:///db/staging/app.db" }

[databases.locked-app]
engine = "sqlite"
[databases.locked-app.environments]
production = { url = "sqlite:///db/production/app.db", password_env = "FERRY_E2E_PASSWORD_NOT_SET" }
"""


@dataclass
class Outcome:
    """What an operator sees: exit status, stdout, stderr, and any exception that escaped."""

    returncode: int
    stdout: str
    stderr: str
    escaped: BaseException | None = None


@dataclass
class Project:
    """A small SQLite project with one published production artifact."""

    root: Path
    config: Path
    production: Path
    staging: Path
    artifact_id: str

    def run(self, *args: str, config: bool = True) -> Outcome:
        """Run the dataferry command in this process (fast); anything but SystemExit escaping
        from it is what would have been a traceback."""
        argv = [*(["--config", str(self.config)] if config else []), *args]
        result = CliRunner().invoke(cli, argv, prog_name="dataferry", catch_exceptions=True)
        escaped = result.exception if not isinstance(result.exception, SystemExit) else None
        return Outcome(result.exit_code, result.stdout, result.stderr, escaped)

    def run_process(self, *args: str, cwd: Path | None = None) -> Outcome:
        """Run the installed command as a real process (entry point, real stderr and exit status)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DATAFERRY_")}
        proc = subprocess.run(
            [DATAFERRY, *args], cwd=cwd or self.root, env=env, capture_output=True, text=True, timeout=120
        )
        return Outcome(proc.returncode, proc.stdout, proc.stderr)


def make_db(path: Path, rows: int, label: str) -> None:
    """A one-table SQLite database."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path)) as con, con:
        con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, label TEXT)")
        con.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"{label}-{i}") for i in range(rows)])


def rows(path: Path) -> list[tuple[object, ...]]:
    """Every row of the items table."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
        return con.execute("SELECT * FROM items ORDER BY id").fetchall()


def digest(path: Path) -> str:
    """sha256 of a file: 'unchanged' means byte for byte."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """Production has 50 rows and one artifact; staging has 5 other rows."""
    return make_project(tmp_path)


def make_project(tmp_path: Path) -> Project:
    """The ``project`` fixture's project (other test modules build theirs with it)."""
    config = tmp_path / "dataferry.toml"
    config.write_text(CONFIG, encoding="utf-8")
    production, staging = tmp_path / "db/production/app.db", tmp_path / "db/staging/app.db"
    make_db(production, 50, "prod")
    make_db(staging, 5, "staging")
    manifest = ops.backup(load(config), "app", "production").manifest
    return Project(tmp_path, config, production, staging, manifest.id)


def fails(proc: Outcome, code: int, *fragments: str, hint: bool = True) -> str:
    """The command failed with ``code``, said why on stderr (with a hint), and showed no traceback."""
    assert proc.escaped is None, f"would print a traceback: {proc.escaped!r}"
    assert proc.returncode == code, f"exit {proc.returncode}, wanted {code}: {proc.stderr}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert proc.stderr.strip(), "a failure must say something"
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr
    if hint:
        assert "\nhint: " in proc.stderr, proc.stderr
    return proc.stderr


# -- configuration -------------------------------------------------------------------------------


def test_missing_config_file(project: Project) -> None:
    """--config naming a file that is not there: exit 2, says which file and how to fix it."""
    proc = project.run(
        "--config", str(project.root / "nope.toml"), "list", "app", "--env", "production", config=False
    )
    fails(proc, 2, "error: configuration file", "nope.toml", "not found")


def test_no_config_anywhere(project: Project, tmp_path: Path) -> None:
    """No --config, no $DATAFERRY_CONFIG, no ./dataferry.toml: exit 2 naming ./dataferry.toml."""
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = project.run_process("list", "app", "--env", "production", cwd=empty)
    fails(proc, 2, "dataferry.toml", "DATAFERRY_CONFIG")


def test_invalid_toml_names_the_line(project: Project) -> None:
    """A syntax error: exit 2, with the line to fix."""
    text = CONFIG.replace("protected = true", "protected = tru")
    project.config.write_text(text, encoding="utf-8")
    line = text.splitlines().index("protected = tru") + 1
    err = fails(project.run("list", "app", "--env", "production"), 2, "not valid TOML")
    assert re.search(rf"\bline {line}\b", err), err


def test_invalid_config_lists_every_problem_with_file_and_line(project: Project) -> None:
    """Two mistakes, both reported in one go with dataferry.toml:<line>."""
    text = CONFIG.replace('engine = "sqlite"', 'engine = "sqlite3"', 1).replace(
        "protected = true", "protectd = true"
    )
    project.config.write_text(text, encoding="utf-8")
    err = fails(project.run("check"), 2, "2 problem(s)")
    for fragment in ('engine = "sqlite3"', "protectd = true"):
        line = text.splitlines().index(fragment) + 1
        assert f"dataferry.toml:{line}: " in err, err


@pytest.mark.parametrize(
    "args",
    [
        ("backup", "app", "--env", "production"),
        ("restore", "app", "--env", "staging", "--from", "production"),
    ],
    ids=["backup", "restore"],
)
def test_a_sqlite_url_naming_a_directory(project: Project, args: tuple[str, ...]) -> None:
    """sqlite3 says only "disk I/O error" of a directory: dataferry names the url and the fix."""
    text = CONFIG.replace("sqlite:///db/production/app.db", "sqlite:///db/production").replace(
        "sqlite:///db/staging/app.db", "sqlite:///db/staging"
    )
    project.config.write_text(text, encoding="utf-8")
    fails(project.run(*args), 2, "names the directory", "not a database file")


@pytest.mark.parametrize(
    "args",
    [
        ("backup", "nosuchdb", "--env", "production"),
        ("restore", "nosuchdb", "--env", "staging", "--from", "production"),
        ("list", "nosuchdb", "--env", "production"),
    ],
    ids=["backup", "restore", "list"],
)
def test_unknown_database(project: Project, args: tuple[str, ...]) -> None:
    """A database that is not configured: exit 4 (not found, as the table says), and the hint lists
    the ones that are."""
    err = fails(project.run(*args), 4, "no database 'nosuchdb'")
    assert "known databases: app, locked-app" in err


@pytest.mark.parametrize(
    "args",
    [
        ("list", "app", "--env", "nowhere"),
        ("backup", "app", "--env", "nowhere"),
        ("restore", "app", "--env", "staging", "--from", "nowhere"),
        ("verify", "app", "--env", "nowhere"),
    ],
    ids=["list", "backup", "restore-from", "verify"],
)
def test_unknown_environment(project: Project, args: tuple[str, ...]) -> None:
    """An environment that is not configured: exit 2, and the hint lists the ones that are."""
    err = fails(project.run(*args), 2, "no environment 'nowhere'")
    assert "known environments: production, staging" in err


def test_missing_password_variable(project: Project) -> None:
    """A password_env that is not set: exit 3 (not ready), naming the variable."""
    fails(project.run("backup", "locked-app", "--env", "production"), 3, "FERRY_E2E_PASSWORD_NOT_SET")


def test_missing_s3_key_variable(project: Project) -> None:
    """A store naming an access key variable that is not set: exit 3 (credential missing), naming it;
    nothing is sent anywhere."""
    text = CONFIG + (
        "\n[environments.bucket]\n"
        'store = { url = "s3://nowhere-bucket/x", endpoint_url = "http://127.0.0.1:9", '
        'access_key_id_env = "FERRY_E2E_KEY_NOT_SET", secret_access_key_env = "FERRY_E2E_KEY_NOT_SET" }\n'
    )
    project.config.write_text(text, encoding="utf-8")
    fails(project.run("list", "app", "--env", "bucket"), 3, "FERRY_E2E_KEY_NOT_SET")


# -- safety --------------------------------------------------------------------------------------


def test_restore_into_protected_environment_needs_force(project: Project) -> None:
    """Production is protected: exit 9 and production is not touched."""
    before = digest(project.production)
    fails(
        project.run("restore", "app", "--env", "production", "--from", "staging"), 9, "protected", "--force"
    )
    fails(project.run("restore", "app", "--env", "production", "--from", "production"), 9, "protected")
    assert digest(project.production) == before


def test_corrupted_artifact_fails_verify(project: Project) -> None:
    """One flipped byte in the data object: verify exits 7 naming the object."""
    store = LocalStore(project.root / "stores/production")
    manifest = artifacts.latest(store, "app")
    data_file = project.root / "stores/production" / manifest.objects[0].key
    data = bytearray(data_file.read_bytes())
    data[len(data) // 2] ^= 0x10
    data_file.write_bytes(bytes(data))
    fails(project.run("verify", "app", "--env", "production"), 7, manifest.objects[0].key, "corrupt")


def test_corrupted_artifact_is_never_restored(project: Project) -> None:
    """Restoring that artifact exits 7 and staging stays exactly as it was (no shadow left)."""
    store = LocalStore(project.root / "stores/production")
    data_file = project.root / "stores/production" / artifacts.latest(store, "app").objects[0].key
    data = bytearray(data_file.read_bytes())
    data[len(data) // 2] ^= 0x10
    data_file.write_bytes(bytes(data))
    before = digest(project.staging)
    fails(project.run("restore", "app", "--env", "staging", "--from", "production"), 7)
    assert digest(project.staging) == before
    assert sorted(p.name for p in project.staging.parent.iterdir()) == ["app.db"]


def test_corrupt_manifest(project: Project) -> None:
    """A manifest that is not JSON, and no other artifact: verify and restore exit 7; list names it
    as damaged (tests/integration/test_operator_truth.py: newer good ones are still used)."""
    (project.root / "stores/production/app" / f"{project.artifact_id}.manifest.json").write_text("{oops")
    for args in (
        ("verify", "app", "--env", "production"),
        ("restore", "app", "--env", "staging", "--from", "production"),
    ):
        fails(project.run(*args), 7, "not valid")
    listed = project.run("list", "app", "--env", "production")
    assert listed.returncode == 0 and f"{project.artifact_id}\t-\t-\tDAMAGED" in listed.stdout
    assert "damaged manifest" in listed.stderr and "not valid" in listed.stderr


# -- selecting artifacts -------------------------------------------------------------------------


def test_missing_artifact_id(project: Project) -> None:
    """--artifact naming nothing: exit 4, for restore and verify."""
    missing = "2020-01-01T000000Z-app"
    restore = project.run("restore", "app", "--env", "staging", "--from", "production", "--artifact", missing)
    fails(restore, 4, missing, hint=False)
    fails(project.run("verify", "app", "--env", "production", "--artifact", missing), 4, missing, hint=False)
    fails(project.run("verify", "app", "--env", "production", "--artifact", "yesterday"), 4, "yesterday")


def test_at_before_any_artifact(project: Project) -> None:
    """--at earlier than every artifact: exit 4, staging untouched."""
    before = digest(project.staging)
    proc = project.run(
        "restore", "app", "--env", "staging", "--from", "production", "--at", "2020-01-01T00:00:00Z"
    )
    err = fails(proc, 4, "at or before 2020-01-01T00:00:00+00:00")
    assert re.search(r"hint: the oldest there is \d{4}-\d\d-\d\dT\d{6}Z-app; 'dataferry list app", err), err
    assert digest(project.staging) == before


def test_at_takes_a_duration_ago_like_until(project: Project) -> None:
    """``--at 3d`` (three days ago) is read as ``pause --until 3d`` is: before the only artifact, so
    exit 4 naming the time it meant (in whole seconds); ``--at 0s`` (now) restores that artifact."""
    before = digest(project.staging)
    proc = project.run("restore", "app", "--env", "staging", "--from", "production", "--at", "3d")
    err = fails(proc, 4, "at or before")
    assert re.search(r"at or before \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00\n", err), err
    assert digest(project.staging) == before
    proc = project.run("restore", "app", "--env", "staging", "--from", "production", "--at", "0s")
    assert proc.returncode == 0, proc.stderr
    assert rows(project.staging) == rows(project.production)


def test_nothing_published_yet(project: Project) -> None:
    """Restoring from a store without artifacts: exit 4 with the command that makes one."""
    proc = project.run("restore", "app", "--env", "production", "--from", "staging", "--force")
    fails(proc, 4, "no artifact of app", "dataferry backup app")


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (("--at", "last tuesday"), "cannot read time"),
        (("--at", "2026-01-01", "--artifact", "x"), "not both"),
        (("--jobs", "0"), "--jobs"),
    ],
    ids=["bad-time", "at-and-artifact", "jobs-zero"],
)
def test_bad_restore_arguments(project: Project, extra: tuple[str, ...], fragment: str) -> None:
    """Arguments that make no sense: exit 2 before anything happens."""
    before = digest(project.staging)
    proc = project.run("restore", "app", "--env", "staging", "--from", "production", *extra)
    fails(proc, 2, fragment, hint=False)
    assert digest(project.staging) == before


# -- usage errors and the happy path around them -------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [("restore", "app", "--env", "staging"), ("frobnicate",), ("list",), ("backup", "app", "--env")],
    ids=["missing-from", "unknown-command", "missing-database", "option-without-value"],
)
def test_usage_errors_exit_2_without_traceback(project: Project, args: tuple[str, ...]) -> None:
    """click's own usage errors also exit 2, saying what is wrong."""
    err = fails(project.run(*args), 2, hint=False)
    assert "Error: " in err


def test_exit_codes_are_documented(project: Project) -> None:
    """``dataferry exit-codes`` prints the table the tests above rely on."""
    proc = project.run("exit-codes", config=False)
    assert proc.returncode == 0
    printed = dict(line.split("\t", 1) for line in proc.stdout.splitlines())
    assert printed == {str(code): meaning for code, meaning in EXIT_CODES.items()}


def test_the_same_commands_succeed_when_used_right(project: Project) -> None:
    """The error tests above are not passing because everything fails: the correct calls work."""
    assert project.run("verify", "app", "--env", "production").returncode == 0
    proc = project.run(
        "restore", "app", "--env", "staging", "--from", "production", "--artifact", project.artifact_id
    )
    assert proc.returncode == 0, proc.stderr
    assert rows(project.staging) == rows(project.production)


def test_a_real_process_reports_the_same_way(project: Project) -> None:
    """Through the installed entry point: the message, the hint and the exit status."""
    proc = project.run_process(
        "--config", str(project.config), "restore", "app", "--env", "production", "--from", "staging"
    )
    fails(proc, 9, "error: production is protected", "--force")
    assert proc.stdout == ""
