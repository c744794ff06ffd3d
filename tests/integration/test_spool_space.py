"""Two parallel restores sharing one spool directory on a disk that holds one spool, not two
(issue 19, item 7): the second is refused before it touches anything, naming the space the first
reserved, instead of both passing the free-space check and both running out of disk. The disk is
a small tmpfs (mounting one needs root: skipped otherwise; tests/unit/test_private.py tests the
accounting itself everywhere)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fault_points import start_paused, wait_for_flag
from servers import PgServer

from ._pg_helpers import PASSWORD_ENV, seed_bulk, unique

pytestmark = [pytest.mark.integration, pytest.mark.fault]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A directory to mount a tmpfs on (the test sets its size); unmounted afterwards."""
    spool = tmp_path / "spool"
    spool.mkdir()
    yield spool
    subprocess.run(["umount", str(spool)], capture_output=True, check=False)


def _config(tmp: Path, pg: PgServer, src: str, targets: list[str]) -> Path:
    dbs = "".join(
        f"""
[databases.app{i}]
engine = "postgresql"
artifact_format = "single"  # one pg_dump archive, which a parallel restore spools
[databases.app{i}.environments]
production = {{ url = "{pg.dsn(src)}", password_env = "{PASSWORD_ENV}" }}
staging = {{ url = "{pg.dsn(dst)}", password_env = "{PASSWORD_ENV}" }}
"""
        for i, dst in enumerate(targets)
    )
    path = tmp / "dataferry.toml"
    path.write_text(
        f"""
[settings]
spool_dir = "spool"

[environments.production]
store = "stores/production"

[environments.staging]
store = "stores/staging"
{dbs}""",
        encoding="utf-8",
    )
    return path


def test_two_parallel_restores_cannot_both_count_on_one_spools_worth_of_disk(
    pg_server: PgServer, tmp_path: Path, small_disk: Path
) -> None:
    pg = pg_server
    src, targets = unique("spsrc"), [unique("spa"), unique("spb")]
    pg.create_db(src)
    seed_bulk(pg, src, 40_000)
    env = {**os.environ, PASSWORD_ENV: pg.password}

    def dataferry(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dataferry", "--config", str(config), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=300,
        )

    config = _config(tmp_path, pg, src, targets)
    try:
        for name in ("app0", "app1"):
            assert dataferry("backup", name, "--env", "production").returncode == 0
        raw = json.loads(dataferry("list", "app0", "--env", "production", "--json").stdout)[0]["objects"][0]
        size = (int(raw["raw_size"] * 1.6) // 4096 + 1) * 4096  # one spool (+10 %) fits, two do not
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(small_disk)], capture_output=True
        )
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
        restore = ["restore", "--env", "staging", "--from", "production", "--jobs", "2"]
        first = start_paused(
            config,
            [restore[0], "app0", *restore[1:]],
            "restore:download",
            tmp_path / "flag",
            {PASSWORD_ENV: pg.password},
            tmp_path,
        )
        try:
            wait_for_flag(first, tmp_path / "flag")  # planned, space reserved, spooling begins
            second = dataferry(restore[0], "app1", *restore[1:])
            assert second.returncode == 3 and "reserved by restores running now" in second.stderr, (
                second.stderr
            )
            assert "Traceback" not in second.stderr
            first.send_signal(signal.SIGUSR1)  # the first goes on, and has the room it counted on
            _out, err = first.communicate(timeout=300)
            assert first.returncode == 0, err
        finally:
            if first.poll() is None:
                first.kill()
                first.communicate()
        again = dataferry(restore[0], "app1", *restore[1:])
        assert again.returncode == 0, again.stderr
        assert list(small_disk.iterdir()) == []  # reservations and spools gone
    finally:
        for db in (src, *targets):
            for name in (db, db + "-dataferry-shadow", db + "-dataferry-old"):
                pg.drop_db(name)
