"""The streaming age stage on its own: round trip, bounded reads, a failing source reported as
itself, a reader closed early stops its worker, wrong keys and damaged data classified, and an
identity that never shows in a repr."""

from __future__ import annotations

import io
import os
import threading

import pytest
from pyrage import x25519

from dataferry import encryption
from dataferry.errors import EngineError, NotReady, VerificationFailed

KEY = x25519.Identity.generate()
DATA = os.urandom(300_000) * 5  # several 64 KiB age chunks


def encrypt(data: bytes) -> bytes:
    with encryption.encrypting(io.BytesIO(data), [KEY.to_public()]) as reader:
        return reader.read()


def test_round_trip_in_small_reads() -> None:
    ciphertext = encrypt(DATA)
    assert ciphertext.startswith(b"age-encryption.org/v1\n")
    out = bytearray()
    with encryption.decrypting(io.BytesIO(ciphertext), encryption.Identities([KEY], "test"), "obj") as plain:
        while chunk := plain.read(10_000):
            assert len(chunk) <= 10_000
            out += chunk
    assert bytes(out) == DATA


@pytest.mark.parametrize("size", [0, 1, 65_536, 65_537, 200_003, 1_000_000])
def test_reads_larger_than_a_chunk_are_exact(size: int) -> None:
    """A read of n bytes returns exactly n until the end (S3 parts are read this way), cut from
    the middle of a chunk or not, and nothing is lost or repeated around the cut."""
    out = bytearray()
    with encryption.decrypting(
        io.BytesIO(encrypt(DATA)), encryption.Identities([KEY], "test"), "obj"
    ) as plain:
        while True:
            chunk = plain.read(size) if size else plain.read(0)
            if size == 0:
                assert chunk == b""
                chunk = plain.read(-1)
                out += chunk
                break
            if not chunk:
                break
            assert len(chunk) == size or len(out) + len(chunk) == len(DATA)
            out += chunk
    assert bytes(out) == DATA


class FailingSource:
    """A dump that fails after some data, as a dump tool that died would (and returns more than
    asked for, which a reader may)."""

    def __init__(self) -> None:
        self.sent = 0

    def read(self, n: int = -1) -> bytes:
        if self.sent > 200_000:
            raise EngineError("pg_dump exited with 1")
        self.sent += 65536
        return b"x" * 65536


def test_a_failing_source_is_reported_as_itself() -> None:
    with (
        pytest.raises(EngineError, match="pg_dump exited"),
        encryption.encrypting(FailingSource(), [KEY.to_public()]) as reader,
    ):
        while reader.read(65536):
            pass


def test_closing_early_stops_the_worker() -> None:
    before = set(threading.enumerate())
    with encryption.encrypting(io.BytesIO(DATA * 4), [KEY.to_public()]) as reader:
        reader.read(1000)
    assert [t for t in threading.enumerate() if t not in before and t.is_alive()] == []


def test_wrong_identity_and_damaged_data() -> None:
    ciphertext = encrypt(DATA)
    other = encryption.Identities([x25519.Identity.generate()], "environment variable X")
    with pytest.raises(NotReady, match="not encrypted for the age identity in the environment variable X"):
        encryption.check_identity(io.BytesIO(ciphertext), other, "obj")
    damaged = bytearray(ciphertext)
    damaged[len(damaged) // 2] ^= 1
    with (
        pytest.raises(VerificationFailed, match="damaged"),
        encryption.decrypting(io.BytesIO(bytes(damaged)), encryption.Identities([KEY], "t"), "obj") as p,
    ):
        while p.read(65536):
            pass


def test_identities_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_TEST_ID", str(KEY))
    ids = encryption.load_identities(env="FERRY_TEST_ID", file=None, where="here")
    assert str(KEY) not in repr(ids) + str(ids)
    assert "FERRY_TEST_ID" in repr(ids)
    monkeypatch.setenv("FERRY_TEST_ID", "AGE-SECRET-KEY-1BROKENSENTINEL")
    with pytest.raises(NotReady) as caught:
        encryption.load_identities(env="FERRY_TEST_ID", file=None, where="here")
    assert "SENTINEL" not in str(caught.value) + repr(caught.value) + (caught.value.hint or "")
