"""Signed manifests: a "sanitised" that cannot be forged by editing JSON.

The step that sanitises (or checks) data signs the manifest of the artifact it publishes with an
Ed25519 private key that only it holds (``[settings] signing_key_env`` or ``signing_key_file``). An
environment that ``requires_sanitised`` lists the public keys it trusts (``trusted_keys``); its
store, and every restore from it, accepts a "sanitised" artifact only with a valid signature by one
of them. What is signed is the whole manifest but its ``signature``: the data objects with their
sizes and sha256, the database, the id and key, and the sanitisation result with the profile's hash.

The private key never appears in a message, a log or a manifest: a manifest names the key by its
fingerprint (``SHA256:`` and 16 hex digits of the public key's hash).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from dataferry.artifacts import Manifest, Signature
from dataferry.config import Config
from dataferry.config.trust import PUBLIC_PREFIX
from dataferry.errors import ConfigError, NotReady

ALGORITHM = "ed25519"
#: Bound into every signature, so a signature over anything else is never taken for a manifest's.
_CONTEXT = b"dataferry manifest v1\0"


def signed_bytes(manifest: Manifest) -> bytes:
    """The bytes a signature covers: the manifest without its signature, as canonical JSON."""
    body = manifest.model_dump(mode="json", exclude={"signature"})
    return _CONTEXT + json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def fingerprint(public: Ed25519PublicKey) -> str:
    """``SHA256:`` and the first 16 hex digits of the raw public key's sha256."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + hashlib.sha256(raw).hexdigest()[:16]


def public_text(public: Ed25519PublicKey) -> str:
    """A public key as written in ``trusted_keys``: ``ed25519:<base64 of its 32 bytes>``."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PUBLIC_PREFIX + base64.b64encode(raw).decode()


def parse_public(text: str) -> Ed25519PublicKey:
    """A ``trusted_keys`` entry as a key; ``ValueError`` saying what is wrong."""
    if not text.startswith(PUBLIC_PREFIX):
        raise ValueError(f"a trusted key starts with {PUBLIC_PREFIX!r} (see 'dataferry keygen')")
    try:
        raw = base64.b64decode(text.removeprefix(PUBLIC_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError("a trusted key is 'ed25519:' and base64") from None
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True)
class Signer:
    """The sanitising step's private key, and where it came from (for messages)."""

    key: Ed25519PrivateKey = field(repr=False)  # invariant 7: never in a repr either
    source: str = ""

    @property
    def fingerprint(self) -> str:
        """The public key's fingerprint, the only name of the key that is ever shown."""
        return fingerprint(self.key.public_key())

    def sign(self, manifest: Manifest) -> Manifest:
        """``manifest`` with a signature over ``signed_bytes``."""
        unsigned = manifest.model_copy(update={"signature": None})
        value = self.key.sign(signed_bytes(unsigned))
        signature = Signature(
            algorithm=ALGORITHM, key=self.fingerprint, value=base64.b64encode(value).decode()
        )
        return unsigned.model_copy(update={"signature": signature})


def generate() -> tuple[bytes, str, str]:
    """A new key pair: the private key as PEM (PKCS#8), the public key for ``trusted_keys``, and its
    fingerprint."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem, public_text(key.public_key()), fingerprint(key.public_key())


def write_private_key(path: Path, pem: bytes) -> None:
    """Write a private key readable by its owner only; never overwrites an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(
            f"{path} exists: dataferry never overwrites a key",
            hint="choose another --out, or remove the old key once nothing uses it",
        ) from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def load_signer(cfg: Config) -> Signer | None:
    """The signing key the configuration names, or None when it names none; ``NotReady`` when it
    names one that cannot be read (never saying anything of the key itself)."""
    settings = cfg.settings
    if settings.signing_key_env:
        value = os.environ.get(settings.signing_key_env)
        if not value:
            raise NotReady(
                f"environment variable {settings.signing_key_env} (the manifest signing key) is not set",
                hint="set it to the private key 'dataferry keygen' wrote (the PEM text) on the machine "
                "that sanitises; other machines need only the public key in trusted_keys",
            )
        return Signer(
            _private(value.encode(), f"${settings.signing_key_env}"), f"${settings.signing_key_env}"
        )
    if settings.signing_key_file:
        return signer_from_file(cfg.resolve_path(settings.signing_key_file))
    return None


def signer_from_file(path: Path) -> Signer:
    """The private key in ``path``; refused when others can read the file."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise NotReady(
            f"the manifest signing key {path} cannot be read: {exc.strerror}",
            hint="'dataferry keygen --out FILE' makes one; settings.signing_key_file is relative "
            "to the configuration file",
        ) from None
    if stat.S_IMODE(mode) & 0o077:
        raise NotReady(
            f"the manifest signing key {path} is readable by others (mode {stat.S_IMODE(mode):o})",
            hint=f"chmod 600 {path}",
        )
    return Signer(_private(data, str(path)), str(path))


def _private(data: bytes, where: str) -> Ed25519PrivateKey:
    """A PEM (PKCS#8) private key, or the base64 of its 32 raw bytes."""
    text = data.strip()
    try:
        if text.startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(text, password=None)
        else:
            key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(text, validate=True))
    except (ValueError, TypeError, binascii.Error):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise NotReady(
            f"the manifest signing key in {where} is not an Ed25519 private key",
            hint="use the file 'dataferry keygen' wrote (PEM), or its content",
        )
    return key


def fingerprints(trusted: list[str]) -> set[str]:
    """The fingerprints of ``trusted_keys``."""
    return {fingerprint(parse_public(k)) for k in trusted}


def problem(manifest: Manifest, trusted: list[str]) -> str | None:
    """Why ``manifest``'s signature is not a valid one by a ``trusted`` key, or None when it is."""
    sig = manifest.signature
    if sig is None:
        return "it is not signed"
    if sig.algorithm != ALGORITHM:
        return f"its signature uses {sig.algorithm!r}, not {ALGORITHM}"
    keys = {fingerprint(k): k for k in map(parse_public, trusted)}
    key = keys.get(sig.key)
    if key is None:
        return f"it is signed by key {sig.key}, which is not one of the trusted keys"
    try:
        key.verify(base64.b64decode(sig.value, validate=True), signed_bytes(manifest))
    except (InvalidSignature, binascii.Error, ValueError):
        return f"its signature by key {sig.key} does not match its content (edited after signing)"
    return None
