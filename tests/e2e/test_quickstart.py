"""``dataferry quickstart DIR`` as a newcomer runs it: the installed command, no servers.

It must succeed, leave staging equal to production (schema and rows), publish an artifact that
verifies, and work again when run a second time in the same directory.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from dataferry import artifacts
from dataferry.stores.local import LocalStore
from servers import free_port

DATAFERRY = str(Path(sys.executable).with_name("dataferry"))
DB = "email-alert-api"


def dataferry(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed command; never through a shell."""
    return subprocess.run(
        [DATAFERRY, *args], cwd=cwd, env=dict(os.environ), capture_output=True, text=True, timeout=300
    )


def dump(path: Path) -> list[str]:
    """Schema and rows of a SQLite database as SQL text."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
        return list(con.iterdump())


def row_counts(path: Path) -> dict[str, int]:
    """Rows per table."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


def succeeded(proc: subprocess.CompletedProcess[str]) -> None:
    """Exit 0 and no traceback."""
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Where the quickstart is asked to put everything (it does not exist yet)."""
    return tmp_path / "ferry"


def test_quickstart_runs_the_chain_and_no_personal_data_leaves_production(
    tmp_path: Path, project: Path
) -> None:
    """One command: sample data, production backup, staging restore + sanitise + backup (after
    production), integration restore (after staging), status; no production address or phone
    number reaches staging or integration, and every row arrives."""
    proc = dataferry("quickstart", str(project), cwd=tmp_path)
    succeeded(proc)
    for step in (
        "1. made",
        "2. job email-alert-api-production",
        "3. job email-alert-api-staging",
        "4. job email-alert-api-integration",
        "dataferry status:",
    ):
        assert step in proc.stdout, proc.stdout
    assert "staging: 0 of them found" in proc.stdout and "integration: 0 of them found" in proc.stdout

    production = project / "databases/production" / f"{DB}.db"
    staging = project / "databases/staging" / f"{DB}.db"
    integration = project / "databases/integration" / f"{DB}.db"
    prod_rows = dump(production)
    assert sum(line.startswith("INSERT") for line in prod_rows) > 1000  # a real sample, not an empty file
    assert row_counts(staging) == row_counts(production) == row_counts(integration)
    assert dump(integration) == dump(staging)  # integration got staging's sanitised data
    prod_addresses = {r[0] for r in sqlite3.connect(production).execute("SELECT address FROM subscribers")}
    staged = "\n".join(dump(staging))
    assert not any(
        a in staged for a in prod_addresses
    )  # checked independently of the quickstart's own report
    for db in (staging, integration):
        leftovers = [p.name for p in db.parent.iterdir() if p.name != db.name]
        assert leftovers == [], "no shadow or journal files left beside the restored database"

    store = LocalStore(project / "stores/production")
    manifest = artifacts.latest(store, DB)
    artifacts.verify(store, manifest)
    assert manifest.row_counts == row_counts(production)
    assert manifest.row_counts["subscribers"] > 0
    sanitised = artifacts.latest(LocalStore(project / "stores/staging"), DB)
    assert sanitised.is_publishable_sanitised()
    config = project / "dataferry.toml"
    verify = dataferry("--config", str(config), "verify", DB, "--env", "production", cwd=tmp_path)
    succeeded(verify)
    assert verify.stdout.startswith(f"ok {manifest.id}")


def test_quickstart_runs_again_in_the_same_directory(tmp_path: Path, project: Path) -> None:
    """A second run publishes a second artifact and restores it; nothing breaks."""
    succeeded(dataferry("quickstart", str(project), cwd=tmp_path))
    succeeded(dataferry("quickstart", str(project), cwd=tmp_path))

    config = project / "dataferry.toml"
    listed = dataferry("--config", str(config), "list", DB, "--env", "production", "--json", cwd=tmp_path)
    succeeded(listed)
    ids = [m["id"] for m in json.loads(listed.stdout)]
    assert len(ids) == 2 and len(set(ids)) == 2
    assert ids == sorted(ids, reverse=True)  # newest first
    assert dump(project / "databases/staging" / f"{DB}.db") == dump(
        project / "databases/integration" / f"{DB}.db"
    )
    for ident in ids:
        succeeded(
            dataferry(
                "--config",
                str(config),
                "verify",
                DB,
                "--env",
                "production",
                "--artifact",
                ident,
                cwd=tmp_path,
            )
        )


def test_quickstart_default_directory_is_relative_to_where_it_runs(tmp_path: Path) -> None:
    """Without DIR it uses ./dataferry-quickstart, and the printed hint names a config that works."""
    proc = dataferry("quickstart", cwd=tmp_path)
    succeeded(proc)
    config = tmp_path / "dataferry-quickstart" / "dataferry.toml"
    assert config.is_file()
    hint = next(line for line in proc.stdout.splitlines() if line.startswith("try:"))
    args = shlex.split(hint.removeprefix("try:"))
    # the command as it was run, or 'dataferry' when that is the same program on PATH
    assert args[0] == DATAFERRY or shutil.which(args[0]) == DATAFERRY, hint
    succeeded(subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120))


def test_the_try_line_works_after_the_readmes_command(tmp_path: Path) -> None:
    """Run as scripts/quickstart does (``.venv/bin/dataferry quickstart``, not on PATH), the "try:"
    line names ``.venv/bin/dataferry`` and works as printed, from the same directory."""
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "dataferry").symlink_to(DATAFERRY)
    path = os.pathsep.join(
        p for p in os.environ["PATH"].split(os.pathsep) if p != str(Path(DATAFERRY).parent)
    )
    env = {**os.environ, "PATH": path}
    proc = subprocess.run(
        [".venv/bin/dataferry", "quickstart"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    succeeded(proc)
    hint = next(line for line in proc.stdout.splitlines() if line.startswith("try:"))
    args = shlex.split(hint.removeprefix("try:"))
    assert args[0] == ".venv/bin/dataferry", hint
    succeeded(subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120))


def test_quickstart_refuses_a_directory_with_someone_elses_config(tmp_path: Path, project: Path) -> None:
    """It never overwrites a dataferry.toml it did not write (exit 2, file unchanged)."""
    project.mkdir()
    mine = project / "dataferry.toml"
    mine.write_text('[environments.production]\nstore = "s3://real-backups"\n', encoding="utf-8")
    proc = dataferry("quickstart", str(project), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ")
    assert "Traceback" not in proc.stderr
    assert mine.read_text(encoding="utf-8") == '[environments.production]\nstore = "s3://real-backups"\n'
    assert not (project / "databases").exists()


def try_lines(stdout: str) -> list[list[str]]:
    """The commands the quickstart's closing "try:" lines print, as argv."""
    return [shlex.split(line.removeprefix("try:")) for line in stdout.splitlines() if line.startswith("try:")]


def test_every_try_line_works_as_printed(tmp_path: Path) -> None:
    """status, serve and pull, as printed: the pull (no config; the store of staging, which holds
    the sanitised artifacts, and the quickstart's public key) makes a developer's copy equal to
    integration's, and the status page answers for the quickstart's chain."""
    proc = dataferry("quickstart", cwd=tmp_path)
    succeeded(proc)
    lines = {
        args[args.index("--config") + 2] if "--config" in args else args[1]: args
        for args in try_lines(proc.stdout)
    }
    assert set(lines) == {"status", "serve", "pull"}, proc.stdout

    succeeded(subprocess.run(lines["status"], cwd=tmp_path, capture_output=True, text=True, timeout=120))

    pulled = subprocess.run(lines["pull"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    succeeded(pulled)
    into = lines["pull"][lines["pull"].index("--into") + 1]
    copy = tmp_path / into.removeprefix("sqlite:///")
    assert dump(copy) == dump(tmp_path / "dataferry-quickstart/databases/integration" / f"{DB}.db")

    port = free_port()
    server = subprocess.Popen(
        [*lines["serve"], "--bind", f"127.0.0.1:{port}"], cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    try:
        status = wait_for_json(f"http://127.0.0.1:{port}/api/status", server)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert {e["name"] for e in status["environments"]} == {"production", "staging", "integration"}


def wait_for_json(url: str, server: subprocess.Popen[str]) -> Any:
    """GET ``url`` once the server answers (it takes a moment to start)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.load(response)
        except OSError:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, f"{url} did not answer"
            time.sleep(0.2)


def test_a_pull_from_the_quickstart_store_takes_a_duration_and_needs_no_config_for_its_hints(
    tmp_path: Path,
) -> None:
    """``pull --at 1h`` reads a duration as ``restore --at`` does; a target whose directory is
    missing exits 3 with a hint about --into, not about 'dataferry check' (which needs a config)."""
    proc = dataferry("quickstart", cwd=tmp_path)
    succeeded(proc)
    pull = next(args for args in try_lines(proc.stdout) if "pull" in args)
    key = pull[pull.index("--trust-key") + 1]
    source = pull[pull.index("pull") + 1]
    older = dataferry(
        "pull", source, "--into", "sqlite:///older.db", "--trust-key", key, "--at", "1h", cwd=tmp_path
    )
    assert older.returncode == 4, older.stderr  # nothing is an hour old yet: not found, not a bad time
    assert "at or before" in older.stderr and "hint: the oldest there is" in older.stderr
    # integration only restores: its store has no artifact, and the hint says why that may be
    integration = source.replace("/staging/", "/integration/")
    empty = dataferry("pull", integration, "--into", "sqlite:///i.db", "--trust-key", key, cwd=tmp_path)
    assert empty.returncode == 4 and "only restores" in empty.stderr, empty.stderr
    newer = dataferry(
        "pull", source, "--into", "sqlite:///new.db", "--trust-key", key, "--at", "0s", cwd=tmp_path
    )
    succeeded(newer)
    missing = dataferry(
        "pull", source, "--into", "sqlite:///no/such/dir/x.db", "--trust-key", key, cwd=tmp_path
    )
    assert missing.returncode == 3, missing.stderr
    assert "--into" in missing.stderr and "dataferry check" not in missing.stderr


def test_the_printed_exports_let_the_docs_commands_run_as_written(tmp_path: Path) -> None:
    """The runbook's commands have no --config and 'dataferry check' needs the profile's salt: the
    quickstart's closing lines say what to export, and with both exported 'check' passes."""
    proc = dataferry("quickstart", cwd=tmp_path)
    succeeded(proc)
    assert dataferry("--config", "dataferry-quickstart/dataferry.toml", "check", cwd=tmp_path).returncode == 3
    exports = re.findall(r"export (\w+)=(\$\(cat [^)]+\)|\S+)", proc.stdout)
    assert {name for name, _ in exports} == {"DATAFERRY_CONFIG", "EMAIL_ALERT_API_QUICKSTART_SALT"}, (
        proc.stdout
    )
    env = dict(os.environ)
    for name, value in exports:
        env[name] = subprocess.run(
            ["bash", "-c", f"printf %s {value}"], cwd=tmp_path, capture_output=True, text=True, check=True
        ).stdout
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    check = subprocess.run(
        [DATAFERRY, "check"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120
    )
    succeeded(check)
