"""The ``dataferry`` command on PostgreSQL, run as a real process: results, exit codes, no
tracebacks, and the password nowhere in its output or in any process's argv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers import PgServer

from ._pg_helpers import (
    PASSWORD_ENV,
    CmdlineWatcher,
    PgSetup,
    dataferry_databases,
    fingerprint,
    new_setup,
    quote,
    unique,
)

pytestmark = pytest.mark.integration

DATAFERRY = str(Path(sys.executable).parent / "dataferry")


@pytest.fixture
def pg_setup(pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PgSetup]:
    """A seeded source, a target with other data, local stores."""
    yield from new_setup(pg_server, tmp_path, monkeypatch)


def run(setup: PgSetup, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run dataferry with the setup's config; the password only in the environment."""
    proc = subprocess.run(
        [DATAFERRY, "--config", str(config or setup.config_path), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output
    assert setup.pg.password not in output
    return proc


def test_check_backup_list_verify_restore(pg_setup: PgSetup) -> None:
    with CmdlineWatcher() as watcher:
        check = run(pg_setup, "check")
        assert check.returncode == 0, check.stderr
        assert "FAIL" not in check.stdout
        assert "pg_dump" in check.stdout and "PostgreSQL" in check.stdout

        backup = run(pg_setup, "backup", "app", "--env", "production")
        assert backup.returncode == 0, backup.stderr
        ident = backup.stdout.split("\t")[0]

        listed = run(pg_setup, "list", "app", "--env", "production", "--json")
        manifests = json.loads(listed.stdout)
        assert [m["id"] for m in manifests] == [ident]
        assert manifests[0]["row_counts"]["billing.invoices"] == 600

        verify = run(pg_setup, "verify", "app", "--env", "production")
        assert verify.returncode == 0 and ident in verify.stdout

        restore = run(pg_setup, "restore", "app", "--env", "staging", "--from", "production", "--jobs", "2")
        assert restore.returncode == 0, restore.stderr
        assert f"restored {ident}" in restore.stdout

    assert fingerprint(pg_setup.pg, pg_setup.dst) == fingerprint(pg_setup.pg, pg_setup.src)
    assert {"pg_dump", "pg_restore"} <= watcher.programs()
    assert any(DATAFERRY in line for line in watcher.containing("--config"))
    assert watcher.containing(pg_setup.pg.password) == []
    assert pg_setup.spool_files() == []


def test_json_logs_are_json_and_hold_no_secret(pg_setup: PgSetup) -> None:
    proc = run(pg_setup, "--json-logs", "backup", "app", "--env", "production")
    assert proc.returncode == 0
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    assert any("published" in line["message"] for line in lines)


def test_protected_target_exits_9_and_force_restores(pg_setup: PgSetup) -> None:
    pg_setup.staging_protected = True
    before = fingerprint(pg_setup.pg, pg_setup.dst)
    assert run(pg_setup, "backup", "app", "--env", "production").returncode == 0

    refused = run(pg_setup, "restore", "app", "--env", "staging", "--from", "production")
    assert refused.returncode == 9
    assert "protected" in refused.stderr and "--force" in refused.stderr
    assert fingerprint(pg_setup.pg, pg_setup.dst) == before

    forced = run(pg_setup, "restore", "app", "--env", "staging", "--from", "production", "--force")
    assert forced.returncode == 0, forced.stderr
    assert fingerprint(pg_setup.pg, pg_setup.dst) == fingerprint(pg_setup.pg, pg_setup.src)


def test_corrupt_artifact_exits_7_and_changes_nothing(pg_setup: PgSetup) -> None:
    before = fingerprint(pg_setup.pg, pg_setup.dst)
    assert run(pg_setup, "backup", "app", "--env", "production").returncode == 0
    listed = json.loads(run(pg_setup, "list", "app", "--env", "production", "--json").stdout)
    path = pg_setup.tmp / "store-production" / listed[0]["objects"][0]["key"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))

    verify = run(pg_setup, "verify", "app", "--env", "production")
    assert verify.returncode == 7, verify.stderr
    restore = run(pg_setup, "restore", "app", "--env", "staging", "--from", "production")
    assert restore.returncode == 7
    assert "corrupt" in restore.stderr and "hint:" in restore.stderr
    assert fingerprint(pg_setup.pg, pg_setup.dst) == before
    assert dataferry_databases(pg_setup.pg, pg_setup.dst) == set()


def test_failed_restore_exits_1_with_the_tools_message_and_a_hint(pg_setup: PgSetup) -> None:
    pg = pg_setup.pg
    role = unique("gone")
    pg.psql(f"CREATE ROLE {quote(role)};")
    pg.psql(f"ALTER TABLE public.users OWNER TO {quote(role)};", pg_setup.src)
    assert run(pg_setup, "backup", "app", "--env", "production").returncode == 0
    pg.psql(
        f"REASSIGN OWNED BY {quote(role)} TO {quote(pg.user)}; DROP OWNED BY {quote(role)};", pg_setup.src
    )
    pg.psql(f"DROP ROLE {quote(role)};")
    before = fingerprint(pg, pg_setup.dst)

    proc = run(pg_setup, "restore", "app", "--env", "staging", "--from", "production")
    assert proc.returncode == 1
    assert f'role "{role}" does not exist' in proc.stderr
    assert "hint: the dump refers to a role" in proc.stderr
    assert fingerprint(pg, pg_setup.dst) == before
    assert dataferry_databases(pg, pg_setup.dst) == set()


def test_unknown_artifact_exits_4(pg_setup: PgSetup) -> None:
    assert run(pg_setup, "backup", "app", "--env", "production").returncode == 0
    proc = run(
        pg_setup,
        "restore",
        "app",
        "--env",
        "staging",
        "--from",
        "production",
        "--artifact",
        "2001-01-01T000000Z-app",
    )
    assert proc.returncode == 4
    proc = run(
        pg_setup, "restore", "app", "--env", "staging", "--from", "production", "--at", "2001-01-01T00:00:00Z"
    )
    assert proc.returncode == 4


def test_unreachable_server_and_missing_password_exit_3(
    pg_setup: PgSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = pg_setup.config_path
    path.write_text(path.read_text().replace(f":{pg_setup.pg.port}/{pg_setup.dst}", f":1/{pg_setup.dst}"))
    check = run(pg_setup, "check", config=path)
    assert check.returncode == 3
    assert "FAIL" in check.stdout and "127.0.0.1" in check.stdout
    backup = run(pg_setup, "backup", "app", "--env", "production", config=path)
    assert backup.returncode == 0  # only staging is unreachable

    monkeypatch.delenv(PASSWORD_ENV)
    proc = run(pg_setup, "backup", "app", "--env", "production")
    assert proc.returncode == 3
    assert PASSWORD_ENV in proc.stderr


def test_password_in_url_exits_2_without_echoing_it(pg_setup: PgSetup) -> None:
    secret = "s3cr3t-in-the-url"
    path = pg_setup.config_path
    user = pg_setup.pg.user
    path.write_text(path.read_text().replace(f"postgresql://{user}@", f"postgresql://{user}:{secret}@", 1))
    proc = run(pg_setup, "backup", "app", "--env", "production", config=path)
    assert proc.returncode == 2
    assert "password" in proc.stderr
    assert secret not in proc.stdout + proc.stderr


@pytest.mark.fault
def test_two_restores_of_one_database_at_once_never_lose_it(pg_setup: PgSetup) -> None:
    """Issue 19's data loss: restore A holds its verified shadow (paused just before the swap) while
    restore B (``--jobs 2``) starts on the same database. B is refused with exit 6 naming the holder,
    and A then swaps in its own complete data: live is the source, nothing of B's is left."""
    import threading

    from dataferry import ops

    assert run(pg_setup, "backup", "app", "--env", "production").returncode == 0
    cfg = pg_setup.config()
    at_swap, go_on = threading.Event(), threading.Event()
    outcome: list[object] = []

    def before_swap(engine: object, shadow: object) -> None:
        at_swap.set()
        assert go_on.wait(120)

    def restore_a() -> None:
        try:
            req = ops.RestoreRequest(database="app", environment="staging", source="production")
            outcome.append(ops.restore(ops.plan_restore(cfg, req), before_swap=before_swap))
        except BaseException as exc:
            outcome.append(exc)

    first = threading.Thread(target=restore_a)
    first.start()
    try:
        assert at_swap.wait(120), outcome
        second = run(pg_setup, "restore", "app", "--env", "staging", "--from", "production", "--jobs", "2")
        assert second.returncode == 6, second.stderr
        assert "another restore of" in second.stderr and "held by dataferry pid" in second.stderr
    finally:
        go_on.set()
        first.join(120)
    assert len(outcome) == 1 and not isinstance(outcome[0], BaseException), outcome
    assert fingerprint(pg_setup.pg, pg_setup.dst) == fingerprint(pg_setup.pg, pg_setup.src)
    assert dataferry_databases(pg_setup.pg, pg_setup.dst) == set()


@pytest.mark.fault
def test_a_killed_parallel_restore_leaves_no_spool_after_the_next_run(pg_setup: PgSetup) -> None:
    """Issue 19, item 5: SIGKILL a ``restore --jobs 2`` once its spool (a cleartext copy of the
    database) is on disk. The spool sits in a private 0700 directory; the next restore removes it
    and says so, restores, and leaves no dataferry database and no spool behind."""
    import signal
    import time

    from ._pg_helpers import seed_bulk

    seed_bulk(pg_setup.pg, pg_setup.src, 300_000)
    pg_setup.artifact_format = "single"  # spooled by a parallel restore (per-table ones are not)
    assert run(pg_setup, "backup", "app", "--env", "production").returncode == 0
    before = fingerprint(pg_setup.pg, pg_setup.dst)
    spool = pg_setup.tmp / "spool"
    proc = subprocess.Popen(
        [
            DATAFERRY,
            "--config",
            str(pg_setup.config_path),
            *("restore", "app", "--env", "staging"),
            "--from",
            "production",
            "--jobs",
            "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    left: list[Path] = []
    while time.monotonic() < deadline and not left:
        left = [d for d in spool.glob("dataferry-run-*") if (d / "restore.dump").exists()]
        time.sleep(0.01)
    assert left, "the restore never spooled"
    assert (left[0].stat().st_mode & 0o777) == 0o700
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert left[0].exists()  # SIGKILL: nothing could clean up
    assert fingerprint(pg_setup.pg, pg_setup.dst) == before  # and the live database is untouched

    again = run(pg_setup, "restore", "app", "--env", "staging", "--from", "production", "--jobs", "2")
    assert again.returncode == 0, again.stderr
    assert f"removed {left[0]}" in again.stderr
    assert not left[0].exists() and list(spool.iterdir()) == []
    assert fingerprint(pg_setup.pg, pg_setup.dst) == fingerprint(pg_setup.pg, pg_setup.src)
    assert dataferry_databases(pg_setup.pg, pg_setup.dst) == set()
