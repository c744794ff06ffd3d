"""The PostgreSQL restore lock: a session-level advisory lock on the maintenance database.

The key is derived from the live database's name, so every restore of that database on that server
contends for it, whatever machine or config started it. The holding connection is named after its
holder (``application_name``), which is how a refused restore can say who holds the lock. The
server releases the lock when that connection ends, so a killed restore never leaves it behind.
"""

from __future__ import annotations

import contextlib
import hashlib

import psycopg

from dataferry.config import DatabaseRef
from dataferry.engines._locks import busy, holder_label, lock_key
from dataferry.engines.postgresql.sql import Conn, open_admin, sql_errors

_OWNER = """
SELECT a.application_name, a.usename, a.pid, a.backend_start
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database
      WHERE datname = current_database())
  AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid AND l.objsubid = 1
"""


def advisory_key(live: str) -> int:
    """A signed 64-bit advisory lock key for ``live``."""
    digest = hashlib.sha256(lock_key(live).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PgRestoreLock:
    """The advisory lock on ``live``, held by its own connection until ``release``."""

    def __init__(self, db: DatabaseRef, live: str) -> None:
        self.live = live
        self._key = advisory_key(live)
        self._conn: Conn | None = open_admin(db)
        try:
            self._take(db)
        except BaseException:
            self.release()
            raise

    def _take(self, db: DatabaseRef) -> None:
        conn = self._conn
        assert conn is not None
        with sql_errors(f"taking the restore lock of {self.live}"):
            conn.execute("SELECT set_config('application_name', %s, false)", (holder_label(),))
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
            if row and row[0]:
                return
            owner = self._owner(conn)
        raise busy(f"{self.live} ({db.environment})", owner)

    def _owner(self, conn: Conn) -> str:
        unsigned = self._key & 0xFFFFFFFFFFFFFFFF
        row = conn.execute(_OWNER, (unsigned >> 32, unsigned & 0xFFFFFFFF)).fetchone()
        if row is None:
            return "its holder has just released it"
        name, user, pid, _started = row
        who = name if name and name.startswith("dataferry") else f"server process {pid}"
        return f"held by {who}, role {user}" if user else f"held by {who}"

    def release(self) -> None:
        """Close the holding connection, which releases the lock; idempotent."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()
