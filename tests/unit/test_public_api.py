"""The public Python API is ``dataferry.__all__``: pinned here, so a change to it is deliberate."""

from __future__ import annotations

import subprocess
import sys

import dataferry

PINNED = [
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


def test_all_is_sorted_and_pinned() -> None:
    assert dataferry.__all__ == sorted(dataferry.__all__)
    assert dataferry.__all__ == PINNED


def test_every_public_name_resolves_to_what_the_library_uses() -> None:
    from dataferry import errors, ops
    from dataferry.jobs import runner, status

    for name in dataferry.__all__:
        assert getattr(dataferry, name) is not None, name
    assert dataferry.backup is ops.backup and dataferry.restore is ops.restore
    assert dataferry.plan_restore is ops.plan_restore and dataferry.RestorePlan is ops.RestorePlan
    assert dataferry.run_job is runner.run_job and dataferry.collect_status is status.collect_status
    assert dataferry.LockBusy is errors.LockBusy
    assert set(dir(dataferry)) >= set(PINNED)


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        dataferry.no_such_thing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_importing_dataferry_loads_nothing_heavy() -> None:
    """``import dataferry`` is cheap: the names load when first used."""
    code = "import sys, dataferry; print(sorted(m for m in sys.modules if m.startswith('dataferry')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['dataferry', 'dataferry._version']"
