"""The MySQL swap: one ``RENAME TABLE`` moves the live tables out and the shadow's in, then the
schema objects are re-created in the live schema (see the package docstring, steps 2 to 4)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dataferry.config import DatabaseRef
from dataferry.engines import Shadow
from dataferry.engines.mysql.conn import (
    CLIENT_PROGRAMS,
    DUMP_PROGRAMS,
    MySqlTarget,
    OptionFile,
    ServerInfo,
    Tool,
    connection,
    execute,
    option_file,
    require_tool,
    rows,
    server_info,
    tables,
)
from dataferry.engines.mysql.load import Client
from dataferry.engines.mysql.objects import SchemaObjects
from dataferry.engines.mysql.schemas import (
    OLD_SUFFIX,
    MySqlShadowState,
    charset_clause,
    create_marked,
    derived_name,
    drop_leftover,
    q,
    require_own_shadow,
    set_defaults,
    shadow_state,
)
from dataferry.errors import EngineError, FerryError
from dataferry.streams import ProcessReader


def swap(shadow: Shadow, lock_timeout: int) -> None:
    """One ``RENAME TABLE`` moves live tables out and shadow tables in; then the schema objects
    are re-created in the live schema and the old tables dropped."""
    db = shadow.ref
    live = MySqlTarget.from_ref(db).database
    state = shadow_state(shadow)
    with connection(db) as conn, option_file(db) as opts:
        if state is None or state.objects is None or server_info(conn, shadow.name).charset is None:
            raise EngineError(f"the shadow database {shadow.name} is gone; nothing was swapped")
        require_own_shadow(conn, shadow)
        old, objects = state.old, state.objects
        info = server_info(conn, live)
        tool = require_tool(CLIENT_PROGRAMS, info.is_mariadb)
        execute(conn, f"SET SESSION lock_wait_timeout = {int(lock_timeout)}")
        created_live = prepare(conn, live, state, info)
        keep = db.exclude_tables  # the target keeps its own excluded tables (GOV.UK's semantics)
        keys = kept_foreign_keys(conn, live, set(keep) - set(tables(conn, shadow.name)))
        objects = as_verified(conn, opts, tool, shadow.name, objects)
        kept_views, kept = move_tables(conn, opts, tool, shadow.name, live, old, created_live, keep)
        try:
            repoint_foreign_keys(conn, live, [k for k in keys if k.table in kept])
            if not created_live:
                set_defaults(conn, live, state, info)
            recreate_objects(conn, Client(tool, opts, live), objects, kept_views)
        except FerryError as exc:
            raise EngineError(
                f"the restored tables of {live} are live, but re-creating its triggers, views, "
                f"routines or events failed: {exc.message}",
                hint=f"the previous tables are kept in database {old} until the next restore; "
                "fix the cause and restore again",
            ) from exc
        drop_leftover(conn, old, info)
        drop_leftover(conn, shadow.name, info)
    shadow.release()


def as_verified(
    conn: Any, opts: OptionFile, tool: Tool, shadow: str, objects: SchemaObjects
) -> SchemaObjects:
    """The dump's schema objects as the shadow holds them now (after sanitisation, which may have
    dropped a view, a trigger or a table with its triggers): read before the move drops the shadow's
    triggers, so that the swap re-creates exactly what was verified."""
    views = set(tables(conn, shadow, ("VIEW",)))
    own = dump_triggers(opts, tool, shadow) if triggers(conn, shadow) else b""
    return objects.as_in_shadow(views, own)


def prepare(conn: Any, live: str, state: MySqlShadowState, info: ServerInfo) -> bool:
    """Create the old schema (and the live database on a first restore); True if live was created."""
    old = state.old
    drop_leftover(conn, old, info)
    created_live = info.charset is None
    if created_live:
        execute(conn, f"CREATE DATABASE {q(live)}{charset_clause(state.charset, state.collation)}")
    try:
        create_marked(conn, old, info, f"old copy of {live}")
    except FerryError:
        if created_live:
            execute(conn, f"DROP DATABASE IF EXISTS {q(live)}")
        raise
    return created_live


def move_tables(
    conn: Any,
    opts: OptionFile,
    tool: Tool,
    shadow: str,
    live: str,
    old: str,
    created_live: bool,
    keep: Sequence[str] = (),
) -> tuple[set[str], set[str]]:
    """The atomic step. Returns the live views that stay (the others were renamed away) and the
    live tables that stayed (``keep``).

    A live table named in ``keep`` that the shadow does not have (the artifact left it out) stays
    where it is, with its rows and triggers. Before the rename, the triggers of the tables that
    move are dropped (they cannot move across schemas); if the rename fails, they are put back
    from a dump taken just before, and nothing else changed.
    """
    saved = b""
    try:
        live_tables, shadow_tables = tables(conn, live), tables(conn, shadow)
        kept = set(keep) & set(live_tables) - set(shadow_tables)
        moving = [t for t in live_tables if t not in kept]
        live_views = set(tables(conn, live, ("VIEW",)))
        # A live view named like an incoming table moves aside in the same statement.
        clashing = sorted(live_views & set(shadow_tables))
        aside = [f"_dataferry_old_view_{i}" for i in range(len(clashing))]
        on = {name: table for name, table in table_triggers(conn, live) if table not in kept}
        saved = dump_triggers(opts, tool, live, sorted(set(on.values()))) if on else b""
        if saved:
            keep_triggers(conn, old, live, saved)  # durable: a kill from here on loses nothing
        renames = [f"{q(live, t)} TO {q(old, t)}" for t in moving]
        renames += [f"{q(live, v)} TO {q(live, a)}" for v, a in zip(clashing, aside, strict=True)]
        renames += [f"{q(shadow, t)} TO {q(live, t)}" for t in shadow_tables]
        for trigger in triggers(conn, shadow):
            execute(conn, f"DROP TRIGGER {q(shadow, trigger)}")
        for trigger in on:
            execute(conn, f"DROP TRIGGER {q(live, trigger)}")
        if renames:
            execute(conn, "RENAME TABLE " + ", ".join(renames))
    except BaseException:
        undo_move(conn, Client(tool, opts, live), saved, old, live if created_live else None)
        raise
    for name in aside:
        execute(conn, f"DROP VIEW IF EXISTS {q(live, name)}")
    return live_views - set(clashing), kept


@dataclass(frozen=True)
class ForeignKey:
    """A foreign key of a kept table onto a table the swap replaces."""

    table: str
    name: str
    columns: tuple[str, ...]
    parent: str
    parent_columns: tuple[str, ...]
    on_update: str
    on_delete: str


def kept_foreign_keys(conn: Any, live: str, kept: set[str]) -> list[ForeignKey]:
    """The foreign keys of ``kept`` tables onto other tables of ``live``, read before the swap:
    the rename takes their parents away, and the keys would follow them into the old database."""
    if not kept:
        return []
    found = rows(
        conn,
        "SELECT k.TABLE_NAME, k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_NAME, "
        "k.REFERENCED_COLUMN_NAME, r.UPDATE_RULE, r.DELETE_RULE "
        "FROM information_schema.KEY_COLUMN_USAGE k JOIN information_schema.REFERENTIAL_CONSTRAINTS r "
        "ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME "
        "AND r.TABLE_NAME = k.TABLE_NAME "
        "WHERE k.TABLE_SCHEMA = %s AND k.REFERENCED_TABLE_SCHEMA = %s ORDER BY 1, 2, k.ORDINAL_POSITION",
        (live, live),
    )
    keys: dict[tuple[str, str], list[tuple[str, ...]]] = {}
    for table, name, *rest in found:
        if str(table) in kept and str(rest[1]) not in kept:
            keys.setdefault((str(table), str(name)), []).append(tuple(map(str, rest)))
    return [
        ForeignKey(
            table,
            name,
            tuple(c[0] for c in cols),
            cols[0][1],
            tuple(c[2] for c in cols),
            cols[0][3],
            cols[0][4],
        )
        for (table, name), cols in keys.items()
    ]


def repoint_foreign_keys(conn: Any, live: str, keys: list[ForeignKey]) -> None:
    """Point the kept tables' foreign keys at the restored parents in ``live`` again, without
    checking the rows, as a load does (the kept rows are the target's own)."""
    if not keys:
        return
    execute(conn, "SET SESSION foreign_key_checks = 0")
    try:
        for fk in keys:
            mine = ", ".join(q(c) for c in fk.columns)
            theirs = ", ".join(q(c) for c in fk.parent_columns)
            # RESTRICT is the default; said explicitly with checks off, MariaDB records NO ACTION
            rules = "".join(
                f" ON {event} {rule}"
                for event, rule in (("UPDATE", fk.on_update), ("DELETE", fk.on_delete))
                if rule != "RESTRICT"
            )
            execute(conn, f"ALTER TABLE {q(live, fk.table)} DROP FOREIGN KEY {q(fk.name)}")
            execute(
                conn,
                f"ALTER TABLE {q(live, fk.table)} ADD CONSTRAINT {q(fk.name)} FOREIGN KEY ({mine}) "
                f"REFERENCES {q(live, fk.parent)} ({theirs}){rules}",
            )
    finally:
        execute(conn, "SET SESSION foreign_key_checks = 1")


#: The table in the old database that keeps the live triggers while a swap has them dropped.
SAVED_TRIGGERS = "_dataferry_saved_triggers"


def keep_triggers(conn: Any, old: str, live: str, saved: bytes) -> None:
    """Store the live triggers' definitions in the old database before they are dropped, so that
    a swap killed before its rename committed (it may wait on a metadata lock for a minute) leaves
    them where the next restore puts them back (``heal_interrupted_swap``)."""
    execute(
        conn,
        f"CREATE TABLE {q(old, SAVED_TRIGGERS)} (live VARCHAR(64) NOT NULL, definitions LONGBLOB NOT NULL)",
    )
    execute(conn, f"INSERT INTO {q(old, SAVED_TRIGGERS)} VALUES (%s, %s)", (live, saved))


def saved_triggers(conn: Any, old: str) -> bytes | None:
    """Trigger definitions an interrupted swap kept in ``old``, if its rename never committed
    (``old`` holds nothing else); None otherwise."""
    names = tables(conn, old)
    if names != [SAVED_TRIGGERS]:
        return None  # no saved triggers, or the rename committed: live holds the restored tables
    found = rows(conn, f"SELECT definitions FROM {q(old, SAVED_TRIGGERS)}")
    return bytes(found[0][0]) if found else None


def kept_triggers(conn: Any, live: str) -> tuple[str, bytes] | None:
    """The old database that keeps ``live``'s triggers after a killed swap, and their definitions;
    None when there is none."""
    old = derived_name(live, OLD_SUFFIX)
    if server_info(conn, old).charset is None:
        return None
    saved = saved_triggers(conn, old)
    return (old, saved) if saved is not None else None


def heal_interrupted_swap(db: DatabaseRef, conn: Any, info: ServerInfo) -> bool:
    """Put back the live triggers a killed swap had dropped (kept in the old database by
    ``keep_triggers``), then drop that database; True when it did. Run under the restore lock."""
    live = MySqlTarget.from_ref(db).database
    kept = kept_triggers(conn, live)
    if kept is None:
        return False
    old, saved = kept
    tool = require_tool(CLIENT_PROGRAMS, info.is_mariadb)
    with option_file(db) as opts:
        Client(tool, opts, live).run(saved, f"{tool.name} (putting back the triggers of {live})")
    drop_leftover(conn, old, info)
    return True


def undo_move(conn: Any, client: Client, saved: bytes, old: str, created_live: str | None) -> None:
    """Put back what was changed before a failed rename (best effort, then the error propagates)."""
    with contextlib.suppress(FerryError):
        if saved:
            client.run(saved, f"{client.tool.name} (putting back the triggers of {client.database})")
    with contextlib.suppress(FerryError):
        execute(conn, f"DROP DATABASE IF EXISTS {q(old)}")
        if created_live:
            execute(conn, f"DROP DATABASE IF EXISTS {q(created_live)}")


def recreate_objects(conn: Any, client: Client, objects: SchemaObjects, views: set[str]) -> None:
    """The artifact's triggers, views, routines and events in the live schema; others dropped."""
    live = client.database
    client.run(objects.live_script(views), f"{client.tool.name} (re-creating the objects of {live})")
    for view in sorted(set(tables(conn, live, ("VIEW",))) - set(objects.views)):
        execute(conn, f"DROP VIEW IF EXISTS {q(live, view)}")
    wanted = {(kind.upper(), name) for kind, name in objects.routine_names}
    for kind, name in rows(
        conn,
        "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s "
        "AND ROUTINE_TYPE IN ('PROCEDURE', 'FUNCTION')",
        (live,),
    ):
        if (str(kind), str(name)) not in wanted:
            execute(conn, f"DROP {kind} IF EXISTS {q(live, str(name))}")
    for (event,) in rows(
        conn, "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s", (live,)
    ):
        if str(event) not in objects.event_names:
            execute(conn, f"DROP EVENT IF EXISTS {q(live, str(event))}")


def triggers(conn: Any, schema: str) -> list[str]:
    """The names of the triggers in ``schema``."""
    found = rows(
        conn, "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s", (schema,)
    )
    return [str(r[0]) for r in found]


def table_triggers(conn: Any, schema: str) -> list[tuple[str, str]]:
    """(trigger, table) for every trigger in ``schema``."""
    found = rows(
        conn,
        "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s",
        (schema,),
    )
    return [(str(r[0]), str(r[1])) for r in found]


def dump_triggers(opts: OptionFile, tool: Tool, database: str, of: Sequence[str] = ()) -> bytes:
    """The live database's triggers (those ``of`` these tables, if given) as SQL, to put them back
    if the rename fails."""
    dump_tool = require_tool(DUMP_PROGRAMS, tool.is_mariadb)
    argv = [
        dump_tool.path,
        opts.arg,
        "--no-data",
        "--no-create-info",
        "--skip-lock-tables",  # definitions only: no need to wait for writers
        "--triggers",
        "--skip-routines",
        "--skip-events",
        "--no-tablespaces",
        "--default-character-set=utf8mb4",
        database,
        *of,
    ]
    reader = ProcessReader(argv, env=opts.env, what=f"{dump_tool.name} (saving the triggers of {database})")
    try:
        out = bytearray()
        while chunk := reader.read(1 << 20):
            out += chunk
        return bytes(out)
    finally:
        reader.close()
