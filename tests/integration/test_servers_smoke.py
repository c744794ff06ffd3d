"""Smoke tests for the throwaway server fixtures in tests/conftest.py."""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from servers import MariaDbServer, PgServer, S3Server

pytestmark = pytest.mark.integration


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def _cmdlines_while(run: Callable[[], object], program: str) -> list[list[str]]:
    """Run ``run`` in a thread and collect argv of ``program`` processes meanwhile."""
    seen: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run()
        except BaseException as exc:  # re-raised in the main thread below
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    while thread.is_alive():
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in seen:
                continue
            try:
                raw = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            argv = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
            if argv and os.path.basename(argv[0]) == program:
                seen[int(entry.name)] = argv
        time.sleep(0.02)
    thread.join()
    if errors:
        raise errors[0]
    return list(seen.values())


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------


def test_pg_table_roundtrip(pg_server: PgServer) -> None:
    db = _unique("smoke")
    pg_server.create_db(db)
    try:
        assert db in pg_server.databases()
        out = pg_server.psql(
            "CREATE TABLE t (id int PRIMARY KEY, name text);\n"
            "INSERT INTO t VALUES (1, 'one'), (2, 'two');\n"
            "SELECT id, name FROM t ORDER BY id;",
            dbname=db,
        )
        assert out == "1|one\n2|two"
    finally:
        pg_server.drop_db(db)
    assert db not in pg_server.databases()


def test_pg_server_settings(pg_server: PgServer) -> None:
    assert pg_server.psql("SHOW fsync;") == "off"
    assert pg_server.psql("SHOW listen_addresses;") == "127.0.0.1"
    assert pg_server.psql("SHOW port;") == str(pg_server.port)
    assert pg_server.psql("SELECT current_user;") == "postgres"
    major = pg_server.psql("SHOW server_version_num;")[:-4]
    assert major == pg_server.bindir.parent.name
    assert pg_server.psql("SELECT rolsuper FROM pg_roles WHERE rolname = 'postgres';") == "t"


def test_pg_error_raises(pg_server: PgServer) -> None:
    with pytest.raises(RuntimeError, match="no_such_table"):
        pg_server.psql("SELECT 1;\nSELECT * FROM no_such_table;\nSELECT 2;")


def test_pg_requires_password(pg_server: PgServer) -> None:
    env = pg_server.env() | {"PGPASSWORD": "wrong-password"}
    proc = subprocess.run(
        [*pg_server.psql_argv(), "--command=SELECT 1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode != 0
    assert "password authentication failed" in proc.stderr
    assert "@" in pg_server.dsn() and pg_server.password not in pg_server.dsn("x")


def test_pg_password_not_in_psql_argv(pg_server: PgServer) -> None:
    argvs = _cmdlines_while(lambda: pg_server.psql("SELECT pg_sleep(1);"), "psql")
    ours = [argv for argv in argvs if pg_server.dsn() in " ".join(argv)]
    assert ours, f"did not observe the helper's psql process: {argvs}"
    for argv in ours:
        assert not any(pg_server.password in arg for arg in argv), argv


# --------------------------------------------------------------------------
# MariaDB
# --------------------------------------------------------------------------


def test_mariadb_table_roundtrip(mariadb_server: MariaDbServer) -> None:
    db = _unique("smoke")
    mariadb_server.create_db(db)
    try:
        assert db in mariadb_server.databases()
        out = mariadb_server.execute(
            "CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(20)) ENGINE=InnoDB;\n"
            "INSERT INTO t VALUES (1, 'one'), (2, 'two');\n"
            "SELECT id, name FROM t ORDER BY id;",
            database=db,
        )
        assert out == "1\tone\n2\ttwo"
    finally:
        mariadb_server.drop_db(db)
    assert db not in mariadb_server.databases()


def test_mariadb_server_settings(mariadb_server: MariaDbServer) -> None:
    assert "MariaDB" in mariadb_server.execute("SELECT VERSION();")
    assert mariadb_server.execute("SELECT @@event_scheduler;") == "ON"
    assert mariadb_server.execute("SELECT @@port;") == str(mariadb_server.port)
    assert mariadb_server.execute("SELECT @@innodb_flush_log_at_trx_commit;") == "0"
    grants = mariadb_server.execute("SHOW GRANTS;")
    assert "ALL PRIVILEGES ON *.*" in grants and "WITH GRANT OPTION" in grants
    assert mariadb_server.socket.is_socket()


def test_mariadb_error_raises(mariadb_server: MariaDbServer) -> None:
    with pytest.raises(RuntimeError, match="no_such_table"):
        mariadb_server.execute("SELECT * FROM mysql.no_such_table;")


def test_mariadb_password_not_in_argv(mariadb_server: MariaDbServer) -> None:
    argvs = _cmdlines_while(lambda: mariadb_server.execute("SELECT SLEEP(1);"), "mariadb")
    assert argvs, "did not observe the helper's mariadb process"
    for argv in argvs:
        assert not any(mariadb_server.password in arg for arg in argv), argv
        assert argv[1].startswith("--defaults-extra-file=")


# --------------------------------------------------------------------------
# S3
# --------------------------------------------------------------------------


def test_s3_bucket_write_and_list(s3_server: S3Server, s3_bucket: str) -> None:
    s3 = s3_server.client()
    s3.put_object(Bucket=s3_bucket, Key="dumps/a.sql", Body=b"SELECT 1;")
    s3.put_object(Bucket=s3_bucket, Key="dumps/b.sql", Body=b"SELECT 2;")
    listing = s3.list_objects_v2(Bucket=s3_bucket, Prefix="dumps/")
    assert sorted(item["Key"] for item in listing["Contents"]) == [
        "dumps/a.sql",
        "dumps/b.sql",
    ]
    body = s3.get_object(Bucket=s3_bucket, Key="dumps/a.sql")["Body"].read()
    assert body == b"SELECT 1;"


def test_s3_buckets_are_unique_and_env_is_clean(s3_server: S3Server, s3_bucket: str) -> None:
    names = {b["Name"] for b in s3_server.client().list_buckets()["Buckets"]}
    assert names == {s3_bucket}  # previous test's bucket was removed
    assert not [name for name in os.environ if name.startswith("AWS_")]
    assert s3_server.env()["AWS_ACCESS_KEY_ID"] == "testing"


def test_environment_is_isolated() -> None:
    prefixes = ("PG", "MYSQL", "AWS_", "DATAFERRY_")
    assert not [name for name in os.environ if name.startswith(prefixes)]
