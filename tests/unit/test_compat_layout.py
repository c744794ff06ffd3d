"""The govuk key layout: names, and choosing a dump (explicit, then pointer, then newest key)."""

from __future__ import annotations

import gzip
import io
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dataferry.artifacts import DataObject, Manifest
from dataferry.engines import get_engine
from dataferry.errors import ConfigError, NotFound, VerificationFailed
from dataferry.gzipio import GzipCompressor, GzipDecompressor, gunzip_head
from dataferry.layouts.govuk import (
    GovukLayout,
    Naming,
    manifest_key_for,
    parse_name,
    parse_when,
    pending_key,
)
from dataferry.progress import NullReporter
from dataferry.stores import put_bytes
from dataferry.stores.local import LocalStore


@dataclass
class Found:
    """The key the layout chose, how, and its manifest (None for a dump without one)."""

    key: str
    how: str
    manifest: Manifest | None


def find(
    store: LocalStore, naming: Naming, *, explicit: str | None = None, at: datetime | None = None
) -> Found:
    """What a restore from this store would take (the layout's choice and its manifest)."""
    layout = GovukLayout(store=store, database=naming.name, environment="production", naming=naming)
    key, how = layout.choose(artifact=explicit, at=at)
    manifest = layout.select(get_engine("postgresql"), artifact=explicit, at=at, reporter=NullReporter())
    assert manifest.objects[0].key == key
    return Found(key=key, how=how, manifest=manifest if manifest.objects[0].sha256 else None)


NAMING = Naming(path="publishing-api-postgres", name="publishing_api_production")


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "bucket")


def _dump(store: LocalStore, basename: str, data: bytes = b"PGDMP...") -> str:
    key = NAMING.key(basename)
    put_bytes(store, key, data)
    return key


def _manifest(store: LocalStore, key: str, data: bytes = b"PGDMP...") -> None:
    obj = DataObject(key=key, size=len(data), sha256="0" * 64, format="pg_custom", compression="none")
    now = datetime.now(UTC)
    m = Manifest(
        id=key.rsplit("/", 1)[1].removesuffix(".gz"),
        database="publishing-api",
        engine="postgresql",
        source_environment="production",
        created_at=now,
        finished_at=now,
        objects=[obj],
    )
    put_bytes(store, manifest_key_for(key), m.model_dump_json().encode())


# -- names -----------------------------------------------------------------------------------------


def test_names_are_exactly_govuks() -> None:
    when = datetime(2026, 1, 5, 23, 5, 1, tzinfo=UTC)
    assert NAMING.data_key(when) == "publishing-api-postgres/2026-01-05T230501Z-publishing_api_production.gz"
    assert NAMING.pointer_key == "publishing-api-postgres/latest-publishing_api_production.txt"
    assert manifest_key_for(NAMING.data_key(when)).endswith(
        "T230501Z-publishing_api_production.manifest.json"
    )
    assert Naming(path="", name="db").data_key(when) == "2026-01-05T230501Z-db.gz"


def test_manifest_name_is_invisible_to_govuk_consumers() -> None:
    """govuk-docker: ``grep '\\.gz$'``; db-backup: ``grep -Eo '[-0-9:TZ_]+-<db>\\.gz'``; neither sees it."""
    import re

    manifest = manifest_key_for("p/2026-01-05T230501Z-db_production.gz").rsplit("/", 1)[1]
    assert not manifest.endswith(".gz")
    assert not re.search(r"[-0-9:TZ_]+-db.production\.gz", manifest)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-05T230501Z", datetime(2026, 1, 5, 23, 5, 1, tzinfo=UTC)),
        ("2022-06-30T23:00:05", datetime(2022, 6, 30, 23, 0, 5, tzinfo=UTC)),
        ("2022-06-30T23:00:05Z", datetime(2022, 6, 30, 23, 0, 5, tzinfo=UTC)),
        ("2026-01-06T00:05:01+01:00", datetime(2026, 1, 5, 23, 5, 1, tzinfo=UTC)),
    ],
)
def test_parse_when(text: str, expected: datetime) -> None:
    assert parse_when(text) == expected


def test_parse_when_refuses_nonsense() -> None:
    with pytest.raises(ConfigError, match="cannot read time"):
        parse_when("yesterday")


def test_parse_name_reads_both_eras() -> None:
    assert parse_name("2026-01-05T230501Z-db.gz") == (datetime(2026, 1, 5, 23, 5, 1, tzinfo=UTC), "db")
    assert parse_name("2022-06-30T23:00:05-whitehall_production.gz") == (
        datetime(2022, 6, 30, 23, 0, 5, tzinfo=UTC),
        "whitehall_production",
    )
    assert parse_name("latest-db.txt") is None
    assert parse_name("2026-01-05T230501Z-db.manifest.json") is None


# -- choosing a dump -------------------------------------------------------------------------------


def test_pointer_wins_over_a_newer_key(store: LocalStore) -> None:
    old = _dump(store, "2026-01-04T230501Z-publishing_api_production.gz")
    _dump(store, "2026-01-05T230501Z-publishing_api_production.gz")
    put_bytes(store, NAMING.pointer_key, old.encode())
    found = find(store, NAMING)
    assert (found.key, found.how, found.manifest) == (old, "pointer", None)


def test_explicit_wins_over_the_pointer(store: LocalStore) -> None:
    older = _dump(store, "2026-01-03T230501Z-publishing_api_production.gz")
    newer = _dump(store, "2026-01-05T230501Z-publishing_api_production.gz")
    put_bytes(store, NAMING.pointer_key, newer.encode())
    for explicit in (
        "2026-01-03T230501Z",
        "2026-01-03T23:05:01",
        "2026-01-03T230501Z-publishing_api_production.gz",
        older,
        "s3://bucket/" + older,
        "2026-01-03T230501Z-publishing_api_production",
    ):
        found = find(store, NAMING, explicit=explicit)
        assert (found.key, found.how) == (older, "explicit"), explicit


def test_explicit_time_finds_a_legacy_colon_name(store: LocalStore) -> None:
    legacy = _dump(store, "2022-06-30T23:00:05-publishing_api_production.gz")
    assert find(store, NAMING, explicit="2022-06-30T230005Z").key == legacy


def test_explicit_that_does_not_exist_names_what_does(store: LocalStore) -> None:
    _dump(store, "2026-01-05T230501Z-publishing_api_production.gz")
    with pytest.raises(NotFound) as err:
        find(store, NAMING, explicit="2026-01-01T000000Z")
    assert "2026-01-05T230501Z-publishing_api_production.gz" in (err.value.hint or "")


def test_explicit_of_another_database_is_refused(store: LocalStore) -> None:
    _dump(store, "2026-01-05T230501Z-publishing_api_production.gz")
    with pytest.raises(NotFound, match="not a dump of publishing_api_production"):
        find(store, NAMING, explicit="2026-01-05T230501Z-content_store_production.gz")


def test_without_pointer_the_newest_key_by_time_across_both_eras(store: LocalStore) -> None:
    # Lexically the colon name sorts last ("2" < ":"), by time the compact one is newer.
    _dump(store, "2026-01-05T23:00:00-publishing_api_production.gz")
    newest = _dump(store, "2026-01-05T230501Z-publishing_api_production.gz")
    found = find(store, NAMING)
    assert (found.key, found.how) == (newest, "newest key")


def test_newest_key_skips_dumps_dataferry_started_and_did_not_commit(store: LocalStore) -> None:
    committed = _dump(store, "2026-01-04T230501Z-publishing_api_production.gz")
    _manifest(store, committed)
    interrupted = _dump(store, "2026-01-05T230501Z-publishing_api_production.gz")  # no manifest
    put_bytes(store, pending_key(interrupted), b"")  # what new_key records before the upload
    found = find(store, NAMING)
    assert found.key == committed
    assert found.manifest is not None and found.manifest.objects[0].key == committed


def test_at_picks_the_newest_at_or_before(store: LocalStore) -> None:
    a = _dump(store, "2026-01-03T230501Z-publishing_api_production.gz")
    _dump(store, "2026-01-05T230501Z-publishing_api_production.gz")
    assert find(store, NAMING, at=datetime(2026, 1, 4, tzinfo=UTC)).key == a
    with pytest.raises(NotFound):
        find(store, NAMING, at=datetime(2026, 1, 1, tzinfo=UTC))


def test_other_databases_subdirectories_and_pointers_are_not_candidates(store: LocalStore) -> None:
    mine = _dump(store, "2026-01-01T000000Z-publishing-api_production.gz")  # '-' for '_', as db-backup allows
    _dump(store, "2026-01-09T000000Z-draft_publishing_api_production.gz")
    put_bytes(store, NAMING.key("old/2026-01-09T000000Z-publishing_api_production.gz"), b"x")
    put_bytes(store, "other-host/2026-01-09T000000Z-publishing_api_production.gz", b"x")
    assert find(store, NAMING).key == mine


def test_no_dump_at_all_is_not_found(store: LocalStore) -> None:
    with pytest.raises(NotFound, match="no dump of publishing_api_production"):
        find(store, NAMING)


def test_a_dangling_pointer_fails_loudly(store: LocalStore) -> None:
    _dump(store, "2026-01-05T230501Z-publishing_api_production.gz")
    put_bytes(
        store, NAMING.pointer_key, NAMING.key("2026-01-01T000000Z-publishing_api_production.gz").encode()
    )
    with pytest.raises(NotFound, match="does not exist"):
        find(store, NAMING)


def test_a_pointer_to_something_else_is_refused(store: LocalStore) -> None:
    _dump(store, "2026-01-05T230501Z-publishing_api_production.gz")
    put_bytes(
        store, NAMING.pointer_key, b"content-store-postgres/2026-01-05T230501Z-content_store_production.gz"
    )
    with pytest.raises(VerificationFailed, match="not a dump of publishing_api_production"):
        find(store, NAMING)


def test_pointer_with_a_trailing_newline_is_read(store: LocalStore) -> None:
    key = _dump(store, "2026-01-05T230501Z-publishing_api_production.gz")
    put_bytes(store, NAMING.pointer_key, key.encode() + b"\n")
    assert find(store, NAMING).key == key


def test_a_manifest_that_describes_another_object_is_refused(store: LocalStore) -> None:
    a = _dump(store, "2026-01-04T230501Z-publishing_api_production.gz")
    b = _dump(store, "2026-01-05T230501Z-publishing_api_production.gz")
    _manifest(store, a)
    os.replace(store.root / manifest_key_for(a), store.root / manifest_key_for(b))
    with pytest.raises(VerificationFailed, match="does not describe"):
        find(store, NAMING, explicit=b)


# -- gzip ------------------------------------------------------------------------------------------


def _payload(n: int) -> bytes:
    return b"".join(b"INSERT INTO t VALUES (%d, 'row %d');\n" % (i, i * 7) for i in range(n))


def test_gzip_round_trip_is_standard_gzip() -> None:
    data = _payload(50_000)
    compressed = b""
    reader = GzipCompressor(io.BytesIO(data))
    while chunk := reader.read(10_000):
        assert len(chunk) <= 10_000
        compressed += chunk
    assert gzip.decompress(compressed) == data  # what gunzip and govuk-docker read
    back = GzipDecompressor(io.BytesIO(gzip.compress(data)), name="x")
    assert b"".join(iter(lambda: back.read(65536), b"")) == data


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_gzip_object_fails_the_read(damage: str) -> None:
    blob = bytearray(gzip.compress(_payload(20_000)))
    if damage == "truncate":
        blob = blob[: len(blob) // 2]
    else:
        blob[-6] ^= 0xFF  # inside the CRC-32 trailer
    reader = GzipDecompressor(io.BytesIO(bytes(blob)), name="p/x.gz")
    with pytest.raises(VerificationFailed, match=r"p/x\.gz"):
        while reader.read(65536):
            pass


def test_gunzip_head_sniffs_without_reading_everything() -> None:
    head = gzip.compress(b"-- MariaDB dump 10.19\n" + _payload(100_000))[:200]
    assert gunzip_head(head).startswith(b"-- MariaDB dump")
    assert gunzip_head(b"PGDMP") == b""
