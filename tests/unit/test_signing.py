"""Signed manifests (``dataferry.signing``): what is signed, what breaks a signature, and that the
private key shows nowhere."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization

from dataferry import signing
from dataferry.artifacts import DataObject, Manifest, Sanitisation


def manifest() -> Manifest:
    now = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    return Manifest(
        id="2026-12-02T100000Z-app",
        database="app",
        engine="sqlite",
        source_environment="staging",
        created_at=now,
        finished_at=now,
        objects=[DataObject(key="app/x.sqlite", size=10, sha256="ab" * 32, format="sqlite")],
        sanitised=True,
        sanitisation=Sanitisation(
            profile="p.toml", profile_sha256="cd" * 32, passed=True, mode="checked live"
        ),
        extra={"job": "stage"},
    )


@pytest.fixture
def signer() -> signing.Signer:
    pem, _, _ = signing.generate()
    return signing.Signer(signing._private(pem, "test"), "test")


def trusted(signer: signing.Signer) -> list[str]:
    return [signing.public_text(signer.key.public_key())]


def test_a_signature_survives_the_manifests_json_round_trip(signer: signing.Signer) -> None:
    signed = signer.sign(manifest())
    assert signed.signature is not None and signed.signature.key == signer.fingerprint
    again = Manifest.model_validate(json.loads(signed.model_dump_json(indent=2)))
    assert signing.problem(again, trusted(signer)) is None


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m.objects[0].__setattr__("sha256", "ef" * 32),  # other data
        lambda m: m.sanitisation.__setattr__("profile_sha256", "00" * 32),  # other profile
        lambda m: m.extra.__setitem__("job", "forged"),
        lambda m: m.__setattr__("database", "other"),
    ],
)
def test_any_edit_breaks_the_signature(signer: signing.Signer, edit: object) -> None:
    signed = signer.sign(manifest())
    edited = Manifest.model_validate(json.loads(signed.model_dump_json()))
    edit(edited)  # type: ignore[operator]
    assert "does not match its content" in (signing.problem(edited, trusted(signer)) or "")


def test_unsigned_and_untrusted_are_named(signer: signing.Signer) -> None:
    assert signing.problem(manifest(), trusted(signer)) == "it is not signed"
    other = signing.Signer(signing._private(signing.generate()[0], "x"), "x")
    why = signing.problem(other.sign(manifest()), trusted(signer)) or ""
    assert why.endswith("which is not one of the trusted keys") and other.fingerprint in why


def test_the_private_key_is_in_no_manifest_and_no_repr(signer: signing.Signer) -> None:
    raw = signer.key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    text = signer.sign(manifest()).model_dump_json()
    assert base64.b64encode(raw).decode() not in text and raw.hex() not in text
    assert repr(signer) == "Signer(source='test')"
