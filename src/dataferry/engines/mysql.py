"""MySQL and MariaDB: ``mariadb-dump`` backups; restores into a shadow database swapped in by one
``RENAME TABLE``.

Backup
    ``mariadb-dump`` (or ``mysqldump``, whichever family matches the server) with
    ``--single-transaction --quick --routines --triggers --events --hex-blob`` and without
    ``--databases``, so the dump loads into any database name. dataferry prepends one comment line
    with the source database's character set and collation, and counts the rows of each table
    while the dump streams past. ``exclude_tables`` keep their structure but lose their rows
    (``--ignore-table-data``; tools without it leave the table out, as GOV.UK's script did).

Restore
    1. The dump is loaded into a new shadow database ``<db>_dfshadow`` beside the live one,
       by one streamed client (``--jobs 1``, no local disk) or by spooled chunks loaded by N
       clients at once (``--jobs N``); unique and foreign-key checks are off during the load.
       Events are created DISABLED in the shadow so the scheduler does not run them on a copy.
    2. ``swap`` moves every live table to ``<db>_dfold`` and every shadow table into the
       live schema in ONE ``RENAME TABLE`` statement: readers see all old or all new tables, never
       a missing or half-filled one. Live tables that are not in the artifact move out too: a
       restore replaces the whole database.
    3. Triggers, views, routines and events belong to a schema and cannot move with the tables
       (MySQL refuses to rename a table with triggers, or a view, across schemas). Triggers are
       dropped just before the rename and re-created right after it, from the dump's own text;
       views are replaced in place with ``CREATE OR REPLACE`` (they refer to tables by name, so
       during the short window a live view reads the new tables with the old definition);
       routines and events are re-created with the dump's ``DROP ... IF EXISTS`` + ``CREATE``;
       live views, routines and events the artifact does not have are dropped. Writes in the
       window between dropping and re-creating triggers do not fire them: a restore target is not
       expected to take writes while it is replaced.
    4. The old schema and the shadow's shell are dropped.

    ``DEFINER`` clauses become ``CURRENT_USER`` (the restoring account): the source's accounts
    rarely exist in the target environment, and a definer that does not exist breaks the object.

    Anything that fails before the ``RENAME TABLE`` leaves the live database as it was (dropped
    triggers are put back from a dump of them taken just before). If re-creating the schema
    objects fails after it, the new tables are live and the old ones are kept in the old schema
    for recovery, and the error says so. Foreign keys from OTHER databases into the restored one
    follow the old tables (InnoDB renames them along); they are not supported.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import secrets
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO, cast

from dataferry.config import DatabaseRef
from dataferry.engines import DEFAULT_DUMP, Dump, DumpOptions, RestoreOptions, Shadow, ToolCheck
from dataferry.engines._mysql_conn import (
    CLIENT_PROGRAMS,
    DUMP_PROGRAMS,
    MAX_PACKET,
    OptionFile,
    ServerInfo,
    Target,
    Tool,
    compatibility,
    connection,
    error_text,
    execute,
    find_tool,
    option_file,
    quote_ident,
    require_database,
    require_tool,
    rows,
    server_info,
    supports_option,
    tables,
    version_tuple,
)
from dataferry.engines._mysql_dumpfile import (
    DumpHeader,
    DumpScanner,
    SchemaObjects,
    StreamRowCounter,
    segments,
)
from dataferry.engines._mysql_load import CHUNK_BYTES, Client, load_spooled, spool, spool_dir, stream_load
from dataferry.engines._mysql_lock import MySqlRestoreLock
from dataferry.errors import ConfigError, EngineError, FerryError, Refused, VerificationFailed
from dataferry.streams import ByteSource, ProcessReader, Reader

_SHADOW_SUFFIX = "_dfshadow"
_OLD_SUFFIX = "_dfold"
#: MariaDB 10.5+ keeps a comment on a database: it marks the ones dataferry made.
_MARK = "dataferry"
_ROW_TABLES = ("BASE TABLE", "SYSTEM VERSIONED")


def _q(*names: str) -> str:
    return ".".join(quote_ident(n) for n in names)


class MySQLEngine:
    """MySQL and MariaDB through their own dump and client tools (see the module docstring)."""

    name = "mysql"
    dump_format = "sql"
    #: Seconds the swap waits for readers' metadata locks before it gives up (nothing changed).
    swap_lock_timeout = 60
    #: A parallel restore cuts each table's rows into chunks of about this many bytes.
    chunk_bytes = CHUNK_BYTES

    # -- check ------------------------------------------------------------------------------

    def check(self, db: DatabaseRef) -> list[ToolCheck]:
        """Client tools present and of the server's family; server reachable; database present."""
        target = Target.from_ref(db)
        found: list[ToolCheck] = []
        info: ServerInfo | None = None
        try:
            with connection(db) as conn:
                info = server_info(conn, target.database)
                leftovers = _leftovers(conn, target.database)
            found.append(ToolCheck(f"server {target.describe()}", True, f"{info.flavor} {info.version}"))
        except FerryError as exc:
            found.append(ToolCheck(f"server {target.describe()}", False, exc.message))
            leftovers = []
        for label, programs in (("dump tool", DUMP_PROGRAMS), ("client", CLIENT_PROGRAMS)):
            found.append(_tool_check(label, programs, info))
        if info is not None:
            exists = info.charset is not None
            detail = (
                f"exists ({info.charset}, {info.collation})" if exists else "missing: a restore creates it"
            )
            found.append(ToolCheck(f"database {target.database}", True, detail))
        if leftovers:
            found.append(
                ToolCheck(
                    "leftovers of interrupted restores",
                    True,
                    f"{', '.join(leftovers)}: drop them once no restore is running",
                )
            )
        return found

    def server_version(self, db: DatabaseRef) -> str:
        """``MariaDB 10.11.19-MariaDB (utf8mb4, utf8mb4_unicode_ci)``: version and the database's
        default character set and collation."""
        target = Target.from_ref(db)
        with connection(db) as conn:
            info = server_info(conn, target.database)
        return f"{info.flavor} {info.version} ({info.charset}, {info.collation})"

    def manifest_extra(self, db: DatabaseRef) -> dict[str, object]:
        """Structured facts for ``Manifest.extra``: server, character set, dump tool, exclusions."""
        target = Target.from_ref(db)
        with connection(db) as conn:
            info = server_info(conn, target.database)
        tool = find_tool(DUMP_PROGRAMS, info.is_mariadb)
        return {
            "mysql": {
                "flavor": info.flavor,
                "server_version": info.version,
                "character_set": info.charset,
                "collation": info.collation,
                "dump_tool": tool.version if tool else None,
                "excluded_tables": list(db.exclude_tables),
                "excluded_tables_keep_structure": bool(tool and _keeps_structure(tool)),
            }
        }

    # -- backup -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def dump(self, db: DatabaseRef, options: DumpOptions = DEFAULT_DUMP) -> Iterator[Dump]:
        """A consistent dump (one snapshot, ``--single-transaction``) with rows counted as it streams.
        ``options`` holds nothing that applies to this engine."""
        target = Target.from_ref(db)
        with connection(db) as conn:
            info = require_database(conn, target)
            present = set(tables(conn, target.database, (*_ROW_TABLES, "SEQUENCE", "VIEW")))
        unknown = sorted(set(db.exclude_tables) - present)
        if unknown:
            raise ConfigError(
                f"exclude_tables of {db.name} names tables that {target.database} does not have: "
                + ", ".join(unknown),
                hint="fix the list: a misspelt name would silently copy the table it meant to leave out",
            )
        tool = require_tool(DUMP_PROGRAMS, info.is_mariadb)
        header = DumpHeader(target.database, info.charset, info.collation)
        with option_file(db) as opts:
            argv = _dump_argv(tool, opts, target.database, db.exclude_tables)
            proc = ProcessReader(argv, env=opts.env, what=f"{tool.name} of {target.database}")
            reader = CountingReader(proc, header.line())
            try:
                yield Dump(stream=cast(BinaryIO, reader), row_counts=reader.counts)
            finally:
                proc.close()

    def row_counts(self, db: DatabaseRef, shadow: Shadow | None = None) -> dict[str, int]:
        """Exact ``COUNT(*)`` of every table (views and sequences are not counted)."""
        database = shadow.name if shadow else Target.from_ref(db).database
        with connection(db) as conn:
            return {
                t: int(rows(conn, f"SELECT COUNT(*) FROM {_q(database, t)}")[0][0])
                for t in tables(conn, database, _ROW_TABLES)
            }

    # -- restore ----------------------------------------------------------------------------

    def restore_shadow(self, db: DatabaseRef, src: BinaryIO, options: RestoreOptions) -> Shadow:
        """Load ``src`` into the shadow database (a leftover one is dropped first); on any failure
        drop it and raise."""
        target = Target.from_ref(db)
        scanner, objects = DumpScanner(), SchemaObjects()
        segs = segments(src, scanner)
        first = next(segs, None)
        header = DumpHeader.parse(first[2]) if first else None
        if header is None:  # a dump not made by dataferry: load it all the same
            header = DumpHeader()
            segs = itertools.chain([first] if first else [], segs)
        shadow = Shadow(
            ref=db,
            name=derived_name(target.database, _SHADOW_SUFFIX),
            details={"mark": f"shadow of {target.database} (restore {secrets.token_hex(6)})"},
            lock=MySqlRestoreLock(db, target.database),  # before anything is dropped or created
        )
        try:
            with connection(db) as conn:
                info = server_info(conn, target.database)
                _drop_leftover(conn, shadow.name, info)
                local_infile = options.jobs > 1 and bool(rows(conn, "SELECT @@GLOBAL.local_infile")[0][0])
            tool = require_tool(CLIENT_PROGRAMS, info.is_mariadb)
        except BaseException:
            shadow.release()
            raise
        shadow.details.update(
            old=derived_name(target.database, _OLD_SUFFIX),
            charset=header.charset or info.charset or "",
            collation=header.collation or info.collation or "",
        )
        try:
            with option_file(db) as opts:
                client = Client(tool, opts, shadow.name)
                if options.jobs <= 1:
                    self._create_shadow(db, shadow, info)
                    stream_load(client, segs, objects)
                else:
                    with spool_dir(options.spool_dir) as directory:
                        plan = spool(segs, objects, directory, self.chunk_bytes, load_data=local_infile)
                        _require_complete(scanner)  # checked before the server is touched
                        self._create_shadow(db, shadow, info)
                        load_spooled(client, plan, objects, options.jobs)
            _require_complete(scanner)
        except BaseException:
            with contextlib.suppress(FerryError):  # keep the first failure
                self.drop_shadow(shadow)
            raise
        shadow.details["objects"] = objects.to_json()
        return shadow

    def _create_shadow(self, db: DatabaseRef, shadow: Shadow, info: ServerInfo) -> None:
        with connection(db) as conn:
            _create_marked(conn, shadow.name, info, shadow.details, shadow.details["mark"])

    def swap(self, shadow: Shadow) -> None:
        """One ``RENAME TABLE`` moves live tables out and shadow tables in; then the schema objects
        are re-created in the live schema and the old tables dropped."""
        db = shadow.ref
        live = Target.from_ref(db).database
        old = shadow.details.get("old", "")
        with connection(db) as conn, option_file(db) as opts:
            if "objects" not in shadow.details or server_info(conn, shadow.name).charset is None:
                raise EngineError(f"the shadow database {shadow.name} is gone; nothing was swapped")
            _require_own_shadow(conn, shadow)
            objects = SchemaObjects.from_json(shadow.details["objects"])
            info = server_info(conn, live)
            tool = require_tool(CLIENT_PROGRAMS, info.is_mariadb)
            execute(conn, f"SET SESSION lock_wait_timeout = {int(self.swap_lock_timeout)}")
            created_live = self._prepare(conn, shadow, info)
            kept_views = self._move_tables(conn, opts, tool, shadow, created_live)
            try:
                if not created_live:
                    _set_defaults(conn, live, shadow.details, info)
                self._recreate_objects(conn, Client(tool, opts, live), objects, kept_views)
            except FerryError as exc:
                raise EngineError(
                    f"the restored tables of {live} are live, but re-creating its triggers, views, "
                    f"routines or events failed: {exc.message}",
                    hint=f"the previous tables are kept in database {old} until the next restore; "
                    "fix the cause and restore again",
                ) from exc
            _drop_leftover(conn, old, info)
            _drop_leftover(conn, shadow.name, info)
        shadow.release()

    def _prepare(self, conn: Any, shadow: Shadow, info: ServerInfo) -> bool:
        """Create the old schema (and the live database on a first restore); True if live was created."""
        live = Target.from_ref(shadow.ref).database
        old = shadow.details["old"]
        _drop_leftover(conn, old, info)
        created_live = info.charset is None
        if created_live:
            execute(conn, f"CREATE DATABASE {_q(live)}{_charset_clause(shadow.details)}")
        try:
            _create_marked(conn, old, info, {}, f"old copy of {live}")
        except FerryError:
            if created_live:
                execute(conn, f"DROP DATABASE IF EXISTS {_q(live)}")
            raise
        return created_live

    def _move_tables(
        self, conn: Any, opts: OptionFile, tool: Tool, shadow: Shadow, created_live: bool
    ) -> set[str]:
        """The atomic step. Returns the live views that stay (the others were renamed away).

        Before it, triggers are dropped (they cannot move across schemas); if the rename fails,
        the live triggers are put back from a dump taken just before, and nothing else changed.
        """
        live = Target.from_ref(shadow.ref).database
        old = shadow.details["old"]
        saved = b""
        try:
            live_tables, shadow_tables = tables(conn, live), tables(conn, shadow.name)
            live_views = set(tables(conn, live, ("VIEW",)))
            # A live view named like an incoming table moves aside in the same statement.
            clashing = sorted(live_views & set(shadow_tables))
            aside = [f"_dataferry_old_view_{i}" for i in range(len(clashing))]
            saved = _dump_triggers(opts, tool, live) if _triggers(conn, live) else b""
            renames = [f"{_q(live, t)} TO {_q(old, t)}" for t in live_tables]
            renames += [f"{_q(live, v)} TO {_q(live, a)}" for v, a in zip(clashing, aside, strict=True)]
            renames += [f"{_q(shadow.name, t)} TO {_q(live, t)}" for t in shadow_tables]
            for schema in (shadow.name, live):
                for trigger in _triggers(conn, schema):
                    execute(conn, f"DROP TRIGGER {_q(schema, trigger)}")
            if renames:
                execute(conn, "RENAME TABLE " + ", ".join(renames))
        except BaseException:
            self._undo_move(conn, Client(tool, opts, live), saved, old, live if created_live else None)
            raise
        for name in aside:
            execute(conn, f"DROP VIEW IF EXISTS {_q(live, name)}")
        return live_views - set(clashing)

    def _undo_move(self, conn: Any, client: Client, saved: bytes, old: str, created_live: str | None) -> None:
        """Put back what was changed before a failed rename (best effort, then the error propagates)."""
        with contextlib.suppress(FerryError):
            if saved:
                client.run(saved, f"{client.tool.name} (putting back the triggers of {client.database})")
        with contextlib.suppress(FerryError):
            execute(conn, f"DROP DATABASE IF EXISTS {_q(old)}")
            if created_live:
                execute(conn, f"DROP DATABASE IF EXISTS {_q(created_live)}")

    def _recreate_objects(self, conn: Any, client: Client, objects: SchemaObjects, views: set[str]) -> None:
        """The artifact's triggers, views, routines and events in the live schema; others dropped."""
        live = client.database
        client.run(objects.live_script(views), f"{client.tool.name} (re-creating the objects of {live})")
        for view in sorted(set(tables(conn, live, ("VIEW",))) - set(objects.views)):
            execute(conn, f"DROP VIEW IF EXISTS {_q(live, view)}")
        wanted = {(kind.upper(), name) for kind, name in objects.routine_names}
        for kind, name in rows(
            conn,
            "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s "
            "AND ROUTINE_TYPE IN ('PROCEDURE', 'FUNCTION')",
            (live,),
        ):
            if (str(kind), str(name)) not in wanted:
                execute(conn, f"DROP {kind} IF EXISTS {_q(live, str(name))}")
        for (event,) in rows(
            conn, "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s", (live,)
        ):
            if str(event) not in objects.event_names:
                execute(conn, f"DROP EVENT IF EXISTS {_q(live, str(event))}")

    def drop_shadow(self, shadow: Shadow) -> None:
        """Drop the shadow database (missing is fine), then release the restore lock. Without the
        lock (released, or never taken) a database under the shadow's name may be another
        restore's, so it is dropped only when its comment shows it is this one's."""
        try:
            with connection(shadow.ref) as conn:
                if shadow.lock is None and not _marked_as(conn, shadow):
                    return
                execute(conn, "SET SESSION foreign_key_checks = 0")
                execute(conn, f"DROP DATABASE IF EXISTS {_q(shadow.name)}")
        finally:
            shadow.release()

    # -- SQL for sanitisation ---------------------------------------------------------------

    def run_sql(self, db: DatabaseRef, sql: str, shadow: Shadow | None = None) -> None:
        """Run a script in one transaction (DDL commits implicitly, as MySQL always does); the
        first failing statement stops it, rolls back and raises ``EngineError``."""
        database = shadow.name if shadow else Target.from_ref(db).database
        if not sql.strip():
            return
        with connection(db, database, multi=True) as conn:
            try:
                conn.begin()
                with conn.cursor() as cur:
                    cur.execute(sql)
                    while cur.nextset():
                        pass
                conn.commit()
            except Exception as exc:
                with contextlib.suppress(Exception):
                    conn.rollback()
                raise EngineError(f"SQL failed on {database}: {error_text(exc)}") from None

    def query(self, db: DatabaseRef, sql: str, shadow: Shadow | None = None) -> list[tuple[object, ...]]:
        """Run one query on the live database (or ``shadow``) and return its rows."""
        database = shadow.name if shadow else Target.from_ref(db).database
        with connection(db, database) as conn:
            try:
                with conn.cursor() as cur:
                    cur.execute(sql)
                    return [tuple(r) for r in cur.fetchall()]
            except Exception as exc:
                raise EngineError(f"query failed on {database}: {error_text(exc)}") from None


# -- helpers -------------------------------------------------------------------------------------


class CountingReader(Reader):
    """The dump stream: dataferry's header line, then the tool's output, with rows counted per table
    on the way through. At EOF it checks the tool wrote its "Dump completed" trailer."""

    def __init__(self, src: ByteSource, header: bytes) -> None:
        self._src = src
        self._pending = header
        self._counter = StreamRowCounter(DumpScanner())
        self.counts = self._counter.counts
        self._finished = False

    def read(self, n: int = -1) -> bytes:
        """Read and count."""
        if self._pending:
            cut = len(self._pending) if n is None or n < 0 else n
            out, self._pending = self._pending[:cut], self._pending[cut:]
            return out
        data = self._src.read(n)
        if data:
            self._counter.push(data)
        elif n != 0:
            self._finish()
        return data

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._counter.finish()
        if not self._counter.scanner.completed:
            raise EngineError(
                "the dump ended without its 'Dump completed' line: it is incomplete",
                hint="the dump tool stopped early; see its messages above and re-run the backup",
            )


def _dump_argv(tool: Tool, opts: OptionFile, database: str, exclude: Sequence[str]) -> list[str]:
    argv = [
        tool.path,
        opts.arg,  # must be first
        "--single-transaction",
        "--quick",
        "--routines",
        "--triggers",
        "--events",
        "--hex-blob",
        "--no-tablespaces",  # MySQL 8 needs PROCESS for tablespaces; a database dump needs none
        "--default-character-set=utf8mb4",
        f"--max-allowed-packet={MAX_PACKET}",
    ]
    if not tool.is_mariadb:
        argv.append("--set-gtid-purged=OFF")  # the shadow is not a replica: no GTID statements
    option = "--ignore-table-data" if _keeps_structure(tool) else "--ignore-table"
    argv += [f"{option}={database}.{table}" for table in exclude]
    argv.append(database)
    return argv


def _keeps_structure(tool: Tool) -> bool:
    return supports_option(tool.path, "--ignore-table-data")


def _tool_check(label: str, programs: Sequence[str], info: ServerInfo | None) -> ToolCheck:
    tool = find_tool(programs, info.is_mariadb if info else None)
    if tool is None:
        return ToolCheck(label, False, f"none of {', '.join(programs)} is installed")
    if info is None:
        return ToolCheck(tool.name, True, tool.version)
    ok, detail = compatibility(tool, info)
    return ToolCheck(tool.name, ok, detail)


def _charset_clause(details: dict[str, str]) -> str:
    clause = ""
    if details.get("charset"):
        clause += f" CHARACTER SET {details['charset']}"
    if details.get("collation"):
        clause += f" COLLATE {details['collation']}"
    return clause


def _require_complete(scanner: DumpScanner) -> None:
    if not scanner.completed:
        raise VerificationFailed(
            "the dump in this artifact is incomplete (no 'Dump completed' line)",
            hint="the live database was not changed; restore an older artifact or take a new backup",
        )


def _triggers(conn: Any, schema: str) -> list[str]:
    found = rows(
        conn, "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s", (schema,)
    )
    return [str(r[0]) for r in found]


def _dump_triggers(opts: OptionFile, tool: Tool, database: str) -> bytes:
    """The live database's triggers as SQL, to put them back if the rename fails."""
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
    ]
    reader = ProcessReader(argv, env=opts.env, what=f"{dump_tool.name} (saving the triggers of {database})")
    try:
        out = bytearray()
        while chunk := reader.read(1 << 20):
            out += chunk
        return bytes(out)
    finally:
        reader.close()


def derived_name(live: str, suffix: str) -> str:
    """``<live><suffix>``, shortened with a hash when it would pass MySQL's 64-character limit
    (so two long names never share a shadow)."""
    name = live + suffix
    if len(name) <= 64:
        return name
    digest = hashlib.sha256(live.encode()).hexdigest()[:8]
    return f"{live[: 64 - len(suffix) - 9]}_{digest}{suffix}"


def _has_comments(info: ServerInfo) -> bool:
    return info.is_mariadb and version_tuple(info.version) >= (10, 5)


def _drop_leftover(conn: Any, name: str, info: ServerInfo) -> None:
    """Drop a database an interrupted run left, but only if dataferry made it (its comment says so
    on MariaDB 10.5+; MySQL keeps no database comments, so there the name is the mark)."""
    if server_info(conn, name).charset is None:
        return
    if _has_comments(info):
        found = rows(
            conn, "SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (name,)
        )
        if not found or not str(found[0][0] or "").startswith(_MARK):
            raise Refused(
                f"a database named {name} exists and was not made by dataferry; it was left alone",
                hint="dataferry needs this name for its restores: rename or drop that database",
            )
    execute(conn, "SET SESSION foreign_key_checks = 0")
    execute(conn, f"DROP DATABASE {_q(name)}")
    execute(conn, "SET SESSION foreign_key_checks = 1")


def _schema_comment(conn: Any, name: str) -> str | None:
    """The comment of database ``name`` (None when it does not exist)."""
    found = rows(
        conn, "SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (name,)
    )
    return str(found[0][0] or "") if found else None


def _marked_as(conn: Any, shadow: Shadow) -> bool:
    """True when the database ``shadow.name`` carries this restore's mark (MariaDB 10.5+; where the
    server keeps no comments, the name is all there is)."""
    if not _has_comments(server_info(conn, shadow.name)):
        return True
    return _schema_comment(conn, shadow.name) == f"{_MARK} {shadow.details.get('mark', '')}"


def _require_own_shadow(conn: Any, shadow: Shadow) -> None:
    """Refuse to swap a shadow this restore did not create, or whose restore lock it lost."""
    if shadow.lock is None or not _marked_as(conn, shadow):
        raise EngineError(
            f"the shadow database {shadow.name} is not the one this restore verified; nothing was swapped",
            hint="another restore of this database ran at the same time; run this one again",
        )


def _create_marked(conn: Any, name: str, info: ServerInfo, details: dict[str, str], what: str) -> None:
    comment = f" COMMENT {conn.escape(f'{_MARK} {what}')}" if _has_comments(info) else ""
    execute(conn, f"CREATE DATABASE {_q(name)}{_charset_clause(details)}{comment}")


def _leftovers(conn: Any, database: str) -> list[str]:
    """The shadow and old databases of ``database`` that exist now (left by an interrupted run)."""
    names = (derived_name(database, suffix) for suffix in (_SHADOW_SUFFIX, _OLD_SUFFIX))
    return [n for n in names if server_info(conn, n).charset is not None]


def _set_defaults(conn: Any, live: str, details: dict[str, str], info: ServerInfo) -> None:
    """Give the live database the artifact's default character set and collation (routines and
    triggers take the database's collation when they are created, so this comes first)."""
    wanted = (details.get("charset"), details.get("collation"))
    if wanted[0] and wanted != (info.charset, info.collation):
        execute(conn, f"ALTER DATABASE {_q(live)}{_charset_clause(details)}")
