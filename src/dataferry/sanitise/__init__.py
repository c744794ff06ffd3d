"""Sanitisation: production data reaches less-trusted environments only after personal and unpublished
data has been removed *and that removal has been checked*.

A database's profile (``[databases.X] sanitise = "profile.toml"``) holds SQL scripts, declarative
column and row rules that compile to set-based SQL per engine, strict schema coverage, and checks
(queries that must return nothing, a scan of every text column for personal data). It runs:

- on the shadow during a restore, before the swap (``shadow_sanitiser``), so unsanitised data is
  never live in the target;
- on a scratch copy for a sanitised backup (``sanitise_shadow`` on the copy), so the source is never
  modified;
- read-only, as checks on a live database that should already be sanitised (``check_live``).

This package is mechanism only: *when* sanitisation is required (a target or store that
``requires_sanitised``, ``--sanitise``, a ``sanitise`` step) is decided in one place, ``ops``, for
the CLI, jobs and Python callers alike. It never imports ``ops``.

The result (profile hash, rules applied, check results: names and counts, never values) goes into the
manifest; a store that ``requires_sanitised`` accepts nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from dataferry.artifacts import Sanitisation
from dataferry.config import Config, DatabaseRef, connection_ref, database_ref
from dataferry.engines import Engine, Shadow, get_engine
from dataferry.errors import ConfigError, NotReady
from dataferry.progress import Reporter
from dataferry.sanitise import dialects, execution, forms
from dataferry.sanitise.execution import ChecksFailed, DryRun, target
from dataferry.sanitise.profile import Profile, load

__all__ = [
    "ChecksFailed",
    "DryRun",
    "Profile",
    "check_live",
    "load_salt",
    "plan_live",
    "profile_for",
    "require_profile",
    "sanitise_shadow",
    "scratch_ref",
    "shadow_sanitiser",
]

#: Shorter salts are refused: the salt is what keeps pseudonyms from being reversed by guessing.
MIN_SALT_CHARS = 16

dialects.register_sqlite_functions()


def profile_for(cfg: Config, database: str) -> Profile | None:
    """The database's profile, loaded and validated, or None when it has none."""
    path = cfg.database(database).sanitise
    return load(cfg.resolve_path(path)) if path else None


def require_profile(cfg: Config, database: str, why: str) -> Profile:
    """The database's profile, or ``ConfigError`` saying why one is needed."""
    profile = profile_for(cfg, database)
    if profile is None:
        raise ConfigError(
            f"{database} has no sanitisation profile, and {why}",
            hint=f'add sanitise = "path/to/profile.toml" to [databases.{database}] (docs/sanitisation.md)',
        )
    return profile


def load_salt(profile: Profile) -> str | None:
    """The salt from the environment variable the profile names; read before anything starts."""
    if profile.salt_env is None:
        return None
    value = os.environ.get(profile.salt_env)
    if value is None:
        raise NotReady(
            f"environment variable {profile.salt_env} is not set (salt of sanitisation profile {profile.name})",
            hint=f"export {profile.salt_env}: the same secret every run, so pseudonyms stay consistent",
        )
    if len(value) < MIN_SALT_CHARS:
        raise NotReady(
            f"the salt in {profile.salt_env} is shorter than {MIN_SALT_CHARS} characters",
            hint="use a long random secret, e.g. the output of 'openssl rand -hex 32'",
        )
    return value


def shadow_sanitiser(
    profile: Profile, salt: str | None, reporter: Reporter, jobs: int = 1
) -> Callable[[Engine, Shadow], Sanitisation]:
    """The step ``ops.restore`` runs on the shadow before the swap: scripts, rules, coverage and
    checks. Returns the passed ``Sanitisation`` or raises ``SanitisationFailed`` (exit 8).

    The profile and the salt are loaded by the caller before the restore starts (check before you
    destroy). ``jobs``: the restore's workers, the connections the scan may use at once.
    """

    def before_swap(engine: Engine, shadow: Shadow) -> Sanitisation:
        return sanitise_shadow(engine, shadow, profile, salt, reporter, jobs)

    return before_swap


def sanitise_shadow(
    engine: Engine, shadow: Shadow, profile: Profile, salt: str | None, reporter: Reporter, jobs: int = 1
) -> Sanitisation:
    """Sanitise a shadow (or scratch copy) in place and run the profile's gate on it, its scan on
    up to ``jobs`` connections."""
    secrets = (salt,) if salt else ()
    return execution.sanitise(target(engine, shadow.ref, shadow, secrets, jobs), profile, salt, reporter)


def check_live(cfg: Config, database: str, environment: str, reporter: Reporter) -> Sanitisation:
    """Run only the checks (read-only) on the live database; raise ``SanitisationFailed`` on a finding."""
    profile = require_profile(cfg, database, f"{environment} holds only sanitised data")
    engine = get_engine(cfg.database(database).engine)
    ref = database_ref(cfg, database, environment)
    reporter.info(f"check sanitisation of {database} in {environment} ({profile.name})")
    t = target(engine, ref, None)
    t.known |= execution.profile_names(profile)
    masked = forms.results(t, profile)  # masked means masked: the scan alone misses real names
    try:
        result = execution.gate(t, profile, [], reporter)
    except ChecksFailed as exc:
        raise _with_forms(exc, masked) from None
    if not all(r["passed"] for r in masked):
        raise _with_forms(ChecksFailed(f"sanitisation checks failed on {t.where}", report=result), masked)
    return result.model_copy(update={"mode": "checked live", "checks": result.checks + masked})


def _with_forms(exc: ChecksFailed, masked: list[dict[str, Any]]) -> ChecksFailed:
    """``exc`` with the masked-form results added to its report and its message."""
    bad = [f"{r['name']}: {r['detail']}" for r in masked if not r["passed"]]
    message = exc.message + ("; values not of their rule's form: " + "; ".join(bad) if bad else "")
    report = exc.report.model_copy(
        update={"checks": exc.report.checks + masked, "passed": False, "mode": "checked live"}
    )
    return ChecksFailed(
        message,
        report=report,
        hint="nothing was published: this data is not sanitised as the profile says; publish it "
        "through a restore with a sanitise step or 'backup --sanitise'",
    )


def plan_live(cfg: Config, database: str, environment: str, reporter: Reporter) -> DryRun:
    """What the profile would touch in ``environment``'s live database (counts), changing nothing."""
    profile = require_profile(cfg, database, "a dry run needs one")
    engine = get_engine(cfg.database(database).engine)
    ref = database_ref(cfg, database, environment)
    return execution.dry_run(target(engine, ref, None), profile, reporter)


def scratch_ref(cfg: Config, database: str) -> DatabaseRef:
    """The scratch database on the sanitising server (``[databases.X] scratch``)."""
    conn = cfg.database(database).scratch
    if conn is None:
        raise ConfigError(
            f"{database} has no scratch database for sanitised backups",
            hint=f'add [databases.{database}] scratch = {{ url = "..." }} on a sanitising server',
        )
    return connection_ref(cfg, database, "scratch", conn)
