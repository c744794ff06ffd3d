"""A failed restore classifies damaged artifacts, without reading gigabytes to do it."""

from __future__ import annotations

import hashlib
import io

import pytest

from dataferry import pipeline
from dataferry.errors import EngineError, VerificationFailed
from dataferry.streams import VerifyingReader


def _reader(data: bytes, expected: bytes) -> VerifyingReader:
    return VerifyingReader(
        io.BytesIO(data), size=len(expected), sha256=hashlib.sha256(expected).hexdigest(), name="db/x.zst"
    )


def test_damage_found_by_reading_the_rest_is_reported_as_verification_failed() -> None:
    good = b"a" * 4096
    bad = b"a" * 2048 + b"b" + b"a" * 2047
    reader = _reader(bad, good)
    reader.read(100)  # the tool gave up early
    with pytest.raises(VerificationFailed):
        pipeline.refuse_if_corrupt(reader, EngineError("pg_restore failed"))


def test_an_intact_artifact_keeps_the_tools_error() -> None:
    good = b"a" * 4096
    reader = _reader(good, good)
    reader.read(100)
    pipeline.refuse_if_corrupt(reader, EngineError("role missing"))  # no exception: the tool's error stands
    assert reader.verified


def test_a_large_unread_rest_is_not_downloaded_to_classify_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "_DRAIN_LIMIT", 1000)
    good = b"a" * 4096
    reader = _reader(b"a" * 2048 + b"b" + b"a" * 2047, good)
    reader.read(100)
    err = EngineError("role missing")
    pipeline.refuse_if_corrupt(reader, err)
    assert reader.size == 100, "nothing more was read"
    assert err.hint is not None and "dataferry verify" in err.hint
