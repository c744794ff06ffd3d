"""The operations behind the commands, with every policy rule written once: backup, plan_restore,
restore, list, verify, cleanup, check.

The CLI, the job runner, the GOV.UK drop-in and Python callers all come through here, so the
invariants hold whoever calls (``docs/architecture.md`` maps each to its one place):

1. check before you destroy: ``plan_restore`` makes every check (artifact, engine, tools, free
   space, sanitisation profile and salt) before ``restore`` changes anything;
5. sanitised means verified: ``rules.sanitisation_needed`` decides, for a restore, whether the
   shadow must be sanitised; ``rules.refuse_unsanitised`` is the one gate in front of a store that
   requires sanitised artifacts; ``rules.refuse_unsanitised_source`` keeps such a store's
   unsanitised artifact from ever being restored;
6. production is protected: ``rules.refuse_protected``.

Modules: ``rules`` (the policy), ``backup_flow`` (``backup``), ``restore_flow`` (``plan_restore``, ``restore``),
``inspect`` (list, verify, check, cleanup), ``keys`` (age recipients and identities), ``pull`` (a
restore from a bare store URL), ``prune`` (retention) and ``leases`` (what running restores read). The mechanism (streams, shadow, checksums, row counts,
swap) is ``dataferry.pipeline``; how a store names and commits artifacts is its ``layouts`` entry.
"""

from __future__ import annotations

from dataferry.layouts import store_for
from dataferry.ops.backup_flow import BackupResult, Transform, backup
from dataferry.ops.inspect import (
    CheckReport,
    CleanupReport,
    check,
    cleanup,
    latest_artifact,
    list_artifacts,
    verify,
)
from dataferry.ops.restore_flow import RestorePlan, RestoreRequest, RestoreResult, plan_restore, restore
from dataferry.ops.rules import engine_for
from dataferry.pipeline import BeforeSwap, require_ready

__all__ = [
    "BackupResult",
    "BeforeSwap",
    "CheckReport",
    "CleanupReport",
    "RestorePlan",
    "RestoreRequest",
    "RestoreResult",
    "Transform",
    "backup",
    "check",
    "cleanup",
    "engine_for",
    "latest_artifact",
    "list_artifacts",
    "plan_restore",
    "require_ready",
    "restore",
    "store_for",
    "verify",
]
