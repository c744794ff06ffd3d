"""How many parallel restore workers a PostgreSQL server can take now (``LimitsJobs``).

Each worker is one connection. The server refuses connections beyond ``max_connections`` less
the slots it keeps for superusers (``superuser_reserved_connections``, and from PostgreSQL 16
``reserved_connections``), and a role with a ``CONNECTION LIMIT`` beyond that limit (superusers
are exempt from both). Counted are client backends only: autovacuum, WAL senders and
background workers have slots of their own. This connection, which asks, is not counted: it is
closed before the restore starts.

The database's own ``CONNECTION LIMIT`` (``datconnlimit``) does not bound a restore: the workers
connect to the shadow, which is created without one; the live database's limit is put on it at
the swap, after the load (``swap.carry_over``).
"""

from __future__ import annotations

from dataferry.config import DatabaseRef
from dataferry.engines.postgresql.sql import admin, sql_errors

#: Connections a restore holds beside its workers: the restore lock's, and pg_restore's leader
#: (or the engine's own connection that creates, checks and swaps the shadow).
MARGIN = 2

_LIMITS = """
SELECT current_setting('max_connections')::int,
       current_setting('superuser_reserved_connections')::int,
       coalesce(current_setting('reserved_connections', true)::int, 0),
       (SELECT count(*) FROM pg_stat_activity
        WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()),
       r.rolsuper,
       r.rolconnlimit,
       (SELECT count(*) FROM pg_stat_activity
        WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND usesysid = r.oid)
FROM pg_roles r WHERE r.rolname = current_user
"""


def max_jobs(db: DatabaseRef) -> int:
    """Connections the server and ``db``'s role can still give, less ``MARGIN`` (may be 0 or
    less when the server is full: the caller restores with one worker, or fails to connect)."""
    with admin(db) as conn, sql_errors("reading the server's connection limits"):
        row = conn.execute(_LIMITS).fetchone()
    if row is None:  # current_user is always a role; kept for the type checker
        return 1
    max_connections, su_reserved, reserved, clients, superuser, role_limit, role_clients = row
    free = free_connections(
        int(max_connections),
        int(su_reserved),
        int(reserved),
        int(clients),
        bool(superuser),
        int(role_limit),
        int(role_clients),
    )
    return free - MARGIN


def free_connections(
    max_connections: int,
    superuser_reserved: int,
    reserved: int,
    clients: int,
    superuser: bool,
    role_limit: int,
    role_clients: int,
) -> int:
    """The connections a role can still open, from the server's settings and who is connected."""
    if superuser:
        return max_connections - clients
    free = max_connections - superuser_reserved - reserved - clients
    if role_limit >= 0:
        free = min(free, role_limit - role_clients)
    return free
