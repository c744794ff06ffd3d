"""How many parallel restore workers a MySQL or MariaDB server can take now (``LimitsJobs``).

Each worker is one ``mariadb``/``mysql`` client, one connection. The server refuses connections
beyond ``max_connections`` (``Threads_connected`` are in use), and an account beyond its
``max_user_connections``: the session value of that variable is the account's own
``MAX_USER_CONNECTIONS`` where one is set, else the global value (0: no limit). The connection
that asks is not counted: it is closed before the restore starts.
"""

from __future__ import annotations

from typing import Any

from dataferry.config import DatabaseRef
from dataferry.engines.mysql.conn import connection, rows

#: Connections a restore holds beside its workers: the restore lock's (``GET_LOCK``), and the
#: engine's own, which creates the shadow, adds its keys and swaps it.
MARGIN = 2


def max_jobs(db: DatabaseRef) -> int:
    """Connections the server and ``db``'s account can still give, less ``MARGIN`` (0 or less
    when the server is full: the caller restores with one worker, or fails to connect)."""
    with connection(db) as conn:
        max_connections, per_user = rows(
            conn, "SELECT @@GLOBAL.max_connections, @@SESSION.max_user_connections"
        )[0]
        connected = _status(conn, "Threads_connected") - 1  # less this connection
        mine = int(
            rows(
                conn,
                # Without the PROCESS privilege the list shows only this account's threads anyway.
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                "WHERE USER = SUBSTRING_INDEX(CURRENT_USER(), '@', 1)",
            )[0][0]
        )
    return free_connections(int(max_connections), connected, int(per_user), mine - 1) - MARGIN


def free_connections(max_connections: int, connected: int, per_user: int, user_connected: int) -> int:
    """The connections an account can still open (``per_user`` 0 or less: no per-account limit)."""
    free = max_connections - connected
    if per_user > 0:
        free = min(free, per_user - user_connected)
    return free


def _status(conn: Any, name: str) -> int:
    found = rows(conn, "SHOW GLOBAL STATUS LIKE %s", (name,))
    return int(found[0][1]) if found else 0
