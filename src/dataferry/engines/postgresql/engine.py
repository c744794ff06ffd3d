"""``PostgresEngine``: check, dump, restore into a shadow, swap, and SQL for sanitisation (see the
package docstring for how each works)."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, ClassVar, cast

import psycopg

from dataferry.config import DatabaseRef
from dataferry.engines import (
    DEFAULT_DUMP,
    DbTarget,
    Dump,
    DumpOptions,
    ObjectDump,
    ObjectSource,
    RestoreOptions,
    Shadow,
    ToolCheck,
    drop_after_failure,
    split_target,
)
from dataferry.engines.postgresql import swap as swapping
from dataferry.engines.postgresql.backup import DumpStream, PgRowCounter, dump_snapshot
from dataferry.engines.postgresql.directory import RowsFromFiles, directory_dump
from dataferry.engines.postgresql.keep import keep_target_rows
from dataferry.engines.postgresql.limits import max_jobs
from dataferry.engines.postgresql.lock import PgRestoreLock
from dataferry.engines.postgresql.restore import (
    create_shadow,
    explain,
    pg_restore_argv,
    restore_objects,
    restore_spooled,
    restore_streamed,
)
from dataferry.engines.postgresql.sql import (
    Conn,
    admin,
    connect,
    connect_raw,
    conninfo,
    count_rows,
    database_props,
    derived_name,
    first_line,
    is_missing_database,
    is_not_accepting_connections,
    live_name,
    scalar,
    server_version,
    sql_errors,
    table_key,
    tool_env,
    user_tables,
    where,
)
from dataferry.engines.postgresql.tools import BINDIR_ENV, PgTools, find_tools
from dataferry.engines.statements import Changed, changed_rows
from dataferry.errors import EngineError, NotReady
from dataferry.streams import ProcessReader, process_failed, spawn

MIN_SERVER_MAJOR = 13


@dataclass(frozen=True)
class PgShadowState:
    """What a PostgreSQL shadow remembers (its ``Shadow.state``): the live database's name, and the
    mark (database comment) that tells this restore's shadow from one another restore made."""

    live: str
    mark: str


def shadow_state(shadow: Shadow) -> PgShadowState | None:
    """The shadow's state if this engine made it (None for a shadow it did not)."""
    return shadow.state if isinstance(shadow.state, PgShadowState) else None


Table = tuple[str, str]


class PostgresEngine:
    """PostgreSQL 13+ through pg_dump, pg_restore and psql (see the package docstring)."""

    name: ClassVar[str] = "postgresql"
    dump_format: ClassVar[str] = "pg_custom"
    objects_format: ClassVar[str] = "pg_directory"

    def __init__(self) -> None:
        self._tools: PgTools | None = None

    def tools(self) -> PgTools:
        """The client tools, found once per engine."""
        if self._tools is None:
            self._tools = find_tools()
        return self._tools

    # -- check ---------------------------------------------------------------------------------

    def check(self, db: DatabaseRef) -> list[ToolCheck]:
        """Server reachable and supported, tools able to handle it, privileges. Changes nothing."""
        found: list[ToolCheck] = []
        major = self._probe_server(db, found)
        found += self._tool_checks(major)
        return found

    def check_source(self, db: DatabaseRef) -> list[ToolCheck]:
        """The database exists and this user can connect to it (a backup needs it; ``check`` alone
        accepts a missing one, which a restore would create)."""
        what = f"database {live_name(db)} (backed up from)"
        try:
            with contextlib.closing(connect_raw(db)):
                pass
        except psycopg.OperationalError as exc:
            return [ToolCheck(what, False, f"cannot be opened: {first_line(exc)}")]
        return [ToolCheck(what, True, "opens")]

    def _probe_server(self, db: DatabaseRef, found: list[ToolCheck]) -> int | None:
        name = live_name(db)
        try:
            conn = connect_raw(db)
        except psycopg.OperationalError as exc:
            if is_not_accepting_connections(exc):
                return self._probe_blocked(db, found)
            if not is_missing_database(exc):
                found.append(ToolCheck(f"connection to {where(db)}", False, first_line(exc)))
                return None
            found.append(ToolCheck(f"database {name}", True, "does not exist yet; a restore creates it"))
            try:
                return self._server_facts(admin(db), db, found)
            except NotReady as exc2:
                found.append(ToolCheck(f"connection to {where(db, 'postgres')}", False, exc2.message))
                return None
        return self._server_facts(contextlib.closing(conn), db, found)

    def _probe_blocked(self, db: DatabaseRef, found: list[ToolCheck]) -> int | None:
        """The live database refuses connections: fine if an interrupted dataferry swap did it
        (the next restore gives them back), a failed check otherwise."""
        name = live_name(db)
        try:
            with admin(db) as conn:
                ours = swapping.blocked_by_interrupted_swap(conn, derived_name(name, swapping.SHADOW_SUFFIX))
        except NotReady as exc:
            found.append(ToolCheck(f"connection to {where(db)}", False, exc.message))
            return None
        detail = (
            "refuses connections: an interrupted dataferry swap blocked them; the next restore gives them back"
            if ours
            else f'refuses connections (ALLOW_CONNECTIONS false); to undo: ALTER DATABASE "{name}" '
            "ALLOW_CONNECTIONS true"
        )
        found.append(ToolCheck(f"database {name}", ours, detail))
        return self._server_facts(admin(db), db, found)

    def _server_facts(
        self, opened: contextlib.AbstractContextManager[Conn], db: DatabaseRef, found: list[ToolCheck]
    ) -> int:
        with opened as conn:
            major = conn.info.server_version // 10000
            version = server_version(conn)
            ok = major >= MIN_SERVER_MAJOR
            detail = version if ok else f"{version}: dataferry needs PostgreSQL {MIN_SERVER_MAJOR} or newer"
            found.append(ToolCheck(f"server {where(db)}", ok, detail))
            found.append(ToolCheck("privileges", True, _privileges(conn)))
        return major

    def _tool_checks(self, server_major: int | None) -> list[ToolCheck]:
        try:
            tools = self.tools()
        except NotReady as exc:
            return [ToolCheck("PostgreSQL client tools", False, exc.message)]
        out = []
        for tool in tools.all():
            ok = server_major is None or tool.handles(server_major)
            detail = f"{tool.version} ({tool.path})"
            if not ok:
                detail += (
                    f": cannot handle PostgreSQL {server_major}; install its client tools or set {BINDIR_ENV}"
                )
            out.append(ToolCheck(tool.name, ok, detail))
        return out

    def server_version(self, db: DatabaseRef) -> str:
        """``PostgreSQL 15.8 (...)``."""
        with contextlib.closing(connect(db)) as conn, sql_errors("reading the server version"):
            return server_version(conn)

    def max_jobs(self, db: DatabaseRef) -> int | None:
        """Restore workers the server and the role can still take (``LimitsJobs``, ``limits``)."""
        return max_jobs(db)

    def database_size(self, db: DatabaseRef) -> int | None:
        """The size of the tables to dump, without indexes (a dump holds rows, not indexes; so this
        is nearer the dump than ``pg_database_size``) (``SizesDatabases``)."""
        with contextlib.closing(connect(db)) as conn, sql_errors("reading the database size"):
            size = scalar(
                conn,
                "SELECT sum(pg_table_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                # tables and materialized views; pg_table_size counts their TOAST data too
                "WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
            )
        return int(size) if size is not None else None

    # -- backup --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def dump(self, db: DatabaseRef, options: DumpOptions = DEFAULT_DUMP) -> Iterator[Dump]:
        """pg_dump in an exported snapshot, counting rows in that same snapshot meanwhile; the archive
        is compressed by pg_dump only at ``options.native_compression`` (default 0: dataferry's zstd)."""
        with dump_snapshot(self.tools().pg_dump.path, db) as (conn, snap):
            argv = snap.argv(["--format=custom", f"--compress={options.native_compression}"])
            reader = ProcessReader(argv, env=tool_env(db), what="pg_dump")
            stream = DumpStream(reader, PgRowCounter(conn, snap.counted))
            try:
                yield Dump(
                    stream=cast(BinaryIO, stream), row_counts=stream.row_counts, warnings=snap.warnings
                )
            finally:
                stream.close()

    @contextlib.contextmanager
    def dump_objects(self, db: DatabaseRef, options: DumpOptions, jobs: int) -> Iterator[ObjectDump]:
        """pg_dump ``--format=directory`` with ``jobs`` workers (1: serially) in an exported snapshot;
        each table's file is handed on as it is written, its rows counted in it (``directory``)."""
        with dump_snapshot(self.tools().pg_dump.path, db) as (conn, snap):
            workers = [f"--jobs={jobs}"] if jobs > 1 else []
            argv = snap.argv(["--format=directory", "--compress=0", *workers, "--verbose"])
            rows = RowsFromFiles(conn, snap.counted, self.tools().pg_restore.path, tool_env(db))
            with directory_dump(argv, tool_env(db), rows, options.spool_dir, serial=jobs <= 1) as dump:
                dump.warnings += snap.warnings
                yield dump

    def row_counts(self, target: DbTarget) -> dict[str, int]:
        """Exact ``count(*)`` of every user table of ``target``, named ``schema.table``."""
        db, shadow = split_target(target)
        dbname = shadow.name if shadow else None
        with contextlib.closing(connect(db, dbname)) as conn, sql_errors("counting rows"):
            return {table_key(t): count_rows(conn, t) for t in user_tables(conn)}

    # -- restore -------------------------------------------------------------------------------

    def restore_shadow(self, db: DatabaseRef, src: BinaryIO, options: RestoreOptions) -> Shadow:
        """Take the restore lock, create the shadow database and pg_restore ``src`` into it; on any
        failure drop it and release the lock."""
        shadow = self._new_shadow(db)
        with self._loading(shadow):
            argv = pg_restore_argv(self.tools(), db, shadow.name, options.jobs)
            if options.jobs > 1:
                restore_spooled(argv, src, tool_env(db), options)
            else:
                restore_streamed(argv, src, tool_env(db))
        return shadow

    def restore_shadow_objects(
        self, db: DatabaseRef, source: ObjectSource, options: RestoreOptions
    ) -> Shadow:
        """A ``pg_directory`` artifact into a new shadow (``parallel``): schema, then the tables'
        data streamed by ``options.jobs`` workers, then indexes and constraints in parallel."""
        shadow = self._new_shadow(db)
        with self._loading(shadow):
            restore_objects(self.tools(), db, shadow.name, source, options)
        return shadow

    def _new_shadow(self, db: DatabaseRef) -> Shadow:
        """Take the restore lock, then create an empty shadow database marked as this restore's."""
        self.tools()  # missing tools fail before anything is created
        live = live_name(db)
        state = PgShadowState(live=live, mark=swapping.shadow_mark(live, secrets.token_hex(6)))
        shadow = Shadow(
            ref=db,
            name=derived_name(live, swapping.SHADOW_SUFFIX),
            state=state,
            lock=PgRestoreLock(db, live),  # before anything is dropped or created
        )
        try:
            with admin(db) as conn:
                swapping.heal_blocked(conn, shadow.name, live)
                swapping.drop_leftover(conn, shadow.name, swapping.SHADOW_MARK)
                create_shadow(conn, shadow.name, live, db.owner, state.mark)
        except BaseException:
            shadow.release()
            raise
        return shadow

    @contextlib.contextmanager
    def _loading(self, shadow: Shadow) -> Iterator[None]:
        """Any failure while the shadow is loaded drops it (and explains the common tool errors)."""
        try:
            yield
        except BaseException as exc:
            drop_after_failure(self, shadow, exc)
            if isinstance(exc, EngineError):
                raise explain(exc) from None
            raise

    def swap(self, shadow: Shadow) -> None:
        """Replace the live database with the shadow (see ``swap``), then drop the old one."""
        db = shadow.ref
        live = live_name(db)
        old = derived_name(live, swapping.OLD_SUFFIX)
        state = shadow_state(shadow)
        mark = state.mark if state else ""
        with admin(db) as conn:
            swapping.require_own_shadow(conn, shadow.name, mark, shadow.lock)
            props = database_props(conn, live)
            if props is None:
                swapping.rename_into_place(conn, shadow.name, live)
                shadow.release()
                return
            # the target keeps its own rows of the excluded tables (the artifact left them out)
            keep_target_rows(db, shadow.name, db.exclude_tables)
            swapping.drop_leftover(conn, old, swapping.OLD_MARK)
            swapping.carry_over(conn, props, shadow.name)
            swapping.replace_live(conn, props, shadow.name, old, conn.info.server_version // 10000, mark)
            shadow.release()  # the renames committed: the shadow is live, the next restore may start
            try:
                swapping.drop_database(conn, old)
            except EngineError as exc:
                raise EngineError(
                    f"{live} was restored, but its previous copy {old} could not be dropped: {exc}",
                    hint=f"drop {old} by hand; the next restore also drops it",
                ) from None

    def drop_shadow(self, shadow: Shadow) -> None:
        """``DROP DATABASE IF EXISTS shadow WITH (FORCE)``, then release the lock; idempotent. A
        database under the shadow's name that another restore made is left alone."""
        state = shadow_state(shadow)
        try:
            with admin(shadow.ref) as conn:
                if swapping.made_by(conn, shadow.name, state.mark if state else None):
                    swapping.drop_database(conn, shadow.name)
        finally:
            shadow.release()

    # -- SQL for sanitisation ------------------------------------------------------------------

    def run_sql(self, target: DbTarget, sql_text: str) -> list[Changed]:
        """Run a script on ``target`` with psql in one transaction; the first error stops it and
        raises. Returns each data-changing statement's rows, from psql's command tags."""
        db, shadow = split_target(target)
        dbname = shadow.name if shadow else live_name(db)
        argv = [
            self.tools().psql.path,
            "--no-psqlrc",
            "--no-password",
            "--single-transaction",
            "--set=ON_ERROR_STOP=1",
            "--tuples-only",  # rows a script's SELECT returns are read past, never kept
            f"--dbname={conninfo(db, dbname)}",
            "--file=-",
        ]
        proc = spawn(argv, env=tool_env(db), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        out, err = proc.communicate(sql_text.encode())
        if proc.returncode != 0:
            raise process_failed(
                f"SQL script on {dbname}", argv, proc.returncode, err.decode("utf-8", "replace")
            )
        return changed_rows(out.decode("utf-8", "replace"))

    def query(self, target: DbTarget, sql_text: str) -> list[tuple[object, ...]]:
        """Run one query on ``target`` and return its rows (none for a statement without results)."""
        db, shadow = split_target(target)
        dbname = shadow.name if shadow else None
        with contextlib.closing(connect(db, dbname)) as conn, sql_errors(f"query on {where(db, dbname)}"):
            cur = conn.execute(sql_text.encode())
            return [tuple(row) for row in cur.fetchall()] if cur.description else []


def _privileges(conn: Conn) -> str:
    row = conn.execute("SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user").fetchone()
    superuser, createdb = row if row else (False, False)
    if superuser:
        return "superuser"
    if createdb:
        return "CREATEDB: can back up and restore"
    return "no CREATEDB: can back up, cannot restore into this server"
