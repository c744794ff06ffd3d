"""PostgreSQL: ``pg_dump`` out, ``pg_restore`` into a shadow database, atomic rename swap.

Backup
    By default (``artifact_format = "per-table"``) ``pg_dump --format=directory --jobs N`` writes one
    file per table's data, each compressed with zstd and stored as soon as pg_dump finished it, the
    table of contents last (``directory``). With ``"single"``, ``pg_dump --format=custom
    --compress=0`` streams into dataferry, which compresses with zstd. The dump runs in a snapshot
    exported by a REPEATABLE READ transaction, and the same transaction counts every user table's
    rows while the dump streams, so the manifest's row counts are exact for that very dump.
    ``exclude_tables`` (``table`` in any schema, or ``schema.table``) keep their definition but
    leave their rows out (``--exclude-table-data``); a name that matches no table is a warning. A
    restore fills them with the target's own rows just before the swap (``keep``).

Restore
    A shadow database ``<db>-dataferry-shadow`` is created beside the live one (same encoding,
    locale and tablespace; owner preserved, or ``owner`` from the config), and the artifact
    streams into ``pg_restore --exit-on-error``: any error fails the restore and drops the shadow.
    With ``--jobs N`` a single-object artifact is first spooled to a 0600 temporary file
    (``settings.spool_dir``) for ``pg_restore --jobs N``; the file is deleted whatever happens. A
    per-table artifact is never spooled: its objects stream from the store into ``COPY`` with N
    workers between pg_restore's pre-data and post-data sections (``parallel``).

Ownership
    By default every object keeps the owner it had in the dump, so those roles must exist on the
    target server (a missing role fails the restore, and the hint says so). With ``owner = "ROLE"``
    in the connection, objects are created as that role (``--no-owner --role ROLE``) and it owns
    the database: GOV.UK's DB_OWNER rule, for targets whose roles differ from production's.

Swap (see ``swap``)
    New connections to the live database are blocked, and **sessions open on the live database
    are terminated** (``pg_terminate_backend``) immediately before both renames commit in one
    transaction; clients must reconnect, and get the restored data. Grants on the database,
    per-database settings and the connection limit are carried over. The old database is dropped.

Databases named ``<db>-dataferry-shadow`` and ``<db>-dataferry-old`` are dataferry's: a leftover
from an interrupted run is dropped by the next one, but only if its comment shows dataferry
made it. A live database left refusing connections by a dataferry that died mid-swap gets them
back at the next restore. The connecting role needs CREATEDB (or superuser) to restore, and PostgreSQL 13 or newer.
The password reaches tools only through ``PGPASSWORD`` and psycopg only as a keyword argument.

Modules: ``engine`` (the ``PostgresEngine``), ``backup`` (pg_dump and the row counts), ``directory``
(the per-table dump), ``restore`` (the shadow database and pg_restore), ``parallel`` (the per-table
restore), ``swap`` (the one destructive step), ``sql`` (connections
and catalogue queries), ``tools`` (finding client tools that match the server) and ``lock`` (the
restore lock).
"""

from __future__ import annotations

from dataferry.engines.postgresql.engine import PostgresEngine

__all__ = ["PostgresEngine"]
