"""``MySQLEngine``: check, dump, restore into a shadow, swap, and SQL for sanitisation (see the
package docstring for how each works)."""

from __future__ import annotations

import contextlib
import itertools
import secrets
from collections.abc import Iterator, Sequence
from typing import BinaryIO, ClassVar, cast

from dataferry.config import DatabaseRef
from dataferry.engines import (
    DEFAULT_DUMP,
    DbTarget,
    Dump,
    DumpOptions,
    RestoreOptions,
    Shadow,
    ToolCheck,
    split_target,
    statements,
)
from dataferry.engines.mysql import limits
from dataferry.engines.mysql import swap as swapping
from dataferry.engines.mysql.backup import HeaderCountingReader, dump_argv
from dataferry.engines.mysql.conn import (
    CLIENT_PROGRAMS,
    DUMP_PROGRAMS,
    MySqlTarget,
    ServerInfo,
    compatibility,
    connection,
    error_text,
    execute,
    find_tool,
    option_file,
    require_database,
    require_tool,
    rows,
    server_info,
    tables,
)
from dataferry.engines.mysql.dumpfile import DumpHeader, DumpScanner, segments
from dataferry.engines.mysql.load import Client, stream_load
from dataferry.engines.mysql.lock import MySqlRestoreLock
from dataferry.engines.mysql.objects import SchemaObjects
from dataferry.engines.mysql.parallel import load_parallel
from dataferry.engines.mysql.schemas import (
    OLD_SUFFIX,
    ROW_TABLES,
    SHADOW_SUFFIX,
    MySqlShadowState,
    create_marked,
    derived_name,
    drop_leftover,
    leftover_databases,
    marked_as,
    q,
)
from dataferry.engines.mysql.spooler import CHUNK_BYTES, spool_dir
from dataferry.engines.statements import Changed
from dataferry.errors import EngineError, FerryError, VerificationFailed
from dataferry.private import disk_full_is_clear
from dataferry.streams import ProcessReader


class MySQLEngine:
    """MySQL and MariaDB through their own dump and client tools (see the package docstring)."""

    name: ClassVar[str] = "mysql"
    dump_format: ClassVar[str] = "sql"
    #: Seconds the swap waits for readers' metadata locks before it gives up (nothing changed).
    swap_lock_timeout = 60
    #: A parallel restore cuts each table's rows into chunks of about this many bytes.
    chunk_bytes = CHUNK_BYTES

    # -- check ------------------------------------------------------------------------------

    def check_source(self, db: DatabaseRef) -> list[ToolCheck]:
        """The database exists (a backup needs it; ``check`` alone accepts a missing one, which a
        restore would create)."""
        target = MySqlTarget.from_ref(db)
        what = f"database {target.database} (backed up from)"
        try:
            with connection(db) as conn:
                info = server_info(conn, target.database)
        except FerryError as exc:
            return [ToolCheck(what, False, f"cannot be opened: {exc.message}")]
        if info.charset is None:
            return [ToolCheck(what, False, "does not exist; a backup of it would fail")]
        return [ToolCheck(what, True, "exists")]

    def check(self, db: DatabaseRef) -> list[ToolCheck]:
        """Client tools present and of the server's family; server reachable; database present."""
        target = MySqlTarget.from_ref(db)
        found: list[ToolCheck] = []
        info: ServerInfo | None = None
        try:
            with connection(db) as conn:
                info = server_info(conn, target.database)
                leftovers = leftover_databases(conn, target.database)
                kept = swapping.kept_triggers(conn, target.database)
            found.append(ToolCheck(f"server {target.describe()}", True, f"{info.flavor} {info.version}"))
        except FerryError as exc:
            found.append(ToolCheck(f"server {target.describe()}", False, exc.message))
            leftovers, kept = [], None
        for label, programs in (("dump tool", DUMP_PROGRAMS), ("client", CLIENT_PROGRAMS)):
            found.append(_tool_check(label, programs, info))
        if info is not None:
            exists = info.charset is not None
            detail = (
                f"exists ({info.charset}, {info.collation})" if exists else "missing: a restore creates it"
            )
            found.append(ToolCheck(f"database {target.database}", True, detail))
        if kept:
            # Reported, not failed: the restore that heals it runs this very check first.
            found.append(
                ToolCheck(
                    f"triggers of {target.database}",
                    True,
                    f"MISSING: a swap killed before its rename committed removed them; they are kept in {kept[0]}, "
                    "and the next restore puts them back first (or restore them from there by hand)",
                )
            )
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
        target = MySqlTarget.from_ref(db)
        with connection(db) as conn:
            info = server_info(conn, target.database)
        return f"{info.flavor} {info.version} ({info.charset}, {info.collation})"

    def max_jobs(self, db: DatabaseRef) -> int | None:
        """Restore workers the server and the account can still take (``LimitsJobs``, ``limits``)."""
        return limits.max_jobs(db)

    def database_size(self, db: DatabaseRef) -> int | None:
        """The tables' data size from information_schema, without indexes (a dump holds rows, not
        indexes) (``SizesDatabases``)."""
        target = MySqlTarget.from_ref(db)
        with connection(db) as conn:
            found = rows(
                conn,
                "SELECT SUM(DATA_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
                (target.database,),
            )
        return int(found[0][0]) if found and found[0][0] is not None else None

    def manifest_extra(self, db: DatabaseRef) -> dict[str, object]:
        """Structured facts for ``Manifest.extra``: server, character set, dump tool, exclusions."""
        target = MySqlTarget.from_ref(db)
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
                "excluded_tables": list(db.exclude_tables),  # left out of the dump entirely
            }
        }

    # -- backup -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def dump(self, db: DatabaseRef, options: DumpOptions = DEFAULT_DUMP) -> Iterator[Dump]:
        """A consistent dump (one snapshot, ``--single-transaction``) with rows counted as it streams.
        ``options.database_name`` is the name its header gives the database (a copy's original)."""
        target = MySqlTarget.from_ref(db)
        with connection(db) as conn:
            info = require_database(conn, target)
            present = set(tables(conn, target.database, (*ROW_TABLES, "SEQUENCE", "VIEW")))
        # As GOV.UK's mysqldump --ignore-table: a table the database does not have is a warning.
        excluded = [t for t in db.exclude_tables if t in present]
        warnings = [
            f"exclude_tables of {db.name}: {target.database} has no table {t!r}; check the spelling "
            "(a misspelt name copies the table it meant to leave out)"
            for t in db.exclude_tables
            if t not in present
        ]
        tool = require_tool(DUMP_PROGRAMS, info.is_mariadb)
        published = options.database_name or target.database  # a copy is dumped under its original's name
        header = DumpHeader(published, info.charset, info.collation)
        with option_file(db) as opts:
            argv = dump_argv(tool, opts, target.database, excluded)
            proc = ProcessReader(argv, env=opts.env, what=f"{tool.name} of {target.database}")
            reader = HeaderCountingReader(proc, header.line(), rename=(target.database, published))
            try:
                yield Dump(stream=cast(BinaryIO, reader), row_counts=reader.counts, warnings=warnings)
            finally:
                proc.close()

    def row_counts(self, target: DbTarget) -> dict[str, int]:
        """Exact ``COUNT(*)`` of every table of ``target`` (views and sequences are not counted)."""
        db, shadow = split_target(target)
        database = shadow.name if shadow else MySqlTarget.from_ref(db).database
        with connection(db) as conn:
            return {
                t: int(rows(conn, f"SELECT COUNT(*) FROM {q(database, t)}")[0][0])
                for t in tables(conn, database, ROW_TABLES)
            }

    # -- restore ----------------------------------------------------------------------------

    def restore_shadow(self, db: DatabaseRef, src: BinaryIO, options: RestoreOptions) -> Shadow:
        """Load ``src`` into the shadow database (a leftover one is dropped first); on any failure
        drop it and raise."""
        target = MySqlTarget.from_ref(db)
        scanner, objects = DumpScanner(), SchemaObjects()
        segs = segments(src, scanner)
        first = next(segs, None)
        header = DumpHeader.parse(first[2]) if first else None
        if header is None:  # a dump not made by dataferry: load it all the same
            header = DumpHeader()
            segs = itertools.chain([first] if first else [], segs)
        state = MySqlShadowState(mark=f"shadow of {target.database} (restore {secrets.token_hex(6)})")
        shadow = Shadow(
            ref=db,
            name=derived_name(target.database, SHADOW_SUFFIX),
            state=state,
            lock=MySqlRestoreLock(db, target.database),  # before anything is dropped or created
        )
        try:
            with connection(db) as conn:
                info = server_info(conn, target.database)
                # A swap killed mid-way may have left the live triggers only in the old database.
                swapping.heal_interrupted_swap(db, conn, info)
                drop_leftover(conn, shadow.name, info)
                local_infile = options.jobs > 1 and bool(rows(conn, "SELECT @@GLOBAL.local_infile")[0][0])
            tool = require_tool(CLIENT_PROGRAMS, info.is_mariadb)
        except BaseException:
            shadow.release()
            raise
        state.old = derived_name(target.database, OLD_SUFFIX)
        state.charset = header.charset or info.charset or ""
        state.collation = header.collation or info.collation or ""
        try:
            with option_file(db) as opts:
                client = Client(tool, opts, shadow.name, mariadb=info.is_mariadb)
                if options.jobs <= 1:
                    self._create_shadow(db, shadow.name, state, info)
                    stream_load(client, segs, objects)
                else:
                    self._create_shadow(db, shadow.name, state, info)
                    with spool_dir(options.spool_dir) as directory, disk_full_is_clear(directory):
                        load_parallel(
                            client,
                            segs,
                            objects,
                            directory,
                            chunk_bytes=self.chunk_bytes,
                            jobs=options.jobs,
                            load_data=local_infile,
                            complete=lambda: _require_complete(scanner),
                        )
            _require_complete(scanner)
        except BaseException:
            with contextlib.suppress(FerryError):  # keep the first failure
                self.drop_shadow(shadow)
            raise
        state.objects = objects
        return shadow

    def _create_shadow(self, db: DatabaseRef, name: str, state: MySqlShadowState, info: ServerInfo) -> None:
        with connection(db) as conn:
            create_marked(conn, name, info, state.mark, state.charset, state.collation)

    def swap(self, shadow: Shadow) -> None:
        """One ``RENAME TABLE`` moves live tables out and shadow tables in; then the schema objects
        are re-created in the live schema and the old tables dropped (see ``swap``)."""
        swapping.swap(shadow, self.swap_lock_timeout)

    def drop_shadow(self, shadow: Shadow) -> None:
        """Drop the shadow database (missing is fine), then release the restore lock. Without the
        lock (released, or never taken) a database under the shadow's name may be another
        restore's, so it is dropped only when its comment shows it is this one's."""
        try:
            with connection(shadow.ref) as conn:
                if shadow.lock is None and not marked_as(conn, shadow):
                    return
                execute(conn, "SET SESSION foreign_key_checks = 0")
                execute(conn, f"DROP DATABASE IF EXISTS {q(shadow.name)}")
        finally:
            shadow.release()

    # -- SQL for sanitisation ---------------------------------------------------------------

    def run_sql(self, target: DbTarget, sql: str) -> list[Changed]:
        """Run a script on ``target`` in one transaction (DDL commits implicitly, as MySQL always
        does); the first failing statement stops it, rolls back and raises ``EngineError``. Returns
        each data-changing statement's affected rows (one result per statement, in order)."""
        db, shadow = split_target(target)
        database = shadow.name if shadow else MySqlTarget.from_ref(db).database
        if not sql.strip():
            return []
        kinds = [statements.kind(s) for s in statements.split(sql)]
        affected: list[int] = []
        with connection(db, database, multi=True) as conn:
            try:
                conn.begin()
                with conn.cursor() as cur:
                    cur.execute(sql)
                    affected.append(cur.rowcount)
                    while cur.nextset():
                        affected.append(cur.rowcount)
                conn.commit()
            except Exception as exc:
                with contextlib.suppress(Exception):
                    conn.rollback()
                raise EngineError(f"SQL failed on {database}: {error_text(exc)}") from None
        if len(kinds) != len(affected):  # cut differently from the server: count nothing rather than wrongly
            return []
        return statements.changing(list(zip(kinds, affected, strict=True)))

    def query(self, target: DbTarget, sql: str) -> list[tuple[object, ...]]:
        """Run one query on ``target`` (a live database or a shadow) and return its rows."""
        db, shadow = split_target(target)
        database = shadow.name if shadow else MySqlTarget.from_ref(db).database
        with connection(db, database) as conn:
            try:
                with conn.cursor() as cur:
                    cur.execute(sql)
                    return [tuple(r) for r in cur.fetchall()]
            except Exception as exc:
                raise EngineError(f"query failed on {database}: {error_text(exc)}") from None


def _tool_check(label: str, programs: Sequence[str], info: ServerInfo | None) -> ToolCheck:
    tool = find_tool(programs, info.is_mariadb if info else None)
    if tool is None:
        return ToolCheck(label, False, f"none of {', '.join(programs)} is installed")
    if info is None:
        return ToolCheck(tool.name, True, tool.version)
    ok, detail = compatibility(tool, info)
    return ToolCheck(tool.name, ok, detail)


def _require_complete(scanner: DumpScanner) -> None:
    if not scanner.completed:
        raise VerificationFailed(
            "the dump in this artifact is incomplete (no 'Dump completed' line)",
            hint="the live database was not changed; restore an older artifact or take a new backup",
        )
