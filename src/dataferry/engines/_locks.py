"""Restore locks: one restore at a time per target database, whoever starts it.

Two restores of one database at once used to destroy it: the second dropped the first one's
verified shadow and created an empty one under the same name, which the first then swapped in.
So every engine's ``restore_shadow`` takes a lock on the *target* before it touches anything
(even before dropping a leftover shadow), and the shadow holds it until ``swap`` succeeded or
``drop_shadow`` removed it. The lock lives where the target lives, so every machine and every
config that can reach the database sees it:

- PostgreSQL: a session-level advisory lock on the maintenance database;
- MySQL and MariaDB: ``GET_LOCK`` on a server connection;
- SQLite: ``flock`` on ``<file>.dataferry-lock`` beside the database.

Each is released by the server or the kernel when its holder dies (connection closed, process
gone), so a killed restore never leaves a lock behind. A busy lock is ``LockBusy`` (exit 6) naming
the holder as precisely as the server can tell.
"""

from __future__ import annotations

import hashlib
import os
import socket
from datetime import UTC, datetime
from typing import Protocol

from dataferry.errors import LockBusy


class RestoreLock(Protocol):
    """A held restore lock; ``release`` is idempotent."""

    def release(self) -> None:
        """Give the lock up."""
        ...


def holder_label() -> str:
    """Who takes a lock: ``dataferry pid N on HOST since TIME`` (kept short: PostgreSQL shows 63
    characters of an application name)."""
    host = socket.gethostname().split(".")[0][:20]
    since = datetime.now(UTC).strftime("%H:%M:%SZ")
    return f"dataferry pid {os.getpid()} on {host} since {since}"


def lock_key(database: str) -> str:
    """A stable lock name for a target database, at most 64 characters (MySQL's limit)."""
    name = f"dataferry-restore:{database}"
    if len(name) <= 64:
        return name
    return f"dataferry-restore:{hashlib.sha256(database.encode()).hexdigest()[:40]}"


def busy(target: str, owner: str) -> LockBusy:
    """The refusal when another restore holds ``target``'s lock."""
    return LockBusy(
        f"another restore of {target} is in progress ({owner}); nothing was changed",
        hint="wait for it to finish and run again; two restores of one database never run at once",
    )
