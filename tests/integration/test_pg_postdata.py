"""A table's own post-data (its indexes, keys, triggers) is built as soon as its rows are in, while
other tables still load, as ``pg_restore --jobs`` does (issue 15; ``engines/postgresql/postdata.py``).

The contract: the split is taken from the archive's own dependencies (foreign keys and partitions'
indexes wait for every table); the restore is exact either way (test_pg_directory.py runs its
every-kind-of-object restore with every table built early); an index that cannot be built fails
the restore before the swap whether it was built early or at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from dataferry import ops
from dataferry.engines.postgresql import parallel
from dataferry.errors import EngineError
from servers import PgServer

from ._pg_helpers import SHADOW_SUFFIX, PgSetup, fingerprint, new_setup
from .test_pg_directory import assert_untouched, restore

pytestmark = pytest.mark.integration

#: An index whose expression divides by zero for one row once the function has been replaced: the
#: source holds it (built before the change), the restore cannot build it.
UNBUILDABLE = """
CREATE FUNCTION public.brittle(v int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT v $$;
CREATE TABLE public.measured (id int PRIMARY KEY, v int);
INSERT INTO public.measured SELECT g, g FROM generate_series(1, {rows}) g;
CREATE INDEX measured_brittle ON public.measured (public.brittle(v));
CREATE OR REPLACE FUNCTION public.brittle(v int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT 1 / (v - 7) $$;
"""


class Recording(parallel.OwnBuilds):
    """``OwnBuilds`` that also remembers the order the tables finished loading in."""

    last: ClassVar[Recording | None] = None
    #: Counts the connections to the shadow when a build starts (set by a test).
    probe: ClassVar[Callable[[], int] | None] = None

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.loads: list[str] = []
        self.connected_at_build: list[int] = []
        Recording.last = self

    def build(self, table: parallel.TableData) -> None:
        """Count the shadow's connections, then build as ``OwnBuilds`` does."""
        if Recording.probe is not None:
            self.connected_at_build.append(Recording.probe())
        super().build(table)

    def loaded(self, table: parallel.TableData, size: int) -> bool:
        """Record, then decide as ``OwnBuilds`` does."""
        self.loads.append(table.file)
        return super().loaded(table, size)


@pytest.fixture
def pg_setup(pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PgSetup]:
    """A seeded source, a target with other data, local stores; builds recorded."""
    monkeypatch.setattr(parallel, "OwnBuilds", Recording)
    Recording.last, Recording.probe = None, None
    yield from new_setup(pg_server, tmp_path, monkeypatch)


def recorded() -> Recording:
    """The builds of the last restore."""
    assert Recording.last is not None
    return Recording.last


def own_kinds(builds: Recording) -> dict[str, list[str]]:
    """Each table's own entries as ``--list`` names them (kind, schema, name), by data file."""
    return {
        file: [line.decode().split(" ", 3)[3].rsplit(" ", 1)[0] for line in lines]
        for file, lines in builds.toc.post.own.items()
    }


def test_each_tables_own_indexes_are_built_as_soon_as_it_is_loaded(
    pg_setup: PgSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel, "EARLY_BYTES", 0)
    before = fingerprint(pg_setup.pg, pg_setup.src)
    ops.backup(pg_setup.config(), "app", "production")

    result = restore(pg_setup, jobs=1)

    builds = recorded()
    kinds = own_kinds(builds)
    users = next(file for file, own in kinds.items() if "CONSTRAINT public users users_pkey" in own)
    assert set(kinds[users]) >= {"CONSTRAINT public users users_email_key", "INDEX public users_profile_idx"}
    invoices = next(file for file, own in kinds.items() if "CONSTRAINT billing invoices invoices_pkey" in own)
    assert "INDEX billing invoices_user_idx" in kinds[invoices]
    rest = b"".join(builds.toc.post.rest).decode()
    assert "FK CONSTRAINT billing invoices invoices_user_id_fkey" in rest  # it reads users too
    # one worker: every table with entries of its own is built right after its load, but the last
    # table loaded, whose entries go to the final step with every worker
    assert builds.built == [file for file in builds.loads[:-1] if file in kinds]
    assert len(builds.built) >= 2
    assert result.swapped
    assert fingerprint(pg_setup.pg, pg_setup.dst) == before


def test_a_worker_builds_with_its_own_connection_closed(
    pg_setup: PgSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restore holds no more connections than the jobs the server was asked for: the worker that
    builds a table's indexes (pg_restore's connection) has closed its COPY connection first."""
    monkeypatch.setattr(parallel, "EARLY_BYTES", 0)
    shadow = pg_setup.dst + SHADOW_SUFFIX
    Recording.probe = lambda: int(
        pg_setup.pg.psql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{shadow}'")
    )
    ops.backup(pg_setup.config(), "app", "production")

    assert restore(pg_setup, jobs=1).swapped

    builds = recorded()
    assert len(builds.connected_at_build) >= 2
    assert builds.connected_at_build == [0] * len(builds.connected_at_build)


@pytest.mark.parametrize("early", [True, False])
def test_an_index_that_cannot_be_built_fails_the_restore_before_the_swap(
    pg_setup: PgSetup, monkeypatch: pytest.MonkeyPatch, early: bool
) -> None:
    """``early``: the table is the largest, loaded first and its index built while the others load;
    else its index is built in the final step."""
    if early:
        monkeypatch.setattr(parallel, "EARLY_BYTES", 0)
    pg_setup.pg.psql(UNBUILDABLE.format(rows=50_000), pg_setup.src)
    before = fingerprint(pg_setup.pg, pg_setup.dst)
    ops.backup(pg_setup.config(), "app", "production")

    with pytest.raises(EngineError, match="division by zero"):
        restore(pg_setup, jobs=1)

    builds = recorded()
    measured = next(file for file, own in own_kinds(builds).items() if "INDEX public measured_brittle" in own)
    if early:
        assert builds.loads == [measured]  # failed in its own build; nothing else was loaded
    else:
        assert len(builds.loads) == len(builds.toc.tables) and builds.built == []
    assert_untouched(pg_setup, before)
