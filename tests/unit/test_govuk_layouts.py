"""The ``govuk-puppet`` layout, and choosing "latest" among both eras' names, against doubles of
GOV.UK's own selection logic (``tests/govuk_pickers.py``) on local stores: the same listing logic as
on S3 (``tests/integration/test_govuk_pickers_s3.py`` runs them on moto with real dumps)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dataferry import artifacts
from dataferry.artifacts import DataObject, Manifest
from dataferry.config import Config
from dataferry.engines import get_engine
from dataferry.errors import NotFound
from dataferry.layouts import layout_for
from dataferry.layouts.govuk import GovukLayout
from dataferry.layouts.govuk_names import Naming, parse_name
from dataferry.layouts.govuk_puppet import GovukPuppetLayout
from dataferry.progress import NullReporter
from dataferry.stores import put_bytes
from dataferry.stores.local import LocalStore
from govuk_pickers import (
    PuppetPullFailed,
    db_backup_list_pick,
    local_ls,
    puppet_pick,
    replicate_pick,
)

DB = "publishing_api_production"
NAMING = Naming(path="publishing-api-postgres", name=DB)
PG = get_engine("postgresql")
T0 = datetime(2026, 1, 5, 23, 0, 5, tzinfo=UTC)


class Warnings(NullReporter):
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warn(self, message: str, **fields: Any) -> None:
        self.warnings.append(message)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "bucket")


def _layout(store: LocalStore, cls: type[GovukLayout] = GovukPuppetLayout) -> GovukLayout:
    return cls(store=store, database="publishing-api", environment="production", naming=NAMING)


def _backup(
    layout: GovukLayout, monkeypatch: pytest.MonkeyPatch, when: datetime, *, commit: bool = True
) -> str:
    """What ``pipeline.publish`` does with a layout: a new key, the data, then the manifest."""
    monkeypatch.setattr(artifacts, "utcnow", lambda: when)
    encoding = layout.encoding(PG, 1)
    new = layout.new_key(PG, encoding)
    data = b"PGDMP" + new.id.encode()
    layout.store.put(new.key, io.BytesIO(data))
    if commit:
        obj = DataObject(key=new.key, size=len(data), sha256="0" * 64, format="pg_custom", compression="none")
        layout.publish(
            Manifest(
                id=new.id,
                database="publishing-api",
                engine="postgresql",
                source_environment="production",
                created_at=new.created,
                finished_at=new.created,
                objects=[obj],
                extra=layout.manifest_extra(new),
            )
        )
    return new.key


def _govuk_script_dump(store: LocalStore, basename: str) -> str:
    """A dump GOV.UK's own scripts wrote: no manifest, no record of dataferry's."""
    key = NAMING.key(basename)
    put_bytes(store, key, b"PGDMP from GOV.UK")
    return key


def _ls(store: LocalStore) -> list[str]:
    return local_ls(store.root / NAMING.path)


def _base(key: str) -> str:
    return key.rsplit("/", 1)[-1]


# -- the govuk-puppet layout ------------------------------------------------------------------------


def test_puppet_layout_writes_the_scripts_names_and_nothing_else_in_the_directory(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = _backup(_layout(store), monkeypatch, T0)
    assert key == f"publishing-api-postgres/2026-01-05T23:00:05-{DB}.gz"
    assert [p.name for p in (store.root / NAMING.path).iterdir()] == [_base(key)]
    manifest = (
        store.root
        / "_dataferry/manifests/publishing-api-postgres"
        / f"2026-01-05T23:00:05-{DB}.manifest.json"
    )
    assert manifest.is_file()
    assert not (store.root / NAMING.pointer_key).exists()
    chosen = _layout(store).select(PG, artifact=None, at=None, reporter=NullReporter())
    assert chosen.objects[0].key == key and chosen.objects[0].sha256 == "0" * 64  # its manifest, found


def test_every_govuk_reader_picks_the_newest_dump_the_puppet_layout_wrote(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [
        _backup(_layout(store), monkeypatch, T0 + timedelta(hours=h, minutes=m))
        for h, m in ((0, 0), (0, 40), (25, 0))
    ]
    newest = _base(keys[-1])
    assert puppet_pick(_ls(store), DB) == newest
    assert replicate_pick(_ls(store)) == newest
    assert db_backup_list_pick(_ls(store), DB) == newest


def test_the_puppet_pick_fails_on_a_govuk_layout_directory(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13, item 1: why the govuk layout cannot be used where the Puppet-era script pulls."""
    _govuk_script_dump(store, f"2026-01-04T23:00:05-{DB}.gz")  # the script's own valid dump
    _backup(_layout(store, GovukLayout), monkeypatch, T0)
    with pytest.raises(PuppetPullFailed, match=f"latest-{DB}.txt"):
        puppet_pick(_ls(store), DB)
    warnings = Warnings()
    _layout(store).select(PG, artifact=None, at=None, reporter=warnings)
    assert any(f"govuk_env_sync.sh pulls of {DB} will fail here" in w for w in warnings.warnings)


def test_mixed_with_the_puppet_script_in_one_hour_every_reader_and_dataferry_agree(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A migration: the Puppet script and dataferry push into one directory, within the same hour."""
    _govuk_script_dump(store, f"2026-01-05T23:00:05-{DB}.gz")
    mine = _backup(_layout(store), monkeypatch, T0 + timedelta(minutes=30))
    assert puppet_pick(_ls(store), DB) == replicate_pick(_ls(store)) == _base(mine)
    assert _layout(store).choose() == (mine, "newest key")
    theirs = _govuk_script_dump(store, f"2026-01-05T23:45:00-{DB}.gz")  # the script's next push
    assert puppet_pick(_ls(store), DB) == replicate_pick(_ls(store)) == _base(theirs)
    warnings = Warnings()
    chosen = _layout(store).select(PG, artifact=None, at=None, reporter=warnings)
    assert chosen.objects[0].key == theirs and chosen.objects[0].sha256 == ""  # a stand-in
    assert any("has no dataferry manifest" in w for w in warnings.warnings)


def test_an_interrupted_backup_is_never_latest_but_the_scripts_dumps_are(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    committed = _backup(_layout(store), monkeypatch, T0)
    theirs = _govuk_script_dump(store, f"2026-01-06T23:00:05-{DB}.gz")
    _backup(_layout(store), monkeypatch, T0 + timedelta(days=2), commit=False)  # killed before its manifest
    assert _layout(store).choose() == (theirs, "newest key")
    assert _layout(store).choose(at=T0 + timedelta(hours=1)) == (committed, "newest at or before")


def test_config_chooses_the_puppet_layout(tmp_path: Path) -> None:
    cfg = Config.model_validate(
        {
            "environments": {"production": {"store": {"url": str(tmp_path), "layout": "govuk-puppet"}}},
            "databases": {
                "publishing-api": {
                    "engine": "postgresql",
                    "store_path": "publishing-api-postgres",
                    "store_name": DB,
                }
            },
        }
    )
    layout = layout_for(cfg, "production", "publishing-api")
    assert isinstance(layout, GovukPuppetLayout) and layout.naming == NAMING
    with pytest.raises(NotFound):
        layout_for(cfg, "production", "no-such-database")


# -- choosing "latest" among both eras' names (govuk layout) ------------------------------------------


def test_names_of_both_eras_and_their_variants_parse_to_the_same_time() -> None:
    when = datetime(2026, 1, 5, 23, 5, 1, tzinfo=UTC)
    for ts in (
        "2026-01-05T230501Z",
        "2026-01-05T23:05:01",
        "2026-01-05T23:05:01Z",
        "2026-01-05T230501",
        "2026-01-05_230501Z",
    ):
        assert parse_name(f"{ts}-{DB}.gz") == (when, DB), ts


def test_without_pointer_the_newest_by_time_even_where_byte_order_disagrees(store: LocalStore) -> None:
    """In byte order a colon name sorts after every compact name of the same hour."""
    _govuk_script_dump(store, f"2026-01-05T23:00:05-{DB}.gz")
    newest = _govuk_script_dump(store, f"2026-01-05T233000Z-{DB}.gz")
    assert replicate_pick(_ls(store)) == f"2026-01-05T23:00:05-{DB}.gz"  # GOV.UK's sort gets it wrong
    assert _layout(store, GovukLayout).choose() == (newest, "newest key")


def test_govuk_layout_names_a_dump_so_that_sort_tail_picks_it_after_a_colon_name_of_the_hour(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _govuk_script_dump(store, f"2026-01-05T23:00:05-{DB}.gz")
    mine = _backup(_layout(store, GovukLayout), monkeypatch, T0 + timedelta(minutes=30))
    assert _base(mine) == f"2026-01-05T23:30:05-{DB}.gz"
    assert replicate_pick(_ls(store)) == db_backup_list_pick(_ls(store), DB) == _base(mine)
    later = _backup(_layout(store, GovukLayout), monkeypatch, T0 + timedelta(hours=1))
    assert _base(later) == f"2026-01-06T000005Z-{DB}.gz"  # no colon name in that hour: the usual form
    assert replicate_pick(_ls(store)) == _base(later)
    assert _layout(store, GovukLayout).choose() == (later, "pointer")


def test_a_pointer_older_than_a_dump_the_script_pushed_is_passed_over_with_a_warning(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13, item 3: dataferry's pointer hid a newer Puppet-pushed dump (exit 0, no warning)."""
    pointed = _backup(_layout(store, GovukLayout), monkeypatch, T0)
    theirs = _govuk_script_dump(store, f"2026-01-06T23:00:05-{DB}.gz")
    warnings = Warnings()
    chosen = _layout(store, GovukLayout).select(PG, artifact=None, at=None, reporter=warnings)
    assert chosen.objects[0].key == theirs
    assert any(f"names {pointed}, but {theirs} is newer" in w for w in warnings.warnings)


def test_a_newer_dump_without_manifest_or_pointer_is_not_taken_but_named(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compact-named dump the pointer does not name may be a db-backup upload that failed halfway
    (``pg_dump | s5cmd pipe`` uploads what it got): the pointer is followed, with a warning."""
    pointed = _backup(_layout(store, GovukLayout), monkeypatch, T0)
    unfinished = _govuk_script_dump(store, f"2026-01-06T230005Z-{DB}.gz")
    warnings = Warnings()
    assert _layout(store, GovukLayout).choose(reporter=warnings) == (pointed, "pointer")
    assert any(unfinished in w and "not chosen" in w for w in warnings.warnings)


def test_a_newer_committed_dump_beats_a_stale_pointer(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _backup(_layout(store, GovukLayout), monkeypatch, T0)
    second = _backup(_layout(store, GovukLayout), monkeypatch, T0 + timedelta(days=1))
    put_bytes(store, NAMING.pointer_key, first.encode())  # e.g. db-backup moved it back
    assert _layout(store, GovukLayout).choose() == (second, "newest, newer than the pointer")


def test_at_takes_any_dump_but_an_unfinished_dataferry_one(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """db-backup's directory: a pointer and compact names without manifests. Asked for a time, the
    dump of that time is taken even though the pointer has moved on."""
    old = _govuk_script_dump(store, f"2026-01-04T230005Z-{DB}.gz")
    pointed = _govuk_script_dump(store, f"2026-01-05T230005Z-{DB}.gz")
    put_bytes(store, NAMING.pointer_key, pointed.encode())
    unfinished = _backup(_layout(store, GovukLayout), monkeypatch, T0 - timedelta(hours=12), commit=False)
    assert _layout(store, GovukLayout).choose(at=T0 - timedelta(hours=1)) == (old, "newest at or before")
    assert unfinished != old


def test_when_no_dump_is_trusted_the_error_names_what_is_there(store: LocalStore) -> None:
    pointed = _govuk_script_dump(store, f"2026-01-05T230005Z-{DB}.gz")
    put_bytes(store, NAMING.pointer_key, pointed.encode())
    store.delete(pointed)
    _govuk_script_dump(store, f"2026-01-04T230005Z-{DB}.gz")
    with pytest.raises(NotFound, match="does not exist"):  # a dangling pointer is still loud
        _layout(store, GovukLayout).choose()
    with pytest.raises(NotFound, match="no trusted dump") as err:
        _layout(store).choose()  # govuk-puppet: no pointer to follow, the pointer's presence is noted
    assert f"2026-01-04T230005Z-{DB}.gz" in (err.value.hint or "")


@pytest.mark.parametrize("cls", [GovukLayout, GovukPuppetLayout])
def test_list_leaves_out_unfinished_backups(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch, cls: type[GovukLayout]
) -> None:
    committed = _backup(_layout(store, cls), monkeypatch, T0)
    theirs = _govuk_script_dump(store, f"2026-01-06T23:00:05-{DB}.gz")
    _backup(_layout(store, cls), monkeypatch, T0 + timedelta(days=2), commit=False)
    listed = _layout(store, cls).list_manifests(PG)
    assert [m.objects[0].key for m in listed] == [theirs, committed]
    assert [bool(m.objects[0].sha256) for m in listed] == [False, True]


def test_another_databases_colon_dump_does_not_change_the_name(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_bytes(store, NAMING.key("2026-01-05T23:00:05-draft_publishing_api_production.gz"), b"PGDMP")
    mine = _backup(_layout(store, GovukLayout), monkeypatch, T0 + timedelta(minutes=30))
    assert _base(mine) == f"2026-01-05T233005Z-{DB}.gz"


# -- the govuk-puppet layout reads what the govuk layout and db-backup wrote ------------------------


def test_the_puppet_layout_reads_a_govuk_layout_directory_with_its_manifests(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``legacy`` defaults to govuk-puppet for job files (issue 13): it must still restore what the
    govuk layout published (manifest beside the dump, pointer), verified by that manifest."""
    older = _backup(_layout(store, GovukLayout), monkeypatch, T0)
    newest = _backup(_layout(store, GovukLayout), monkeypatch, T0 + timedelta(days=1))
    warnings = Warnings()
    chosen = _layout(store).select(PG, artifact=None, at=None, reporter=warnings)
    assert chosen.objects[0].key == newest and chosen.objects[0].sha256 == "0" * 64  # its manifest
    assert _layout(store).choose(at=T0 + timedelta(hours=1))[0] == older
    assert [m.objects[0].key for m in _layout(store).list_manifests(PG)] == [newest, older]
    assert not any("no pointer" in w for w in warnings.warnings)


def test_the_puppet_layout_follows_db_backups_pointer(store: LocalStore) -> None:
    """db-backup's own dumps have no manifest; its pointer says which upload finished."""
    pointed = _govuk_script_dump(store, f"2026-01-05T230005Z-{DB}.gz")
    unfinished = _govuk_script_dump(store, f"2026-01-06T230005Z-{DB}.gz")
    put_bytes(store, NAMING.pointer_key, pointed.encode())
    warnings = Warnings()
    assert _layout(store).choose(reporter=warnings) == (pointed, "pointer")
    assert any(unfinished in w and "not chosen" in w for w in warnings.warnings)


def test_a_puppet_directory_without_a_pointer_is_not_warned_about(store: LocalStore) -> None:
    theirs = _govuk_script_dump(store, f"2026-01-05T23:00:05-{DB}.gz")
    warnings = Warnings()
    assert _layout(store).choose(reporter=warnings) == (theirs, "newest key")
    assert warnings.warnings == []
