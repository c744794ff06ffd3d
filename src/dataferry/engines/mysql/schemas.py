"""The databases a restore makes beside the live one (shadow and old), their names and their marks."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from dataferry.engines import Shadow
from dataferry.engines.mysql.conn import ServerInfo, execute, quote_ident, rows, server_info, version_tuple
from dataferry.engines.mysql.objects import SchemaObjects
from dataferry.errors import EngineError, Refused

SHADOW_SUFFIX = "_dfshadow"
OLD_SUFFIX = "_dfold"
#: MariaDB 10.5+ keeps a comment on a database: it marks the ones dataferry made.
MARK = "dataferry"
ROW_TABLES = ("BASE TABLE", "SYSTEM VERSIONED")


@dataclass
class MySqlShadowState:
    """What a MySQL shadow remembers (its ``Shadow.state``), for ``swap`` and ``drop_shadow``."""

    #: this restore's mark (the shadow database's comment on MariaDB 10.5+)
    mark: str
    #: where the live tables go during the swap (``<db>_dfold``)
    old: str = ""
    #: the artifact's default character set and collation, given to the live database
    charset: str = ""
    collation: str = ""
    #: the dump's triggers, views, routines and events; set once the load completed
    objects: SchemaObjects | None = None


def shadow_state(shadow: Shadow) -> MySqlShadowState | None:
    """The shadow's state if this engine made it (None for a shadow it did not)."""
    return shadow.state if isinstance(shadow.state, MySqlShadowState) else None


def q(*names: str) -> str:
    """Quoted, dotted identifiers: ``q("db", "t")`` is ```db`.`t```."""
    return ".".join(quote_ident(n) for n in names)


def charset_clause(charset: str | None, collation: str | None) -> str:
    """`` CHARACTER SET x COLLATE y`` for what is known of them (empty when nothing is)."""
    clause = ""
    if charset:
        clause += f" CHARACTER SET {charset}"
    if collation:
        clause += f" COLLATE {collation}"
    return clause


def derived_name(live: str, suffix: str) -> str:
    """``<live><suffix>``, shortened with a hash when it would pass MySQL's 64-character limit
    (so two long names never share a shadow)."""
    name = live + suffix
    if len(name) <= 64:
        return name
    digest = hashlib.sha256(live.encode()).hexdigest()[:8]
    return f"{live[: 64 - len(suffix) - 9]}_{digest}{suffix}"


def has_comments(info: ServerInfo) -> bool:
    """True when the server keeps database comments (MariaDB 10.5+), which mark dataferry's databases."""
    return info.is_mariadb and version_tuple(info.version) >= (10, 5)


def drop_leftover(conn: Any, name: str, info: ServerInfo) -> None:
    """Drop a database an interrupted run left, but only if dataferry made it (its comment says so
    on MariaDB 10.5+; MySQL keeps no database comments, so there the name is the mark)."""
    if server_info(conn, name).charset is None:
        return
    if has_comments(info):
        found = rows(
            conn, "SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (name,)
        )
        if not found or not str(found[0][0] or "").startswith(MARK):
            raise Refused(
                f"a database named {name} exists and was not made by dataferry; it was left alone",
                hint="dataferry needs this name for its restores: rename or drop that database",
            )
    execute(conn, "SET SESSION foreign_key_checks = 0")
    execute(conn, f"DROP DATABASE {q(name)}")
    execute(conn, "SET SESSION foreign_key_checks = 1")


def _schema_comment(conn: Any, name: str) -> str | None:
    """The comment of database ``name`` (None when it does not exist)."""
    found = rows(
        conn, "SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (name,)
    )
    return str(found[0][0] or "") if found else None


def marked_as(conn: Any, shadow: Shadow) -> bool:
    """True when the database ``shadow.name`` carries this restore's mark (MariaDB 10.5+; where the
    server keeps no comments, the name is all there is)."""
    if not has_comments(server_info(conn, shadow.name)):
        return True
    return (
        _schema_comment(conn, shadow.name)
        == f"{MARK} {state.mark if (state := shadow_state(shadow)) else ''}"
    )


def require_own_shadow(conn: Any, shadow: Shadow) -> None:
    """Refuse to swap a shadow this restore did not create, or whose restore lock it lost."""
    if shadow.lock is None or not marked_as(conn, shadow):
        raise EngineError(
            f"the shadow database {shadow.name} is not the one this restore verified; nothing was swapped",
            hint="another restore of this database ran at the same time; run this one again",
        )


def create_marked(
    conn: Any,
    name: str,
    info: ServerInfo,
    what: str,
    charset: str | None = None,
    collation: str | None = None,
) -> None:
    """``CREATE DATABASE name`` with the given defaults, its comment marking it as dataferry's."""
    comment = f" COMMENT {conn.escape(f'{MARK} {what}')}" if has_comments(info) else ""
    execute(conn, f"CREATE DATABASE {q(name)}{charset_clause(charset, collation)}{comment}")


def leftover_databases(conn: Any, database: str) -> list[str]:
    """The shadow and old databases of ``database`` that exist now (left by an interrupted run)."""
    names = (derived_name(database, suffix) for suffix in (SHADOW_SUFFIX, OLD_SUFFIX))
    return [n for n in names if server_info(conn, n).charset is not None]


def set_defaults(conn: Any, live: str, state: MySqlShadowState, info: ServerInfo) -> None:
    """Give the live database the artifact's default character set and collation (routines and
    triggers take the database's collation when they are created, so this comes first)."""
    wanted = (state.charset, state.collation)
    if wanted[0] and wanted != (info.charset, info.collation):
        execute(conn, f"ALTER DATABASE {q(live)}{charset_clause(state.charset, state.collation)}")
