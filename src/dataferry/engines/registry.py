"""The one list of engine names: name -> ``module:Class``. Configuration checks names against it
(``config.models``) and ``engines.get_engine`` loads from it; it imports nothing of dataferry, so
both can use it without an import cycle."""

from __future__ import annotations

__all__ = ["engine_names", "register"]

_REGISTRY: dict[str, str] = {
    "postgresql": "dataferry.engines.postgresql.engine:PostgresEngine",
    "mysql": "dataferry.engines.mysql.engine:MySQLEngine",
    "sqlite": "dataferry.engines.sqlite:SQLiteEngine",
}


def register(name: str, target: str) -> None:
    """Register an engine class by ``module:Class`` path (third-party engines use this too)."""
    _REGISTRY[name] = target


def engine_names() -> list[str]:
    """Names of the engines this dataferry can use."""
    return sorted(_REGISTRY)
