"""dataferry: keep non-production environments supplied with fresh, sanitised copies of production data.

The public Python API. Every function enforces the same invariants as the command line (they are
what the command line calls)::

    import dataferry

    cfg = dataferry.load_config("dataferry.toml")
    dataferry.backup(cfg, "publishing-api", "production")
    plan = dataferry.plan_restore(cfg, dataferry.RestoreRequest("publishing-api", "staging", "production"))
    dataferry.restore(plan)            # shadow, verify, sanitise where staging requires it, swap

Names load on first use, so ``import dataferry`` stays cheap. ``docs/architecture.md`` maps the layers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dataferry._version import __version__

#: Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "BackupResult": "dataferry.ops",
    "ConfigError": "dataferry.errors",
    "EngineError": "dataferry.errors",
    "FerryError": "dataferry.errors",
    "Held": "dataferry.errors",
    "LockBusy": "dataferry.errors",
    "NotFound": "dataferry.errors",
    "NotReady": "dataferry.errors",
    "Refused": "dataferry.errors",
    "RestorePlan": "dataferry.ops",
    "RestoreRequest": "dataferry.ops",
    "RestoreResult": "dataferry.ops",
    "SanitisationFailed": "dataferry.errors",
    "StoreError": "dataferry.errors",
    "VerificationFailed": "dataferry.errors",
    "backup": "dataferry.ops",
    "check": "dataferry.ops",
    "cleanup": "dataferry.ops",
    "collect_status": "dataferry.jobs.status",
    "list_artifacts": "dataferry.ops",
    "load_config": "dataferry.config",
    "plan_restore": "dataferry.ops",
    "restore": "dataferry.ops",
    "run_job": "dataferry.jobs.runner",
    "verify": "dataferry.ops",
}

__all__ = [
    "BackupResult",
    "ConfigError",
    "EngineError",
    "FerryError",
    "Held",
    "LockBusy",
    "NotFound",
    "NotReady",
    "Refused",
    "RestorePlan",
    "RestoreRequest",
    "RestoreResult",
    "SanitisationFailed",
    "StoreError",
    "VerificationFailed",
    "__version__",
    "backup",
    "check",
    "cleanup",
    "collect_status",
    "list_artifacts",
    "load_config",
    "plan_restore",
    "restore",
    "run_job",
    "verify",
]

if TYPE_CHECKING:
    from dataferry.config import load_config
    from dataferry.errors import (
        ConfigError,
        EngineError,
        FerryError,
        Held,
        LockBusy,
        NotFound,
        NotReady,
        Refused,
        SanitisationFailed,
        StoreError,
        VerificationFailed,
    )
    from dataferry.jobs.runner import run_job
    from dataferry.jobs.status import collect_status
    from dataferry.ops import (
        BackupResult,
        RestorePlan,
        RestoreRequest,
        RestoreResult,
        backup,
        check,
        cleanup,
        list_artifacts,
        plan_restore,
        restore,
        verify,
    )


def __getattr__(name: str) -> Any:
    """Load a public name from its module the first time it is used (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dataferry' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
