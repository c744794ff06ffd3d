"""MySQL and MariaDB: ``mariadb-dump`` backups; restores into a shadow database swapped in by one
``RENAME TABLE``.

Backup
    ``mariadb-dump`` (or ``mysqldump``, whichever family matches the server) with
    ``--single-transaction --quick --routines --triggers --events --hex-blob`` and without
    ``--databases``, so the dump loads into any database name. dataferry prepends one comment line
    with the source database's character set and collation, and counts the rows of each table
    while the dump streams past. ``exclude_tables`` are left out entirely (``--ignore-table``,
    as GOV.UK's script did); a name the database does not have is a warning. A restore then keeps
    the target's own excluded tables (step 2).

Restore
    1. The dump is loaded into a new shadow database ``<db>_dfshadow`` beside the live one,
       by one streamed client (``--jobs 1``, no local disk) or by spooled chunks loaded by N
       clients at once (``--jobs N``); unique and foreign-key checks are off during the load.
       Events are created DISABLED in the shadow so the scheduler does not run them on a copy.
    2. ``swap`` moves every live table to ``<db>_dfold`` and every shadow table into the
       live schema in ONE ``RENAME TABLE`` statement: readers see all old or all new tables, never
       a missing or half-filled one. Live tables that are not in the artifact move out too: a
       restore replaces the whole database, except the live tables named in ``exclude_tables``
       that the artifact left out: they stay where they are, with their rows and triggers, and
       their foreign keys are pointed at the restored parents again (without checking the rows).
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

Modules: ``engine`` (the ``MySQLEngine``), ``backup`` (the dump tool and the counting stream),
``dumpfile`` (dump text as classified lines), ``objects`` (triggers, views, routines and events
kept for the swap), ``load`` (streamed and parallel loads), ``tables`` (deferred keys, LOAD DATA),
``schemas`` (the shadow and old databases), ``swap`` (the one destructive step), ``conn``
(connections, option files, tools) and ``lock`` (the restore lock).
"""

from __future__ import annotations

from dataferry.engines.mysql.engine import MySQLEngine

__all__ = ["MySQLEngine"]
