"""The gate's scan on several connections (``sanitise/scanning.py``), against real servers.

The scan's sums must not depend on how it is run: on MariaDB a large table is cut into key ranges
on several connections, and a value at either end of the key's range (or in a table that cannot be
cut) must be found exactly as the one-query scan finds it. On PostgreSQL (parallel workers of its
own) the tables run side by side, uncut. A restore hands its workers to the scan.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from dataferry import ops
from dataferry.config import DatabaseRef
from dataferry.engines import get_engine
from dataferry.progress import NullReporter
from dataferry.sanitise import checks, scanning
from dataferry.sanitise.execution import Target, read_schema, target
from dataferry.sanitise.profile import load as load_profile
from integration.test_sanitise_engines import (
    SALT,
    SALT_ENV,
    Backend,
    backup_production,
    make_world,
    server_backend,
)

pytestmark = pytest.mark.integration

BIG = 9_000_000_000_000_000_000
#: ids at both ends of BIGINT's range and around zero: the first and last ranges are open-ended
IDS = [-BIG, -5, 0, *range(1, 121), BIG]
EMAIL_AT = {-BIG, 0, 60, BIG}  # rows whose contact is an email address
PHONE_AT = {-5, 119}  # rows whose note holds a phone number

PROFILE = """
description = "parallel scan"
salt_env = "FERRY_TEST_SALT"
strict = true
[tables.people]
keep = ["id", "note", "contact"]
[tables.loose]
keep = ["note"]
[tables.pairs]
keep = ["a", "b", "note"]
"""


class Said(NullReporter):
    """Keeps what is said."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str, **fields: Any) -> None:
        self.lines.append(message)


def _seed(backend: Backend) -> str:
    url = backend.make_db("scan")
    rows = []
    for i in IDS:
        contact = f"'person{abs(i) % 1000}@gmail.com'" if i in EMAIL_AT else "'none'"
        note = "'call 020 7946 0018 today'" if i in PHONE_AT else "'nothing here'"
        rows.append(f"({i}, {note}, {contact})")
    backend.execute(
        "CREATE TABLE people (id BIGINT PRIMARY KEY, note VARCHAR(255), contact VARCHAR(255));\n"
        "CREATE TABLE loose (note VARCHAR(255));\n"
        "CREATE TABLE pairs (a INTEGER, b INTEGER, note VARCHAR(255), PRIMARY KEY (a, b));\n"
        f"INSERT INTO people VALUES {', '.join(rows)};\n"
        "INSERT INTO loose VALUES ('mail anna.smith@outlook.com'), ('plain');\n"
        "INSERT INTO pairs VALUES (1, 1, 'ring 020 7946 0018'), (1, 2, 'x');\n",
        url,
    )
    return url


def _target(backend: Backend, url: str, jobs: int) -> Target:
    password = SecretStr(backend.password) if backend.password else None
    ref = DatabaseRef(name="scan", environment="test", engine=backend.engine, url=url, password=password)
    return target(backend.runner(), ref, None, jobs=jobs)


def _scan(t: Target, profile_path: Path) -> tuple[scanning.Counts, list[scanning.Piece], list[str]]:
    profile = load_profile(profile_path)
    schema = read_schema(t)
    queries = checks.scan_queries(profile, schema, t.dialect)
    said = Said()
    counts = scanning.scan(t, queries, schema.kinds, said)
    return counts, scanning.plan(t, queries, schema.kinds), said.lines


@pytest.fixture(params=["postgresql", "mysql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    monkeypatch.setenv(SALT_ENV, SALT)
    return server_backend(request.param, request, tmp_path, monkeypatch)


def test_the_scan_on_several_connections_finds_what_one_query_finds(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _seed(backend)
    profile = tmp_path / "profile.toml"
    profile.write_text(PROFILE)
    one, one_plan, _ = _scan(_target(backend, url, 1), profile)
    monkeypatch.setattr(scanning, "SPLIT_BYTES", 0)  # cut every table that can be cut
    many, many_plan, said = _scan(_target(backend, url, 3), profile)

    assert many == one
    assert one[("people", "contact", "email")] == len(EMAIL_AT)  # both ends of the key's range
    assert one[("people", "note", "phone")] == len(PHONE_AT)
    assert one[("loose", "note", "email")] == 1 and one[("pairs", "note", "phone")] == 1
    assert len(one_plan) == 3  # one query per table
    pieces = {table: sum(p.query.table == table for p in many_plan) for table in ("people", "loose", "pairs")}
    if backend.engine == "mysql":  # one integer key: cut; no key, or a key of two columns: whole
        assert pieces == {"people": 3, "loose": 1, "pairs": 1}
    else:  # PostgreSQL scans a large table with its own workers
        assert pieces == {"people": 1, "loose": 1, "pairs": 1}
    assert f"scan: {len(many_plan)} queries over 3 tables, 3 at once" in said


def test_a_restore_gives_its_workers_to_the_scan(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    world = make_world(backend)
    backup_production(world)
    monkeypatch.setattr(scanning, "SPLIT_BYTES", 0)
    said = Said()
    req = ops.RestoreRequest(database="app", environment="staging", source="production", jobs=2)
    result = ops.restore(ops.plan_restore(world.cfg, req, reporter=said), reporter=said)
    assert result.swapped and result.sanitisation is not None and result.sanitisation.passed
    assert any(line.startswith("scan: ") and line.endswith(", 2 at once") for line in said.lines), said.lines


def test_sqlite_scans_on_one_connection(tmp_path: Path) -> None:
    """One file, read by Python functions in one process: asking for more changes nothing."""
    db = tmp_path / "one.db"
    ref = DatabaseRef(name="one", environment="test", engine="sqlite", url=f"sqlite:///{db}")
    assert target(get_engine("sqlite"), ref, None, jobs=4).jobs == 1
