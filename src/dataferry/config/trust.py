"""The configuration of signed manifests: the public keys an environment trusts, and the rules that
span environments and settings (``signing.py`` does the signing and verifying)."""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for type hints only: models imports this module
    from dataferry.config.models import Config

Location = tuple[str, ...]

PUBLIC_PREFIX = "ed25519:"


def check_public_key(key: str) -> str:
    """A ``trusted_keys`` entry: ``ed25519:`` and the base64 of 32 bytes; ``ValueError`` otherwise."""
    try:
        raw = base64.b64decode(key.removeprefix(PUBLIC_PREFIX), validate=True)
    except binascii.Error:
        raw = b""
    if not key.startswith(PUBLIC_PREFIX) or len(raw) != 32:
        raise ValueError(
            f"{key[:20]!r} is not a public key: use the 'ed25519:...' line 'dataferry keygen' prints"
        )
    return key


def trust_problems(cfg: Config) -> list[tuple[Location, str]]:
    """Every environment that requires sanitised data names the keys it trusts; one signing key."""
    problems: list[tuple[Location, str]] = []
    for name, env in cfg.environments.items():
        if env.requires_sanitised and not env.trusted_keys:
            problems.append(
                (
                    ("environments", name, "trusted_keys"),
                    "requires_sanitised needs the public keys whose signatures it trusts "
                    "('dataferry keygen' makes a key pair; docs/sanitisation.md)",
                )
            )
    if cfg.settings.signing_key_env and cfg.settings.signing_key_file:
        problems.append(
            (("settings", "signing_key_file"), "give signing_key_env or signing_key_file, not both")
        )
    return problems
