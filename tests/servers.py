"""Throwaway database and object-store servers for the integration tests.

Each ``start_*`` function is a context manager that launches a real server
(never a mock) on 127.0.0.1 and a free port, yields a small dataclass that
describes how to reach it, and stops the server and removes its files on
exit.  ``tests/conftest.py`` wraps them in session-scoped pytest fixtures.

Only the standard library (plus pytest, and moto/boto3 for S3) is used, and
SQL is run through the ``psql`` / ``mariadb`` command-line clients, so the
fixtures do not depend on any database driver or on the dataferry package.

Secrets are never put on a command line: ``psql`` gets its password through
``PGPASSWORD`` and the ``mariadb`` client through a 0600 option file.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

START_TIMEOUT = 30.0
"""Seconds a server may take to become ready before the fixture fails."""

COMMAND_TIMEOUT = 60.0
"""Seconds a single client command (psql, mariadb, ...) may run."""

PG_USER = "postgres"
PG_PASSWORD = "ferry-pg-S3cret-pw"
MARIADB_USER = "dataferry"
MARIADB_PASSWORD = "ferry-maria-S3cret-pw"
S3_ACCESS_KEY = "testing"
S3_SECRET_KEY = "testing"
S3_REGION = "us-east-1"

# Client-side variables that would silently redirect or re-authenticate our
# clients if they leaked in from the developer's shell.
_CLIENT_ENV_PREFIXES = ("PG", "MYSQL", "MARIADB", "AWS_")


class ServerError(RuntimeError):
    """A server failed to start or a client command against it failed."""


# --------------------------------------------------------------------------
# Generic helpers
# --------------------------------------------------------------------------


def missing_dependency(message: str) -> NoReturn:
    """Skip the requesting test, or fail it when running on CI.

    A missing server binary on a developer machine is not an error, but on CI
    (the ``CI`` environment variable is set) it must never go unnoticed.
    """
    if os.environ.get("CI"):
        pytest.fail(f"{message} (required because CI is set)", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is currently unused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = 40) -> str:
    """Return the last ``lines`` lines of a log file (or a placeholder)."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:]) or "<empty log>"


def clean_client_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return a copy of ``os.environ`` without PG*/MYSQL*/MARIADB*/AWS_* vars.

    ``extra`` is merged on top of the cleaned environment.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith(_CLIENT_ENV_PREFIXES)}
    env.update(extra or {})
    return env


def _run(
    argv: list[str],
    *,
    input_text: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = COMMAND_TIMEOUT,
    **kwargs: Any,
) -> str:
    """Run ``argv`` and return its stdout; raise ServerError on failure."""
    try:
        proc = subprocess.run(
            argv,
            input=input_text,
            env=dict(env) if env is not None else clean_client_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )
    except subprocess.TimeoutExpired as exc:
        raise ServerError(f"{argv[0]} timed out after {timeout:.0f}s") from exc
    if proc.returncode != 0:
        raise ServerError(
            f"{Path(argv[0]).name} exited with status {proc.returncode}:\n"
            f"{proc.stderr.strip() or proc.stdout.strip()}"
        )
    stdout: str = proc.stdout
    return stdout


def _strip_output(output: str) -> str:
    """Drop the single trailing newline clients print after the last row."""
    return output[:-1] if output.endswith("\n") else output


def _address_in_use(log: str) -> bool:
    return bool(re.search(r"address already in use|errno: 98", log, re.IGNORECASE))


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------


def find_pg_bindir() -> Path | None:
    """Return the ``bin`` directory of the newest installed PostgreSQL major."""
    candidates: list[tuple[int, Path]] = []
    for bindir in Path("/usr/lib/postgresql").glob("*/bin"):
        major = bindir.parent.name
        if major.isdigit() and (bindir / "initdb").is_file():
            candidates.append((int(major), bindir))
    if candidates:
        return max(candidates)[1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def pg_quote_ident(name: str) -> str:
    """Quote ``name`` as a PostgreSQL identifier."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class PgServer:
    """Connection details of a running throwaway PostgreSQL server."""

    host: str
    port: int
    user: str
    password: str
    bindir: Path

    def dsn(self, dbname: str = "postgres") -> str:
        """Return a libpq URL for ``dbname``; it deliberately has no password."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def env(self) -> dict[str, str]:
        """Return a subprocess environment with PGHOST/PGPORT/PGUSER/PGPASSWORD.

        It is a copy of ``os.environ`` with any other PG* variables removed.
        """
        return clean_client_env(
            {
                "PGHOST": self.host,
                "PGPORT": str(self.port),
                "PGUSER": self.user,
                "PGPASSWORD": self.password,
                "PGDATABASE": "postgres",
                "PGCONNECT_TIMEOUT": "10",
            }
        )

    def psql_argv(self, dbname: str = "postgres") -> list[str]:
        """Return the psql command line used by :meth:`psql` (no secrets)."""
        return [
            str(self.bindir / "psql"),
            "--no-psqlrc",
            "--quiet",
            "--no-align",
            "--tuples-only",
            "--set=ON_ERROR_STOP=1",
            f"--dbname={self.dsn(dbname)}",
        ]

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run ``sql`` with psql and return its unaligned, tuples-only output.

        Statements are sent on stdin and run one by one (so ``CREATE
        DATABASE`` works); the first error aborts and raises ServerError.
        Columns are separated by ``|``, rows by newlines.
        """
        return _strip_output(_run(self.psql_argv(dbname), input_text=sql, env=self.env()))

    def create_db(self, name: str) -> None:
        """Create an empty database called ``name``."""
        self.psql(f"CREATE DATABASE {pg_quote_ident(name)};")

    def drop_db(self, name: str) -> None:
        """Drop database ``name`` if it exists, disconnecting its sessions."""
        self.psql(f"DROP DATABASE IF EXISTS {pg_quote_ident(name)} WITH (FORCE);")

    def databases(self) -> set[str]:
        """Return the names of all non-template databases."""
        out = self.psql("SELECT datname FROM pg_database WHERE NOT datistemplate;")
        return {line for line in out.splitlines() if line}


def _pg_run_as() -> pwd.struct_passwd | None:
    """Return the unprivileged account to run PostgreSQL as when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        _run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "postgres",
            ]
        )
        return pwd.getpwnam("postgres")


@contextlib.contextmanager
def start_postgres(timeout: float = START_TIMEOUT) -> Iterator[PgServer]:
    """Start a throwaway PostgreSQL cluster and yield its :class:`PgServer`.

    initdb runs into a fresh directory under /tmp with scram-sha-256 auth and
    superuser ``postgres``; the server listens on 127.0.0.1 and a free port,
    with its unix socket inside that directory and fsync off.  When run as
    root, initdb and the server run as the ``postgres`` system account.
    """
    bindir = find_pg_bindir()
    if bindir is None:
        missing_dependency("PostgreSQL server binaries (initdb, pg_ctl) not found")

    account = _pg_run_as()
    as_user: dict[str, Any] = {}
    if account is not None:
        as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    base = Path(tempfile.mkdtemp(prefix="dataferry-pg-", dir="/tmp"))
    datadir, logfile = base / "data", base / "server.log"
    env = clean_client_env({"LC_ALL": "C", "TZ": "UTC"})
    if account is not None:
        os.chown(base, account.pw_uid, account.pw_gid)
        env["HOME"] = str(base)

    def pg_ctl_stop() -> None:
        if (datadir / "postmaster.pid").exists():
            with contextlib.suppress(ServerError):
                _run(
                    [str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "immediate", "-w", "-t", "30", "stop"],
                    env=env,
                    cwd=base,
                    **as_user,
                )

    try:
        pwfile = base / "pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(PG_PASSWORD + "\n")
        if account is not None:
            os.chown(pwfile, account.pw_uid, account.pw_gid)
        try:
            _run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(datadir),
                    f"--username={PG_USER}",
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ],
                env=env,
                cwd=base,
                **as_user,
            )
        finally:
            pwfile.unlink()

        for _attempt in range(3):
            port = free_port()
            with (datadir / "postgresql.conf").open("a") as conf:
                conf.write(
                    "\n# dataferry test server\n"
                    f"port = {port}\n"
                    "listen_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{base}'\n"
                    "fsync = off\n"
                    "synchronous_commit = off\n"
                    "full_page_writes = off\n"
                    "shared_buffers = 32MB\n"
                    "max_connections = 50\n"
                    "log_min_messages = warning\n"
                )
            try:
                _run(
                    [
                        str(bindir / "pg_ctl"),
                        "-D",
                        str(datadir),
                        "-l",
                        str(logfile),
                        "-w",
                        "-t",
                        str(int(timeout)),
                        "start",
                    ],
                    env=env,
                    cwd=base,
                    timeout=timeout + 5,
                    **as_user,
                )
            except ServerError as exc:
                tail = log_tail(logfile)
                pg_ctl_stop()
                if _address_in_use(tail):
                    continue  # lost a race for the port: pick another one
                raise ServerError(
                    f"PostgreSQL failed to start within {timeout:.0f}s: {exc}\n"
                    f"--- {logfile} (tail) ---\n{tail}"
                ) from exc
            break
        else:
            raise ServerError("PostgreSQL: no free port after 3 attempts")

        yield PgServer("127.0.0.1", port, PG_USER, PG_PASSWORD, bindir)
    finally:
        pg_ctl_stop()
        shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------------
# MariaDB
# --------------------------------------------------------------------------


def mariadb_quote_ident(name: str) -> str:
    """Quote ``name`` as a MariaDB identifier."""
    return "`" + name.replace("`", "``") + "`"


def mariadb_quote_string(value: str) -> str:
    """Quote ``value`` as a MariaDB string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _write_option_file(path: Path, options: Mapping[str, str | int]) -> None:
    """Write a 0600 ``[client]`` option file for the mariadb tools."""
    lines = ["[client]"] + [f"{key}={value}" for key, value in options.items()]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")


@dataclass(frozen=True)
class MariaDbServer:
    """Connection details of a running throwaway MariaDB server."""

    host: str
    port: int
    socket: Path
    user: str
    password: str
    client: str = "mariadb"

    def url(self, database: str) -> str:
        """A dataferry ``mysql://`` URL for ``database``; it deliberately has no password."""
        return f"mysql://{self.user}@{self.host}:{self.port}/{database}"

    def option_file(self, path: Path) -> Path:
        """Write a 0600 ``[client]`` option file with our credentials to ``path``.

        Pass it as the FIRST argument of a client, e.g.
        ``mariadb --defaults-extra-file=PATH``.
        """
        _write_option_file(
            path,
            {
                "user": self.user,
                "password": self.password,
                "host": self.host,
                "port": self.port,
                "protocol": "tcp",
            },
        )
        return path

    def execute(self, sql: str, database: str | None = None) -> str:
        """Run ``sql`` with the mariadb client over TCP and return its output.

        Output is batch mode without column names: tab-separated columns,
        one row per line.  The password travels only in a temporary 0600
        ``--defaults-extra-file``; an error raises ServerError.
        """
        with tempfile.TemporaryDirectory(prefix="dataferry-my-") as tmp:
            opts = self.option_file(Path(tmp) / "client.cnf")
            argv = [
                self.client,
                f"--defaults-extra-file={opts}",
                "--batch",
                "--skip-column-names",
                "--connect-timeout=10",
            ]
            if database is not None:
                argv.append(f"--database={database}")
            return _strip_output(_run(argv, input_text=sql))

    def create_db(self, name: str) -> None:
        """Create an empty utf8mb4 database called ``name``."""
        self.execute(f"CREATE DATABASE {mariadb_quote_ident(name)} CHARACTER SET utf8mb4;")

    def drop_db(self, name: str) -> None:
        """Drop database ``name`` if it exists."""
        self.execute(f"DROP DATABASE IF EXISTS {mariadb_quote_ident(name)};")

    def databases(self) -> set[str]:
        """Return the names of all databases, system schemas included."""
        return {line for line in self.execute("SHOW DATABASES;").splitlines() if line}


def _wait_for_mariadb(
    proc: subprocess.Popen[bytes], sock: Path, opts: Path, client: str, timeout: float
) -> None:
    """Wait until mariadbd answers on its unix socket, or raise ServerError."""
    deadline = time.monotonic() + timeout
    last_error = "socket not created yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"mariadbd exited early with status {proc.returncode}")
        if sock.exists():
            try:
                _run(
                    [client, f"--defaults-extra-file={opts}", "--batch", "--connect-timeout=2"],
                    input_text="SELECT 1;",
                    timeout=10,
                )
                return
            except ServerError as exc:
                last_error = str(exc)
        time.sleep(0.05)
    raise ServerError(f"mariadbd not ready after {timeout:.0f}s ({last_error})")


@contextlib.contextmanager
def start_mariadb(timeout: float = START_TIMEOUT) -> Iterator[MariaDbServer]:
    """Start a throwaway MariaDB server and yield its :class:`MariaDbServer`.

    The data directory lives under /tmp; the server listens on 127.0.0.1 and
    a free port (socket inside the temp dir), with durability switched off
    and the event scheduler on.  A ``dataferry`` account with all privileges
    and a password is created, and root gets the same password.
    """
    mariadbd = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin")
    install_db = shutil.which("mariadb-install-db")
    client = shutil.which("mariadb")
    if not (mariadbd and install_db and client):
        missing_dependency("MariaDB binaries not found (need mariadbd, mariadb-install-db, mariadb)")

    base = Path(tempfile.mkdtemp(prefix="dataferry-mariadb-", dir="/tmp"))
    datadir, logfile = base / "data", base / "error.log"
    sock = base / "mysqld.sock"
    root_opts = base / "root.cnf"
    run_as = ["--user=root"] if os.geteuid() == 0 else []
    server_opts = [
        "--innodb-buffer-pool-size=32M",
        "--innodb-log-file-size=16M",
        "--innodb-log-buffer-size=4M",
        "--innodb-flush-log-at-trx-commit=0",
        "--innodb-doublewrite=0",
        "--skip-name-resolve",
        "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_general_ci",
    ]
    proc: subprocess.Popen[bytes] | None = None
    try:
        _run(
            [
                install_db,
                "--no-defaults",
                f"--datadir={datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                *run_as,
                *server_opts,
            ],
            cwd=base,
        )
        _write_option_file(root_opts, {"user": "root", "socket": str(sock), "protocol": "socket"})

        for _attempt in range(3):
            port = free_port()
            with logfile.open("ab") as log:
                proc = subprocess.Popen(
                    [
                        mariadbd,
                        "--no-defaults",
                        *run_as,
                        f"--datadir={datadir}",
                        f"--port={port}",
                        "--bind-address=127.0.0.1",
                        f"--socket={sock}",
                        f"--pid-file={base / 'mysqld.pid'}",
                        f"--log-error={logfile}",
                        f"--tmpdir={base}",
                        "--event-scheduler=ON",
                        "--skip-log-bin",
                        "--performance-schema=OFF",
                        "--max-connections=50",
                        *server_opts,
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    cwd=base,
                    env=clean_client_env({"TZ": "UTC"}),
                )
            try:
                _wait_for_mariadb(proc, sock, root_opts, client, timeout)
            except ServerError as exc:
                _stop_process(proc)
                tail = log_tail(logfile)
                if _address_in_use(tail):
                    continue  # lost a race for the port: pick another one
                raise ServerError(
                    f"MariaDB failed to start: {exc}\n--- {logfile} (tail) ---\n{tail}"
                ) from exc
            break
        else:
            raise ServerError("MariaDB: no free port after 3 attempts")

        pw = mariadb_quote_string(MARIADB_PASSWORD)
        user = mariadb_quote_string(MARIADB_USER)
        _run(
            [client, f"--defaults-extra-file={root_opts}", "--batch"],
            input_text=(
                f"CREATE USER {user}@'%' IDENTIFIED BY {pw};\n"
                f"CREATE USER {user}@'localhost' IDENTIFIED BY {pw};\n"
                f"GRANT ALL PRIVILEGES ON *.* TO {user}@'%' WITH GRANT OPTION;\n"
                f"GRANT ALL PRIVILEGES ON *.* TO {user}@'localhost' WITH GRANT OPTION;\n"
                f"ALTER USER 'root'@'localhost' IDENTIFIED BY {pw};\n"
                "FLUSH PRIVILEGES;\n"
            ),
        )
        root_opts.unlink()
        yield MariaDbServer("127.0.0.1", port, sock, MARIADB_USER, MARIADB_PASSWORD, client)
    finally:
        if proc is not None:
            _stop_process(proc)
        shutil.rmtree(base, ignore_errors=True)


def _stop_process(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Terminate ``proc`` (clean shutdown on SIGTERM), killing it if it hangs."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------
# S3 (moto)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Server:
    """Endpoint and fake credentials of a running moto S3 server."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str

    def env(self) -> dict[str, str]:
        """Return a subprocess environment with the AWS_* variables for us.

        It is a copy of ``os.environ`` with other AWS_* variables removed;
        ``os.environ`` itself is never modified.
        """
        return clean_client_env(
            {
                "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": self.region,
                "AWS_REGION": self.region,
                "AWS_ENDPOINT_URL": self.endpoint_url,
                "AWS_EC2_METADATA_DISABLED": "true",
            }
        )

    def client(self) -> Any:
        """Return a boto3 S3 client bound to this server (explicit credentials)."""
        import boto3  # type: ignore[import-untyped,unused-ignore]

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )

    def create_bucket(self, prefix: str = "dataferry-test") -> str:
        """Create a uniquely named empty bucket and return its name."""
        name = f"{prefix}-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def delete_bucket(self, name: str) -> None:
        """Delete every object (and version) in bucket ``name``, then the bucket."""
        s3 = self.client()
        paginator = s3.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=name):
            keys = [
                {"Key": item["Key"], "VersionId": item["VersionId"]}
                for item in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            if keys:
                s3.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        s3.delete_bucket(Bucket=name)


@contextlib.contextmanager
def start_s3(timeout: float = START_TIMEOUT) -> Iterator[S3Server]:
    """Run moto's S3-compatible server in a thread and yield its :class:`S3Server`.

    The server listens on 127.0.0.1 and a free port; the credentials are the
    fake ``testing``/``testing`` pair.  No environment variable is set.
    """
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        missing_dependency(f"moto[server] is not installed ({exc})")

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"moto server not listening on port {port} after {timeout:.0f}s"
                    ) from exc
                time.sleep(0.05)
        yield S3Server(f"http://127.0.0.1:{port}", S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION)
    finally:
        server.stop()
