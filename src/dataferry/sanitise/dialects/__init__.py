"""SQL building blocks per engine, so rules compile to set-based SQL (one UPDATE per table).

Each dialect computes the pseudonyms of ``fakes.py`` exactly, on the server:

- PostgreSQL (11+): ``sha256(convert_to(salt || value, 'UTF8'))``, built in, no extension needed.
- MySQL/MariaDB: ``SHA2(CONCAT(salt, CONVERT(value USING utf8mb4)), 256)``.
- SQLite has no sha256 or REGEXP; as the embedded engine it gets deterministic Python functions
  registered on its connections (``engines.sqlite.register_sql_function``), still called set-based.

The salt never appears in a rule's statement: a prelude stores it in the session (PostgreSQL custom
setting, MariaDB user variable, SQLite temp table) and the statements read it from there, so a failing
statement echoed in an error message or a server log does not carry it.
"""

from __future__ import annotations

from dataferry.errors import ConfigError
from dataferry.sanitise.dialects.base import Dialect, Literal
from dataferry.sanitise.dialects.mysql import MySQL
from dataferry.sanitise.dialects.postgresql import Postgres
from dataferry.sanitise.dialects.sqlite import (
    SQLITE_DIGEST,
    SQLITE_HEX_INT,
    SQLite,
    register_sqlite_functions,
)

__all__ = [
    "SQLITE_DIGEST",
    "SQLITE_HEX_INT",
    "Dialect",
    "Literal",
    "MySQL",
    "Postgres",
    "SQLite",
    "dialect_for",
    "register_sqlite_functions",
]

_DIALECTS: dict[str, Dialect] = {d.name: d for d in (Postgres(), MySQL(), SQLite())}


def dialect_for(engine: str) -> Dialect:
    """The dialect of an engine, or ``ConfigError`` for engines that cannot be sanitised with SQL."""
    try:
        return _DIALECTS[engine]
    except KeyError:
        raise ConfigError(
            f"the {engine} engine has no SQL sanitisation",
            hint=f"sanitisation profiles work with {', '.join(sorted(_DIALECTS))}",
        ) from None
