"""The PostgreSQL swap: the one destructive step of a restore, made as safe as PostgreSQL allows.

Order (GOV.UK's db-backup approach, with its holes closed):

1. Database-level properties that a dump does not carry (grants on the database, per-database and
   per-role settings, connection limit, comment) are copied from the live database to the shadow,
   so that applications keep their CONNECT grant and ``search_path`` after the swap.
2. New connections to the live database are refused (``ALLOW_CONNECTIONS false``).
3. In one transaction: sessions still open on the live database or on the shadow are terminated,
   the live database is renamed to ``<db>-dataferry-old`` and the shadow to ``<db>``. Both renames
   commit together or not at all. If a session slips in (the rename then fails with "being
   accessed by other users"), the transaction is retried a few times.
4. If it never succeeds, the live database gets its ALLOW_CONNECTIONS back and is otherwise
   untouched; the caller drops the shadow.
5. The old database is dropped (``WITH (FORCE)``).

Before step 1 the swap checks that the shadow is the one this restore created and verified (its
comment carries the restore's token) and that the restore still holds the target's restore lock.

If dataferry itself dies between steps 2 and 3 (SIGKILL, lost machine), the renames never commit
but the live database is left refusing connections. The shadow's comment records that dataferry
blocked it, so ``check`` explains the state and the next restore gives the connections back
(GOV.UK's tooling could leave ``CONNECTION LIMIT 0`` behind with no one noticing).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from dataferry.engines.postgresql.sql import Conn, database_props, first_line, sql_errors
from dataferry.errors import EngineError, Refused

SHADOW_SUFFIX = "-dataferry-shadow"
OLD_SUFFIX = "-dataferry-old"
#: Comments that mark databases dataferry made, so it never drops one it did not make.
SHADOW_MARK = "dataferry shadow of "
OLD_MARK = "dataferry: previous copy of "
#: Added to the shadow's comment while the live database is blocked, so that if dataferry dies
#: before the renames commit, the next run knows it was dataferry that blocked it (see heal_blocked).
BLOCKED_NOTE = "; blocking connections to the live database"

#: Attempts of the rename transaction, and the pause between them (tests shorten these).
SWAP_ATTEMPTS = 10
SWAP_RETRY_SECONDS = 5.0
#: How long pg_terminate_backend waits for each session to exit (PostgreSQL 14+).
TERMINATE_TIMEOUT_MS = 10_000

#: GUCs whose stored value is a list of quoted items: re-set item by item (as pg_dump does).
_LIST_GUCS = frozenset(
    {
        "local_preload_libraries",
        "search_path",
        "session_preload_libraries",
        "shared_preload_libraries",
        "temp_tablespaces",
        "unix_socket_directories",
    }
)

_DATABASE_PRIVILEGES = frozenset({"CONNECT", "CREATE", "TEMPORARY"})

# Sessions we may terminate: everything on the two databases except our own and RDS's agent;
# a non-superuser cannot terminate a superuser's session, so it does not try (the rename will
# then fail and be retried, and finally fail loudly).
_TERMINATE = """
SELECT count({terminate})
FROM pg_stat_activity a
WHERE a.datname IN (%s, %s)
  AND a.pid <> pg_backend_pid()
  AND a.backend_type = 'client backend'
  AND a.usename IS DISTINCT FROM 'rdsadmin'
  AND ((SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       OR NOT coalesce((SELECT r.rolsuper FROM pg_roles r WHERE r.oid = a.usesysid), false))
"""


def shadow_mark(live: str, token: str) -> str:
    """The comment of a shadow made by one restore: names the live database and the restore's token,
    so a swap can tell its own shadow from one another run made under the same name."""
    return f"{SHADOW_MARK}{live} (restore {token})"


def require_own_shadow(conn: Conn, shadow: str, expected: str, lock: object) -> None:
    """Refuse to swap a shadow this restore did not create, or one it no longer holds the lock of."""
    props = database_props(conn, shadow)
    if props is None:
        raise EngineError(f"the shadow database {shadow} is gone; nothing was swapped")
    comment = str(props.get("comment") or "").removesuffix(BLOCKED_NOTE)
    if lock is None or not expected or comment != expected:
        raise EngineError(
            f"the shadow database {shadow} is not the one this restore verified "
            f"(its mark is {comment!r}); nothing was swapped",
            hint="another restore of this database ran at the same time; run this one again",
        )


def made_by(conn: Conn, shadow: str, expected: str | None) -> bool:
    """True when ``shadow`` exists and, if ``expected`` is given, carries that mark (is ours)."""
    props = database_props(conn, shadow)
    if props is None:
        return False
    return expected is None or str(props.get("comment") or "").removesuffix(BLOCKED_NOTE) == expected


def ident(name: str) -> sql.Identifier:
    """A quoted identifier."""
    return sql.Identifier(name)


#: Attempts of a plain DROP DATABASE while autovacuum workers leave (each waits up to 5 s for them).
DROP_ATTEMPTS = 6


def drop_database(conn: Conn, name: str) -> None:
    """``DROP DATABASE IF EXISTS ... WITH (FORCE)``: idempotent, disconnects its sessions.

    FORCE terminates every backend on the database, and a role that is not a superuser may not
    terminate an autovacuum worker (it runs as the bootstrap superuser). Then the sessions this role
    may end are ended, and a plain DROP DATABASE, which asks autovacuum workers to leave and waits
    for them, is tried a few times.
    """
    force = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident(name))
    try:
        conn.execute(force)  # autocommit: DROP DATABASE cannot run in a transaction block
        return
    except psycopg.errors.InsufficientPrivilege:
        pass  # an autovacuum worker (or a superuser's session) is on it
    except psycopg.Error as exc:
        raise EngineError(f"dropping database {name}: {first_line(exc)}") from None
    plain = sql.SQL("DROP DATABASE IF EXISTS {}").format(ident(name))
    last: psycopg.Error | None = None
    for _ in range(DROP_ATTEMPTS):
        try:
            terminate_sessions(conn, (name, name), conn.info.server_version // 10000)
            conn.execute(plain)
            return
        except psycopg.errors.ObjectInUse as exc:
            last = exc  # the server already waited 5 s for autovacuum; a session may have come back
        except psycopg.Error as exc:
            raise EngineError(f"dropping database {name}: {first_line(exc)}") from None
    raise EngineError(
        f"dropping database {name}: still in use after {DROP_ATTEMPTS} attempts ({first_line(last) if last else 'in use'})",
        hint="a session of a role this one may not terminate is connected to it; find it in pg_stat_activity",
    )


def drop_leftover(conn: Conn, name: str, mark: str) -> None:
    """Drop a database left by an interrupted run, but only if its comment says dataferry made it."""
    props = database_props(conn, name)
    if props is None:
        return
    if not str(props.get("comment") or "").startswith(mark):
        raise Refused(
            f"a database named {name} exists and was not made by dataferry; it was left alone",
            hint="dataferry needs this name for its restores: rename or drop that database",
        )
    drop_database(conn, name)


def mark(conn: Conn, name: str, comment: str | None) -> None:
    """Set (or clear, with None) the comment of a database."""
    conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(ident(name), sql.Literal(comment)))


def carry_over(conn: Conn, live: dict[str, Any], shadow: str) -> None:
    """Copy the live database's grants, settings and connection limit onto the shadow."""
    with sql_errors(f"copying grants and settings of {live['datname']} to {shadow}"):
        _carry_acl(conn, live, shadow)
        for entry in live.get("settings") or []:
            for item in entry["config"] or []:
                conn.execute(_set_statement(shadow, entry["role"], item))
        if int(live.get("datconnlimit", -1)) != -1:
            conn.execute(
                sql.SQL("ALTER DATABASE {} CONNECTION LIMIT {}").format(
                    ident(shadow), sql.Literal(int(live["datconnlimit"]))
                )
            )


def _carry_acl(conn: Conn, live: dict[str, Any], shadow: str) -> None:
    if live.get("datacl") is None:
        return  # default privileges: the new database already has them
    conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(ident(shadow)))
    for entry in live.get("acl") or []:
        if entry["privilege"] not in _DATABASE_PRIVILEGES:
            raise EngineError(f"unexpected privilege {entry['privilege']!r} on database {live['datname']}")
        grantee = ident(entry["grantee"]) if entry["grantee"] else sql.SQL("PUBLIC")
        grant = sql.SQL("GRANT {} ON DATABASE {} TO {}").format(
            sql.SQL(entry["privilege"]), ident(shadow), grantee
        )
        if entry["grantable"]:
            grant = sql.Composed([grant, sql.SQL(" WITH GRANT OPTION")])
        conn.execute(grant)


def _set_statement(db: str, role: str | None, item: str) -> sql.Composed:
    """``ALTER DATABASE db SET name TO value`` (or ``ALTER ROLE r IN DATABASE db SET ...``)."""
    name, _, value = item.partition("=")
    if name.lower() in _LIST_GUCS:
        values = sql.SQL(", ").join(sql.Literal(v) for v in split_guc_list(value))
    else:
        values = sql.Composed([sql.Literal(value)])
    target = (
        sql.SQL("ROLE {} IN DATABASE {}").format(ident(role), ident(db))
        if role
        else sql.SQL("DATABASE {}").format(ident(db))
    )
    return sql.SQL("ALTER {} SET {} TO {}").format(target, ident(name), values)


def split_guc_list(value: str) -> list[str]:
    """Split a stored list setting (``"$user", public``) into its items, unquoting them."""
    items: list[str] = []
    current: list[str] = []
    quoted = False
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == '"':
            if quoted and value[i + 1 : i + 2] == '"':
                current.append('"')
                i += 1
            else:
                quoted = not quoted
        elif ch == "," and not quoted:
            items.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
        i += 1
    items.append("".join(current).strip())
    return [item for item in items if item]


def heal_blocked(conn: Conn, shadow: str, live: str) -> bool:
    """Give ``live`` its connections back if a dataferry swap blocked them and died before the
    renames committed (the shadow's comment says so); True when it did."""
    props = database_props(conn, shadow)
    if props is None or not str(props.get("comment") or "").endswith(BLOCKED_NOTE):
        return False
    live_props = database_props(conn, live)
    if live_props is None or live_props["datallowconn"]:
        return False
    with sql_errors(f"re-allowing connections to {live}"):
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(ident(live)))
    return True


def blocked_by_interrupted_swap(conn: Conn, shadow: str) -> bool:
    """True when ``shadow`` is a leftover of a swap that died while the live database was blocked."""
    props = database_props(conn, shadow)
    return props is not None and str(props.get("comment") or "").endswith(BLOCKED_NOTE)


def rename_into_place(conn: Conn, shadow: str, live: str) -> None:
    """There is no live database yet: the shadow simply takes its name."""
    with sql_errors(f"renaming {shadow} to {live}"), conn.transaction():
        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(shadow), ident(live)))
        mark(conn, live, None)


def replace_live(
    conn: Conn, live: dict[str, Any], shadow: str, old: str, server_major: int, shadow_comment: str
) -> None:
    """Steps 2-4 of the module docstring: block, terminate, rename both in one transaction."""
    name = str(live["datname"])
    allow = sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}")
    with sql_errors(f"blocking new connections to {name}"):
        if live["datallowconn"]:
            mark(conn, shadow, shadow_comment + BLOCKED_NOTE)
        conn.execute(allow.format(ident(name), sql.SQL("false")))
    try:
        _rename_with_retries(conn, live, shadow, old, server_major)
    except BaseException:
        # The renames did not commit: give the untouched live database its connections back.
        with sql_errors(f"re-allowing connections to {name}"):
            conn.execute(allow.format(ident(name), sql.SQL("true" if live["datallowconn"] else "false")))
        raise


def _rename_with_retries(conn: Conn, live: dict[str, Any], shadow: str, old: str, server_major: int) -> None:
    name = str(live["datname"])
    last: psycopg.Error | None = None
    for attempt in range(SWAP_ATTEMPTS):
        if attempt:
            time.sleep(SWAP_RETRY_SECONDS)
        try:
            with conn.transaction():
                terminate_sessions(conn, (name, shadow), server_major)
                rename = sql.SQL("ALTER DATABASE {} RENAME TO {}")
                conn.execute(rename.format(ident(name), ident(old)))
                conn.execute(rename.format(ident(shadow), ident(name)))
                stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                mark(conn, old, f"{OLD_MARK}{name}, replaced {stamp}")
                mark(conn, name, live.get("comment"))
            return
        except psycopg.errors.ObjectInUse as exc:
            last = exc  # a session connected between termination and rename: try again
        except psycopg.Error as exc:
            raise EngineError(f"swapping {shadow} into {name} failed: {first_line(exc)}") from None
    raise EngineError(
        f"could not swap {shadow} into {name}: sessions kept it busy through {SWAP_ATTEMPTS} "
        f"attempts ({first_line(last) if last else 'unknown'})",
        hint="the live database was not changed; find what keeps connecting (pg_stat_activity) and re-run",
    )


def terminate_sessions(conn: Conn, databases: tuple[str, str], server_major: int) -> int:
    """Terminate the sessions on ``databases`` that we are allowed to; returns how many."""
    terminate = (
        sql.SQL("pg_terminate_backend(a.pid, {})").format(sql.Literal(TERMINATE_TIMEOUT_MS))
        if server_major >= 14
        else sql.SQL("pg_terminate_backend(a.pid)")
    )
    query = sql.SQL(_TERMINATE).format(terminate=terminate)
    row = conn.execute(query, databases).fetchone()
    return int(row[0]) if row else 0
