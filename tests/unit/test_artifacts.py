"""Artifacts: key naming, the manifest as the commit, latest/select, verify, freshness, orphans.

Artifacts are written into a real LocalStore in a temporary directory (the store contract shows
every store behaves the same), with real sha256 sums of real bytes.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dataferry import artifacts
from dataferry.artifacts import DataObject, Manifest, Sanitisation
from dataferry.errors import NotFound, StoreError, VerificationFailed
from dataferry.stores import put_bytes, read_bytes
from dataferry.stores.local import LocalStore

DB = "publishing-api"


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    """An empty local store."""
    return LocalStore(tmp_path / "store")


def publish(
    store: LocalStore, when: datetime, *, database: str = DB, data: bytes | None = None, manifest: bool = True
) -> Manifest:
    """Write a data object and (unless ``manifest`` is False) its manifest, as a backup would."""
    ident = artifacts.artifact_id(database, when)
    data = data if data is not None else random.Random(when.timestamp()).randbytes(2000)
    key = artifacts.data_key(database, ident, "sqlite.zst")
    put_bytes(store, key, data)
    m = Manifest(
        id=ident,
        database=database,
        engine="sqlite",
        source_environment="production",
        created_at=when,
        finished_at=when + timedelta(seconds=30),
        objects=[
            DataObject(key=key, size=len(data), sha256=hashlib.sha256(data).hexdigest(), format="sqlite")
        ],
        row_counts={"people": 3},
    )
    if manifest:
        artifacts.write_manifest(store, m)
    return m


def at(day: int, hour: int = 1, minute: int = 0, second: int = 0) -> datetime:
    """A UTC time in November 2026."""
    return datetime(2026, 11, day, hour, minute, second, tzinfo=UTC)


# -- keys ----------------------------------------------------------------------------------------


def test_keys_sort_chronologically() -> None:
    """Sorting keys as strings sorts artifacts by time, across seconds, days, months and years."""
    rng = random.Random(42)
    start = datetime(2025, 12, 31, 23, 59, 58, tzinfo=UTC)
    times = sorted({start + timedelta(seconds=rng.randrange(0, 400 * 86400)) for _ in range(300)})
    times += [start, start + timedelta(seconds=1), start + timedelta(seconds=2)]
    times = sorted(set(times))
    ids = [artifacts.artifact_id(DB, t) for t in times]
    assert sorted(ids) == ids
    manifests = [artifacts.manifest_key(DB, i) for i in ids]
    assert sorted(manifests) == manifests
    data = [artifacts.data_key(DB, i, "pg_custom.zst") for i in ids]
    assert sorted(data) == data


def test_ids_are_utc_and_parse_back() -> None:
    """A local time is written as UTC; parse_id returns the same instant and the database."""
    london = datetime(2026, 7, 1, 2, 30, 5, tzinfo=ZoneInfo("Europe/London"))  # BST, UTC+1
    ident = artifacts.artifact_id(DB, london)
    assert ident == f"2026-07-01T013005Z-{DB}"
    when, database = artifacts.parse_id(ident)
    assert when == london
    assert database == DB
    with pytest.raises(NotFound):
        artifacts.parse_id("latest-publishing-api")


def test_manifest_and_data_keys_sit_side_by_side() -> None:
    """``<db>/<id>.<format>`` and ``<db>/<id>.manifest.json``."""
    ident = artifacts.artifact_id(DB, at(26))
    assert artifacts.data_key(DB, ident, "sql.zst") == f"{DB}/{ident}.sql.zst"
    assert artifacts.manifest_key(DB, ident) == f"{DB}/{ident}.manifest.json"


# -- latest and select ---------------------------------------------------------------------------


def test_latest_is_the_newest_manifest_not_the_newest_data(store: LocalStore) -> None:
    """An interrupted backup (data, no manifest) newer than every artifact is never 'latest'."""
    publish(store, at(20))
    newest = publish(store, at(21))
    publish(store, at(22), manifest=False)  # the orphan of a backup killed before its manifest
    assert artifacts.latest(store, DB).id == newest.id
    assert [o.key for o in artifacts.orphans(store, DB)] == [
        artifacts.data_key(DB, artifacts.artifact_id(DB, at(22)), "sqlite.zst")
    ]


def test_latest_without_any_manifest_is_not_found(store: LocalStore) -> None:
    """Data objects alone are no artifact."""
    publish(store, at(20), manifest=False)
    with pytest.raises(NotFound) as excinfo:
        artifacts.latest(store, DB)
    assert excinfo.value.exit_code == 4
    assert excinfo.value.hint and "backup" in excinfo.value.hint


def test_databases_do_not_see_each_others_artifacts(store: LocalStore) -> None:
    """'app' never picks up 'app-v2' or 'application' artifacts, even newer ones."""
    mine = publish(store, at(20), database="app")
    publish(store, at(23), database="app-v2")
    publish(store, at(24), database="application")
    assert artifacts.latest(store, "app").id == mine.id
    assert [m.id for m in artifacts.iter_manifests(store, "app")] == [mine.id]


def test_iter_manifests_newest_first(store: LocalStore) -> None:
    """Listing order is newest first, whatever order they were written in."""
    for day in (22, 20, 24, 21):
        publish(store, at(day))
    days = [m.created_at.day for m in artifacts.iter_manifests(store, DB)]
    assert days == [24, 22, 21, 20]


def test_select_by_id_manifest_key_or_data_key(store: LocalStore) -> None:
    """An explicit artifact can be named by id, manifest key or data key."""
    old = publish(store, at(20))
    publish(store, at(21))
    for name in (old.id, old.key, old.objects[0].key, f"s3://bucket/prefix/{old.key}"):
        assert artifacts.select(store, DB, artifact=name).id == old.id


def test_select_missing_or_foreign_artifact_is_not_found(store: LocalStore) -> None:
    """An id that does not exist, or belongs to another database, is NotFound."""
    publish(store, at(20))
    missing = artifacts.artifact_id(DB, at(19))
    with pytest.raises(NotFound):
        artifacts.select(store, DB, artifact=missing)
    with pytest.raises(NotFound, match="not an artifact of"):
        artifacts.select(store, DB, artifact=artifacts.artifact_id("other-db", at(20)))


def test_select_at_picks_the_newest_at_or_before(store: LocalStore) -> None:
    """--at: the newest artifact whose time is at or before the given instant (inclusive)."""
    for day in (20, 21, 22):
        publish(store, at(day))
    assert artifacts.select(store, DB, at=at(21, 12)).created_at == at(21)
    assert artifacts.select(store, DB, at=at(21)).created_at == at(21)  # inclusive
    assert artifacts.select(store, DB, at=at(21) - timedelta(seconds=1)).created_at == at(20)
    assert artifacts.select(store, DB, at=at(30)).created_at == at(22)
    london = datetime(2026, 11, 21, 1, 0, tzinfo=ZoneInfo("Europe/London"))  # GMT in November
    assert artifacts.select(store, DB, at=london).created_at == at(21)


def test_select_at_with_a_naive_time_means_utc(store: LocalStore) -> None:
    """A naive time from a library caller is UTC (as on the command line), not a TypeError."""
    publish(store, at(20))
    publish(store, at(21))
    assert artifacts.select(store, DB, at=datetime(2026, 11, 20, 12, 0)).created_at == at(20)


def test_select_at_before_any_artifact_is_not_found(store: LocalStore) -> None:
    """--at earlier than the oldest artifact finds nothing."""
    publish(store, at(20))
    with pytest.raises(NotFound, match="at or before"):
        artifacts.select(store, DB, at=at(19))


def test_select_without_arguments_is_latest(store: LocalStore) -> None:
    """No --artifact and no --at: the latest."""
    publish(store, at(20))
    newest = publish(store, at(21))
    assert artifacts.select(store, DB).id == newest.id


def test_foreign_files_beside_artifacts_are_ignored(store: LocalStore) -> None:
    """A stray '<db>/notes.manifest.json' is not an artifact and never sorts as the latest."""
    real = publish(store, at(20))
    put_bytes(store, f"{DB}/zz-notes.manifest.json", b"{}")
    assert artifacts.latest(store, DB).id == real.id
    assert artifacts.select(store, DB, at=at(25)).id == real.id


# -- manifests -----------------------------------------------------------------------------------


def test_manifest_round_trip(store: LocalStore) -> None:
    """What is written is what is read back."""
    m = publish(store, at(20))
    assert artifacts.read_manifest(store, m.key) == m
    assert m.size == m.objects[0].size


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[]", b'{"id": "x"}', b"\xff\xfe garbage", b""],
    ids=["broken-json", "array", "missing-fields", "binary", "empty"],
)
def test_corrupt_manifest_is_verification_failed(store: LocalStore, content: bytes) -> None:
    """A manifest that is not a manifest refuses the artifact (exit 7) with a hint."""
    m = publish(store, at(20))
    put_bytes(store, m.key, content)
    calls: list[Callable[[], Manifest]] = [
        lambda: artifacts.read_manifest(store, m.key),
        lambda: artifacts.latest(store, DB),
        lambda: artifacts.select(store, DB, artifact=m.id),
    ]
    for call in calls:
        with pytest.raises(VerificationFailed) as excinfo:
            call()
        assert excinfo.value.exit_code == 7
        assert m.key in excinfo.value.message
        assert excinfo.value.hint


def test_manifest_from_a_newer_dataferry_is_refused(store: LocalStore) -> None:
    """format_version above ours: refuse, and say to upgrade."""
    m = publish(store, at(20))
    data = json.loads(read_bytes(store, m.key))
    data["format_version"] = artifacts.FORMAT_VERSION + 1
    put_bytes(store, m.key, json.dumps(data).encode())
    with pytest.raises(VerificationFailed) as excinfo:
        artifacts.latest(store, DB)
    assert excinfo.value.hint == "upgrade dataferry"


def test_manifest_under_the_wrong_database_is_refused(store: LocalStore) -> None:
    """A manifest of another database copied under this one's prefix is never restored as this one."""
    other = publish(store, at(20), database="other-db")
    ident = artifacts.artifact_id(DB, at(20))
    put_bytes(store, artifacts.manifest_key(DB, ident), read_bytes(store, other.key))
    with pytest.raises(VerificationFailed, match="other-db"):
        artifacts.latest(store, DB)


def test_unknown_manifest_fields_are_kept(store: LocalStore) -> None:
    """Newer minor fields survive a read (forward compatible within a format version)."""
    m = publish(store, at(20))
    data = json.loads(read_bytes(store, m.key))
    data["added_later"] = {"x": 1}
    put_bytes(store, m.key, json.dumps(data).encode())
    assert artifacts.read_manifest(store, m.key).model_extra == {"added_later": {"x": 1}}


def test_publishable_sanitised_needs_passed_checks() -> None:
    """Only sanitised + sanitisation recorded + passed counts."""
    base = Manifest(
        id="x",
        database=DB,
        engine="sqlite",
        source_environment="staging",
        created_at=at(20),
        finished_at=at(20),
        objects=[],
    )
    passed = Sanitisation(profile="p.toml", profile_sha256="0" * 64, passed=True)
    failed = passed.model_copy(update={"passed": False})
    assert not base.is_publishable_sanitised()
    assert not base.model_copy(update={"sanitised": True}).is_publishable_sanitised()
    assert not base.model_copy(update={"sanitised": True, "sanitisation": failed}).is_publishable_sanitised()
    assert not base.model_copy(update={"sanitisation": passed}).is_publishable_sanitised()
    assert base.model_copy(update={"sanitised": True, "sanitisation": passed}).is_publishable_sanitised()


# -- verify --------------------------------------------------------------------------------------


def test_verify_accepts_an_intact_artifact(store: LocalStore) -> None:
    """Size and sha256 match: no error."""
    artifacts.verify(store, publish(store, at(20)))


@pytest.mark.parametrize("damage", ["flip", "truncate", "extend"])
def test_verify_detects_damage(store: LocalStore, damage: str) -> None:
    """A flipped byte, a truncated or an extended data object: VerificationFailed naming the object."""
    m = publish(store, at(20))
    key = m.objects[0].key
    data = bytearray(read_bytes(store, key))
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    elif damage == "truncate":
        del data[-1]
    else:
        data += b"\0"
    put_bytes(store, key, bytes(data))
    with pytest.raises(VerificationFailed) as excinfo:
        artifacts.verify(store, m)
    assert key in excinfo.value.message
    assert excinfo.value.exit_code == 7


def test_verify_of_a_missing_data_object(store: LocalStore) -> None:
    """A manifest whose data object is gone cannot be verified."""
    m = publish(store, at(20))
    store.delete(m.objects[0].key)
    with pytest.raises(NotFound):
        artifacts.verify(store, m)


# -- freshness and ids ---------------------------------------------------------------------------


def test_check_fresh(store: LocalStore) -> None:
    """Younger than max_age passes; older is refused with both ages in the message."""
    m = publish(store, at(20))  # finished 01:00:30
    artifacts.check_fresh(m, timedelta(hours=26), now=at(21, 3, 0, 30))
    with pytest.raises(VerificationFailed) as excinfo:
        artifacts.check_fresh(m, timedelta(hours=26), now=at(21, 3, 0, 31))
    assert "is 1d 2h 1s old, over the limit of 1d 2h" in excinfo.value.message
    assert m.id in excinfo.value.message
    assert excinfo.value.hint and "--artifact" in excinfo.value.hint
    with pytest.raises(VerificationFailed, match=r"is 2d old, over the limit of 1d 2h"):
        artifacts.check_fresh(m, timedelta(hours=26), now=at(22, 1, 0, 30))
    # A one-second limit reads as one: it read "over the limit of 0m".
    with pytest.raises(VerificationFailed, match=r"is 2m old, over the limit of 1s$"):
        artifacts.check_fresh(m, timedelta(seconds=1), now=at(20, 1, 2, 30))


def test_manifest_times_without_a_zone_are_utc(store: LocalStore) -> None:
    """A hand-written manifest with naive times still works with freshness checks and --at."""
    m = publish(store, at(20))
    data = json.loads(read_bytes(store, m.key))
    data["created_at"] = "2026-11-20T01:00:00"
    data["finished_at"] = "2026-11-20T01:00:30"
    put_bytes(store, m.key, json.dumps(data).encode())
    read = artifacts.latest(store, DB)
    assert read.finished_at == at(20, 1, 0, 30)
    artifacts.check_fresh(read, timedelta(hours=1), now=at(20, 1, 30))


def test_new_artifact_id_never_reuses_a_taken_second(store: LocalStore) -> None:
    """Two backups within one second get different ids (the second waits for the next second)."""
    first, when = artifacts.new_artifact_id(store, DB)
    put_bytes(store, artifacts.data_key(DB, first, "sqlite.zst"), b"x")
    second, when2 = artifacts.new_artifact_id(store, DB)
    assert second != first
    assert when2 > when
    assert sorted([first, second]) == [first, second]


def test_new_artifact_id_gives_up_with_a_store_error(store: LocalStore) -> None:
    """If every second keeps being taken (a clashing backup, a stuck clock) it stops: exit 1, not 7."""
    now = artifacts.utcnow()
    for offset in range(-1, 8):
        ident = artifacts.artifact_id(DB, now + timedelta(seconds=offset))
        put_bytes(store, artifacts.data_key(DB, ident, "sqlite.zst"), b"x")
    with pytest.raises(StoreError) as excinfo:
        artifacts.new_artifact_id(store, DB)
    assert type(excinfo.value) is StoreError
    assert excinfo.value.hint
