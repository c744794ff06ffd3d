"""The MySQL/MariaDB engine against a real MariaDB 10.11, through ``ops`` and the command line.

The schema has what GOV.UK's MySQL databases have and what breaks naive restores: foreign keys
(one self-referencing), two triggers, a view and a view on that view, a procedure, a function, an
enabled and a disabled event, utf8mb4 text with emoji, a latin1 column with its own collation,
binary columns holding every awkward byte, JSON, BIT, DECIMAL, microsecond DATETIMEs and
TIMESTAMPs. Every test tries to break an invariant and then looks at the live database itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pytest
import zstandard

from dataferry import artifacts, ops
from dataferry.config import Config, database_ref, load
from dataferry.engines import RestoreOptions, Shadow, get_engine
from dataferry.engines.mysql import MySQLEngine
from dataferry.errors import EngineError, FerryError, NotReady, VerificationFailed
from dataferry.progress import NullReporter
from dataferry.stores import Store
from servers import MariaDbServer, S3Server, ServerError

pytestmark = pytest.mark.integration

PASSWORD_ENV = "FERRY_TEST_MYSQL_PASSWORD"
DB = "shop"

SCHEMA = r"""
SET NAMES utf8mb4;
CREATE TABLE authors (
  id INT PRIMARY KEY AUTO_INCREMENT,
  name VARCHAR(100) NOT NULL,
  bio TEXT CHARACTER SET latin1 COLLATE latin1_swedish_ci,
  UNIQUE KEY uq_name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE posts (
  id INT PRIMARY KEY AUTO_INCREMENT,
  author_id INT NOT NULL,
  title VARCHAR(200) COLLATE utf8mb4_bin,
  body MEDIUMTEXT,
  img BLOB,
  digest BINARY(16),
  flags BIT(8),
  created DATETIME(6) NOT NULL,
  stamp TIMESTAMP NULL,
  price DECIMAL(12,4),
  ratio DOUBLE,
  doc JSON,
  title_len INT AS (CHAR_LENGTH(title)) VIRTUAL,
  KEY idx_created (created),
  CONSTRAINT fk_author FOREIGN KEY (author_id) REFERENCES authors (id) ON DELETE CASCADE
) ENGINE=InnoDB;
CREATE TABLE comments (
  id BIGINT PRIMARY KEY,
  post_id INT NOT NULL,
  parent_id BIGINT NULL,
  text TEXT,
  CONSTRAINT fk_post FOREIGN KEY (post_id) REFERENCES posts (id),
  CONSTRAINT fk_parent FOREIGN KEY (parent_id) REFERENCES comments (id)
) ENGINE=InnoDB;
CREATE TABLE audit (id INT PRIMARY KEY AUTO_INCREMENT, post_id INT, note VARCHAR(250), at DATETIME);
CREATE TABLE empty_table (id INT PRIMARY KEY, note VARCHAR(10)) ENGINE=Aria;
CREATE TRIGGER posts_ai AFTER INSERT ON posts FOR EACH ROW
  INSERT INTO audit (post_id, note, at) VALUES (NEW.id, CONCAT('new ', NEW.title), NEW.created);
CREATE TRIGGER posts_bu BEFORE UPDATE ON posts FOR EACH ROW SET NEW.title = TRIM(NEW.title);
CREATE VIEW post_titles AS SELECT p.id, p.title, a.name FROM posts p JOIN authors a ON a.id = p.author_id;
CREATE VIEW a_post_count AS SELECT COUNT(*) AS n FROM post_titles;
DELIMITER //
CREATE PROCEDURE count_posts(OUT n INT)
BEGIN
  -- a comment in a body
  SELECT COUNT(*) INTO n FROM posts;
END//
CREATE FUNCTION shout(s VARCHAR(50)) RETURNS VARCHAR(60) DETERMINISTIC RETURN CONCAT(UPPER(s), ' 📣')//
DELIMITER ;
CREATE EVENT nightly_purge ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00'
  DO DELETE FROM audit WHERE at < NOW() - INTERVAL 1 YEAR;
CREATE EVENT paused_event ON SCHEDULE EVERY 1 HOUR STARTS '2030-01-01 00:00:00' DISABLE
  DO DELETE FROM audit WHERE id < 0;
INSERT INTO authors (id, name, bio) VALUES
  (1, 'Zoë 😀 Ångström', 'Ångström, née Müller'),
  (2, 'O''Brien \\ back\\slash "quoted"', 'it''s'),
  (3, '李小龍 🐉', NULL),
  (4, 'Tab\there\nnewline),(x', '),(');
INSERT INTO posts (author_id, title, body, img, digest, flags, created, stamp, price, ratio, doc)
  SELECT 1 + seq % 4,
         CONCAT(' Post ', seq, ' 🌍 '),
         CONCAT('body ),( ''quoted'' \\ ', REPEAT('lorem ', seq % 40), '\n', seq),
         IF(seq % 7 = 0, NULL, UNHEX(CONCAT(MD5(seq), '00275C0A0D1A22', SHA1(seq)))),
         UNHEX(MD5(seq)),
         seq % 256,
         TIMESTAMP('2024-01-01 00:00:00') + INTERVAL seq MINUTE + INTERVAL seq MICROSECOND,
         FROM_UNIXTIME(1700000000 + seq),
         seq / 7,
         seq / 3.0,
         JSON_OBJECT('n', seq, 'emoji', '🎉')
  FROM seq_1_to_{posts};
INSERT INTO comments (id, post_id, parent_id, text)
  SELECT seq, 1 + seq % {posts}, IF(seq > 1, seq - 1, NULL), CONCAT('c', seq) FROM seq_1_to_300;
"""

ROW_TABLES = {"audit", "authors", "comments", "empty_table", "posts"}


# -- helpers ------------------------------------------------------------------------------------------


def connect(server: MariaDbServer, database: str | None = None, *, autocommit: bool = True) -> Any:
    """A PyMySQL connection to the test server (utf8mb4)."""
    return pymysql.connect(
        host=server.host,
        port=server.port,
        user=server.user,
        password=server.password,
        database=database,
        charset="utf8mb4",
        autocommit=autocommit,
    )


def sql(server: MariaDbServer, query: str, database: str | None = None) -> list[tuple[Any, ...]]:
    """Rows of one statement, through PyMySQL (exact types, no client formatting)."""
    conn = connect(server, database)
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return list(cur.fetchall())
    finally:
        conn.close()


def seed(server: MariaDbServer, name: str, posts: int = 600) -> None:
    """Create ``name`` with the schema and data above."""
    server.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;")
    server.execute(SCHEMA.replace("{posts}", str(posts)), database=name)


def snapshot(server: MariaDbServer, db: str) -> dict[str, Any]:
    """Everything a restore must keep, with the database's own name taken out of the text."""
    lit = "'" + db.replace("'", "''") + "'"
    out: dict[str, Any] = {}
    out["database"] = sql(
        server,
        f"SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
        f"WHERE SCHEMA_NAME = {lit}",
    )
    out["tables"] = sql(
        server,
        f"SELECT TABLE_NAME, TABLE_TYPE, ENGINE, TABLE_COLLATION FROM information_schema.TABLES "
        f"WHERE TABLE_SCHEMA = {lit} ORDER BY 1",
    )
    for name, kind, *_rest in out["tables"]:
        if kind == "BASE TABLE":
            out[f"create {name}"] = sql(server, f"SHOW CREATE TABLE `{db}`.`{name}`")[0][1]
            out[f"checksum {name}"] = sql(server, f"CHECKSUM TABLE `{db}`.`{name}` EXTENDED")[0][1]
            out[f"count {name}"] = sql(server, f"SELECT COUNT(*) FROM `{db}`.`{name}`")[0][0]
    out["foreign keys"] = sql(
        server,
        f"SELECT CONSTRAINT_NAME, TABLE_NAME, REFERENCED_TABLE_NAME, UNIQUE_CONSTRAINT_SCHEMA = {lit}, "
        f"UPDATE_RULE, DELETE_RULE FROM information_schema.REFERENTIAL_CONSTRAINTS "
        f"WHERE CONSTRAINT_SCHEMA = {lit} ORDER BY 1",
    )
    out["triggers"] = sql(
        server,
        f"SELECT TRIGGER_NAME, EVENT_MANIPULATION, EVENT_OBJECT_TABLE, ACTION_ORDER, ACTION_STATEMENT, "
        f"ACTION_TIMING, SQL_MODE, DEFINER, CHARACTER_SET_CLIENT, COLLATION_CONNECTION, DATABASE_COLLATION "
        f"FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {lit} ORDER BY 1",
    )
    out["views"] = sql(
        server,
        f"SELECT TABLE_NAME, REPLACE(VIEW_DEFINITION, CONCAT('`', {lit}, '`.'), ''), CHECK_OPTION, "
        f"SECURITY_TYPE, DEFINER, CHARACTER_SET_CLIENT, COLLATION_CONNECTION, ALGORITHM "
        f"FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {lit} ORDER BY 1",
    )
    out["routines"] = sql(
        server,
        f"SELECT ROUTINE_NAME, ROUTINE_TYPE, DTD_IDENTIFIER, ROUTINE_DEFINITION, IS_DETERMINISTIC, "
        f"SECURITY_TYPE, SQL_MODE, DEFINER, CHARACTER_SET_CLIENT, COLLATION_CONNECTION, DATABASE_COLLATION "
        f"FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {lit} ORDER BY 1",
    )
    out["parameters"] = sql(
        server,
        f"SELECT SPECIFIC_NAME, ORDINAL_POSITION, PARAMETER_MODE, PARAMETER_NAME, DTD_IDENTIFIER "
        f"FROM information_schema.PARAMETERS WHERE SPECIFIC_SCHEMA = {lit} ORDER BY 1, 2",
    )
    out["events"] = sql(
        server,
        f"SELECT EVENT_NAME, EVENT_DEFINITION, EVENT_TYPE, INTERVAL_VALUE, INTERVAL_FIELD, STARTS, "
        f"STATUS, ON_COMPLETION, SQL_MODE, TIME_ZONE, DEFINER, DATABASE_COLLATION "
        f"FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {lit} ORDER BY 1",
    )
    return out


def leftovers(server: MariaDbServer) -> set[str]:
    """Databases a restore makes for itself: none may outlive it."""
    return {d for d in server.databases() if "_dfshadow" in d or "_dfold" in d}


@dataclass
class World:
    """Two environments (production, staging) with a database ``shop`` on one MariaDB server."""

    server: MariaDbServer
    cfg: Config
    config_path: Path
    source: str
    target: str
    spool: Path
    env: dict[str, str] = field(default_factory=dict)

    def store(self, environment: str) -> Store:
        """The store of ``environment``."""
        return ops.store_for(self.cfg, environment)

    def backup(self, environment: str = "production") -> artifacts.Manifest:
        """Back up ``shop`` in ``environment``; returns the manifest."""
        return ops.backup(self.cfg, DB, environment).manifest

    def restore(self, jobs: int = 1, **kw: Any) -> ops.RestoreResult:
        """Restore production's latest artifact into staging."""
        req = ops.RestoreRequest(database=DB, environment="staging", source="production", jobs=jobs)
        return ops.restore(ops.plan_restore(self.cfg, req), **kw)

    def run_cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``python -m dataferry --config ... ARGS`` with the test's environment."""
        return subprocess.run(
            [sys.executable, "-m", "dataferry", "--config", str(self.config_path), *args],
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            timeout=timeout,
            check=False,
        )


def make_world(
    server: MariaDbServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    exclude: tuple[str, ...] = (),
    production_store: str | None = None,
    env: dict[str, str] | None = None,
) -> World:
    """Write the configuration; nothing is created on the server."""
    suffix = uuid.uuid4().hex[:8]
    source, target = f"prod_{suffix}", f"stg_{suffix}"
    spool = tmp_path / "spool"
    spool.mkdir()
    conn = f'password_env = "{PASSWORD_ENV}"'
    production_store = production_store or f'"{tmp_path / "store-production"}"'
    text = f"""
[settings]
spool_dir = "{spool}"

[environments.production]
store = {production_store}

[environments.staging]
store = "{tmp_path / "store-staging"}"

[databases.{DB}]
engine = "mysql"
exclude_tables = {json.dumps(list(exclude))}

[databases.{DB}.environments]
production = {{ url = "{server.url(source)}", {conn} }}
staging = {{ url = "{server.url(target)}", {conn} }}
"""
    path = tmp_path / "dataferry.toml"
    path.write_text(text)
    all_env = {PASSWORD_ENV: server.password, **(env or {})}
    for key, value in all_env.items():
        monkeypatch.setenv(key, value)
    return World(server, load(path), path, source, target, spool, all_env)


@pytest.fixture
def world(mariadb_server: MariaDbServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """A seeded production database and an empty staging environment."""
    before = mariadb_server.databases()
    w = make_world(mariadb_server, tmp_path, monkeypatch)
    seed(mariadb_server, w.source)
    yield w
    for name in mariadb_server.databases() - before:
        mariadb_server.drop_db(name)


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parallel restores cut rows into many small chunks, so several clients really load at once."""
    monkeypatch.setattr(MySQLEngine, "chunk_bytes", 16 * 1024)


def processes() -> dict[int, tuple[int, list[str]]]:
    """pid -> (parent pid, argv) of every process we can see."""
    found: dict[int, tuple[int, list[str]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                raw = (entry / "cmdline").read_bytes()
                if raw:
                    found[int(entry.name)] = (
                        ppid,
                        [p.decode(errors="replace") for p in raw.split(b"\0") if p],
                    )
    return found


def wait_for_process(match: Callable[[list[str]], bool], timeout: float = 60) -> int:
    """The pid of the first process whose argv matches."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid, (_, argv) in processes().items():
            if match(argv):
                return pid
        time.sleep(0.01)
    raise AssertionError("the process did not appear")


class Background:
    """Runs a callable in a thread; ``result()`` re-raises what it raised."""

    def __init__(self, work: Callable[[], Any]) -> None:
        self._result: Any = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._result = work()
            except BaseException as exc:  # handed to the test's thread
                self._error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def result(self, timeout: float = 300) -> Any:
        """Wait and return or raise."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the work did not finish"
        if self._error is not None:
            raise self._error
        return self._result


# -- round trip ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("jobs", [1, 3])
def test_round_trip_is_exact_and_replaces_everything(world: World, jobs: int, small_chunks: None) -> None:
    """Backup, restore into a new database, then again over it after it drifted: schema, objects,
    character sets, checksums and row counts are the source's, and nothing is left behind."""
    server = world.server
    expected = snapshot(server, world.source)
    manifest = world.backup()
    assert manifest.engine == "mysql"
    assert manifest.row_counts == {t: expected[f"count {t}"] for t in ROW_TABLES}
    assert manifest.row_counts["posts"] == 600 and manifest.row_counts["empty_table"] == 0
    assert "MariaDB 10.11" in manifest.server_version and "utf8mb4_unicode_ci" in manifest.server_version
    facts = manifest.extra["mysql"]
    assert facts["character_set"] == "utf8mb4" and facts["collation"] == "utf8mb4_unicode_ci"
    assert "mariadb-dump" in facts["dump_tool"]

    result = world.restore(jobs=jobs)  # the staging database does not exist yet
    assert result.swapped
    assert snapshot(server, world.target) == expected
    assert leftovers(server) == set()
    assert list(world.spool.iterdir()) == []

    # The staging copy drifts: new rows, objects the artifact does not have, other collation,
    # a view named like an artifact table and a table named like an artifact view.
    server.execute(
        "SET NAMES utf8mb4; ALTER DATABASE CHARACTER SET latin1 COLLATE latin1_general_ci;"
        "INSERT INTO posts (author_id, title, created) VALUES (1, 'drift', NOW());"
        "DROP TABLE empty_table; CREATE VIEW empty_table AS SELECT 1 AS id;"
        "DROP VIEW a_post_count; CREATE TABLE a_post_count (n INT); INSERT INTO a_post_count VALUES (7);"
        "CREATE TABLE staging_only (id INT); CREATE VIEW staging_view AS SELECT 1 AS x;"
        "CREATE PROCEDURE staging_proc() SELECT 1; DROP FUNCTION shout;"
        "CREATE FUNCTION shout(s TEXT) RETURNS TEXT DETERMINISTIC RETURN s;"
        "CREATE EVENT staging_event ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01' DO SELECT 1;"
        "CREATE TRIGGER audit_bi BEFORE INSERT ON audit FOR EACH ROW SET NEW.note = 'staging';",
        database=world.target,
    )
    assert snapshot(server, world.target) != expected
    world.restore(jobs=jobs)
    assert snapshot(server, world.target) == expected
    assert leftovers(server) == set()

    # The restored objects work on the restored tables.
    server.execute(
        "SET NAMES utf8mb4; INSERT INTO posts (author_id, title, created) VALUES (2, '  trimmed  ', NOW());"
        "UPDATE posts SET title = '  again  ' WHERE id = 1;",
        database=world.target,
    )
    assert sql(server, "SELECT note FROM audit ORDER BY id DESC LIMIT 1", world.target) == [
        ("new   trimmed  ",)
    ]
    assert sql(server, "SELECT title FROM posts WHERE id = 1", world.target) == [("again",)]
    assert sql(server, "SELECT n FROM a_post_count", world.target) == [(601,)]
    assert sql(server, "SELECT shout('hi')", world.target) == [("HI 📣",)]
    assert server.execute("CALL count_posts(@n); SELECT @n;", database=world.target) == "601"
    names = sql(server, "SELECT name, HEX(name), bio FROM authors ORDER BY id", world.target)
    assert names == sql(server, "SELECT name, HEX(name), bio FROM authors ORDER BY id", world.source)
    assert names[0][0] == "Zoë 😀 Ångström"


def test_restore_with_jobs_loads_chunks_with_several_clients(
    world: World, small_chunks: None, tmp_path: Path
) -> None:
    """--jobs 3 spools the rows into many chunk files (removed afterwards) loaded by several clients
    at once, with unique, foreign-key and CHECK constraint checks off."""
    world.backup()
    seen: dict[int, list[str]] = {}
    overlap = 0
    work = Background(lambda: world.restore(jobs=3))
    while work.thread.is_alive():
        running = [
            (pid, argv)
            for pid, (_, argv) in processes().items()
            if os.path.basename(argv[0]) == "mariadb" and any(a.endswith("_dfshadow") for a in argv)
        ]
        overlap = max(overlap, len(running))
        seen.update(running)
        time.sleep(0.002)
    work.result()
    assert len(seen) >= 4  # schema, several chunks, objects
    assert overlap >= 2, "the chunks were not loaded concurrently"
    for argv in seen.values():
        assert argv[1].startswith("--defaults-extra-file=")
    assert any(
        "--init-command=SET SESSION unique_checks=0, foreign_key_checks=0, check_constraint_checks=0" in argv
        for argv in seen.values()
    )
    assert list(world.spool.iterdir()) == []
    assert snapshot(world.server, world.target) == snapshot(world.server, world.source)


#: Values that LOAD DATA could read differently from INSERT if the dump's escapes were not its own.
EDGE_VALUES = [
    "NULL",
    "",
    "\\N",
    "a,b",
    "x'),(y",
    "end);",
    "tab\there",
    "cr\rlf\n",
    "nul\0byte",
    "ctrl-z\x1a",
    "back\\slash\\",
    "quote ' and \" both",
    "🎉 emoji",
    "(starts with a paren",
]


def _seed_edge_table(world: World) -> None:
    """A table of plain columns (loaded with LOAD DATA) holding every awkward value, with a
    composite unique key, a fulltext key and a foreign key (keys added after the rows)."""
    conn = connect(world.server, world.source)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE edge (id INT PRIMARY KEY, author_id INT, v TEXT, w VARCHAR(40), n DECIMAL(8,3), "
                "at TIMESTAMP NULL, UNIQUE KEY uq_w (w, id), FULLTEXT KEY ft_v (v), "
                "CONSTRAINT fk_edge_author FOREIGN KEY (author_id) REFERENCES authors (id)) ENGINE=InnoDB"
            )
            rows = [
                (i, 1 + i % 4, v, v[:40] or None, i / 7, None if i % 2 else "2024-02-29 12:00:00")
                for i, v in enumerate(EDGE_VALUES)
            ]
            rows.append((len(EDGE_VALUES), None, None, None, None, None))
            cur.executemany("INSERT INTO edge VALUES (%s, %s, %s, %s, %s, %s)", rows)
    finally:
        conn.close()


class _LoadSpy:
    """Records every script a parallel restore's clients load (its text, and whether its client
    may read local files), then runs the real load."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from dataferry.engines.mysql import load as _mysql_load

        self.scripts: list[tuple[str, str, bool]] = []
        real = _mysql_load._Loads.load
        spy = self

        def load(self: Any, path: Path) -> None:
            spy.scripts.append((path.name, path.read_text(errors="replace"), path in self.local_infile))
            real(self, path)

        monkeypatch.setattr(_mysql_load._Loads, "load", load)

    def texts(self, prefix: str) -> list[str]:
        """The scripts whose file name starts with ``prefix`` (``chunk-``, ``keys-``)."""
        return [text for name, text, _ in self.scripts if name.startswith(prefix)]

    def local(self, prefix: str) -> list[str]:
        """The scripts loaded by a client that may read local files."""
        return [text for name, text, local in self.scripts if name.startswith(prefix) and local]


def test_parallel_restore_loads_plain_tables_with_load_data_and_adds_keys_after(
    world: World, small_chunks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tables of plain columns load through LOAD DATA LOCAL (their own client only), the others
    through INSERT; secondary keys and foreign keys are added after the rows; the result is exact,
    also where the fields load as bytes (``tables.load_data_charset``)."""
    _seed_edge_table(world)
    world.backup()
    spy = _LoadSpy(monkeypatch)
    world.restore(jobs=3)
    assert snapshot(world.server, world.target) == snapshot(world.server, world.source)
    chunks, keys = spy.texts("chunk-"), spy.texts("keys-")
    load_data = [t for t in chunks if "LOAD DATA LOCAL INFILE" in t]
    inserts = [t for t in chunks if "INSERT INTO" in t]
    assert any("INTO TABLE `edge`" in t for t in load_data) and any("`authors`" in t for t in load_data)
    # edge's every column is utf8mb4, as the dump: its fields load as the bytes they are; authors'
    # bio is latin1, so its rows are read as utf8mb4 and converted (checked exact above)
    assert all("CHARACTER SET binary" in t for t in load_data if "INTO TABLE `edge`" in t)
    assert all("CHARACTER SET utf8mb4" in t for t in load_data if "INTO TABLE `authors`" in t)
    assert all("`posts`" not in t for t in load_data)  # blob, binary, bit and generated columns
    assert any("INSERT INTO `posts`" in t for t in inserts)
    assert spy.local("chunk-") == load_data and spy.local("keys-") == []
    alters = "".join(keys)
    assert "ADD UNIQUE KEY `uq_w` (`w`,`id`)" in alters and "ADD KEY `fk_edge_author`" in alters
    assert "ft_v" not in alters  # FULLTEXT stays in CREATE TABLE
    assert "FOREIGN KEY" not in alters  # added one table after another, after the keys
    got = sql(world.server, "SELECT id, v, w FROM edge ORDER BY id", world.target)
    assert [v for _, v, _ in got] == [*EDGE_VALUES, None]


def test_parallel_restore_without_local_infile_loads_inserts(
    world: World, small_chunks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server with local_infile off gets INSERT chunks only, and the same exact result."""
    _seed_edge_table(world)
    world.backup()
    spy = _LoadSpy(monkeypatch)
    world.server.execute("SET GLOBAL local_infile = 0")
    try:
        world.restore(jobs=3)
    finally:
        world.server.execute("SET GLOBAL local_infile = 1")
    assert snapshot(world.server, world.target) == snapshot(world.server, world.source)
    chunks = spy.texts("chunk-")
    assert chunks and spy.local("chunk-") == [] and not any("LOAD DATA" in t for t in chunks)


@pytest.mark.parametrize("jobs", [1, 3])
def test_rows_that_break_a_check_constraint_are_restored_as_production_holds_them(
    world: World, jobs: int, small_chunks: None
) -> None:
    """Rows are loaded without MariaDB's CHECK constraints, like without the keys' checks: rows
    production holds although they break one (written with the checks off) are restored as they
    are, not refused, and the restored table still checks the rows written to it."""
    world.server.execute(
        "CREATE TABLE checked (id INT PRIMARY KEY, doc JSON NOT NULL, n INT CHECK (n > 0)) ENGINE=InnoDB;"
        "INSERT INTO checked SELECT seq, JSON_OBJECT('k', seq), seq FROM seq_1_to_2000;"
        "SET SESSION check_constraint_checks = 0;"
        "INSERT INTO checked VALUES (0, '{not json', -1);",
        database=world.source,
    )
    world.backup()
    world.restore(jobs=jobs)
    assert snapshot(world.server, world.target) == snapshot(world.server, world.source)
    assert sql(world.server, "SELECT doc, n FROM checked WHERE id = 0", world.target) == [("{not json", -1)]
    with pytest.raises(ServerError, match="CONSTRAINT"):
        world.server.execute("INSERT INTO checked VALUES (-1, '{}', -5);", database=world.target)
    with pytest.raises(ServerError, match="CONSTRAINT"):
        world.server.execute("INSERT INTO checked VALUES (-2, '{bad', 5);", database=world.target)


def test_events_stay_disabled_in_the_shadow_and_keep_their_status_live(world: World) -> None:
    """The scheduler must not run production's events on a copy that is not live yet."""
    path = world.spool / "dump.sql"
    engine = MySQLEngine()
    with engine.dump(database_ref(world.cfg, DB, "production")) as dump, path.open("wb") as out:
        while chunk := dump.stream.read(1 << 16):
            out.write(chunk)
    ref = database_ref(world.cfg, DB, "staging")
    with path.open("rb") as f:
        shadow = engine.restore_shadow(ref, f, RestoreOptions())
    path.unlink()
    statuses = sql(
        world.server,
        f"SELECT EVENT_NAME, STATUS FROM information_schema.EVENTS WHERE EVENT_SCHEMA = '{shadow.name}'",
    )
    assert sorted(statuses) == [("nightly_purge", "DISABLED"), ("paused_event", "DISABLED")]
    engine.swap(shadow)
    statuses = sql(
        world.server,
        f"SELECT EVENT_NAME, STATUS FROM information_schema.EVENTS WHERE EVENT_SCHEMA = '{world.target}'",
    )
    assert sorted(statuses) == [("nightly_purge", "ENABLED"), ("paused_event", "DISABLED")]


def test_sanitisation_runs_on_the_shadow_before_the_swap(world: World) -> None:
    """run_sql and query work on the shadow; a failing script aborts the restore with live untouched."""
    world.backup()
    world.restore()
    before = snapshot(world.server, world.target)

    def scrub(engine: Any, shadow: Shadow) -> None:
        engine.run_sql(
            shadow, "UPDATE authors SET name = CONCAT('author ', id); UPDATE comments SET text = NULL;"
        )
        assert engine.query(shadow, "SELECT COUNT(text) FROM comments") == [(0,)]
        assert engine.query(shadow.ref, "SELECT COUNT(text) FROM comments") == [(300,)]  # live: untouched
        return None

    world.restore(before_swap=scrub)
    assert sql(world.server, "SELECT name FROM authors ORDER BY id LIMIT 1", world.target) == [("author 1",)]
    assert sql(world.server, "SELECT COUNT(text) FROM comments", world.target) == [(0,)]

    world.restore()

    def broken(engine: Any, shadow: Shadow) -> None:
        engine.run_sql(shadow, "UPDATE authors SET bio = 'x'; UPDATE no_such_table SET a = 1;")

    with pytest.raises(EngineError, match="no_such_table"):
        world.restore(before_swap=broken)
    assert snapshot(world.server, world.target) == before
    assert leftovers(world.server) == set()


def test_the_swap_installs_the_objects_the_shadow_holds_not_the_dumps(world: World) -> None:
    """Sanitisation may drop a view or a trigger (or a table, with its triggers) on the shadow: the swap
    re-creates what was verified there, not what the dump had (which failed after the tables were live
    when a dropped table's trigger was re-created)."""
    world.backup()
    world.restore()

    def drop_some(engine: Any, shadow: Shadow) -> None:
        # a profile's script that drops a table with triggers (posts) and the views over it
        engine.run_sql(
            shadow,
            "ALTER TABLE comments DROP FOREIGN KEY fk_post; DROP VIEW a_post_count; DROP VIEW post_titles; "
            "DROP TABLE posts;",
        )

    world.restore(before_swap=drop_some)
    names = {
        str(r[0])
        for r in sql(
            world.server,
            f"SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '{world.target}'",
        )
    }
    assert names == set()
    views = {
        str(r[0])
        for r in sql(
            world.server,
            f"SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = '{world.target}'",
        )
    }
    assert views == set()
    live_tables = {str(r[0]) for r in sql(world.server, "SHOW TABLES", world.target)}
    assert "posts" not in live_tables and "comments" in live_tables
    assert leftovers(world.server) == set()


def test_run_sql_rolls_back_a_failing_script(world: World) -> None:
    """A script stops at its first failing statement, and its earlier changes are rolled back."""
    engine = MySQLEngine()
    ref = database_ref(world.cfg, DB, "production")
    with pytest.raises(EngineError, match="SQL failed"):
        engine.run_sql(ref, "UPDATE authors SET bio = 'changed'; INSERT INTO authors (id) VALUES (1);")
    assert engine.query(ref, "SELECT COUNT(*) FROM authors WHERE bio = 'changed'") == [(0,)]
    with pytest.raises(EngineError, match="query failed"):
        engine.query(ref, "SELECT * FROM nowhere")


# -- exclusions -------------------------------------------------------------------------------------


def test_excluded_tables_are_left_out_and_the_target_keeps_its_own(
    mariadb_server: MariaDbServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GOV.UK's excluded_tables: the table is not in the dump at all, and a restore leaves the
    target's own table (rows, triggers, foreign keys) where it is; everything else is replaced."""
    before = mariadb_server.databases()
    world = make_world(mariadb_server, tmp_path, monkeypatch, exclude=("audit", "comments"))
    try:
        seed(mariadb_server, world.source)
        seed(mariadb_server, world.target, posts=600)  # staging's own data
        mariadb_server.execute(
            "SET FOREIGN_KEY_CHECKS = 0; DELETE FROM comments WHERE id > 5; SET FOREIGN_KEY_CHECKS = 1;"
            "UPDATE comments SET text = CONCAT('staging ', id);"
            "DELETE FROM audit WHERE id > 3; UPDATE posts SET body = 'old staging body';"
            "CREATE TRIGGER comments_bi BEFORE INSERT ON comments FOR EACH ROW SET NEW.text = TRIM(NEW.text);",
            world.target,
        )
        kept = {
            t: sql(mariadb_server, f"SELECT * FROM {t} ORDER BY id", world.target)
            for t in ("audit", "comments")
        }
        manifest = world.backup()
        assert "audit" not in manifest.row_counts and "comments" not in manifest.row_counts
        assert manifest.row_counts["posts"] == 600
        assert manifest.extra["mysql"]["excluded_tables"] == ["audit", "comments"]
        with world.store("production").open(manifest.objects[0].key) as f:
            dump = zstandard.ZstdDecompressor().stream_reader(f).read()
        assert b"CREATE TABLE `comments`" not in dump and b"CREATE TABLE `audit`" not in dump
        world.restore()
        for table, rows_before in kept.items():
            assert sql(mariadb_server, f"SELECT * FROM {table} ORDER BY id", world.target) == rows_before
        assert sql(
            mariadb_server, "SELECT COUNT(*) FROM posts WHERE body = 'old staging body'", world.target
        ) == [(0,)]
        src, dst = snapshot(mariadb_server, world.source), snapshot(mariadb_server, world.target)
        assert [t for t in dst["triggers"] if t[2] == "posts"] == [
            t for t in src["triggers"] if t[2] == "posts"
        ]
        assert [t[0] for t in dst["triggers"] if t[2] == "comments"] == ["comments_bi"]  # kept with its table
        assert dst["foreign keys"] == src["foreign keys"]
        # the kept table's foreign key follows the new posts: a comment on a post that exists works
        mariadb_server.execute(
            "INSERT INTO comments (id, post_id, text) VALUES (1000, 600, ' new ');", world.target
        )
        assert leftovers(mariadb_server) == set()
    finally:
        for name in mariadb_server.databases() - before:
            mariadb_server.drop_db(name)


def test_a_missing_excluded_table_is_a_warning(
    mariadb_server: MariaDbServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As mysqldump --ignore-table: a name the database does not have is reported, not fatal."""
    before = mariadb_server.databases()
    world = make_world(mariadb_server, tmp_path, monkeypatch, exclude=("audits",))
    warnings: list[str] = []

    class Warnings(NullReporter):
        def warn(self, message: str, **fields: Any) -> None:
            warnings.append(message)

    try:
        seed(mariadb_server, world.source, posts=10)
        manifest = ops.backup(world.cfg, DB, "production", reporter=Warnings()).manifest
        assert manifest.row_counts["audit"] > 0
        assert any("has no table 'audits'" in w for w in warnings), warnings
    finally:
        for name in mariadb_server.databases() - before:
            mariadb_server.drop_db(name)


# -- failures ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("store_kind", ["local", "s3"])
def test_killed_backup_publishes_nothing(
    mariadb_server: MariaDbServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    store_kind: str,
    request: pytest.FixtureRequest,
) -> None:
    """SIGKILL mariadb-dump halfway (it is held at the last table by a lock): the backup fails, no
    manifest is written, "latest" is still the previous artifact and no data object is left."""
    before = mariadb_server.databases()
    store_url, env = None, {}
    if store_kind == "s3":
        s3: S3Server = request.getfixturevalue("s3_server")
        bucket: str = request.getfixturevalue("s3_bucket")
        store_url = (
            f'{{ url = "s3://{bucket}/backups", endpoint_url = "{s3.endpoint_url}", region = "{s3.region}", '
            'access_key_id_env = "FERRY_TEST_S3_KEY", secret_access_key_env = "FERRY_TEST_S3_SECRET", '
            "part_size_mib = 5 }"
        )
        env = {"FERRY_TEST_S3_KEY": s3.access_key, "FERRY_TEST_S3_SECRET": s3.secret_key}
    world = make_world(mariadb_server, tmp_path, monkeypatch, production_store=store_url, env=env)
    try:
        seed(mariadb_server, world.source, posts=3000)
        first = world.backup()
        store = world.store("production")
        keys_before = {o.key for o in store.list()}
        mariadb_server.execute(
            "CREATE TABLE zzz_last (id INT PRIMARY KEY); INSERT INTO zzz_last VALUES (1);", world.source
        )
        locker = connect(mariadb_server, world.source, autocommit=False)
        try:
            with locker.cursor() as cur:
                cur.execute("LOCK TABLES zzz_last WRITE")
            work = Background(world.backup)
            pid = wait_for_process(
                lambda argv: os.path.basename(argv[0]) == "mariadb-dump" and world.source in argv
            )
            time.sleep(1.0)  # it has dumped the other tables and waits for zzz_last
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(EngineError, match="killed by signal 9"):
                work.result()
        finally:
            locker.close()
        assert {o.key for o in store.list()} == keys_before
        assert artifacts.latest(store, DB).id == first.id
    finally:
        for name in mariadb_server.databases() - before:
            mariadb_server.drop_db(name)


def _corrupt(world: World, manifest: artifacts.Manifest) -> None:
    path = Path(world.cfg.environment("production").store.url) / manifest.objects[0].key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("jobs", ["1", "3"])
def test_corrupted_artifact_exits_7_and_changes_nothing(world: World, jobs: str) -> None:
    """One flipped byte: the CLI exits 7 with a message, live is untouched, nothing is left."""
    world.backup()
    world.restore()
    live_before = snapshot(world.server, world.target)
    manifest = world.backup()
    _corrupt(world, manifest)
    done = world.run_cli("restore", DB, "--env", "staging", "--from", "production", "--jobs", jobs)
    assert done.returncode == 7, done.stderr
    assert "corrupt" in done.stderr and "Traceback" not in done.stderr
    assert snapshot(world.server, world.target) == live_before
    assert leftovers(world.server) == set()
    assert list(world.spool.iterdir()) == []


def _publish_crafted(world: World, mutate: Callable[[bytes], bytes]) -> artifacts.Manifest:
    """A new artifact whose dump is ``mutate``(the latest one's), with a correct checksum."""
    store = world.store("production")
    good = artifacts.latest(store, DB)
    with store.open(good.objects[0].key) as f:
        raw = zstandard.ZstdDecompressor().stream_reader(f).read()
    data = zstandard.ZstdCompressor().compress(mutate(raw))
    time.sleep(1.1)  # artifact ids have one-second resolution
    ident, created = artifacts.new_artifact_id(store, DB)
    key = artifacts.data_key(DB, ident, "sql.zst")
    store.put(key, io.BytesIO(data))
    obj = good.objects[0].model_copy(
        update={"key": key, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    )
    crafted = good.model_copy(update={"id": ident, "created_at": created, "objects": [obj]})
    artifacts.write_manifest(store, crafted)
    return crafted


@pytest.mark.parametrize("jobs", [1, 3])
def test_load_failing_midway_leaves_live_untouched(world: World, jobs: int, small_chunks: None) -> None:
    """A dump with a bad statement after some tables loaded (checksum correct): the restore fails
    with the server's message, live is exactly as it was, and no shadow, old copy or spool is left."""
    world.backup()
    world.restore()
    live_before = snapshot(world.server, world.target)

    def break_it(raw: bytes) -> bytes:
        marker = b"-- Table structure for table `posts`"
        assert marker in raw
        return raw.replace(marker, b"INSERT INTO no_such_table VALUES (1);\n" + marker)

    _publish_crafted(world, break_it)
    with pytest.raises(EngineError, match="no_such_table"):
        world.restore(jobs=jobs)
    assert snapshot(world.server, world.target) == live_before
    assert leftovers(world.server) == set()
    assert list(world.spool.iterdir()) == []


def test_a_key_that_cannot_be_built_after_the_rows_leaves_live_untouched(
    world: World, small_chunks: None
) -> None:
    """The parallel restore builds secondary keys after loading the rows. A dump whose rows break
    a unique key (checksum correct) loads every row, then fails in that step: the restore fails
    with the server's message, live is exactly as it was, and nothing is left behind."""
    world.backup()
    world.restore()
    live_before = snapshot(world.server, world.target)

    def duplicate_a_name(raw: bytes) -> bytes:
        start = raw.index(b"INSERT INTO `authors`")
        end = raw.index(b";\n", start)
        rows = raw[start:end]
        first, third = "'Zoë 😀 Ångström'".encode(), "'李小龍 🐉'".encode()
        assert first in rows and third in rows
        return raw[:start] + rows.replace(third, first) + raw[end:]

    _publish_crafted(world, duplicate_a_name)
    with pytest.raises(
        EngineError, match=r"loading keys-\d+\.sql into shadow (?s:.*)Duplicate entry .* for key 'uq_name'"
    ):
        world.restore(jobs=3)
    assert snapshot(world.server, world.target) == live_before
    assert leftovers(world.server) == set()
    assert list(world.spool.iterdir()) == []


@pytest.mark.parametrize("jobs", [1, 3])
def test_truncated_dump_with_a_good_checksum_is_refused(world: World, jobs: int, small_chunks: None) -> None:
    """A dump cut short (as by a tool that stopped but exited 0) loads no further than the shadow
    (with --jobs, the rows read so far are loaded while the dump is read: the end decides)."""
    world.backup()
    world.restore()
    live_before = snapshot(world.server, world.target)
    _publish_crafted(world, lambda raw: raw[: raw.index(b"-- Table structure for table `posts`")])
    with pytest.raises(VerificationFailed, match="incomplete"):
        world.restore(jobs=jobs)
    assert snapshot(world.server, world.target) == live_before
    assert leftovers(world.server) == set()
    assert list(world.spool.iterdir()) == []


def test_a_table_that_cannot_be_created_midway_leaves_live_untouched(
    world: World, small_chunks: None
) -> None:
    """--jobs creates the tables while earlier tables' rows load: a CREATE TABLE the server refuses
    (checksum correct) stops every client, with the server's message; live is as it was, and no
    shadow or spool file is left."""
    world.backup()
    world.restore()
    live_before = snapshot(world.server, world.target)

    def break_posts(raw: bytes) -> bytes:
        marker = b"CREATE TABLE `posts` (\n"
        assert marker in raw
        return raw.replace(marker, marker + b"  `broken` nosuchtype NOT NULL,\n")

    _publish_crafted(world, break_posts)
    with pytest.raises(EngineError, match=r"creating the shadow's tables(?s:.*)nosuchtype"):
        world.restore(jobs=3)
    assert snapshot(world.server, world.target) == live_before
    assert leftovers(world.server) == set()
    assert list(world.spool.iterdir()) == []


def test_a_parallel_restore_loads_rows_before_the_whole_dump_is_read(
    world: World, small_chunks: None
) -> None:
    """--jobs does not wait for the whole dump: with the reading held at 80% of it, rows of the
    first table are already in the shadow. Then the restore completes exactly, and every key and
    foreign key held back during the load is there (SHOW CREATE TABLE as the source's)."""
    engine = MySQLEngine()
    world.backup()
    path = world.spool / "dump.sql"
    with engine.dump(database_ref(world.cfg, DB, "production")) as dump, path.open("wb") as out:
        while chunk := dump.stream.read(1 << 16):
            out.write(chunk)
    gate = Gate(path, path.stat().st_size * 4 // 5)
    ref = database_ref(world.cfg, DB, "staging")
    options = RestoreOptions(jobs=3, spool_dir=world.spool / "parallel")
    (world.spool / "parallel").mkdir()
    work = Background(lambda: engine.restore_shadow(ref, gate, options))  # type: ignore[arg-type]
    try:
        assert gate.reached.wait(60)
        shadow_db = f"{world.target}_dfshadow"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(pymysql.err.MySQLError):
                if sql(world.server, "SELECT COUNT(*) FROM authors", shadow_db)[0][0]:
                    break
            time.sleep(0.05)
        else:
            raise AssertionError("no row was loaded while the dump was still being read")
        assert not gate.open.is_set() and work.thread.is_alive()
    finally:
        gate.open.set()
    shadow = work.result()
    try:
        restored = snapshot(world.server, shadow.name)
        source = snapshot(world.server, world.source)
        assert {k: v for k, v in restored.items() if k.startswith(("count ", "create ", "checksum "))} == {
            k: v for k, v in source.items() if k.startswith(("count ", "create ", "checksum "))
        }
        creates = "".join(str(v) for k, v in restored.items() if k.startswith("create "))
        assert "FOREIGN KEY" in creates and "UNIQUE KEY `uq_name`" in creates
    finally:
        engine.drop_shadow(shadow)
    path.unlink()
    assert list((world.spool / "parallel").iterdir()) == []


class Gate:
    """A byte source that stops after ``limit`` bytes until it is opened."""

    def __init__(self, path: Path, limit: int) -> None:
        self._f = path.open("rb")
        self._limit = limit
        self.reached = threading.Event()
        self.open = threading.Event()

    def read(self, n: int = -1) -> bytes:
        """Read; block at the limit until opened."""
        if self._limit <= 0:
            self.reached.set()
            self.open.wait(60)
            return self._f.read(n)
        data = self._f.read(min(n if n >= 0 else self._limit, self._limit))
        self._limit -= len(data)
        return data

    def readable(self) -> bool:
        """File-like enough."""
        return True


def test_killed_client_during_the_load_leaves_live_untouched(world: World) -> None:
    """SIGKILL the mariadb client halfway through loading the shadow: the restore fails, the shadow
    is dropped and the live database is as it was."""
    engine = MySQLEngine()
    world.backup()
    world.restore()
    live_before = snapshot(world.server, world.target)
    path = world.spool / "dump.sql"
    with engine.dump(database_ref(world.cfg, DB, "production")) as dump, path.open("wb") as out:
        while chunk := dump.stream.read(1 << 16):
            out.write(chunk)
    gate = Gate(path, path.stat().st_size // 2)
    ref = database_ref(world.cfg, DB, "staging")
    work = Background(lambda: engine.restore_shadow(ref, gate, RestoreOptions()))  # type: ignore[arg-type]
    assert gate.reached.wait(60)
    pid = wait_for_process(
        lambda argv: os.path.basename(argv[0]) == "mariadb" and f"--database={world.target}_dfshadow" in argv
    )
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    gate.open.set()
    with pytest.raises(EngineError, match="killed by signal 9"):
        work.result()
    path.unlink()
    assert snapshot(world.server, world.target) == live_before
    assert leftovers(world.server) == set()


def restored_with_triggers(world: World) -> dict[str, Any]:
    """Back up production, restore it into staging; the live snapshot (which has triggers)."""
    world.backup()
    world.restore()
    live = snapshot(world.server, world.target)
    assert live["triggers"]
    return live


@contextlib.contextmanager
def reader_holding_a_lock(world: World) -> Iterator[None]:
    """A reader's open transaction holds a metadata lock on a live table until the block ends."""
    reader = connect(world.server, world.target, autocommit=False)
    try:
        with reader.cursor() as cur:
            cur.execute("START TRANSACTION")
            cur.execute("SELECT COUNT(*) FROM comments")
        yield
    finally:
        reader.close()


def test_a_swap_blocked_by_a_reader_gives_up_and_puts_everything_back(world: World) -> None:
    """A long transaction holds a lock on a live table: the RENAME times out, the live triggers that
    had to be dropped before it are put back, and live is exactly as it was."""
    live_before = restored_with_triggers(world)
    with reader_holding_a_lock(world):
        engine = MySQLEngine()
        engine.swap_lock_timeout = 1
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("dataferry.ops.restore_flow.engine_for", lambda cfg, name: engine)
            with pytest.raises(EngineError, match="Lock wait timeout"):
                world.restore()
    assert snapshot(world.server, world.target) == live_before
    assert leftovers(world.server) == set()


@pytest.mark.fault
def test_a_swap_killed_while_waiting_on_a_metadata_lock_loses_no_trigger(world: World) -> None:
    """Issue 19, item 2: the swap drops the live triggers, then its RENAME waits for a reader's
    metadata lock; dataferry is SIGKILLed there. The triggers were kept in the old database before
    they were dropped: ``check`` says so, and the next restore puts them back before anything else
    (here it then fails before its swap, so what live holds afterwards is exactly what was healed)."""
    live_before = restored_with_triggers(world)
    with reader_holding_a_lock(world):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dataferry",
                "--config",
                str(world.config_path),
                "restore",
                DB,
                "--env",
                "staging",
                "--from",
                "production",
            ],
            env={**os.environ, **world.env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        waiting: list[tuple[Any, ...]] = []
        deadline = time.monotonic() + 120
        while not waiting and time.monotonic() < deadline:
            waiting = sql(
                world.server, "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE 'RENAME TABLE%'"
            )
            time.sleep(0.05)
        assert waiting, "the swap never reached its RENAME"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # The server would let the orphaned RENAME wait out its lock; end it, as a server noticing
        # the lost client does: the rename never commits.
        with contextlib.suppress(Exception):  # gone already if the server noticed by itself
            world.server.execute(f"KILL {int(waiting[0][0])}")
    assert snapshot(world.server, world.target)["triggers"] == []  # the window issue 19 found
    check = world.run_cli("check")
    assert f"triggers of {world.target}" in check.stdout and "the next restore puts them back" in check.stdout

    def stop_before_swap(engine: Any, shadow: Shadow) -> None:
        raise EngineError("stopped before the swap")

    with pytest.raises(EngineError, match="stopped before the swap"):
        world.restore(before_swap=stop_before_swap)
    assert snapshot(world.server, world.target) == live_before  # triggers back, data as it was
    assert leftovers(world.server) == set()


def test_readers_during_the_swap_never_see_a_missing_or_partial_table(world: World) -> None:
    """Readers count rows of two tables and a view in one statement, continuously, while the
    database is replaced back and forth: every answer is all-old or all-new, never an error."""
    server = world.server
    prune = "SET foreign_key_checks = 0; DELETE FROM comments WHERE id > {}; DELETE FROM audit WHERE id > {};"
    server.execute(prune.format(100, 50), world.source)
    world.backup()
    old = (600, 100, 50)
    world.restore()
    server.execute(prune.format(30, 20), world.source)
    world.backup()
    new = (600, 30, 20)
    stop = threading.Event()
    answers: list[tuple[int, ...]] = []
    errors: list[str] = []

    def read() -> None:
        conn = connect(server, world.target)
        try:
            with conn.cursor() as cur:
                while not stop.is_set():
                    try:
                        cur.execute(
                            "SELECT (SELECT COUNT(*) FROM post_titles), (SELECT COUNT(*) FROM comments), "
                            "(SELECT COUNT(*) FROM audit)"
                        )
                        answers.append(tuple(int(v) for v in cur.fetchone()))
                    except pymysql.MySQLError as exc:
                        errors.append(str(exc))
        finally:
            conn.close()

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    newest_first = [m.id for m in artifacts.iter_manifests(world.store("production"), DB)]
    try:
        for ident in newest_first * 2:  # new, old, new, old
            req = ops.RestoreRequest(database=DB, environment="staging", source="production", artifact=ident)
            ops.restore(ops.plan_restore(world.cfg, req))
            time.sleep(0.05)
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert errors == []
    assert answers and set(answers) <= {old, new}, set(answers) - {old, new}
    assert old in answers and new in answers


# -- secrets and checks ------------------------------------------------------------------------------


def test_password_never_in_argv_logs_manifest_or_errors(world: World) -> None:
    """Backup and a parallel restore through the CLI: no process ever carries the password in its
    argv, the tools get it from a 0600 option file that is gone afterwards, and the logs, the
    manifest and error messages never contain it."""
    password = world.server.password
    option_files: dict[str, int] = {}
    argvs: list[list[str]] = []

    def run() -> list[subprocess.CompletedProcess[str]]:
        return [
            world.run_cli("backup", DB, "--env", "production"),
            world.run_cli("restore", DB, "--env", "staging", "--from", "production", "--jobs", "2"),
        ]

    def ours(argv: list[str]) -> bool:
        return any(world.source in a or world.target in a or str(world.config_path) in a for a in argv)

    work = Background(run)
    while work.thread.is_alive():
        for _, (_, argv) in processes().items():
            if not ours(argv):
                continue
            argvs.append(argv)
            if os.path.basename(argv[0]) in ("mariadb", "mariadb-dump"):
                path = argv[1].removeprefix("--defaults-extra-file=")
                with contextlib.suppress(OSError):
                    option_files[path] = os.stat(path).st_mode & 0o777
        time.sleep(0.005)
    results = work.result()
    for done in results:
        assert done.returncode == 0, done.stderr
        assert password not in done.stdout + done.stderr
    # the watcher saw the tools (a short dump may finish between two looks on a busy machine)
    assert any(os.path.basename(a[0]) in ("mariadb", "mariadb-dump") for a in argvs)
    assert not [a for a in argvs if any(password in part for part in a)]
    assert option_files and set(option_files.values()) == {0o600}
    assert not [p for p in option_files if os.path.exists(p)]
    for manifest in artifacts.iter_manifests(world.store("production"), DB):
        assert password not in manifest.model_dump_json()
    assert password not in repr(database_ref(world.cfg, DB, "production"))


def test_a_wrong_password_is_not_ready_and_never_echoed(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bad credentials: check reports it, backup refuses with exit 3, the secret is in no message."""
    wrong = "wrong-Pa55word-" + uuid.uuid4().hex
    monkeypatch.setenv(PASSWORD_ENV, wrong)
    world.env[PASSWORD_ENV] = wrong
    engine = get_engine("mysql")
    findings = engine.check(database_ref(world.cfg, DB, "production"))
    server = [f for f in findings if f.what.startswith("server")]
    assert server and not server[0].ok and "Access denied" in server[0].detail
    assert all(wrong not in f.detail for f in findings)
    with pytest.raises(NotReady) as excinfo:
        world.backup()
    assert wrong not in str(excinfo.value) and wrong not in repr(excinfo.value)
    done = world.run_cli("backup", DB, "--env", "production")
    assert done.returncode == 3
    assert wrong not in done.stdout + done.stderr


def test_check_covers_mysql(world: World) -> None:
    """dataferry check: client tools present and of the server's family, server reachable, and a
    missing target database is reported as one the restore will create."""
    report = ops.check(world.cfg)
    mine = [(w, ok, d) for w, ok, d in report.findings if w.startswith(f"{DB} in")]
    assert report.ok, [f for f in report.findings if not f[1]]
    whats = " | ".join(f"{w}: {d}" for w, _, d in mine)
    assert "mariadb-dump: mariadb-dump matches MariaDB 10.11" in whats
    assert "mariadb: mariadb matches MariaDB" in whats
    assert f"database {world.source}: exists (utf8mb4, utf8mb4_unicode_ci)" in whats
    assert f"database {world.target}: missing: a restore creates it" in whats
    done = world.run_cli("check")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_database_in_the_way_of_the_shadow_is_left_alone(world: World) -> None:
    """A database named like the shadow that dataferry did not make is never dropped."""
    world.backup()
    world.server.execute(
        f"CREATE DATABASE `{world.target}_dfshadow`; CREATE TABLE `{world.target}_dfshadow`.keep (id INT);"
    )
    with pytest.raises(FerryError, match="not made by dataferry"):
        world.restore()
    assert sql(world.server, f"SHOW TABLES FROM `{world.target}_dfshadow`") == [("keep",)]


def test_any_password_reaches_the_tools_through_the_option_file(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Quotes, backslashes, '#', ';', '$' and spaces survive the option file: the tools log in."""
    account = f"odd_{uuid.uuid4().hex[:8]}"
    password = "p\"a's s#w;o\\rd $x `y`"
    literal = "'" + password.replace("\\", "\\\\").replace("'", "\\'") + "'"
    world.server.execute(
        f"CREATE USER '{account}'@'%' IDENTIFIED BY {literal}; GRANT ALL ON *.* TO '{account}'@'%';"
    )
    try:
        monkeypatch.setenv(PASSWORD_ENV, password)
        url = f"mysql://{account}@{world.server.host}:{world.server.port}/{world.source}"
        ref = database_ref(world.cfg, DB, "production").model_copy(update={"url": url})
        engine = MySQLEngine()
        assert all(f.ok for f in engine.check(ref))
        with engine.dump(ref) as dump:
            while dump.stream.read(1 << 20):
                pass
        assert dump.row_counts["posts"] == 600
    finally:
        world.server.execute(f"DROP USER '{account}'@'%';")
