"""The two engines of the chain benchmark: their servers, data, GOV.UK pipelines and checks.

Each ``ChainEngine`` knows how to generate the production database (bench/pg and bench/mysql's
generators), tune and settle its server (their code too), run GOV.UK's Kubernetes ``db-backup``
commands as shell pipelines, count rows, fingerprint tables and read the server's CPU time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH = Path(__file__).resolve().parent.parent
for sub in ("", "pg", "mysql"):
    if str(BENCH / sub) not in sys.path:
        sys.path.insert(0, str(BENCH / sub))

import common  # noqa: E402
import generate_mysql  # noqa: E402
import generate_pg  # noqa: E402

TABLES = ("users", "documents", "events")
#: The personal columns of the generated data that both ways mask, and how GOV.UK's transform
#: (an in-place UPDATE, as their ckan.sql does: ``user_<id>``, ``user_<id>@example.com``, stars)
#: masks them. dataferry's profile masks the same three (see run.py: PROFILE).
MASKED = ("email", "name", "bio")
GOVUK_TRANSFORM_PG = (
    "UPDATE users SET email = 'user_' || id || '@example.com', name = 'user_' || id, "
    "bio = repeat('*', char_length(bio));\n"
)
GOVUK_TRANSFORM_MYSQL = (
    "UPDATE users SET email = CONCAT('user_', id, '@example.com'), name = CONCAT('user_', id), "
    "bio = REPEAT('*', CHAR_LENGTH(bio));\n"
)


def _load(name: str, path: Path) -> ModuleType:
    """Import a benchmark script by path (bench/pg/run.py and bench/mysql/run.py share a name)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def proc_cpu(pid: int, *, children: bool = False) -> float:
    """User + system CPU seconds of ``pid`` (with ``children``: plus its reaped children's)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` and its reaped children, plus every live descendant's."""
    total = proc_cpu(root, children=True)
    todo = [root]
    while todo:
        pid = todo.pop()
        for kid in common._children(pid):
            total += proc_cpu(kid)
            todo.append(kid)
    return total


def md5_of(argv: list[str], env: dict[str, str]) -> str:
    """md5 of a command's stdout, streamed (a table export can be larger than memory)."""
    digest = hashlib.md5(usedforsecurity=False)
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL) as proc:
        assert proc.stdout
        for chunk in iter(lambda: proc.stdout.read(1 << 20), b""):  # type: ignore[union-attr]
            digest.update(chunk)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}) exporting for a fingerprint")
    return digest.hexdigest()


class ChainEngine:
    """What the chain needs from one engine. Subclasses fill it in."""

    name = ""
    dataferry_engine = ""
    tool_env: dict[str, str]

    def generate(self, db: str, size_mb: int) -> Any:
        """Create and fill ``db`` (the production database); returns the generator's facts."""
        raise NotImplementedError

    def url(self, db: str) -> str:
        """dataferry's URL of ``db`` (no password)."""
        raise NotImplementedError

    def settle(self) -> None:
        """Let the server write out dirty pages before a measurement."""
        raise NotImplementedError

    def server_cpu(self) -> float:
        """CPU seconds the server has used so far (all its processes)."""
        raise NotImplementedError

    def row_counts(self, db: str) -> dict[str, int]:
        """Exact rows per table."""
        raise NotImplementedError

    def export_argv(self, db: str, select: str) -> list[str]:
        """A client command that writes ``select``'s rows as text to stdout."""
        raise NotImplementedError

    def query(self, db: str, sql: str) -> list[list[str]]:
        """Rows of ``sql`` as lists of strings (tab- or bar-separated output, split)."""
        raise NotImplementedError

    def drop(self, db: str) -> None:
        """Drop ``db`` if it exists."""
        raise NotImplementedError

    def create(self, db: str) -> None:
        """Create an empty ``db``."""
        raise NotImplementedError

    def dump_cmd(self, db: str) -> str:
        """GOV.UK's dump pipeline up to the compressed stream (before the upload)."""
        raise NotImplementedError

    def restore_script(self, db: str, download: str) -> str:
        """GOV.UK's restore of ``db`` from the ``download`` command's stdout, as a bash script."""
        raise NotImplementedError

    def transform_cmd(self, db: str, script: Path) -> str:
        """GOV.UK's transform: run ``script`` on the live ``db``."""
        raise NotImplementedError

    def transform_sql(self) -> str:
        """The in-place UPDATE of the three columns."""
        raise NotImplementedError

    def fingerprint(self, db: str, table: str, columns: str = "*") -> str:
        """md5 of the ordered text export of ``table``'s ``columns``."""
        return md5_of(self.export_argv(db, f"SELECT {columns} FROM {table} ORDER BY id"), self.tool_env)

    def versions(self) -> dict[str, list[str]]:
        """Commands that print the versions the report names."""
        raise NotImplementedError


class PgChain(ChainEngine):
    """PostgreSQL: the fixture's cluster, tuned like bench/pg (autovacuum off, larger buffers)."""

    name = "PostgreSQL"
    dataferry_engine = "postgresql"

    def __init__(self, servers: Any, server: Any, durable: bool) -> None:
        self.server = server
        self.bin = server.bindir
        self.settings = _load("bench_pg_run", BENCH / "pg" / "run.py").tune_server(servers, server, durable)
        self.tool_env = server.env()
        # the postmaster: the parent of every backend, which reaps them (their CPU is in its cutime)
        datadir = Path(self.psql("SHOW data_directory;"))
        self.postmaster = int((datadir / "postmaster.pid").read_text().split()[0])

    def psql(self, sql: str, db: str = "postgres") -> str:
        """Run SQL (no time limit); unaligned, tuples-only output."""
        return str(generate_pg.psql(self.server, sql, db))

    def generate(self, db: str, size_mb: int) -> Any:
        return generate_pg.generate(self.server, db, size_mb)

    def url(self, db: str) -> str:
        return str(self.server.dsn(db))

    def settle(self) -> None:
        self.psql("CHECKPOINT;")

    def server_cpu(self) -> float:
        return tree_cpu(self.postmaster)

    def row_counts(self, db: str) -> dict[str, int]:
        return dict(generate_pg.row_counts(self.server, db))

    def export_argv(self, db: str, select: str) -> list[str]:
        return [*self.server.psql_argv(db), "-c", f"COPY ({select}) TO STDOUT"]

    def query(self, db: str, sql: str) -> list[list[str]]:
        return [line.split("|") for line in self.psql(sql, db).splitlines() if line]

    def drop(self, db: str) -> None:
        self.server.drop_db(db)

    def create(self, db: str) -> None:
        self.server.create_db(db)

    def dump_cmd(self, db: str) -> str:
        # db-backup's backup: custom format, compressed by pg_dump at level 1 (not piped through gzip)
        return f"{self.bin}/pg_dump -Fc -Z1 -d {db}"

    def restore_script(self, db: str, download: str) -> str:
        # db-backup's restore: into <db>-restore, then a rename swap (terminating sessions), the
        # owner set, and the old copy dropped. ON_ERROR_STOP is the benchmark's: their psql does
        # not stop on errors, which here would turn a failure into an incomplete restore.
        psql = f"{self.bin}/psql -X -q -v ON_ERROR_STOP=1"
        new, old = f"{db}_restore", f"{db}_old"
        terminate = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid();"
        return "\n".join(
            [
                f"{psql} -d postgres -c 'DROP DATABASE IF EXISTS {new} WITH (FORCE)'",
                f"{psql} -d postgres -c 'CREATE DATABASE {new} TEMPLATE template0'",
                f"{download} | {self.bin}/pg_restore --no-comments -f - "
                f"| {psql} -d {new} -c \"SET session_replication_role = 'replica'\" -f - > /dev/null",
                f"{psql} -d postgres -c 'DROP DATABASE IF EXISTS {old}'",
                f'if [ -n "$({psql} -At -d postgres -c "SELECT 1 FROM pg_database WHERE datname = \'{db}\'")" ]; then',
                f"  {psql} -d postgres -c 'ALTER DATABASE {db} OWNER TO SESSION_USER' "
                f"-c 'ALTER DATABASE {db} WITH ALLOW_CONNECTIONS false'",
                f"  {psql} -d postgres -1 -c \"{terminate.format(db)}\" -c 'ALTER DATABASE {db} RENAME TO {old}' "
                f"-c \"{terminate.format(new)}\" -c 'ALTER DATABASE {new} RENAME TO {db}'",
                "else",
                f"  {psql} -d postgres -c 'ALTER DATABASE {new} RENAME TO {db}'",
                "fi",
                f"{psql} -d postgres -c 'ALTER DATABASE {db} OWNER TO SESSION_USER'",
                f"{psql} -d postgres -c 'DROP DATABASE IF EXISTS {old}'",
            ]
        )

    def transform_cmd(self, db: str, script: Path) -> str:
        return f"{self.bin}/psql -X -q -v ON_ERROR_STOP=1 -d {db} < {script}"

    def transform_sql(self) -> str:
        return GOVUK_TRANSFORM_PG

    def versions(self) -> dict[str, list[str]]:
        return {
            "PostgreSQL server": [str(self.bin / "postgres"), "--version"],
            "pg_dump, pg_restore": [str(self.bin / "pg_dump"), "--version"],
        }


class MariaChain(ChainEngine):
    """MariaDB through dataferry's mysql engine: the fixture's server, tuned like bench/mysql."""

    name = "MariaDB"
    dataferry_engine = "mysql"

    def __init__(self, server: Any, workdir: Path, durable: bool) -> None:
        self.server = server
        self.client = generate_mysql.Client(server, workdir / "client.cnf")
        self._run_module = _load("bench_mysql_run", BENCH / "mysql" / "run.py")
        self.settings = self._run_module.tune_server(self.client, durable)
        self.tool_env = common.clean_env()
        self.opts = self.client.opts
        # db-backup's ~/.my.cnf: the restore's client turns unique and foreign-key checks off.
        self.restore_opts = workdir / "govuk-restore.cnf"
        self.restore_opts.write_text(
            self.opts.read_text() + 'init-command="SET SESSION unique_checks=0, foreign_key_checks=0"\n'
        )
        self.restore_opts.chmod(0o600)
        pid_file = self.client.run("SELECT @@GLOBAL.pid_file;")
        self.pid = int(Path(pid_file).read_text().strip())

    def generate(self, db: str, size_mb: int) -> Any:
        return generate_mysql.generate(self.client, db, size_mb)

    def url(self, db: str) -> str:
        return str(self.server.url(db))

    def settle(self) -> None:
        self._run_module.settle(self.client)

    def server_cpu(self) -> float:
        return proc_cpu(self.pid, children=True)

    def row_counts(self, db: str) -> dict[str, int]:
        return dict(generate_mysql.row_counts(self.client, db))

    def export_argv(self, db: str, select: str) -> list[str]:
        return [
            "mariadb",
            f"--defaults-extra-file={self.opts}",
            "--batch",
            "--skip-column-names",
            "--quick",
            f"--database={db}",
            "-e",
            select,
        ]

    def query(self, db: str, sql: str) -> list[list[str]]:
        return [line.split("\t") for line in self.client.run(sql, db).splitlines() if line]

    def drop(self, db: str) -> None:
        self.client.run(f"DROP DATABASE IF EXISTS `{db}`;")

    def create(self, db: str) -> None:
        self.client.run(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4;")

    def dump_cmd(self, db: str) -> str:
        return f"mariadb-dump --defaults-extra-file={self.opts} --single-transaction {db} | gzip -1"

    def restore_script(self, db: str, download: str) -> str:
        # db-backup's MySQL restore: drop and create (no shadow), then the load in one stream
        admin = f"mariadb-admin --defaults-extra-file={self.opts}"
        return "\n".join(
            [
                f"{admin} drop -f {db} > /dev/null",
                f"{admin} create {db}",
                f"{download} | gunzip | mariadb --defaults-extra-file={self.restore_opts} {db}",
            ]
        )

    def transform_cmd(self, db: str, script: Path) -> str:
        return f"mariadb --defaults-extra-file={self.opts} {db} < {script}"

    def transform_sql(self) -> str:
        return GOVUK_TRANSFORM_MYSQL

    def versions(self) -> dict[str, list[str]]:
        return {"mariadb-dump": ["mariadb-dump", "--version"], "mariadb": ["mariadb", "--version"]}


ServerFactory = Callable[[], Any]
