"""PostgreSQL's artifact of many objects (``pg_directory``, issue 15): one object per table's data
plus the table of contents, restored by workers straight from the store with no local spool.

The contract: the restore is exact (rows, content, schema, sequences, large objects, everything
``pg_dump`` carries); a table object that is missing, truncated or corrupted is refused before the
swap, with the live database untouched; a backup that fails between objects publishes nothing and
removes what it stored; the single-object artifacts of earlier versions still restore.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dataferry import artifacts, ops
from dataferry.artifacts import Manifest
from dataferry.engines.postgresql import parallel
from dataferry.errors import FerryError, VerificationFailed
from servers import PgServer, S3Server

from ._pg_helpers import (
    PgSetup,
    dataferry_databases,
    datallowconn,
    fingerprint,
    new_setup,
    use_s3,
)

pytestmark = pytest.mark.integration

#: Object kinds that hold data or state beyond plain tables, and names that need quoting.
RICH_SQL = r"""
CREATE TABLE public."Odd Name; ""quoted"" x" (id int PRIMARY KEY, "Tab	Col" text, "x,y" int);
INSERT INTO public."Odd Name; ""quoted"" x" SELECT g, E'back\\slash\ttab\nnewline ' || g, g FROM generate_series(1, 50) g;
CREATE TABLE public.measures (id int, taken date NOT NULL, v numeric) PARTITION BY RANGE (taken);
CREATE TABLE public.measures_2024 PARTITION OF public.measures FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE public.measures_2025 PARTITION OF public.measures FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO public.measures SELECT g, date '2024-06-01' + g, g / 3.0 FROM generate_series(1, 400) g;
CREATE MATERIALIZED VIEW public.user_totals AS
    SELECT user_id, sum(amount) AS total FROM billing.invoices GROUP BY user_id;
CREATE UNLOGGED TABLE public.cache (k text PRIMARY KEY, v text);
INSERT INTO public.cache SELECT 'k' || g, 'v' || g FROM generate_series(1, 30) g;
CREATE TABLE public.generated (a int, b int GENERATED ALWAYS AS (a * 2) STORED);
INSERT INTO public.generated (a) SELECT g FROM generate_series(1, 20) g;
CREATE TABLE public.empty (id int);
SELECT setval('public.invoice_no', 424242);
SELECT lo_from_bytea(0, 'a large object');
CREATE ROLE "dir reader";
GRANT SELECT ON public.users TO "dir reader";
COMMENT ON COLUMN public.users.email IS 'personal';
"""


@pytest.fixture
def pg_setup(pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PgSetup]:
    """A seeded source, a target with other data, local stores."""
    yield from new_setup(pg_server, tmp_path, monkeypatch)


def restore(setup: PgSetup, **kwargs: object) -> ops.RestoreResult:
    """Restore app from production into staging."""
    req = ops.RestoreRequest(database="app", environment="staging", source="production", **kwargs)  # type: ignore[arg-type]
    return ops.restore(ops.plan_restore(setup.config(), req))


def large_objects(pg: PgServer, db: str) -> str:
    """Every large object's content, in oid order."""
    return pg.psql(
        "SELECT string_agg(encode(lo_get(oid), 'escape'), ',' ORDER BY oid) FROM pg_largeobject_metadata", db
    )


def object_path(setup: PgSetup, manifest: Manifest, name: str) -> Path:
    """Where the local production store keeps the object ``name`` of ``manifest``."""
    key = next(o.key for o in manifest.objects if o.name == name)
    return setup.tmp / "store-production" / key


def biggest_table_object(manifest: Manifest) -> str:
    """The name of the largest table-data object (``<dump id>.dat``)."""
    tables = [o for o in manifest.objects if o.name and o.name != "toc.dat" and o.name.endswith(".dat")]
    return max(tables, key=lambda o: o.size).name or ""


def assert_untouched(setup: PgSetup, before: dict[str, str]) -> None:
    """The live target has exactly its old content, accepts connections, and no shadow is left."""
    assert fingerprint(setup.pg, setup.dst) == before
    assert datallowconn(setup.pg, setup.dst) == "t"
    assert dataferry_databases(setup.pg, setup.dst) == set()
    assert setup.spool_files() == []


@pytest.mark.parametrize(("jobs", "early"), [(1, False), (3, False), (1, True), (3, True)])
def test_every_kind_of_object_restores_exactly(
    pg_setup: PgSetup, jobs: int, early: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``early``: every table's own indexes and keys built as soon as it is loaded, however small
    (by default only tables of 8 MiB or more are)."""
    if early:
        monkeypatch.setattr(parallel, "EARLY_BYTES", 0)
    pg = pg_setup.pg
    pg.psql('DROP ROLE IF EXISTS "dir reader";')
    pg.psql(RICH_SQL, pg_setup.src)
    before = fingerprint(pg, pg_setup.src)

    manifest = ops.backup(pg_setup.config(), "app", "production").manifest
    result = restore(pg_setup, jobs=jobs)

    assert result.swapped
    assert manifest.format_version == artifacts.FORMAT_VERSION == 2
    names = [o.name for o in manifest.objects]
    assert names[-1] == "toc.dat" and "blobs.toc" in names
    assert {o.format for o in manifest.objects} == {"pg_directory"}
    assert all(
        o.key.startswith(f"app/{manifest.id}.pg_directory/") and o.key.endswith(".zst")
        for o in manifest.objects
    )
    # rows, content and schema (grants, comments, partitions, generated columns, the matview)
    assert fingerprint(pg, pg_setup.dst) == before
    assert result.row_counts == manifest.row_counts and len(manifest.row_counts) >= 9
    assert pg.psql("SELECT last_value FROM public.invoice_no", pg_setup.dst) == "424242"
    assert large_objects(pg, pg_setup.dst) == large_objects(pg, pg_setup.src) == "a large object"
    assert pg.psql("SELECT count(*) FROM public.user_totals", pg_setup.dst) == pg.psql(
        "SELECT count(*) FROM public.user_totals", pg_setup.src
    )
    assert dataferry_databases(pg, pg_setup.dst) == set()
    assert pg_setup.spool_files() == []  # nothing spooled, nothing left
    pg.psql('DROP OWNED BY "dir reader" CASCADE;', pg_setup.dst)
    pg.psql('DROP OWNED BY "dir reader" CASCADE;', pg_setup.src)
    pg.psql('DROP ROLE "dir reader";')


def test_restore_from_s3_streams_every_object_without_a_spool(
    pg_setup: PgSetup, s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_s3(pg_setup, s3_server, s3_bucket, monkeypatch)
    before = fingerprint(pg_setup.pg, pg_setup.src)
    ops.backup(pg_setup.config(), "app", "production")

    plan = ops.plan_restore(
        pg_setup.config(),
        ops.RestoreRequest(database="app", environment="staging", source="production", jobs=2),
    )
    assert plan.spool is None and plan.reservation is None  # nothing to reserve: no spool
    result = ops.restore(plan)

    assert result.swapped
    assert fingerprint(pg_setup.pg, pg_setup.dst) == before


@pytest.mark.parametrize("damage", ["missing", "truncated", "corrupted", "toc-corrupted", "unlisted"])
def test_a_damaged_table_object_is_refused_before_the_swap(pg_setup: PgSetup, damage: str) -> None:
    before = fingerprint(pg_setup.pg, pg_setup.dst)
    manifest = ops.backup(pg_setup.config(), "app", "production").manifest
    name = "toc.dat" if damage == "toc-corrupted" else biggest_table_object(manifest)
    path = object_path(pg_setup, manifest, name)
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-7])
    elif damage in ("corrupted", "toc-corrupted"):
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    else:  # the manifest no longer lists the object the table of contents names (a forged manifest)
        key = artifacts.manifest_key("app", manifest.id)
        edited = manifest.model_copy(update={"objects": [o for o in manifest.objects if o.name != name]})
        (pg_setup.tmp / "store-production" / key).write_text(edited.model_dump_json())

    with pytest.raises(FerryError) as info:
        restore(pg_setup, jobs=2)

    if damage != "missing":
        assert isinstance(info.value, VerificationFailed), info.value
    assert_untouched(pg_setup, before)


def test_old_single_object_artifacts_still_restore(
    pg_setup: PgSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = fingerprint(pg_setup.pg, pg_setup.src)
    pg_setup.artifact_format = "single"  # what earlier versions wrote
    old = ops.backup(pg_setup.config(), "app", "production").manifest
    pg_setup.artifact_format = "per-table"
    assert old.format_version == 1 and [o.format for o in old.objects] == ["pg_custom"]
    assert old.objects[0].name is None

    for jobs in (1, 2):
        result = restore(pg_setup, jobs=jobs)
        assert result.swapped and result.manifest.id == old.id
        assert fingerprint(pg_setup.pg, pg_setup.dst) == before


def test_a_manifest_of_a_newer_format_is_refused_by_an_older_reader(
    pg_setup: PgSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a dataferry that knows only single-object artifacts does with the new manifest: refuse
    it (upgrade), rather than feed the table of contents to pg_restore."""
    manifest = ops.backup(pg_setup.config(), "app", "production").manifest
    monkeypatch.setattr(artifacts, "FORMAT_VERSION", 1)
    store = ops.store_for(pg_setup.config(), "production")
    with pytest.raises(VerificationFailed, match="has format version 2"):
        artifacts.read_manifest(store, manifest.key)


def test_a_serial_dump_stores_each_table_as_it_is_written(
    pg_setup: PgSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pg_dump without --jobs (one worker) reports no finished tables: a table's file is finished
    when the next one appears, or pg_dump exits; the artifact restores exactly."""
    from dataferry import pieces

    from ._pg_helpers import seed_bulk

    seed_bulk(pg_setup.pg, pg_setup.src, 50_000)  # several chunks, so the reader waits on pg_dump
    before = fingerprint(pg_setup.pg, pg_setup.src)
    monkeypatch.setattr(pieces, "dump_workers", lambda: 1)
    manifest = ops.backup(pg_setup.config(), "app", "production").manifest
    assert {o.format for o in manifest.objects} == {"pg_directory"} and len(manifest.objects) >= 5

    result = restore(pg_setup)

    assert result.swapped and result.row_counts == manifest.row_counts
    assert fingerprint(pg_setup.pg, pg_setup.dst) == before


def test_rows_are_counted_in_the_dump_itself_not_by_a_second_scan(
    pg_setup: PgSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The per-table backup reads production once: each table's rows are the lines of its data
    file (COPY writes a newline inside a value as ``\\n``), not a ``count(*)`` beside pg_dump.
    Values with newlines, backslashes, tabs, empty strings and NULLs, and an empty table, count
    exactly."""
    from dataferry.engines.postgresql import directory

    def no_second_scan(*_: object) -> int:
        raise AssertionError("count(*) ran on production during a per-table backup")

    pg = pg_setup.pg
    pg.psql(
        r"""
        CREATE TABLE public.lines (id int, body text);
        INSERT INTO public.lines VALUES (1, E'two\nlines'), (2, E'back\\slash\.'), (3, ''), (4, NULL),
            (5, E'\\.'), (6, E'tab\there\r\n');
        INSERT INTO public.lines SELECT g, repeat(E'x\n', g % 7) FROM generate_series(7, 30000) g;
        CREATE TABLE public.nothing (id int);
        """,
        pg_setup.src,
    )
    monkeypatch.setattr(directory, "count_rows", no_second_scan)

    manifest = ops.backup(pg_setup.config(), "app", "production").manifest

    tables = pg.psql(
        "SELECT schemaname || '.' || relname FROM pg_stat_user_tables ORDER BY 1", pg_setup.src
    ).split()
    exact = {t: int(pg.psql(f"SELECT count(*) FROM {t}", pg_setup.src)) for t in tables}
    assert manifest.row_counts == exact
    assert exact["public.lines"] == 30000 and exact["public.nothing"] == 0
    result = restore(pg_setup)
    assert result.swapped and result.row_counts == exact


def test_a_table_file_that_cannot_be_counted_is_counted_in_the_snapshot(
    pg_setup: PgSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where a table's file does not end as pg_dump ends one, its rows come from ``count(*)`` in
    the dump's snapshot: still exact, never a guess."""
    from dataferry.engines.postgresql import directory

    monkeypatch.setattr(directory._Lines, "rows", lambda self: None)
    manifest = ops.backup(pg_setup.config(), "app", "production").manifest
    pg = pg_setup.pg
    tables = pg.psql(
        "SELECT schemaname || '.' || relname FROM pg_stat_user_tables ORDER BY 1", pg_setup.src
    ).split()
    assert manifest.row_counts == {t: int(pg.psql(f"SELECT count(*) FROM {t}", pg_setup.src)) for t in tables}
    assert sum(manifest.row_counts.values()) > 0


def test_a_spool_too_small_for_the_dump_gets_one_streamed_archive(
    pg_setup: PgSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pg_dump can write tables faster than they are compressed and stored, so a per-table backup
    may hold nearly the whole uncompressed dump on the spool. Where the spool cannot hold it (here
    a pod's spool limit of 1 KiB), the backup says so and is one streamed archive instead, which
    restores exactly; nothing is left on the spool."""
    from dataferry.progress import NullReporter

    class Warnings(NullReporter):
        def __init__(self) -> None:
            self.said: list[str] = []

        def warn(self, message: str, **fields: object) -> None:
            self.said.append(message)

    monkeypatch.setenv("DATAFERRY_SPOOL_SIZE_LIMIT", "1Ki")
    before = fingerprint(pg_setup.pg, pg_setup.src)
    reporter = Warnings()

    manifest = ops.backup(pg_setup.config(), "app", "production", reporter=reporter).manifest

    assert manifest.format_version == artifacts.SINGLE_OBJECT_VERSION and len(manifest.objects) == 1
    assert any("per-table backup may hold" in w and "streamed archive" in w for w in reporter.said)
    result = restore(pg_setup)
    assert result.swapped and result.row_counts == manifest.row_counts
    assert fingerprint(pg_setup.pg, pg_setup.dst) == before
    assert pg_setup.spool_files() == []


def test_a_per_table_backup_reserves_its_room_on_the_spool_and_gives_it_back(pg_setup: PgSetup) -> None:
    """With room, the backup is per-table, its reservation (the estimated dump) counts against other
    runs' checks while it runs, and nothing of it is left afterwards."""
    from dataferry import private

    seen: list[int] = []
    original = private.reserve

    def reserve(base: Path, nbytes: int) -> Path:
        seen.append(nbytes)
        return original(base, nbytes)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(private, "reserve", reserve)
        manifest = ops.backup(pg_setup.config(), "app", "production").manifest
    assert manifest.format_version == artifacts.FORMAT_VERSION and len(manifest.objects) > 1
    assert len(seen) == 1 and seen[0] > 0
    assert pg_setup.spool_files() == []
