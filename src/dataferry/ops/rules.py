"""The policy rules, each written once; every operation that needs one calls it from here.

- invariant 6, production is protected: ``refuse_protected``;
- invariant 5, sanitised means verified: ``sanitisation_needed`` (must a restore sanitise the
  shadow?), ``refuse_unsanitised`` (the one gate in front of a store that requires sanitised
  artifacts) and ``refuse_unsanitised_source`` (such a store's unsanitised artifact is never used).
"""

from __future__ import annotations

from dataferry.artifacts import Manifest, Sanitisation
from dataferry.config import Config
from dataferry.engines import Engine, get_engine
from dataferry.errors import Refused, SanitisationFailed


def engine_for(cfg: Config, database: str) -> Engine:
    """The engine of a configured database."""
    return get_engine(cfg.database(database).engine)


# -- the policy rules, each written once -----------------------------------------------------------


def refuse_protected(cfg: Config, environment: str, force: bool) -> None:
    """Invariant 6: a protected environment is never a restore target unless forced."""
    if cfg.environment(environment).protected and not force:
        raise Refused(
            f"{environment} is protected: dataferry does not restore into it",
            hint="if you really mean to overwrite it, repeat the command with --force",
        )


def refuse_unsanitised(
    cfg: Config, database: str, environment: str, sanitisation: Sanitisation | None
) -> None:
    """Invariant 5: a store that requires sanitised artifacts takes only ones whose checks passed."""
    if cfg.environment(environment).requires_sanitised and (sanitisation is None or not sanitisation.passed):
        raise Refused(
            f"the store of {environment} accepts only sanitised artifacts",
            hint=f"use 'dataferry backup {database} --env {environment} --sanitise'",
        )


def refuse_unsanitised_source(cfg: Config, source: str, manifest: Manifest) -> None:
    """Invariant 5: an unsanitised artifact in a store that requires sanitised ones is never used."""
    if cfg.environment(source).requires_sanitised and not manifest.is_publishable_sanitised():
        raise Refused(
            f"artifact {manifest.id} in {source} is not sanitised, and {source} requires sanitised artifacts",
            hint="restore a sanitised artifact, or fix the job that published this one",
        )


def require_passed(result: Sanitisation | None, database: str) -> Sanitisation:
    """Invariant 5: a sanitisation step must return a passing result; anything else never reaches
    the swap (``SanitisationFailed``, exit 8)."""
    if result is None or not result.passed:
        raise SanitisationFailed(
            f"sanitisation of {database} did not pass", hint="nothing was swapped in or published"
        )
    return result


def sanitisation_needed(cfg: Config, environment: str, asked: bool, manifest: Manifest) -> str | None:
    """Invariant 5: why a restore into ``environment`` must sanitise the shadow before the swap
    (``asked``: --sanitise or a ``sanitise`` step), or None if it need not."""
    if asked:
        return "sanitising was asked for"
    if cfg.environment(environment).requires_sanitised and not manifest.is_publishable_sanitised():
        return f"{environment} holds only sanitised data and artifact {manifest.id} is not sanitised"
    return None
