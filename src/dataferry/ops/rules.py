"""The policy rules, each written once; every operation that needs one calls it from here.

- invariant 6, production is protected: ``refuse_protected``;
- invariant 5, sanitised means verified: ``sanitisation_needed`` (must a restore sanitise the
  shadow?), ``refuse_unsanitised`` (the one gate in front of a store that requires sanitised
  artifacts), ``signer_for`` (the key that signs what passed it) and ``refuse_unsanitised_source``
  (such a store's unsanitised, unsigned or wrongly signed artifact is never used).
"""

from __future__ import annotations

from dataferry import signing
from dataferry.artifacts import Manifest, Sanitisation
from dataferry.config import Config
from dataferry.engines import Engine, get_engine
from dataferry.errors import ConfigError, Refused, SanitisationFailed, UntrustedArtifact
from dataferry.signing import Signer


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
    """Invariant 5: an artifact in a store that requires sanitised ones is used only when it is
    sanitised and signed by a key that environment trusts (``UntrustedArtifact``, exit 9)."""
    env = cfg.environment(source)
    if not env.requires_sanitised:
        return
    if not manifest.is_publishable_sanitised():
        raise Refused(
            f"artifact {manifest.id} in {source} is not sanitised, and {source} requires sanitised artifacts",
            hint="restore a sanitised artifact, or fix the job that published this one",
        )
    why = signing.problem(manifest, env.trusted_keys)
    if why is not None:
        raise UntrustedArtifact(
            f"artifact {manifest.id} in {source} says it is sanitised, but {why}; {source} trusts "
            "only sanitised artifacts signed by one of its trusted_keys",
            hint=f"re-run the job that publishes into {source} with its signing key, so it sanitises "
            "and signs a new artifact (docs/runbook.md, 'refused as untrusted'); never copy artifacts "
            "into this store by hand",
        )


def signer_for(cfg: Config, environment: str) -> Signer | None:
    """Invariant 5: the key that signs a sanitised artifact published into ``environment``. One that
    requires sanitised data needs a configured key it trusts; checked before anything is dumped."""
    env = cfg.environment(environment)
    signer = signing.load_signer(cfg)
    if not env.requires_sanitised:
        return signer
    if signer is None:
        raise ConfigError(
            f"{environment} accepts only signed sanitised artifacts, and no signing key is configured",
            hint="set [settings] signing_key_file or signing_key_env on the machine that sanitises "
            "('dataferry keygen'; docs/sanitisation.md)",
        )
    if signer.fingerprint not in signing.fingerprints(env.trusted_keys):
        raise UntrustedArtifact(
            f"the store of {environment} does not trust the signing key {signer.fingerprint} "
            f"({signer.source}): nothing it signed would be accepted there",
            hint=f"add that key's public key to [environments.{environment}] trusted_keys "
            f"('dataferry keygen --show {_key_file(signer.source)}' prints it), or configure the right key",
        )
    return signer


def _key_file(source: str) -> str:
    """The signing key's file for a hint; a key from a variable (``$VAR``) has none to name."""
    return "FILE" if source.startswith("$") else source


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
    env = cfg.environment(environment)
    if env.requires_sanitised and not manifest.is_publishable_sanitised():
        return f"{environment} holds only sanitised data and artifact {manifest.id} is not sanitised"
    if env.requires_sanitised:
        why = signing.problem(manifest, env.trusted_keys)
        if why is not None:
            return f"{environment} holds only sanitised data and artifact {manifest.id} says it is sanitised, but {why}"
    return None
