"""The restore side: the shadow database, and pg_restore fed by a stream or a spooled file."""

from __future__ import annotations

import contextlib
import os
import subprocess
from typing import Any, BinaryIO

from psycopg import sql

from dataferry.config import DatabaseRef
from dataferry.engines import ObjectSource, RestoreOptions
from dataferry.engines.postgresql import parallel
from dataferry.engines.postgresql import swap as swapping
from dataferry.engines.postgresql.sql import Conn, conninfo, database_props, sql_errors, tool_env
from dataferry.engines.postgresql.tools import PgTools, run_tool
from dataferry.errors import EngineError
from dataferry.private import disk_full_is_clear, private_dir
from dataferry.streams import CHUNK, StderrTail, copy_to_file, process_failed, spawn


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
    """Spool ``src`` to a file in a private run directory (0700, swept by the next run if this one
    is killed), then ``pg_restore --jobs N`` it; the directory is always removed."""
    with private_dir(options.spool_dir) as directory:
        path = str(directory / "restore.dump")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out, disk_full_is_clear(directory):
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


def restore_objects(
    tools: PgTools, db: DatabaseRef, shadow: str, source: ObjectSource, options: RestoreOptions
) -> None:
    """A ``pg_directory`` artifact into ``shadow`` with no local spool (``parallel``): pre-data, the
    rest of the data, the tables' data streamed by ``options.jobs`` workers (each building a
    table's own indexes once it is loaded), then the rest of post-data."""
    env = tool_env(db)
    base = pg_restore_argv(tools, db, shadow, 1)
    with private_dir(options.spool_dir) as directory:
        toc = parallel.read_toc(tools.pg_restore.path, source, directory, env)
        run_tool(parallel.section_argv(base, "pre-data", directory), env)
        parallel.restore_other_data(base, toc, env)
        builds = parallel.OwnBuilds(base, toc, env)
        parallel.load_tables(db, shadow, source, toc, options.jobs, builds)
        rest = toc.post.remaining(builds.built)
        if rest:
            post = pg_restore_argv(tools, db, shadow, options.jobs)
            run_tool(parallel.listed_argv(post, "post-data", directory, "post-data", rest), env)


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
