"""Signed manifests in test configurations: a key pair per directory, and a configuration text
given the key (``settings.signing_key_file``) and the trust (``trusted_keys`` beside every
``requires_sanitised = true``)."""

from __future__ import annotations

import re
from pathlib import Path

from dataferry import signing

KEY_FILE = "signing.key"


def key_pair(directory: Path, name: str = KEY_FILE) -> tuple[Path, str]:
    """A private key file in ``directory`` (made once, mode 600) and its public key."""
    path = directory / name
    if not path.exists():
        pem, _, _ = signing.generate()
        signing.write_private_key(path, pem)
    return path, signing.public_text(signing.signer_from_file(path).key.public_key())


def signed_config(text: str, directory: Path) -> str:
    """``text`` with the signing key of ``directory`` and that key trusted wherever sanitised data is
    required (the lines are added after ``requires_sanitised = true`` and ``[settings]``)."""
    path, public = key_pair(directory)
    text = re.sub(r"^(requires_sanitised = true)$", rf'\1\ntrusted_keys = ["{public}"]', text, flags=re.M)
    setting = f'signing_key_file = "{path}"'
    if re.search(r"^\[settings\]$", text, flags=re.M):
        return re.sub(r"^\[settings\]$", f"[settings]\n{setting}", text, count=1, flags=re.M)
    return f"[settings]\n{setting}\n\n{text}"
