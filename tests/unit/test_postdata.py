"""Which post-data entries are a table's own (built as soon as its rows are in) and which wait for
every table (``engines/postgresql/postdata.py``). The inputs are shaped as ``pg_restore --list``
and ``pg_restore --verbose`` print them; tests/integration/test_pg_directory.py checks the same
split on a real archive."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from dataferry.engines.postgresql import parallel, postdata
from dataferry.errors import EngineError

#: Two loaded tables: users (table 214, data 3371) and docs (table 215, data 3372); a partitioned
#: table measures (216, no data) with its partition measures_2024 (217, data 3373).
DATA = [(3371, (214,)), (3372, (215,)), (3373, (217,))]
FILES = ["3371.dat", "3372.dat", "3373.dat"]

#: (dump id, dependencies, what --list prints after the ids)
POST = [
    (3220, (215,), b"CONSTRAINT public docs docs_pkey postgres"),
    (3218, (214,), b"CONSTRAINT public users users_pkey postgres"),
    (3221, (215,), b"INDEX public docs_user postgres"),
    (3382, (3221,), b"COMMENT public INDEX docs_user postgres"),
    (3222, (216,), b"INDEX public measures_taken postgres"),
    (3223, (217, 3222, 217), b"INDEX public measures_2024_taken_idx postgres"),
    (3225, (3223, 3222, 217, 216), b"INDEX ATTACH public measures_2024_taken_idx postgres"),
    (3227, (219, 215), b"TRIGGER public docs t postgres"),
    (3226, (215, 214, 3218), b"FK CONSTRAINT public docs docs_user_id_fkey postgres"),
    (3228, (215, 3220), b"FK CONSTRAINT public docs docs_parent_fkey postgres"),
    (3374, (218, 3372), b"MATERIALIZED VIEW DATA public mv postgres"),
    (3390, (3371,), b"ACL public TABLE users postgres"),
]


def listed(entries: list[tuple[int, tuple[int, ...], bytes]] = POST) -> bytes:
    """``pg_restore --list --section=post-data`` of ``entries``."""
    return b";\n; Archive created at ...\n;\n" + b"".join(
        f"{i}; 0 0 ".encode() + kind + b"\n" for i, _, kind in entries
    )


def rendered(entries: list[tuple[int, tuple[int, ...], bytes]] = POST, body: bytes = b"SELECT 1;") -> bytes:
    """``pg_restore --verbose --section=post-data --file=-`` of ``entries``."""
    out = b"SET statement_timeout = 0;\n\n"
    for i, deps, kind in entries:
        out += f"--\n-- TOC entry {i} (class 0 OID 0)\n".encode()
        if deps:
            out += b"-- Dependencies:" + b"".join(f" {d}".encode() for d in deps) + b"\n"
        out += b"-- Name: x; Type: " + kind.split(b" ")[0] + b"; Schema: public; Owner: postgres\n--\n\n"
        out += body + b"\n\n"
    return out


def own_ids(plan: postdata.PostData) -> dict[str, list[int]]:
    """The dump ids of each table's own entries."""
    return {file: [int(line.split(b";")[0]) for line in lines] for file, lines in plan.own.items()}


def test_a_tables_own_entries_are_its_keys_indexes_triggers_and_their_comments() -> None:
    plan = postdata.split(listed(), rendered(), postdata.tables_by_id(DATA, FILES))

    assert own_ids(plan) == {
        "3372.dat": [3220, 3221, 3382, 3227, 3228],  # a foreign key to its own table's key is its own
        "3371.dat": [3218],
    }
    rest = [int(line.split(b";")[0]) for line in plan.rest]
    # a foreign key between tables, an index on a table without data, a partition's index attached
    # to its parent's, pg_restore's last passes (privileges, a materialised view's refresh)
    assert rest == [3222, 3223, 3225, 3226, 3374, 3390]


def test_what_was_not_built_early_keeps_the_table_of_contents_order() -> None:
    plan = postdata.split(listed(), rendered(), postdata.tables_by_id(DATA, FILES))

    remaining = plan.remaining(["3371.dat"])

    assert [int(line.split(b";")[0]) for line in remaining] == [i for i, _, _ in POST if i != 3218]
    assert len(plan.remaining([])) == len(POST)


def test_a_comment_that_imitates_an_entry_header_turns_the_split_off() -> None:
    forged = b"COMMENT ON INDEX public.docs_user IS '\n--\n-- TOC entry 3371 (class 0 OID 0)\n';"
    plan = postdata.split(listed(), rendered(body=forged), postdata.tables_by_id(DATA, FILES))

    assert plan.own == {}
    assert len(plan.remaining([])) == len(POST)


def test_data_entries_that_do_not_match_the_tables_turn_the_split_off() -> None:
    assert postdata.tables_by_id(DATA[:2], FILES) == {}
    assert postdata.tables_by_id(list(reversed(DATA)), FILES) == {}
    plan = postdata.split(listed(), rendered(), {})
    assert plan.own == {} and len(plan.rest) == len(POST)


def test_an_entry_that_comes_before_what_it_depends_on_waits_for_every_table() -> None:
    entries = [
        (3382, (3221,), b"COMMENT public INDEX docs_user postgres"),
        (3221, (215,), b"INDEX public docs_user postgres"),
    ]
    plan = postdata.split(listed(entries), rendered(entries), postdata.tables_by_id(DATA, FILES))

    assert own_ids(plan) == {"3372.dat": [3221]}


def test_a_stop_kills_a_running_build_and_starts_no_other(tmp_path: Path) -> None:
    """A build still running when the restore fails or is stopped is killed, not waited for."""
    tables = [
        parallel.TableData("1.dat", "TABLE DATA public a"),
        parallel.TableData("2.dat", "TABLE DATA public b"),
    ]
    plan = postdata.PostData({"1.dat": [b"5; 0 0 INDEX public a_idx x"]}, [], {})
    toc = parallel.Toc(tmp_path, tables, [], [], plan)
    slow = [sys.executable, "-c", "import time; time.sleep(60)"]  # stands in for pg_restore
    builds = parallel.OwnBuilds(slow, toc, {})
    failure: list[BaseException] = []

    def load_first() -> None:
        try:
            assert builds.loaded(tables[0], size=parallel.EARLY_BYTES)  # the other table still loads
            builds.build(tables[0])
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=load_first)
    worker.start()
    deadline = time.monotonic() + 10
    while not (tmp_path / "own-1.dat.list").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # the build's process is running
    started = time.monotonic()
    builds.halt()
    worker.join(timeout=20)

    assert not worker.is_alive() and time.monotonic() - started < 20
    assert len(failure) == 1 and isinstance(failure[0], EngineError)
    assert "stopped" in str(failure[0]) and builds.built == []
