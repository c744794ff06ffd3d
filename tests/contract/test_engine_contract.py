"""The Engine contract: one behavioural suite run against every engine.

SQLite runs everywhere; PostgreSQL and MySQL (MariaDB) run against the throwaway servers of
``tests/conftest.py`` and are skipped only while their engine module does not exist yet. Each case
knows how to name, seed, read back and list databases of its engine (``seed.py``); the tests
themselves are the same for every engine:

* dump -> restore_shadow -> swap keeps schema and data exact, also over an existing live database
  and into one that does not exist yet;
* Dump.row_counts (filled by EOF) equals row_counts() of the source and of the shadow;
* restore_shadow never touches the live database, and drop_shadow is idempotent and leaves nothing;
* a stream that raises midway, ends early, or is garbage leaves no shadow and the live database as
  it was;
* check() changes nothing and reports ok; server_version() is not empty;
* the password never appears in a child process's argv or in an error message;
* restore_shadow takes the target's restore lock: a second restore of the same database is refused
  (LockBusy, naming the holder) and touches nothing; swap and drop_shadow release it; a shadow that
  no longer holds the lock is never swapped in.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pytest
from pydantic import SecretStr

from dataferry.config import DatabaseRef
from dataferry.engines import Engine, RestoreOptions, RunsSql, estimated_dump_size, get_engine
from dataferry.errors import FerryError, LockBusy
from dataferry.streams import copy_stream
from servers import MariaDbServer, PgServer

from .seed import (
    expected_counts,
    seed_mariadb,
    seed_postgres,
    seed_sqlite,
    snapshot_mariadb,
    snapshot_postgres,
    snapshot_sqlite,
)

Snapshot = dict[str, list[str]]


@dataclass
class EngineCase:
    """One engine and how the suite reaches its databases."""

    name: str
    engine: Engine
    ref: Callable[[str], DatabaseRef]
    seed: Callable[[str, int], dict[str, int]]
    snapshot: Callable[[str], Snapshot]
    world: Callable[[], set[str]]  # every database (or file) there is: shadows show up here
    password: str | None = None

    def new_name(self) -> str:
        """A database name no other test uses."""
        return f"contract_{uuid.uuid4().hex[:10]}"


def _sqlite_case(tmp_path: Path) -> EngineCase:
    directory = tmp_path / "databases"
    directory.mkdir()

    def ref(name: str) -> DatabaseRef:
        return DatabaseRef(
            name="app", environment="test", engine="sqlite", url=f"sqlite:///{directory / name}"
        )

    return EngineCase(
        name="sqlite",
        engine=get_engine("sqlite"),
        ref=ref,
        seed=lambda name, variant: seed_sqlite(directory / name, variant),
        snapshot=lambda name: snapshot_sqlite(directory / name),
        world=lambda: {p.name for p in directory.iterdir()},
    )


def _postgres_case(pg: PgServer) -> EngineCase:
    def ref(name: str) -> DatabaseRef:
        return DatabaseRef(
            name="app",
            environment="test",
            engine="postgresql",
            url=pg.dsn(name),
            password=SecretStr(pg.password),
        )

    return EngineCase(
        name="postgresql",
        engine=get_engine("postgresql"),
        ref=ref,
        seed=lambda name, variant: seed_postgres(pg, name, variant),
        snapshot=lambda name: snapshot_postgres(pg, name),
        world=pg.databases,
        password=pg.password,
    )


def _mariadb_case(server: MariaDbServer) -> EngineCase:
    def ref(name: str) -> DatabaseRef:
        return DatabaseRef(
            name="app",
            environment="test",
            engine="mysql",
            url=server.url(name),
            password=SecretStr(server.password),
        )

    return EngineCase(
        name="mysql",
        engine=get_engine("mysql"),
        ref=ref,
        seed=lambda name, variant: seed_mariadb(server, name, variant),
        snapshot=lambda name: snapshot_mariadb(server, name),
        world=server.databases,
        password=server.password,
    )


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.integration),
        pytest.param("mysql", marks=pytest.mark.integration),
    ]
)
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EngineCase]:
    """One case per engine; databases a test leaves on a shared server are dropped afterwards."""
    if request.param == "sqlite":
        yield _sqlite_case(tmp_path)
        return
    # Skip only while the engine is not written yet; once the module exists, it must pass.
    pytest.importorskip(f"dataferry.engines.{request.param}")
    if request.param == "postgresql":
        pg: PgServer = request.getfixturevalue("pg_server")
        before = pg.databases()
        yield _postgres_case(pg)
        for name in pg.databases() - before:
            pg.drop_db(name)
    else:
        my: MariaDbServer = request.getfixturevalue("mariadb_server")
        before = my.databases()
        yield _mariadb_case(my)
        for name in my.databases() - before:
            my.drop_db(name)


# -- helpers -------------------------------------------------------------------------------------


class Boom(Exception):
    """The failure injected into a restore stream."""


class FailingReader:
    """Passes ``limit`` bytes of ``src`` through, then raises ``Boom`` (or ends, if ``clean_eof``)."""

    def __init__(self, src: BinaryIO, limit: int, *, clean_eof: bool = False) -> None:
        self._src = src
        self._left = limit
        self._clean_eof = clean_eof

    def read(self, n: int = -1) -> bytes:
        """Read until the limit, then fail."""
        if self._left <= 0:
            if self._clean_eof:
                return b""
            raise Boom("the artifact stream broke halfway")
        n = self._left if n is None or n < 0 else min(n, self._left)
        data = self._src.read(n)
        self._left -= len(data)
        return data

    def readable(self) -> bool:
        """File-like enough for any consumer."""
        return True


def dump_to_file(case: EngineCase, name: str, path: Path) -> dict[str, int]:
    """Dump ``name`` into ``path`` (as the store would hold it); returns Dump.row_counts at EOF."""
    with case.engine.dump(case.ref(name)) as dump, path.open("wb") as out:
        copy_stream(dump.stream, out)
        counts = dict(dump.row_counts)
    assert path.stat().st_size > 0
    return counts


def bare(counts: dict[str, int]) -> dict[str, int]:
    """Row counts keyed by bare table name (engines may qualify them as schema.table)."""
    return {key.rsplit(".", 1)[-1]: value for key, value in counts.items()}


@pytest.fixture
def source(case: EngineCase) -> str:
    """A seeded source database (variant 0)."""
    name = case.new_name()
    case.seed(name, 0)
    return name


@pytest.fixture
def target(case: EngineCase) -> str:
    """A seeded live target database with other data (variant 1, with an extra table)."""
    name = case.new_name()
    case.seed(name, 1)
    return name


@pytest.fixture
def artifact(case: EngineCase, source: str, tmp_path: Path) -> Path:
    """A dump of ``source`` in a file."""
    path = tmp_path / "artifact.dump"
    dump_to_file(case, source, path)
    return path


# -- the contract --------------------------------------------------------------------------------


def test_round_trip_over_a_live_database_is_exact(
    case: EngineCase, source: str, target: str, artifact: Path
) -> None:
    """restore_shadow leaves the live database alone; swap makes it exactly the source."""
    source_before = case.snapshot(source)
    target_before = case.snapshot(target)
    world_before = case.world()
    assert target_before != source_before

    with artifact.open("rb") as f:
        shadow = case.engine.restore_shadow(case.ref(target), f, RestoreOptions())
    assert case.snapshot(target) == target_before  # not live until the swap
    assert case.world() != world_before  # the shadow exists beside it

    case.engine.swap(shadow)
    assert case.snapshot(target) == source_before
    assert case.snapshot(source) == source_before  # the source was only read
    assert case.world() == world_before  # no shadow, no old copy left behind


def test_restore_into_a_database_that_does_not_exist_yet(
    case: EngineCase, source: str, artifact: Path
) -> None:
    """The first restore into a fresh environment creates the live database."""
    target = case.new_name()
    world_before = case.world()
    with artifact.open("rb") as f:
        shadow = case.engine.restore_shadow(case.ref(target), f, RestoreOptions())
    case.engine.swap(shadow)
    assert case.snapshot(target) == case.snapshot(source)
    assert case.world() - world_before == {target}


def test_row_counts_of_dump_source_and_shadow_agree(case: EngineCase, source: str, tmp_path: Path) -> None:
    """Dump.row_counts (complete at EOF) = row_counts(source) = row_counts(shadow) = what was seeded."""
    dumped = dump_to_file(case, source, tmp_path / "dump")
    assert dumped == case.engine.row_counts(case.ref(source))
    assert bare(dumped) == expected_counts(0)
    target = case.new_name()
    with (tmp_path / "dump").open("rb") as f:
        shadow = case.engine.restore_shadow(case.ref(target), f, RestoreOptions())
    try:
        assert case.engine.row_counts(shadow) == dumped  # a shadow is a target
        if isinstance(case.engine, RunsSql):
            assert case.engine.query(shadow, "SELECT 1") == [(1,)]
    finally:
        case.engine.drop_shadow(shadow)


def test_drop_shadow_is_idempotent_and_leaves_nothing(case: EngineCase, target: str, artifact: Path) -> None:
    """Dropping a shadow twice is fine; afterwards the world is as before and the live db untouched."""
    world_before = case.world()
    target_before = case.snapshot(target)
    with artifact.open("rb") as f:
        shadow = case.engine.restore_shadow(case.ref(target), f, RestoreOptions())
    assert case.world() != world_before
    case.engine.drop_shadow(shadow)
    case.engine.drop_shadow(shadow)
    assert case.world() == world_before
    assert case.snapshot(target) == target_before


def test_a_second_shadow_replaces_a_leftover_one(case: EngineCase, target: str, artifact: Path) -> None:
    """A shadow left by a run that died before cleaning up does not block the next restore."""
    world_before = case.world()
    with artifact.open("rb") as f:
        leftover = case.engine.restore_shadow(case.ref(target), f, RestoreOptions())  # never dropped
    leftover.release()  # "killed": the server (or the kernel) releases a dead holder's lock
    with artifact.open("rb") as f:
        shadow = case.engine.restore_shadow(case.ref(target), f, RestoreOptions())
    case.engine.swap(shadow)
    leftovers = case.world() - world_before
    if case.name == "sqlite":
        # A killed SQLite restore leaves a temp file beside the database: visible, harmless, and
        # never mistaken for the database. (Cleaning it is the operator's, reported.)
        assert all(".dataferry-shadow-" in name for name in leftovers)
    else:
        assert leftovers == set()


@pytest.mark.parametrize("how", ["raises", "ends_early", "garbage"])
def test_broken_stream_leaves_no_shadow_and_the_live_database_as_it_was(
    case: EngineCase, target: str, artifact: Path, how: str
) -> None:
    """A stream that raises midway, ends early or is not a dump: an error, nothing left, nothing changed."""
    world_before = case.world()
    target_before = case.snapshot(target)
    size = artifact.stat().st_size
    with artifact.open("rb") as f:
        stream: BinaryIO
        if how == "garbage":
            stream = _garbage(size)
        else:
            stream = FailingReader(f, size // 2, clean_eof=how == "ends_early")  # type: ignore[assignment]
        with pytest.raises((Boom, FerryError)) as excinfo:
            case.engine.restore_shadow(case.ref(target), stream, RestoreOptions())
    if how == "raises":
        assert excinfo.type is Boom or "halfway" in str(excinfo.value)
    assert case.world() == world_before
    assert case.snapshot(target) == target_before


def _garbage(size: int) -> BinaryIO:
    import io
    import random

    return io.BytesIO(random.Random(9).randbytes(size))


def test_check_changes_nothing_and_reports_ok(case: EngineCase, source: str) -> None:
    """check() on a reachable database: every finding ok, nothing created, nothing changed."""
    world_before = case.world()
    snapshot_before = case.snapshot(source)
    findings = case.engine.check(case.ref(source))
    assert findings
    assert all(f.ok for f in findings), [f for f in findings if not f.ok]
    assert all(f.what and f.detail for f in findings)
    assert case.world() == world_before
    assert case.snapshot(source) == snapshot_before


def test_server_version_is_not_empty(case: EngineCase, source: str) -> None:
    """The manifest records the server version."""
    version = case.engine.server_version(case.ref(source))
    assert isinstance(version, str)
    assert version.strip()


def test_the_database_size_estimates_the_dump(case: EngineCase, source: str, tmp_path: Path) -> None:
    """A backup's progress shows a total and an ETA from the database's size: every engine gives
    one, of the dump's order of magnitude (pages and pre-allocated space make small ones bigger);
    a database that cannot be asked gives no estimate, never an error (the dump reports that)."""
    estimate = estimated_dump_size(case.engine, case.ref(source))
    assert isinstance(estimate, int) and estimate > 0
    path = tmp_path / "sized.dump"
    dump_to_file(case, source, path)
    assert path.stat().st_size / 100 < estimate < path.stat().st_size * 100
    assert estimated_dump_size(case.engine, case.ref(case.new_name())) is None


def test_dump_of_a_missing_database_fails_loudly(case: EngineCase, tmp_path: Path) -> None:
    """A dump that cannot run raises a FerryError, on entry or by EOF, never a clean empty stream."""
    missing = case.new_name()
    with pytest.raises(FerryError) as excinfo:
        dump_to_file(case, missing, tmp_path / "never")
    if case.password:
        assert case.password not in str(excinfo.value)
        assert case.password not in repr(excinfo.value)


def test_password_never_in_child_argv(case: EngineCase, source: str, target: str, tmp_path: Path) -> None:
    """While dumping and restoring, no child process carries the password on its command line."""
    if case.password is None:
        pytest.skip(f"{case.name} uses no password")
    path = tmp_path / "dump"

    def work() -> None:
        dump_to_file(case, source, path)
        with path.open("rb") as f:
            shadow = case.engine.restore_shadow(case.ref(target), f, RestoreOptions())
        case.engine.drop_shadow(shadow)

    argvs = _child_argvs_while(work)
    assert argvs, "no child process was observed; the engine must use the database tools"
    for argv in argvs:
        assert not any(case.password in arg for arg in argv), argv


def _child_argvs_while(work: Callable[[], None]) -> list[list[str]]:
    """Run ``work`` in a thread and collect the argv of this process's children meanwhile."""
    seen: dict[int, list[str]] = {}
    errors: list[BaseException] = []
    me = os.getpid()

    def target() -> None:
        try:
            work()
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    while thread.is_alive():
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) not in seen:
                with contextlib.suppress(OSError, ValueError, IndexError):
                    stat = (entry / "stat").read_text()
                    ppid = int(stat.rsplit(")", 1)[1].split()[1])
                    raw = (entry / "cmdline").read_bytes()
                    if ppid == me and raw:
                        seen[int(entry.name)] = [p.decode(errors="replace") for p in raw.split(b"\0") if p]
        time.sleep(0.005)
    thread.join()
    if errors:
        raise errors[0]
    return list(seen.values())


def test_swap_of_a_dropped_shadow_changes_nothing(case: EngineCase, target: str, artifact: Path) -> None:
    """Swapping a shadow that is gone fails, and the live database is left as it was."""
    target_before = case.snapshot(target)
    with artifact.open("rb") as f:
        shadow = case.engine.restore_shadow(case.ref(target), f, RestoreOptions())
    case.engine.drop_shadow(shadow)
    with pytest.raises(FerryError):
        case.engine.swap(shadow)
    assert case.snapshot(target) == target_before


# -- the restore lock ------------------------------------------------------------------------------


@pytest.mark.fault
def test_a_second_restore_of_the_same_database_is_refused_and_changes_nothing(
    case: EngineCase, source: str, target: str, artifact: Path, tmp_path: Path
) -> None:
    """Two restores of one database at once used to swap an empty shadow into live (issue 19)."""
    source_before = case.snapshot(source)
    target_before = case.snapshot(target)
    world_before = case.world()
    with artifact.open("rb") as f:
        first = case.engine.restore_shadow(case.ref(target), f, RestoreOptions())
    world_during = case.world()
    try:
        with artifact.open("rb") as f, pytest.raises(LockBusy) as refused:
            case.engine.restore_shadow(case.ref(target), f, RestoreOptions())
        assert "in progress" in refused.value.message and "held by" in refused.value.message
        assert refused.value.exit_code == 6
        assert case.world() == world_during  # the first restore's shadow is untouched
        assert case.snapshot(target) == target_before
    except BaseException:
        case.engine.drop_shadow(first)
        raise
    case.engine.swap(first)
    assert case.snapshot(target) == source_before  # the first restore's verified data, not an empty shadow
    assert case.world() == world_before
    # The swap released the lock: the next restore runs.
    with artifact.open("rb") as f:
        again = case.engine.restore_shadow(case.ref(target), f, RestoreOptions())
    case.engine.drop_shadow(again)
    assert case.world() == world_before


def test_other_databases_are_not_locked(case: EngineCase, target: str, artifact: Path) -> None:
    """The lock is per target database: restores of two databases run side by side."""
    other = case.new_name()
    with artifact.open("rb") as f:
        first = case.engine.restore_shadow(case.ref(target), f, RestoreOptions())
    try:
        with artifact.open("rb") as f:
            second = case.engine.restore_shadow(case.ref(other), f, RestoreOptions())
        case.engine.drop_shadow(second)
    finally:
        case.engine.drop_shadow(first)


def test_drop_shadow_releases_the_lock(case: EngineCase, target: str, artifact: Path) -> None:
    """A failed or abandoned restore gives the lock back when its shadow is dropped."""
    with artifact.open("rb") as f:
        first = case.engine.restore_shadow(case.ref(target), f, RestoreOptions())
    case.engine.drop_shadow(first)
    with artifact.open("rb") as f:
        second = case.engine.restore_shadow(case.ref(target), f, RestoreOptions())
    case.engine.drop_shadow(second)


def test_a_failed_restore_releases_the_lock(case: EngineCase, target: str, artifact: Path) -> None:
    """restore_shadow that fails midway leaves neither a shadow nor a held lock."""
    size = artifact.stat().st_size
    with artifact.open("rb") as f, pytest.raises((Boom, FerryError)):
        case.engine.restore_shadow(case.ref(target), FailingReader(f, size // 2), RestoreOptions())  # type: ignore[arg-type]
    with artifact.open("rb") as f:
        shadow = case.engine.restore_shadow(case.ref(target), f, RestoreOptions())
    case.engine.drop_shadow(shadow)


def test_a_shadow_without_its_lock_is_never_swapped_in(case: EngineCase, target: str, artifact: Path) -> None:
    """Once a shadow has lost its lock another restore may own that name: the swap refuses."""
    target_before = case.snapshot(target)
    with artifact.open("rb") as f:
        shadow = case.engine.restore_shadow(case.ref(target), f, RestoreOptions())
    shadow.release()
    with pytest.raises(FerryError, match="nothing was swapped"):
        case.engine.swap(shadow)
    assert case.snapshot(target) == target_before
    case.engine.drop_shadow(shadow)
