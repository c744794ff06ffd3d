"""The MySQL/MariaDB restore lock: ``GET_LOCK`` held by a connection of its own.

The server releases a user lock when its connection ends, so a killed restore never leaves it
behind. A refused restore names the holder by its connection id, account and client address, as
far as ``information_schema.PROCESSLIST`` shows them to the refused role.
"""

from __future__ import annotations

import contextlib
from typing import Any

from dataferry.config import DatabaseRef
from dataferry.engines._locks import busy, lock_key
from dataferry.engines.mysql.conn import connect, rows


class MySqlRestoreLock:
    """The restore lock of ``database``, held until ``release``."""

    def __init__(self, db: DatabaseRef, database: str) -> None:
        self.database = database
        self._name = lock_key(database)
        self._conn: Any = connect(db)
        try:
            self._take(db)
        except BaseException:
            self.release()
            raise

    def _take(self, db: DatabaseRef) -> None:
        got = rows(self._conn, "SELECT GET_LOCK(%s, 0)", (self._name,))
        if got and got[0][0] == 1:
            return
        raise busy(f"{self.database} ({db.environment})", self._owner())

    def _owner(self) -> str:
        holder = rows(self._conn, "SELECT IS_USED_LOCK(%s)", (self._name,))
        conn_id = holder[0][0] if holder else None
        if conn_id is None:
            return "its holder has just released it"
        found = rows(
            self._conn,
            "SELECT USER, HOST, TIME FROM information_schema.PROCESSLIST WHERE ID = %s",
            (conn_id,),
        )
        if not found:
            return f"held by server connection {conn_id}"
        user, host, seconds = found[0]
        return f"held by server connection {conn_id} of {user}@{host}, for {seconds}s"

    def release(self) -> None:
        """Close the holding connection, which releases the lock; idempotent."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
