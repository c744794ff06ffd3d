"""Parallel loading survives InnoDB deadlocks: each chunk is one transaction, and a chunk rolled back
as a deadlock victim is loaded again (seen for real in the 256 MB benchmark: ERROR 1213)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from dataferry.config import DatabaseRef
from dataferry.engines.mysql.conn import CLIENT_PROGRAMS, option_file, require_tool
from dataferry.engines.mysql.load import Client, parallel_load
from dataferry.errors import EngineError
from servers import MariaDbServer

pytestmark = pytest.mark.integration

# Two chunks that take the same two row locks in opposite orders: InnoDB must kill one of them.
CHUNK_A = b"START TRANSACTION;\nUPDATE t SET a = a + 1 WHERE id = 1;\nDO SLEEP(1);\nUPDATE t SET a = a + 1 WHERE id = 2;\nCOMMIT;\n"
CHUNK_B = b"START TRANSACTION;\nUPDATE t SET b = b + 1 WHERE id = 2;\nDO SLEEP(1);\nUPDATE t SET b = b + 1 WHERE id = 1;\nCOMMIT;\n"


def _ref(server: MariaDbServer, database: str) -> DatabaseRef:
    return DatabaseRef(
        name="t",
        environment="test",
        engine="mysql",
        url=server.url(database),
        password=SecretStr(server.password),
    )


def _setup(server: MariaDbServer, database: str) -> None:
    server.drop_db(database)
    server.create_db(database)
    server.execute(
        "CREATE TABLE t (id INT PRIMARY KEY, a INT NOT NULL, b INT NOT NULL) ENGINE=InnoDB;"
        "INSERT INTO t VALUES (1, 0, 0), (2, 0, 0);",
        database,
    )


def _load(server: MariaDbServer, database: str, tmp_path: Path) -> None:
    chunks = []
    for name, body in (("a.sql", CHUNK_A), ("b.sql", CHUNK_B)):
        (tmp_path / name).write_bytes(body)
        chunks.append((tmp_path / name, len(body)))
    with option_file(_ref(server, database)) as opts:
        client = Client(require_tool(CLIENT_PROGRAMS, True), opts, database)
        parallel_load(client, chunks, jobs=2)


def test_a_deadlocked_chunk_is_retried_whole(mariadb_server: MariaDbServer, tmp_path: Path) -> None:
    _setup(mariadb_server, "retry_db")
    _load(mariadb_server, "retry_db", tmp_path)
    rows = mariadb_server.execute("SELECT id, a, b FROM t ORDER BY id", "retry_db").split("\n")
    # every update applied exactly once: the victim's first attempt was rolled back whole
    assert [r.split("\t") for r in rows if r] == [["1", "1", "1"], ["2", "1", "1"]]


def test_without_retries_the_deadlock_is_real(
    mariadb_server: MariaDbServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataferry.engines.mysql import load as _mysql_load

    monkeypatch.setattr(_mysql_load, "RETRIES", 1)
    _setup(mariadb_server, "noretry_db")
    with pytest.raises(EngineError, match="1213"):
        _load(mariadb_server, "noretry_db", tmp_path)
