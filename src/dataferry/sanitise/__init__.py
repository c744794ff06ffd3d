"""Sanitisation: production data reaches less-trusted environments only after personal and unpublished
data has been removed *and that removal has been checked*.

A database's profile (``[databases.X] sanitise = "profile.toml"``) holds SQL scripts, declarative
column and row rules that compile to set-based SQL per engine, strict schema coverage, and checks
(queries that must return nothing, a scan of every text column for personal data). It runs:

- on the shadow during a restore, before the swap (``make_before_swap``), so unsanitised data is
  never live in the target;
- on a scratch copy for a sanitised backup (``sanitised_backup``), so the source is never modified;
- read-only, as checks on a live database that should already be sanitised (``check_live``).

The result (profile hash, rules applied, check results: names and counts, never values) goes into the
manifest; a store that ``requires_sanitised`` accepts nothing else (``ops.backup``/``ops.plan_restore``).
"""

from __future__ import annotations

import dataclasses
import os

from dataferry import ops
from dataferry.artifacts import Sanitisation
from dataferry.config import Config, DatabaseRef, connection_ref, database_ref
from dataferry.engines import Dump, Engine, RestoreOptions, Shadow
from dataferry.errors import ConfigError, NotReady, VerificationFailed
from dataferry.progress import NullReporter, Reporter
from dataferry.sanitise import dialects, runner
from dataferry.sanitise.profile import Profile, load
from dataferry.sanitise.runner import ChecksFailed, DryRun, target
from dataferry.streams import CHUNK

__all__ = [
    "ChecksFailed",
    "DryRun",
    "Profile",
    "backup_for",
    "check_live",
    "make_before_swap",
    "plan_live",
    "profile_for",
    "restore_hook",
    "sanitised_backup",
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


def make_before_swap(cfg: Config, database: str, reporter: Reporter) -> ops.BeforeSwap:
    """The hook ``ops.restore`` calls on the shadow: scripts, rules, coverage and checks.

    The profile and the salt are loaded now, before the restore starts (check before you destroy).
    The hook returns the passed ``Sanitisation`` or raises ``SanitisationFailed`` (exit 8).
    """
    profile = require_profile(cfg, database, "sanitising was asked for")
    salt = load_salt(profile)

    def before_swap(engine: Engine, shadow: Shadow) -> Sanitisation:
        secrets = (salt,) if salt else ()
        return runner.sanitise(target(engine, shadow.ref, shadow, secrets), profile, salt, reporter)

    return before_swap


def check_live(cfg: Config, database: str, environment: str, reporter: Reporter) -> Sanitisation:
    """Run only the checks (read-only) on the live database; raise ``SanitisationFailed`` on a finding."""
    profile = require_profile(cfg, database, f"{environment} holds only sanitised data")
    engine = ops.engine_for(cfg, database)
    ref = database_ref(cfg, database, environment)
    reporter.info(f"check sanitisation of {database} in {environment} ({profile.name})")
    result = runner.gate(target(engine, ref, None), profile, [], reporter)
    return result.model_copy(update={"mode": "checked live"})


def plan_live(cfg: Config, database: str, environment: str, reporter: Reporter) -> DryRun:
    """What the profile would touch in ``environment``'s live database (counts), changing nothing."""
    profile = require_profile(cfg, database, "a dry run needs one")
    engine = ops.engine_for(cfg, database)
    ref = database_ref(cfg, database, environment)
    return runner.dry_run(target(engine, ref, None), profile, reporter)


def scratch_ref(cfg: Config, database: str) -> DatabaseRef:
    """The scratch database on the sanitising server (``[databases.X] scratch``)."""
    conn = cfg.database(database).scratch
    if conn is None:
        raise ConfigError(
            f"{database} has no scratch database for sanitised backups",
            hint=f'add [databases.{database}] scratch = {{ url = "..." }} on a sanitising server',
        )
    return connection_ref(cfg, database, "scratch", conn)


def sanitised_backup(cfg: Config, database: str, environment: str, reporter: Reporter) -> ops.BackupResult:
    """Dump the source, restore into a shadow of the scratch database, sanitise and check it there,
    swap it in as the scratch database, then back that up into ``environment``'s store.

    The source is only read. A failure before the swap drops the shadow and publishes nothing.
    """
    profile = require_profile(cfg, database, "--sanitise was asked for")
    salt = load_salt(profile)
    engine = ops.engine_for(cfg, database)
    source = database_ref(cfg, database, environment)
    scratch = scratch_ref(cfg, database)
    target(engine, scratch, None)  # refuses engines without SQL before anything is dumped
    ops.require_ready(engine.check(source), source)
    ops.require_ready(engine.check(scratch), scratch)
    reporter.info(f"sanitised backup of {database} ({environment}) through scratch {scratch.url}")
    shadow: Shadow | None = None
    try:
        with engine.dump(source) as dump:
            shadow = engine.restore_shadow(scratch, dump.stream, RestoreOptions())
            _drain(dump)
            sanitisation = _sanitise_scratch(engine, scratch, shadow, dump, profile, salt, reporter)
    except BaseException:
        if shadow is not None:  # restore_shadow drops its own shadow when it fails
            engine.drop_shadow(shadow)
        raise
    engine.swap(shadow)
    return ops.backup(
        cfg, database, environment, reporter=reporter, sanitisation=sanitisation, engine=engine, ref=scratch
    )


def _drain(dump: Dump) -> None:
    """Read the dump to its end, so a dump that failed late raises here, before anything is used."""
    while dump.stream.read(CHUNK):
        pass


def _sanitise_scratch(
    engine: Engine,
    scratch: DatabaseRef,
    shadow: Shadow,
    dump: Dump,
    profile: Profile,
    salt: str | None,
    reporter: Reporter,
) -> Sanitisation:
    """Compare row counts with the dump's own, then sanitise and check the shadow."""
    if dump.row_counts:
        restored = engine.row_counts(scratch, shadow)
        diffs = sorted(t for t, n in dump.row_counts.items() if restored.get(t) != n)
        if diffs:
            raise VerificationFailed(
                f"the scratch copy's rows differ from the dump in {', '.join(diffs[:5])}",
                hint="nothing was published; the dump or the restore is broken",
            )
    secrets = (salt,) if salt else ()
    return runner.sanitise(target(engine, scratch, shadow, secrets), profile, salt, reporter)


def restore_hook(
    cfg: Config, req: ops.RestoreRequest, reporter: Reporter | None = None, *, sanitise: bool = False
) -> tuple[ops.RestoreRequest, ops.BeforeSwap | None]:
    """The agreed restore semantics: a target that ``requires_sanitised`` holds only sanitised data,
    so an artifact that is not already sanitised is sanitised on the shadow (``sanitise`` forces it
    for any target). Returns the request pinned to the chosen artifact, and the hook (or None).
    """
    reporter = reporter or NullReporter()
    manifest, _ = ops.plan_restore(cfg, req)
    pinned = dataclasses.replace(req, artifact=manifest.id, at=None)
    requires = cfg.environment(req.environment).requires_sanitised
    if not sanitise and not (requires and not manifest.is_publishable_sanitised()):
        return pinned, None
    why = (
        "--sanitise was asked for"
        if sanitise
        else f"{req.environment} holds only sanitised data and artifact {manifest.id} is not sanitised"
    )
    require_profile(cfg, req.database, why)
    return pinned, make_before_swap(cfg, req.database, reporter)


def backup_for(
    cfg: Config, database: str, environment: str, reporter: Reporter | None = None, *, sanitise: bool = False
) -> ops.BackupResult:
    """The agreed backup semantics: ``sanitise`` takes the scratch flow; a ``requires_sanitised``
    environment's database is checked live first and backed up only if every check passes."""
    reporter = reporter or NullReporter()
    if sanitise:
        return sanitised_backup(cfg, database, environment, reporter)
    if cfg.environment(environment).requires_sanitised:
        checked = check_live(cfg, database, environment, reporter)
        return ops.backup(cfg, database, environment, reporter=reporter, sanitisation=checked)
    return ops.backup(cfg, database, environment, reporter=reporter)
