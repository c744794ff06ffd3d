"""The fault suite (issue 19): the ``dataferry`` command killed (SIGKILL and SIGTERM) at every phase
of a backup and a restore, on PostgreSQL, MariaDB and SQLite with local stores, and on SQLite with
S3 stores (moto). Each cell asserts:

- the live database is old-complete or new-complete (a fingerprint of rows, indexes, views and
  triggers), or, for the two kills inside a swap that leave something to heal, exactly what
  ``check`` reports, healed by the next run;
- no partial artifact is published: the listing is unchanged, or (once the manifest is written)
  holds the complete new one, and the newest verifies;
- a SIGTERMed run stops like Ctrl-C ("Aborted!", exit 1, no traceback) unless its artifact was
  published: then it reports success (issue 19, item 10);
- the next run succeeds, sweeps what the killed one left, and afterwards nothing is on disk: no
  private run directory, option file, spool or SQLite copy, no file holding the password (or the S3
  secret key), and no shadow or old copy on the server.

The phases are ``fault_points.PHASES``; ``docs/reliability.md`` shows the matrix and its figures.
Run it alone with ``pytest -m fault``.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fault_points import PHASES, SIGNALS, Ended, killed_at
from integration import _pg_helpers as pgh
from integration import test_mysql_engine as my
from servers import MariaDbServer, PgServer, S3Server

pytestmark = [pytest.mark.fault, pytest.mark.integration]

ENGINES = ("postgresql", "mysql", "sqlite")
#: Every engine with local-directory stores, and SQLite (the quickest) with both stores on S3 (moto).
RIGS = [*ENGINES, "sqlite+s3"]
S3_KEY_ENV, S3_SECRET_ENV = "FAULT_S3_KEY", "FAULT_S3_SECRET"
BACKUP_POINTS = [p for p in PHASES if p.startswith("backup:")]
RESTORE_POINTS = [p for p in PHASES if p.startswith("restore:")]
PASSWORD_ENV = "FAULT_DB_PASSWORD"

PG_TRIGGER = """
CREATE FUNCTION public.stamp_event() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN NEW.kind := lower(NEW.kind); RETURN NEW; END $$;
CREATE TRIGGER events_stamp BEFORE INSERT ON public.events FOR EACH ROW EXECUTE FUNCTION public.stamp_event();
"""

SQLITE_SCHEMA = """
CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT);
CREATE TABLE audit (id INTEGER PRIMARY KEY, user_id INTEGER, note TEXT);
CREATE INDEX users_name ON users (name);
CREATE VIEW named AS SELECT id, name FROM users WHERE name IS NOT NULL;
CREATE TRIGGER users_ai AFTER INSERT ON users BEGIN INSERT INTO audit (user_id, note) VALUES (NEW.id, 'new'); END;
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 500)
INSERT INTO users (email, name) SELECT 'user' || n || '@example.org', 'Zoë ' || n FROM g;
"""


@dataclass
class Rig:
    """One engine's production (source) and staging (target) databases, stores and config."""

    engine: str
    work: Path
    secret: str | None
    fingerprint: Callable[[str], Any]  # "source" or "target"
    change_source: Callable[[], None]
    server_leftovers: Callable[[], set[str]]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        """The configuration file."""
        return self.work / "dataferry.toml"

    @property
    def tmp(self) -> Path:
        """The runs' temp dir (option files, SQLite copies)."""
        return self.work / "tmp"

    @property
    def spool(self) -> Path:
        """The configured spool dir."""
        return self.work / "spool"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``dataferry ARGS``, run to the end."""
        proc = subprocess.run(
            [sys.executable, "-m", "dataferry", "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=self.work,
            env={**os.environ, **self.env},
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``dataferry ARGS``, which must succeed."""
        proc = self.cli(*args)
        assert proc.returncode == 0, f"{args}: {proc.stderr}"
        return proc

    def backup(self) -> subprocess.CompletedProcess[str]:
        """Back up production."""
        return self.ok("backup", "app", "--env", "production")

    def restore(self) -> subprocess.CompletedProcess[str]:
        """Restore production's newest artifact into staging."""
        return self.ok("restore", "app", "--env", "staging", "--from", "production")

    def artifacts(self) -> list[str]:
        """Ids of production's published artifacts, newest first."""
        return [m["id"] for m in json.loads(self.ok("list", "app", "--env", "production", "--json").stdout)]

    def killed(self, args: list[str], point: str, signame: str) -> Ended:
        """Run ``args``, kill it at ``point``."""
        return killed_at(self.config, args, point, signame, self.env, self.work)


def _write_config(
    work: Path, engine: str, production: str, staging: str, password: bool, s3: S3Server | None = None
) -> str | None:
    """Write the configuration; returns the bucket made for the stores on ``s3``, if any."""
    secret = f', password_env = "{PASSWORD_ENV}"' if password else ""
    stores = {env: f'"stores/{env}"' for env in ("production", "staging")}
    bucket = None
    if s3 is not None:
        bucket = s3.create_bucket("dataferry-fault")
        stores = {
            env: f'{{ url = "s3://{bucket}/{env}", endpoint_url = "{s3.endpoint_url}", region = "{s3.region}", '
            f'access_key_id_env = "{S3_KEY_ENV}", secret_access_key_env = "{S3_SECRET_ENV}" }}'
            for env in stores
        }
    (work / "dataferry.toml").write_text(
        f"""
[settings]
spool_dir = "spool"

[environments.production]
store = {stores["production"]}

[environments.staging]
store = {stores["staging"]}

[databases.app]
engine = "{engine}"
[databases.app.environments]
production = {{ url = "{production}"{secret} }}
staging = {{ url = "{staging}"{secret} }}
""",
        encoding="utf-8",
    )
    return bucket


def _pg_rig(pg: PgServer, work: Path) -> Iterator[Rig]:
    src, dst = pgh.unique("fsrc"), pgh.unique("fdst")
    pg.create_db(src)
    pg.create_db(dst)
    pgh.seed_app(pg, src, rows=300)
    pg.psql(PG_TRIGGER, src)
    pgh.seed_other(pg, dst)
    _write_config(work, "postgresql", pg.dsn(src), pg.dsn(dst), password=True)

    def fingerprint(which: str) -> Any:
        db = src if which == "source" else dst
        if pgh.datallowconn(pg, db) == "f":  # a swap killed while it blocked live: look inside
            pg.psql(f"ALTER DATABASE {pgh.quote(db)} ALLOW_CONNECTIONS true;")
            try:
                return pgh.fingerprint(pg, db)
            finally:
                pg.psql(f"ALTER DATABASE {pgh.quote(db)} ALLOW_CONNECTIONS false;")
        return pgh.fingerprint(pg, db)

    def change() -> None:
        pg.psql(
            "DELETE FROM billing.invoices WHERE id % 2 = 0; INSERT INTO public.events (kind) VALUES ('NEW');",
            src,
        )

    try:
        yield Rig(
            "postgresql",
            work,
            pg.password,
            fingerprint,
            change,
            lambda: pgh.dataferry_databases(pg, dst),
            {PASSWORD_ENV: pg.password},
        )
    finally:
        for name in (src, dst):
            pg.psql(f"ALTER DATABASE {pgh.quote(name)} ALLOW_CONNECTIONS true;")
            for db in (name, name + pgh.SHADOW_SUFFIX, name + pgh.OLD_SUFFIX):
                pg.drop_db(db)


def _mysql_rig(server: MariaDbServer, work: Path) -> Iterator[Rig]:
    suffix = pgh.unique("x")[2:]
    src, dst = f"fprod_{suffix}", f"fstg_{suffix}"
    my.seed(server, src, posts=200)
    _write_config(work, "mysql", server.url(src), server.url(dst), password=True)

    def change() -> None:
        server.execute("SET foreign_key_checks = 0; DELETE FROM comments WHERE id > 150;", src)

    def ours() -> set[str]:
        return {d for d in my.leftovers(server) if d.startswith((src, dst))}

    try:
        yield Rig(
            "mysql",
            work,
            server.password,
            lambda which: my.snapshot(server, src if which == "source" else dst),
            change,
            ours,
            {PASSWORD_ENV: server.password},
        )
    finally:
        for db in server.databases():
            if db.startswith((src, dst)):
                server.drop_db(db)


def _sqlite_rig(work: Path, s3: S3Server | None = None) -> Iterator[Rig]:
    (work / "db").mkdir()
    src, dst = work / "db" / "production.db", work / "db" / "staging.db"
    with sqlite3.connect(src) as con:
        con.executescript(SQLITE_SCHEMA)
    con.close()
    bucket = _write_config(work, "sqlite", f"sqlite:///{src}", f"sqlite:///{dst}", password=False, s3=s3)

    def fingerprint(which: str) -> Any:
        path = src if which == "source" else dst
        if not path.exists():
            return None
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            schema = con.execute("SELECT type, name, sql FROM sqlite_master ORDER BY 1, 2").fetchall()
            tables = [name for kind, name, _ in schema if kind == "table"]
            rows = {t: con.execute(f'SELECT * FROM "{t}" ORDER BY 1').fetchall() for t in tables}
            return {"schema": schema, "rows": rows}
        finally:
            con.close()

    def change() -> None:
        with sqlite3.connect(src) as c:
            c.execute("DELETE FROM users WHERE id % 3 = 0")
            c.execute("INSERT INTO users (email, name) VALUES ('new@example.org', 'New')")
        c.close()

    def copies() -> set[str]:
        return {p.name for p in (work / "db").iterdir() if ".dataferry-shadow-" in p.name}

    if s3 is None or bucket is None:
        yield Rig("sqlite", work, None, fingerprint, change, copies)
        return
    # moto takes any key pair: a distinctive secret, so that finding it on disk means something
    keys = {S3_KEY_ENV: s3.access_key, S3_SECRET_ENV: "fault-suite-s3-secret-7d1e0b"}
    try:
        yield Rig("sqlite", work, keys[S3_SECRET_ENV], fingerprint, change, copies, keys)
    finally:
        s3.delete_bucket(bucket)


@pytest.fixture(params=RIGS)
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    """A rig for each engine (and SQLite on S3), in its own directory."""
    for sub in ("tmp", "spool"):
        (tmp_path / sub).mkdir()
    if request.param == "postgresql":
        make = _pg_rig(request.getfixturevalue("pg_server"), tmp_path)
    elif request.param == "mysql":
        make = _mysql_rig(request.getfixturevalue("mariadb_server"), tmp_path)
    elif request.param == "sqlite+s3":
        make = _sqlite_rig(tmp_path, request.getfixturevalue("s3_server"))
    else:
        make = _sqlite_rig(tmp_path)
    for r in make:
        r.env["TMPDIR"] = str(r.tmp)
        yield r


# -- assertions ------------------------------------------------------------------------------------


def assert_stopped(ended: Ended, signame: str, *, published: bool = False) -> None:
    """How a killed run ends: SIGKILL ends it on the spot; SIGTERM stops it cleanly, saying why."""
    assert "Traceback" not in ended.stderr, ended.stderr
    if signame == "SIGKILL":
        assert ended.returncode == -SIGNALS["SIGKILL"]
    elif published:
        assert ended.returncode == 0, ended.stderr
    else:
        assert ended.returncode == 1, ended.stderr
        assert "error: interrupted (stopped by SIGTERM)" in ended.stderr and "\nhint: " in ended.stderr, (
            ended.stderr
        )


def assert_nothing_left(rig: Rig) -> None:
    """Nothing a run keeps privately is on disk: no run directory, option file, spool or SQLite
    copy, no file holding the password, no shadow or old copy on the server."""
    assert sorted(p.name for p in rig.tmp.iterdir()) == []
    assert sorted(p.name for p in rig.spool.iterdir()) == []
    assert rig.server_leftovers() == set()
    if rig.secret:
        holding = [p for p in rig.work.rglob("*") if p.is_file() and rig.secret.encode() in p.read_bytes()]
        assert holding == []


# -- the matrix ------------------------------------------------------------------------------------


@pytest.mark.parametrize("signame", list(SIGNALS))
@pytest.mark.parametrize("point", BACKUP_POINTS)
def test_a_killed_backup_publishes_nothing_partial(rig: Rig, point: str, signame: str) -> None:
    """Backup killed at ``point``: the source is untouched, the listing holds only complete
    artifacts (the new one only once its manifest was written), the next backup sweeps."""
    if point == "backup:between-objects" and rig.engine != "postgresql":
        pytest.skip("this engine's artifacts are one data object: there is no point between objects")
    rig.backup()
    before, source = rig.artifacts(), rig.fingerprint("source")
    ended = rig.killed(["backup", "app", "--env", "production"], point, signame)
    # the manifest write finishes whatever arrives meanwhile, so SIGTERM there publishes
    committed = point == "backup:committed" or (point, signame) == ("backup:commit", "SIGTERM")
    assert_stopped(ended, signame, published=committed)
    after = rig.artifacts()
    assert after[1:] == before if committed else after == before
    rig.ok("verify", "app", "--env", "production")  # the newest is whole
    assert rig.fingerprint("source") == source
    rig.backup()
    assert len(rig.artifacts()) == len(after) + 1
    assert_nothing_left(rig)


@pytest.mark.parametrize("signame", list(SIGNALS))
@pytest.mark.parametrize("point", RESTORE_POINTS)
def test_a_killed_restore_leaves_live_old_or_new(rig: Rig, point: str, signame: str) -> None:
    """Restore killed at ``point``: live is the old copy or the new one, complete; the next
    restore sweeps what was left and puts the new one in place."""
    rig.backup()
    rig.restore()
    old = rig.fingerprint("target")
    rig.change_source()
    rig.backup()
    new = rig.fingerprint("source")
    assert new != old
    listing = rig.artifacts()
    ended = rig.killed(["restore", "app", "--env", "staging", "--from", "production"], point, signame)
    assert_stopped(ended, signame)
    live = rig.fingerprint("target")
    if (rig.engine, point, signame) == ("mysql", "restore:swap", "SIGKILL"):
        # killed with the live triggers dropped and kept in the old database: data as it was,
        # check names the kept triggers, and the next restore puts them back first
        assert live["triggers"] == [] and {**live, "triggers": old["triggers"]} == old
        assert "the next restore puts them back" in rig.ok("check").stdout
    else:
        assert live in (old, new)
    if (rig.engine, point, signame) == ("postgresql", "restore:swap", "SIGKILL"):
        assert "interrupted dataferry swap" in rig.ok("check").stdout  # live blocked, reported
    assert rig.artifacts() == listing
    rig.restore()
    assert rig.fingerprint("target") == new
    assert_nothing_left(rig)


# -- loaders a killed parallel restore left running ---------------------------------------------------


def _loaders_of(rig: Rig) -> dict[int, str]:
    """Running processes whose argv names a private run directory of this test: pid -> state."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode("utf-8", "replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(rig.work) in argv and "dataferry-run-" in argv and state != "Z":
            found[int(entry.name)] = state
    return found


@pytest.mark.parametrize(
    ("rig", "then"),
    [("postgresql", "cleanup"), ("postgresql", "restore"), ("mysql", "cleanup")],
    indirect=["rig"],
)
def test_loaders_a_killed_parallel_restore_left_running_are_killed_and_reported(rig: Rig, then: str) -> None:
    """Issue 19, item 5: SIGKILL a ``restore --jobs 2`` while its loader runs (here held stopped, so
    it is still there): the loader lives on under init. ``check`` reports it, ``cleanup --dry-run``
    lists it, and ``cleanup`` (or the next restore) kills it and says so."""
    rig.backup()
    restore = ["restore", "app", "--env", "staging", "--from", "production", "--jobs", "2"]
    try:
        ended = rig.killed(restore, "restore:loader", "SIGKILL")
        assert ended.returncode == -SIGNALS["SIGKILL"]
        loaders = _loaders_of(rig)
        assert loaders and set(loaders.values()) == {"T"}, loaders  # orphaned, alive
        check = rig.ok("check").stdout
        assert "still running for them" in check and all(f"(pid {pid})" in check for pid in loaders)
        if then == "cleanup":
            dry = rig.ok("cleanup", "app", "--env", "staging", "--dry-run").stdout
            assert all("would kill" in dry and f"(pid {pid})" in dry for pid in loaders)
            assert _loaders_of(rig) == loaders
            done = rig.ok("cleanup", "app", "--env", "staging").stdout
        else:
            done = rig.ok(*restore).stderr
        assert all("killed " in done and f"(pid {pid})" in done for pid in loaders), done
        assert _loaders_of(rig) == {}
    finally:
        for pid in _loaders_of(rig):  # only what this test started
            os.kill(pid, signal.SIGKILL)
    rig.restore()
    assert rig.fingerprint("target") == rig.fingerprint("source")
    assert_nothing_left(rig)
