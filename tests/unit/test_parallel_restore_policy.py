"""Which parallel restores spool (``runspace.parallel_spools``, the one place that says so), the
spool check that follows it, and the connection arithmetic of ``LimitsJobs`` (the real servers'
answers are tested in tests/integration/test_jobs_auto.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from dataferry import private, runspace
from dataferry.artifacts import DataObject, Manifest
from dataferry.config import load
from dataferry.engines.mysql import limits as mysql_limits
from dataferry.engines.postgresql import limits as pg_limits
from dataferry.errors import ConfigError, NotReady


def _manifest(engine: str, *formats: str, raw_size: int = 1000, named: bool = False) -> Manifest:
    now = datetime.now(UTC)
    objects = [
        DataObject(
            key=f"k{i}",
            size=1,
            sha256="0" * 64,
            format=f,
            raw_size=raw_size,
            name=f"{i}.dat" if named else None,
        )
        for i, f in enumerate(formats)
    ]
    return Manifest(
        id="a",
        database="app",
        engine=engine,
        source_environment="p",
        created_at=now,
        finished_at=now,
        objects=objects,
    )


@pytest.mark.parametrize(
    ("engine", "formats", "spools"),
    [
        ("postgresql", ("pg_custom",), True),  # pg_restore -j needs a seekable file
        ("mysql", ("sql",), True),  # cut into per-table chunks on local disk
        ("postgresql", ("pg_directory", "pg_directory", "pg_directory"), False),  # from the store
        ("postgresql", ("pg_directory", "pg_custom"), True),  # anything single-object spools
        ("sqlite", ("sqlite",), False),  # one file copy: jobs do not apply
    ],
)
def test_which_parallel_restores_spool(engine: str, formats: tuple[str, ...], spools: bool) -> None:
    assert runspace.parallel_spools(_manifest(engine, *formats)) is spools


def test_an_artifact_of_named_objects_never_spools() -> None:
    """One object per table (``Manifest.by_objects``): streamed into the workers, whatever format."""
    assert (
        runspace.parallel_spools(_manifest("postgresql", "pg_directory", "pg_directory", named=True)) is False
    )


def test_no_spool_is_reserved_for_a_format_that_does_not_spool(tmp_path: Path) -> None:
    """Even with no room at all, a pg_directory or SQLite restore with jobs 4 is not refused for
    a spool it never writes, and reserves nothing; a pg_custom one is refused."""
    with private.space_lock(tmp_path):
        everything = private.reserve(tmp_path, 10**15)  # more than any disk
    try:
        for manifest in (_manifest("postgresql", "pg_directory"), _manifest("sqlite", "sqlite")):
            assert runspace.spool_dir(tmp_path, 4, manifest) == (None, None)
        with pytest.raises(NotReady, match="reserved by restores running now"):
            runspace.spool_dir(tmp_path, 4, _manifest("postgresql", "pg_custom"))
    finally:
        private.release(everything)


def test_pg_free_connections() -> None:
    """A role that is not a superuser may not use the reserved slots, and its own limit counts
    its own sessions; a superuser has every slot."""
    # max_connections 100, 3 reserved for superusers, 2 more (PostgreSQL 16), 10 clients
    assert pg_limits.free_connections(100, 3, 2, 10, False, -1, 4) == 85
    assert pg_limits.free_connections(100, 3, 2, 10, True, 5, 4) == 90  # limits do not apply
    assert pg_limits.free_connections(100, 3, 2, 10, False, 5, 4) == 1  # CONNECTION LIMIT 5
    assert pg_limits.free_connections(100, 3, 0, 97, False, -1, 0) == 0  # full


def test_mysql_free_connections() -> None:
    assert mysql_limits.free_connections(151, 11, 0, 3) == 140  # no per-account limit
    assert mysql_limits.free_connections(151, 11, 10, 3) == 7  # MAX_USER_CONNECTIONS 10
    assert mysql_limits.free_connections(151, 151, 10, 0) == 0


def test_restore_jobs_is_a_setting_and_per_database(tmp_path: Path) -> None:
    """Both places accept it; at least 1."""
    path = tmp_path / "dataferry.toml"
    path.write_text(
        '[settings]\nrestore_jobs = 4\n[databases.app]\nengine = "sqlite"\nrestore_jobs = 2\n',
        encoding="utf-8",
    )
    cfg = load(path)
    assert cfg.settings.restore_jobs == 4 and cfg.databases["app"].restore_jobs == 2
    path.write_text('[databases.app]\nengine = "sqlite"\nrestore_jobs = 0\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="restore_jobs"):
        load(path)
