"""What the processes dataferry starts inherit from its environment: an allow-list.

dataferry's environment holds every configured database's password and the stores' keys; a tool
(pg_dump, mariadb, a hook) gets only what programs need to run and the one secret it needs, passed
explicitly by its caller.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: What a child process inherits from dataferry's environment: what tools need to run (paths,
#: locale, time zone, temp dir) and the database clients' own non-secret settings. Nothing else:
#: dataferry's environment holds every database's password and the store's keys, and a tool gets
#: only the one secret it needs, passed explicitly (``PGPASSWORD``, a 0600 option file).
INHERITED = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TERM",
        "LD_LIBRARY_PATH",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    }
)
INHERITED_PREFIXES = ("LC_", "PG")
#: Never inherited, even where a prefix matches: the clients read a password from these.
NEVER_INHERITED = frozenset({"PGPASSWORD", "MYSQL_PWD"})


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process: the allow-listed part of ours, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in NEVER_INHERITED and (k in INHERITED or k.startswith(INHERITED_PREFIXES))
    }
    env.update(extra or {})
    return env
