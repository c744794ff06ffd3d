"""PostgreSQL: ``pg_dump`` out, ``pg_restore`` into a shadow database, atomic rename swap.

Backup
    ``pg_dump --format=custom --compress=0`` streams into dataferry, which compresses with zstd
    (faster than pg_dump's own compression at a similar ratio). The dump runs in a snapshot
    exported by a REPEATABLE READ transaction, and the same transaction counts every user table's
    rows while the dump streams, so the manifest's row counts are exact for that very dump.
    ``exclude_tables`` (``table`` in any schema, or ``schema.table``) keep their definition but
    leave their rows out (``--exclude-table-data``); a name that matches no table is an error.

Restore
    A shadow database ``<db>-dataferry-shadow`` is created beside the live one (same encoding,
    locale and tablespace; owner preserved, or ``owner`` from the config), and the artifact
    streams into ``pg_restore --exit-on-error``: any error fails the restore and drops the shadow.
    With ``--jobs N`` the artifact is first spooled to a 0600 temporary file (``settings.spool_dir``)
    for ``pg_restore --jobs N``; the file is deleted whatever happens.

Ownership
    By default every object keeps the owner it had in the dump, so those roles must exist on the
    target server (a missing role fails the restore, and the hint says so). With ``owner = "ROLE"``
    in the connection, objects are created as that role (``--no-owner --role ROLE``) and it owns
    the database: GOV.UK's DB_OWNER rule, for targets whose roles differ from production's.

Swap (see ``_pg_swap``)
    New connections to the live database are blocked, and **sessions open on the live database
    are terminated** (``pg_terminate_backend``) immediately before both renames commit in one
    transaction; clients must reconnect, and get the restored data. Grants on the database,
    per-database settings and the connection limit are carried over. The old database is dropped.

Databases named ``<db>-dataferry-shadow`` and ``<db>-dataferry-old`` are dataferry's: a leftover
from an interrupted run is dropped by the next one, but only if its comment shows dataferry
made it. A live database left refusing connections by a dataferry that died mid-swap gets them
back at the next restore. The connecting role needs CREATEDB (or superuser) to restore, and PostgreSQL 13 or newer.
The password reaches tools only through ``PGPASSWORD`` and psycopg only as a keyword argument.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO, cast

import psycopg
from psycopg import sql

from dataferry.config import DatabaseRef
from dataferry.engines import DEFAULT_DUMP, Dump, DumpOptions, RestoreOptions, Shadow, ToolCheck
from dataferry.engines import _pg_swap as swapping
from dataferry.engines._pg_lock import PgRestoreLock
from dataferry.engines._pg_sql import (
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
from dataferry.engines._pg_tools import BINDIR_ENV, PgTools, find_tools
from dataferry.errors import ConfigError, EngineError, FerryError, NotReady
from dataferry.streams import CHUNK, ProcessReader, Reader, StderrTail, copy_to_file, process_failed, spawn

MIN_SERVER_MAJOR = 13

Table = tuple[str, str]


class PostgresEngine:
    """PostgreSQL 13+ through pg_dump, pg_restore and psql (see the module docstring)."""

    name = "postgresql"
    dump_format = "pg_custom"

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

    # -- backup --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def dump(self, db: DatabaseRef, options: DumpOptions = DEFAULT_DUMP) -> Iterator[Dump]:
        """pg_dump in an exported snapshot, counting rows in that same snapshot meanwhile; the archive
        is compressed by pg_dump only at ``options.native_compression`` (default 0: dataferry's zstd)."""
        tools = self.tools()
        with contextlib.closing(connect(db)) as conn:
            with sql_errors(f"starting the dump of {where(db)}"):
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                snapshot = str(scalar(conn, "SELECT pg_export_snapshot()"))
                tables = user_tables(conn)
            skipped = resolve_excluded(tables, db.exclude_tables)
            argv = [
                tools.pg_dump.path,
                "--format=custom",
                f"--compress={options.native_compression}",
                "--no-password",
                f"--snapshot={snapshot}",
                *(f"--exclude-table-data={dump_pattern(t)}" for t in sorted(skipped)),
                f"--dbname={conninfo(db)}",
            ]
            reader = ProcessReader(argv, env=tool_env(db), what="pg_dump")
            stream = DumpStream(reader, RowCounter(conn, [t for t in tables if t not in skipped]))
            try:
                yield Dump(stream=cast(BinaryIO, stream), row_counts=stream.row_counts)
            finally:
                stream.close()

    def row_counts(self, db: DatabaseRef, shadow: Shadow | None = None) -> dict[str, int]:
        """Exact ``count(*)`` of every user table, named ``schema.table``."""
        dbname = shadow.name if shadow else None
        with contextlib.closing(connect(db, dbname)) as conn, sql_errors("counting rows"):
            return {table_key(t): count_rows(conn, t) for t in user_tables(conn)}

    # -- restore -------------------------------------------------------------------------------

    def restore_shadow(self, db: DatabaseRef, src: BinaryIO, options: RestoreOptions) -> Shadow:
        """Take the restore lock, create the shadow database and pg_restore ``src`` into it; on any
        failure drop it and release the lock."""
        tools = self.tools()
        live = live_name(db)
        token = secrets.token_hex(6)
        shadow = Shadow(
            ref=db,
            name=derived_name(live, swapping.SHADOW_SUFFIX),
            details={"live": live, "mark": swapping.shadow_mark(live, token)},
            lock=PgRestoreLock(db, live),  # before anything is dropped or created
        )
        try:
            with admin(db) as conn:
                swapping.heal_blocked(conn, shadow.name, live)
                swapping.drop_leftover(conn, shadow.name, swapping.SHADOW_MARK)
                create_shadow(conn, shadow.name, live, db.owner, shadow.details["mark"])
        except BaseException:
            shadow.release()
            raise
        try:
            argv = pg_restore_argv(tools, db, shadow.name, options.jobs)
            if options.jobs > 1:
                restore_spooled(argv, src, tool_env(db), options)
            else:
                restore_streamed(argv, src, tool_env(db))
        except BaseException as exc:
            self._drop_after_failure(shadow, exc)
            if isinstance(exc, EngineError):
                raise explain(exc) from None
            raise
        return shadow

    def _drop_after_failure(self, shadow: Shadow, exc: BaseException) -> None:
        try:
            self.drop_shadow(shadow)
        except FerryError as drop_exc:  # keep the first failure; say the shadow is left
            exc.add_note(f"the shadow database {shadow.name} could not be dropped: {drop_exc}")

    def swap(self, shadow: Shadow) -> None:
        """Replace the live database with the shadow (see ``_pg_swap``), then drop the old one."""
        db = shadow.ref
        live = live_name(db)
        old = derived_name(live, swapping.OLD_SUFFIX)
        with admin(db) as conn:
            swapping.require_own_shadow(conn, shadow.name, shadow.details.get("mark", ""), shadow.lock)
            props = database_props(conn, live)
            if props is None:
                swapping.rename_into_place(conn, shadow.name, live)
                shadow.release()
                return
            swapping.drop_leftover(conn, old, swapping.OLD_MARK)
            swapping.carry_over(conn, props, shadow.name)
            swapping.replace_live(
                conn, props, shadow.name, old, conn.info.server_version // 10000, shadow.details["mark"]
            )
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
        try:
            with admin(shadow.ref) as conn:
                if swapping.made_by(conn, shadow.name, shadow.details.get("mark")):
                    swapping.drop_database(conn, shadow.name)
        finally:
            shadow.release()

    # -- SQL for sanitisation ------------------------------------------------------------------

    def run_sql(self, db: DatabaseRef, sql_text: str, shadow: Shadow | None = None) -> None:
        """Run a script with psql in one transaction; the first error stops it and raises."""
        target = shadow.name if shadow else live_name(db)
        argv = [
            self.tools().psql.path,
            "--no-psqlrc",
            "--quiet",
            "--no-password",
            "--single-transaction",
            "--set=ON_ERROR_STOP=1",
            f"--dbname={conninfo(db, target)}",
            "--file=-",
        ]
        proc = spawn(argv, env=tool_env(db), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        _, err = proc.communicate(sql_text.encode())
        if proc.returncode != 0:
            raise process_failed(
                f"SQL script on {target}", argv, proc.returncode, err.decode("utf-8", "replace")
            )

    def query(self, db: DatabaseRef, sql_text: str, shadow: Shadow | None = None) -> list[tuple[object, ...]]:
        """Run one query and return its rows (none for a statement without results)."""
        target = shadow.name if shadow else None
        with contextlib.closing(connect(db, target)) as conn, sql_errors(f"query on {where(db, target)}"):
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


# -- backup helpers --------------------------------------------------------------------------------


def resolve_excluded(tables: Sequence[Table], names: Sequence[str]) -> set[Table]:
    """Tables named by ``exclude_tables`` (``table`` in any schema or ``schema.table``)."""
    out: set[Table] = set()
    unknown = []
    for name in names:
        hits = [t for t in tables if table_key(t) == name or ("." not in name and t[1] == name)]
        if not hits:
            unknown.append(name)
        out.update(hits)
    if unknown:
        raise ConfigError(
            f"exclude_tables names no table in the database: {', '.join(unknown)}",
            hint="use 'table' or 'schema.table' exactly as in the database; remove names of dropped tables",
        )
    return out


def dump_pattern(table: Table) -> str:
    """A pg_dump table pattern matching exactly this table (quoted, so no wildcards apply)."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in table)


class RowCounter:
    """Counts rows of ``tables`` on a background thread, inside the dump's snapshot transaction."""

    def __init__(self, conn: Conn, tables: list[Table]) -> None:
        self._conn = conn
        self._tables = tables
        self._counts: dict[str, int] = {}
        self._error: BaseException | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="dataferry-pg-count", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # Inside a savepoint: a failed count must not abort the transaction, which would void the
        # exported snapshot before pg_dump imported it and hide pg_dump's own, clearer error.
        try:
            self._conn.execute("SAVEPOINT dataferry_count")
            for table in self._tables:
                if self._stopping:
                    return
                self._counts[table_key(table)] = count_rows(self._conn, table)
        except BaseException as exc:  # handed to the reading thread by result()
            self._error = exc
            with contextlib.suppress(psycopg.Error):
                self._conn.execute("ROLLBACK TO SAVEPOINT dataferry_count")

    def result(self) -> dict[str, int]:
        """Wait for the counts; a failed count fails the backup."""
        self._thread.join()
        if self._error is not None:
            raise EngineError(f"counting rows in the dump's snapshot failed: {first_line(self._error)}")
        return dict(self._counts)

    def stop(self) -> None:
        """Abandon counting (the dump was abandoned): cancel the running query and wait."""
        self._stopping = True
        if self._thread.is_alive():
            with contextlib.suppress(psycopg.Error):
                self._conn.cancel_safe(timeout=10)
        self._thread.join(timeout=30)


class DumpStream(Reader):
    """pg_dump's output; at EOF it also waits for the row counts (and raises if either failed)."""

    def __init__(self, reader: ProcessReader, counter: RowCounter) -> None:
        self._reader = reader
        self._counter = counter
        self._counted = False
        self.row_counts: dict[str, int] = {}

    def read(self, n: int = -1) -> bytes:
        """Read from pg_dump; at EOF collect the row counts."""
        data = self._reader.read(n)
        if not data and n != 0 and not self._counted:
            self._counted = True
            self.row_counts.update(self._counter.result())
        return data

    def close(self) -> None:
        """Stop pg_dump if it still runs, and stop counting."""
        self._reader.close()
        self._counter.stop()


# -- restore helpers -------------------------------------------------------------------------------


def create_shadow(conn: Conn, name: str, live: str, owner: str | None, comment: str) -> None:
    """``CREATE DATABASE`` like the live one (encoding, locale, tablespace, owner), marked as ours."""
    props = database_props(conn, live)
    parts: list[sql.Composable] = [
        sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
    ]
    if props is not None:
        parts += _locale_options(props)
        if props.get("tablespace_name") not in (None, "pg_default"):
            parts.append(sql.SQL("TABLESPACE {}").format(sql.Identifier(props["tablespace_name"])))
    owner = owner or (props["owner"] if props else None)
    if owner:
        parts.append(sql.SQL("OWNER {}").format(sql.Identifier(owner)))
    with sql_errors(f"creating the shadow database {name}"):
        conn.execute(sql.SQL(" ").join(parts))
    try:
        with sql_errors(f"marking the shadow database {name}"):
            swapping.mark(conn, name, comment)
    except BaseException:
        swapping.drop_database(conn, name)
        raise


def _locale_options(props: dict[str, Any]) -> list[sql.Composable]:
    opts: list[sql.Composable] = [
        sql.SQL("ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
            sql.Literal(props["encoding_name"]),
            sql.Literal(props["datcollate"]),
            sql.Literal(props["datctype"]),
        )
    ]
    provider = props.get("datlocprovider")
    locale = props.get("daticulocale") or props.get("datlocale")
    if provider == "i" and locale:
        opts.append(sql.SQL("LOCALE_PROVIDER icu ICU_LOCALE {}").format(sql.Literal(locale)))
    elif provider == "b" and locale:
        opts.append(sql.SQL("LOCALE_PROVIDER builtin BUILTIN_LOCALE {}").format(sql.Literal(locale)))
    return opts


def pg_restore_argv(tools: PgTools, db: DatabaseRef, shadow: str, jobs: int) -> list[str]:
    """pg_restore into the shadow; every error is fatal; ownership from the dump or ``db.owner``."""
    argv = [tools.pg_restore.path, "--exit-on-error", "--no-password", f"--dbname={conninfo(db, shadow)}"]
    if db.owner:
        argv += ["--no-owner", f"--role={db.owner}"]
    if jobs > 1:
        argv.append(f"--jobs={jobs}")
    return argv


def restore_streamed(argv: list[str], src: BinaryIO, env: dict[str, str]) -> None:
    """Feed ``src`` to pg_restore's stdin until EOF (where the caller's checksum is verified)."""
    proc = spawn(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert proc.stderr is not None
    tail = StderrTail(proc.stderr)
    try:
        _feed(proc, src)
        code = proc.wait()
    except BaseException:
        _kill(proc)
        raise
    if code != 0:
        raise process_failed("pg_restore", argv, code, tail.text())
    while src.read(CHUNK):  # pg_restore may stop before EOF: read the rest so it is verified
        pass


def _feed(proc: subprocess.Popen[bytes], src: BinaryIO) -> None:
    stdin = proc.stdin
    assert stdin is not None
    try:
        while chunk := src.read(CHUNK):
            stdin.write(chunk)
    except BrokenPipeError:
        pass  # pg_restore stopped reading: its exit status says whether it failed
    finally:
        with contextlib.suppress(BrokenPipeError):
            stdin.close()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def restore_spooled(argv: list[str], src: BinaryIO, env: dict[str, str], options: RestoreOptions) -> None:
    """Spool ``src`` to a private temporary file, then ``pg_restore --jobs N`` it; always deleted."""
    fd, path = tempfile.mkstemp(prefix="dataferry-pg-", suffix=".dump", dir=options.spool_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            copy_to_file(src, out)
        proc = spawn([*argv, path], env=env, stdout=subprocess.DEVNULL)
        assert proc.stderr is not None
        tail = StderrTail(proc.stderr)
        try:
            code = proc.wait()
        except BaseException:
            _kill(proc)
            raise
        if code != 0:
            raise process_failed("pg_restore", [*argv, path], code, tail.text())
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def explain(exc: EngineError) -> EngineError:
    """Add a specific hint for the failures operators meet most (missing roles, privileges)."""
    tail = exc.stderr_tail
    if "role" in tail and "does not exist" in tail:
        exc.hint = (
            "the dump refers to a role that does not exist on this server: create it, or set "
            'owner = "ROLE" on this connection to give every object to one role'
        )
    elif "permission denied" in tail or "must be owner" in tail or "must be member" in tail:
        exc.hint = "the restoring role lacks a privilege: restore as the database owner or a superuser"
    return exc
