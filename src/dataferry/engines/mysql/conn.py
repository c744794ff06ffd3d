"""Connections for the MySQL/MariaDB engine: URL parsing, the 0600 option file, client tools, PyMySQL.

Secrets: the password reaches the command-line tools only through an option file that dataferry
creates (mode 0600, in a private 0700 directory) and removes, passed as the first argument
``--defaults-extra-file=PATH``; PyMySQL gets it in-process. It is never in argv, the environment,
logs or messages. Without a password variable it comes from the user's ``~/.my.cnf`` (and the
system option files), read by ``optionfiles`` as the client tools would.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import pymysql

from dataferry.config import DatabaseRef
from dataferry.engines.mysql.optionfiles import client_defaults
from dataferry.errors import ConfigError, EngineError, NotFound, NotReady
from dataferry.private import private_dir

#: How long a client waits for a server that does not answer.
CONNECT_TIMEOUT = 10
#: Largest packet the tools may send or receive (rows with big BLOBs).
MAX_PACKET = "1G"
_MYSQL_ERRORS: tuple[type[BaseException], ...] = (pymysql.err.MySQLError,)


def quote_ident(name: str) -> str:
    """``name`` as a quoted MySQL identifier."""
    return "`" + name.replace("`", "``") + "`"


@dataclass(frozen=True)
class MySqlTarget:
    """Where one database lives: parsed from ``mysql://user@host:port/db[?socket=/path]``."""

    user: str
    host: str
    port: int
    database: str
    socket: str | None = None

    @classmethod
    def from_ref(cls, ref: DatabaseRef) -> MySqlTarget:
        """Parse ``ref.url``; a malformed URL is a ``ConfigError``."""
        parts = urlsplit(ref.url)
        if parts.scheme not in ("mysql", "mariadb"):
            raise ConfigError(
                f"{ref.name} in {ref.environment}: {parts.scheme!r} is not a MySQL URL",
                hint="use mysql://user@host:port/database",
            )
        database = unquote(parts.path.lstrip("/"))
        if not database or "/" in database:
            raise ConfigError(
                f"{ref.name} in {ref.environment}: the URL names no database",
                hint="use mysql://user@host:port/database",
            )
        try:
            port = parts.port or 3306
        except ValueError:
            raise ConfigError(f"{ref.name} in {ref.environment}: the URL has a bad port") from None
        socket = parse_qs(parts.query).get("socket", [None])[0]
        user = unquote(parts.username) if parts.username else client_defaults().get("user", "root")
        return cls(
            user=user,
            host=parts.hostname or "localhost",
            port=port,
            database=database,
            socket=socket,
        )

    def describe(self) -> str:
        """``user@host:port/db`` for messages (no secrets)."""
        where = self.socket or f"{self.host}:{self.port}"
        return f"{self.user}@{where}/{self.database}"


# -- PyMySQL -----------------------------------------------------------------------------------


def connect(ref: DatabaseRef, database: str | None = None, *, multi: bool = False) -> Any:
    """A PyMySQL connection (autocommit, utf8mb4) to ``database`` (default: none selected).

    Connection failures are ``NotReady``; the password travels in-process only.
    """
    target = MySqlTarget.from_ref(ref)
    flags = pymysql.constants.CLIENT.MULTI_STATEMENTS if multi else 0
    try:
        return pymysql.connect(
            host=target.host,
            port=target.port,
            unix_socket=target.socket,
            user=target.user,
            password=password_of(ref) or "",
            database=database,
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT,
            client_flag=flags,
        )
    except _MYSQL_ERRORS as exc:
        raise NotReady(
            f"cannot connect to MySQL at {target.describe()}: {error_text(exc)}",
            hint="check the url, that the server is up, and the password variable (password_env)",
        ) from None


def password_of(ref: DatabaseRef) -> str | None:
    """The password: from the configured variable, else from the user's option files
    (``~/.my.cnf`` and the system ones, as the client tools read them), else none."""
    if ref.password is not None:
        return ref.password.get_secret_value()
    return client_defaults().get("password")


def error_text(exc: BaseException) -> str:
    """A PyMySQL error as ``(code) message``; server messages never contain the password."""
    args: tuple[object, ...] = tuple(getattr(exc, "args", ()))
    if len(args) >= 2:
        return f"({args[0]}) {args[1]}"
    return str(exc)


@contextlib.contextmanager
def connection(ref: DatabaseRef, database: str | None = None, *, multi: bool = False) -> Iterator[Any]:
    """``connect`` as a context manager that always closes."""
    conn = connect(ref, database, multi=multi)
    try:
        yield conn
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def rows(conn: Any, sql: str, args: Sequence[object] | None = None) -> list[tuple[Any, ...]]:
    """Run one statement and return its rows; SQL errors become ``EngineError``."""
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cast(Sequence[tuple[Any, ...]], cur.fetchall()))
    except _MYSQL_ERRORS as exc:
        statement = " ".join(sql.split())
        statement = statement if len(statement) <= 100 else statement[:97] + "..."
        raise EngineError(f"MySQL statement failed: {error_text(exc)} (in: {statement})") from None


def execute(conn: Any, sql: str, args: Sequence[object] | None = None) -> None:
    """Run one statement that returns nothing interesting."""
    rows(conn, sql, args)


@dataclass(frozen=True)
class ServerInfo:
    """What a backup or check needs to know about the server and one database."""

    version: str
    is_mariadb: bool
    charset: str | None
    collation: str | None

    @property
    def flavor(self) -> str:
        """``MariaDB`` or ``MySQL``."""
        return "MariaDB" if self.is_mariadb else "MySQL"


def server_info(conn: Any, database: str) -> ServerInfo:
    """Server version and the database's default character set (None when it does not exist)."""
    version = str(rows(conn, "SELECT VERSION()")[0][0])
    found = rows(
        conn,
        "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
        "WHERE SCHEMA_NAME = %s",
        (database,),
    )
    charset, collation = (str(found[0][0]), str(found[0][1])) if found else (None, None)
    return ServerInfo(version, "mariadb" in version.lower(), charset, collation)


#: Table types that hold rows and move with RENAME TABLE (views do not; sequences do).
DATA_TABLE_TYPES = ("BASE TABLE", "SYSTEM VERSIONED", "SEQUENCE")


def tables(conn: Any, database: str, types: Sequence[str] = DATA_TABLE_TYPES) -> list[str]:
    """Names of the tables of ``types`` in ``database``, sorted."""
    marks = ", ".join(["%s"] * len(types))
    found = rows(
        conn,
        f"SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
        f"AND TABLE_TYPE IN ({marks}) ORDER BY TABLE_NAME",
        (database, *types),
    )
    return [str(r[0]) for r in found]


def require_database(conn: Any, target: MySqlTarget) -> ServerInfo:
    """Server info for ``target``, raising ``NotFound`` when its database does not exist."""
    info = server_info(conn, target.database)
    if info.charset is None:
        raise NotFound(
            f"database {target.database!r} does not exist on {target.describe()}",
            hint="check the database name in the url",
        )
    return info


# -- option files and the command-line tools -----------------------------------------------------


def _option_value(value: str) -> str:
    """Quote a value for a MySQL option file: backslash and double quote are escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class OptionFile:
    """A private option file and the environment the tools run with."""

    path: Path
    home: Path

    @property
    def arg(self) -> str:
        """The argument that must come FIRST on the tool's command line."""
        return f"--defaults-extra-file={self.path}"

    @property
    def env(self) -> dict[str, str]:
        """HOME points at the private directory so a user's ~/.my.cnf (read after the extra
        file, so it would win) cannot redirect our tools to another server or account; its
        password is taken from it beforehand (``password_of``) and written into our file."""
        return {"HOME": str(self.home)}


@contextlib.contextmanager
def option_file(ref: DatabaseRef) -> Iterator[OptionFile]:
    """A 0600 ``[client]`` option file with the connection and password; always removed."""
    target = MySqlTarget.from_ref(ref)
    lines = ["[client]", f"user={_option_value(target.user)}"]
    password = password_of(ref)
    if password is not None:
        lines.append(f"password={_option_value(password)}")
    if target.socket:
        lines += [f"socket={_option_value(target.socket)}", "protocol=socket"]
    else:
        lines += [f"host={_option_value(target.host)}", f"port={target.port}", "protocol=tcp"]
    # A private run directory: 0700, removed at the end, swept by the next run if we are killed.
    with private_dir() as home:
        path = home / "client.cnf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        yield OptionFile(path=path, home=home)


@dataclass(frozen=True)
class Tool:
    """A client tool found on PATH, with its ``--version`` line."""

    path: str
    version: str

    @property
    def is_mariadb(self) -> bool:
        """True for MariaDB's build (Debian's ``mysqldump`` is often MariaDB's too)."""
        return "mariadb" in self.version.lower()

    @property
    def name(self) -> str:
        """The program name."""
        return os.path.basename(self.path)


@functools.lru_cache(maxsize=16)
def _probe(program: str) -> Tool | None:
    path = shutil.which(program)
    if path is None:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip()
    return Tool(path=path, version=text.splitlines()[0] if text else "")


DUMP_PROGRAMS = ("mariadb-dump", "mysqldump")
CLIENT_PROGRAMS = ("mariadb", "mysql")


def find_tool(programs: Sequence[str], mariadb: bool | None) -> Tool | None:
    """The first of ``programs`` from the server's family (MariaDB or MySQL), else the first found.

    ``mariadb`` None means the server is unknown: the first one found.
    """
    found = [t for t in (_probe(p) for p in programs) if t is not None]
    if mariadb is not None:
        for tool in found:
            if tool.is_mariadb == mariadb:
                return tool
    return found[0] if found else None


def require_tool(programs: Sequence[str], mariadb: bool | None) -> Tool:
    """``find_tool`` or ``NotReady`` naming what to install."""
    tool = find_tool(programs, mariadb)
    if tool is None:
        raise NotReady(
            f"none of {', '.join(programs)} is installed",
            hint="install the MariaDB or MySQL client tools (Debian: mariadb-client)",
        )
    return tool


_VERSION_RE = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def version_tuple(text: str) -> tuple[int, int]:
    """Major and minor of the server version inside ``text`` (``Distrib 10.11.19`` wins)."""
    distrib = re.search(r"Distrib (\d+)\.(\d+)", text)
    if distrib:
        return int(distrib.group(1)), int(distrib.group(2))
    m = _VERSION_RE.search(text)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def compatibility(tool: Tool, info: ServerInfo) -> tuple[bool, str]:
    """Whether ``tool`` can dump or load ``info``'s server, and why.

    A dump tool must come from the server's family (MySQL's mysqldump and MariaDB's mariadb-dump
    disagree on system tables, GTIDs and column statistics); MySQL's tools must also be at least as
    new as the server.
    """
    if tool.is_mariadb != info.is_mariadb:
        family = "MariaDB" if tool.is_mariadb else "MySQL"
        return False, f"{tool.name} is {family}'s, the server is {info.flavor} {info.version}"
    if not info.is_mariadb and version_tuple(tool.version) < version_tuple(info.version):
        return False, f"{tool.name} ({tool.version}) is older than the server ({info.version})"
    return True, f"{tool.name} matches {info.flavor} {info.version}"
