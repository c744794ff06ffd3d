"""PostgreSQL connections and catalog statements used by the engine (psycopg 3).

Passwords reach libpq only as a keyword argument (never in a connection string that could be
logged); connection strings handed to the client tools carry no password at all: the tools get
it through ``PGPASSWORD``. Every database error leaves here as a ``FerryError``.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dataferry.config import DatabaseRef
from dataferry.errors import ConfigError, EngineError, NotReady

Conn = psycopg.Connection[tuple[Any, ...]]

CONNECT_TIMEOUT = 10
#: Where CREATE/DROP/ALTER DATABASE run from: a database that is never the one being replaced.
MAINTENANCE_DBS = ("postgres", "template1")
#: PostgreSQL truncates longer identifiers, which could make two derived names collide.
MAX_IDENT_BYTES = 63

#: User tables whose rows a dump carries: ordinary tables and leaf partitions, outside the system
#: schemas, not owned by an extension (pg_dump leaves those to CREATE EXTENSION).
#: Every user table whose rows a dump carries (not extensions' tables, not other sessions' temporary ones).
_USER_TABLES_FROM = """
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
  AND NOT EXISTS (
    SELECT 1 FROM pg_depend d
    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY n.nspname, c.relname
"""
USER_TABLES = "SELECT n.nspname, c.relname" + _USER_TABLES_FROM
USER_TABLE_OIDS = "SELECT c.oid, n.nspname, c.relname" + _USER_TABLES_FROM

#: Everything about a database that a dump without --create does not carry, as one JSON object.
DATABASE_PROPS = """
SELECT to_jsonb(d) || jsonb_build_object(
  'owner', pg_get_userbyid(d.datdba),
  'encoding_name', pg_encoding_to_char(d.encoding),
  'tablespace_name', (SELECT t.spcname FROM pg_tablespace t WHERE t.oid = d.dattablespace),
  'comment', shobj_description(d.oid, 'pg_database'),
  'acl', (SELECT jsonb_agg(jsonb_build_object(
            'grantee', CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END,
            'privilege', a.privilege_type, 'grantable', a.is_grantable))
          FROM aclexplode(d.datacl) a),
  'settings', (SELECT jsonb_agg(jsonb_build_object(
            'role', CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END,
            'config', s.setconfig))
          FROM pg_db_role_setting s WHERE s.setdatabase = d.oid))
FROM pg_database d WHERE d.datname = %s
"""


def url_params(db: DatabaseRef) -> dict[str, Any]:
    """The connection parameters of ``db.url``, without any password."""
    try:
        params = conninfo_to_dict(db.url)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"{db.name} in {db.environment}: invalid PostgreSQL URL: {exc}") from None
    params.pop("password", None)
    return params


def live_name(db: DatabaseRef) -> str:
    """The database name in the URL: the live database that backups read and restores replace."""
    name = url_params(db).get("dbname")
    if not name:
        raise ConfigError(
            f"{db.name} in {db.environment}: the URL names no database",
            hint="use postgresql://user@host:port/DBNAME",
        )
    return str(name)


def conninfo(db: DatabaseRef, dbname: str | None = None) -> str:
    """A libpq connection string for the tools' ``--dbname`` (never contains a password)."""
    params = url_params(db)
    if dbname is not None:
        params["dbname"] = dbname
    return make_conninfo(**params)


def where(db: DatabaseRef, dbname: str | None = None) -> str:
    """``user@host:port/db`` for messages."""
    p = url_params(db)
    return (
        f"{p.get('user', '')}@{p.get('host', 'localhost')}:{p.get('port', 5432)}/{dbname or p.get('dbname')}"
    )


def tool_env(db: DatabaseRef) -> dict[str, str]:
    """Environment for a client tool: the password travels here, never in argv."""
    env = {"PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT)}
    if db.password is not None:
        env["PGPASSWORD"] = db.password.get_secret_value()
    return env


def connect_raw(db: DatabaseRef, dbname: str | None = None, *, autocommit: bool = True) -> Conn:
    """Open a connection; psycopg errors propagate (callers decide what they mean)."""
    kwargs: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT, "application_name": "dataferry"}
    if db.password is not None:
        kwargs["password"] = db.password.get_secret_value()
    return psycopg.connect(conninfo(db, dbname), autocommit=autocommit, **kwargs)


def connect(db: DatabaseRef, dbname: str | None = None, *, autocommit: bool = True) -> Conn:
    """Open a connection; failure is ``NotReady`` with libpq's reason (which never shows a password)."""
    try:
        return connect_raw(db, dbname, autocommit=autocommit)
    except psycopg.OperationalError as exc:
        raise NotReady(
            f"cannot connect to PostgreSQL {where(db, dbname)}: {first_line(exc)}",
            hint="check the url, the password variable and that the server is reachable ('dataferry check')",
        ) from None


def is_missing_database(exc: BaseException) -> bool:
    """True when a connection failed only because its database does not exist."""
    return (
        isinstance(exc, psycopg.OperationalError) and "does not exist" in str(exc) and "database" in str(exc)
    )


def is_not_accepting_connections(exc: BaseException) -> bool:
    """True when a connection failed because its database has ALLOW_CONNECTIONS false."""
    return isinstance(exc, psycopg.OperationalError) and "not currently accepting connections" in str(exc)


def open_admin(db: DatabaseRef) -> Conn:
    """An autocommit connection to a maintenance database (the caller closes it)."""
    for name in MAINTENANCE_DBS:
        try:
            return connect_raw(db, name)
        except psycopg.OperationalError as exc:
            if not is_missing_database(exc) or name == MAINTENANCE_DBS[-1]:
                raise NotReady(
                    f"cannot connect to PostgreSQL {where(db, name)}: {first_line(exc)}",
                    hint="restores connect to the 'postgres' (or 'template1') database to create "
                    "and rename databases",
                ) from None
    raise AssertionError("MAINTENANCE_DBS is empty")


@contextlib.contextmanager
def admin(db: DatabaseRef) -> Iterator[Conn]:
    """An autocommit connection to a maintenance database, for CREATE/DROP/ALTER DATABASE."""
    with open_admin(db) as conn:
        yield conn


@contextlib.contextmanager
def sql_errors(what: str) -> Iterator[None]:
    """Turn a database error into ``EngineError`` with the server's own message."""
    try:
        yield
    except psycopg.Error as exc:
        raise EngineError(f"{what}: {first_line(exc)}") from None


def first_line(exc: BaseException) -> str:
    """The first meaningful line of a psycopg error (libpq adds context lines)."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if primary:
        return str(primary)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def scalar(conn: Conn, query: LiteralString | sql.SQL | sql.Composed, params: tuple[Any, ...] = ()) -> Any:
    """The first column of the first row of a query."""
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def user_tables(conn: Conn) -> list[tuple[str, str]]:
    """(schema, table) of every user table whose rows a dump carries."""
    return [(str(s), str(t)) for s, t in conn.execute(USER_TABLES).fetchall()]


def user_table_oids(conn: Conn) -> dict[int, tuple[str, str]]:
    """The same tables as ``user_tables``, by OID (how pg_dump's table of contents names a table's data)."""
    return {int(oid): (str(s), str(t)) for oid, s, t in conn.execute(USER_TABLE_OIDS).fetchall()}


def table_key(table: tuple[str, str]) -> str:
    """How tables are named in row counts and manifests: ``schema.table``."""
    return f"{table[0]}.{table[1]}"


def count_rows(conn: Conn, table: tuple[str, str]) -> int:
    """Exact ``count(*)`` of one table."""
    return int(scalar(conn, sql.SQL("SELECT count(*) FROM {}.{}").format(*map(sql.Identifier, table))))


def database_props(conn: Conn, name: str) -> dict[str, Any] | None:
    """Catalog facts about database ``name`` (see ``DATABASE_PROPS``), or None when it does not exist."""
    value = scalar(conn, DATABASE_PROPS, (name,))
    return dict(value) if value is not None else None


def server_version(conn: Conn) -> str:
    """``PostgreSQL 15.8 (...)``."""
    return f"PostgreSQL {scalar(conn, 'SHOW server_version')}"


def derived_name(live: str, suffix: str) -> str:
    """``live + suffix``, shortened with a hash when it would exceed PostgreSQL's identifier limit."""
    name = live + suffix
    if len(name.encode()) <= MAX_IDENT_BYTES:
        return name
    digest = hashlib.sha256(live.encode()).hexdigest()[:8]
    room = MAX_IDENT_BYTES - len(suffix.encode()) - len(digest) - 1
    head = live.encode()[:room].decode("utf-8", "ignore")
    return f"{head}-{digest}{suffix}"
