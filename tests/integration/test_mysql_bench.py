"""Benchmark: MySQL restore, single stream vs parallel (``--jobs N``). Skipped unless asked for.

Run::

    DATAFERRY_BENCH_MYSQL_MB=300 .venv/bin/python -m pytest tests/integration/test_mysql_bench.py -s

It builds a database of about that many MB of dump (two tables with a secondary index, two with
text and blobs, one small table), dumps it once with the engine, and then, interleaved and
``DATAFERRY_BENCH_MYSQL_REPS`` times (default 3): the baseline GOV.UK runs today
(``mariadb db < dump.sql``) and ``restore_shadow`` with jobs 1, 2 and 4. Only the load is timed
(not the row-count check or the drop that follow). It prints every time and the medians; the
server's buffer pool is raised to 256 MB for the run (the test server's 32 MB makes every load
I/O-bound).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from dataferry.config import DatabaseRef
from dataferry.engines import RestoreOptions
from dataferry.engines.mysql import MySQLEngine
from servers import MariaDbServer

MB = int(os.environ.get("DATAFERRY_BENCH_MYSQL_MB", "0"))
REPS = int(os.environ.get("DATAFERRY_BENCH_MYSQL_REPS", "3"))

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(MB <= 0, reason="set DATAFERRY_BENCH_MYSQL_MB to run the MySQL restore benchmark"),
]


def _ref(server: MariaDbServer, name: str) -> DatabaseRef:
    return DatabaseRef(
        name="bench",
        environment="bench",
        engine="mysql",
        url=server.url(name),
        password=SecretStr(server.password),
    )


def _generate(server: MariaDbServer, name: str, mb: int) -> None:
    # ~85 bytes of dump per narrow row, ~330 per wide row; 70% of the bytes in the narrow tables.
    narrow, wide = int(mb * 0.35e6 / 85), int(mb * 0.15e6 / 330)
    server.execute(f"CREATE DATABASE `{name}`;")
    server.execute(
        "CREATE TABLE n1 (id INT PRIMARY KEY, a VARCHAR(100), b INT, c DOUBLE, d DATETIME, KEY (b));"
        f"INSERT INTO n1 SELECT seq, MD5(seq), seq % 1000, seq / 7, '2024-01-01' + INTERVAL seq SECOND "
        f"FROM seq_1_to_{narrow};"
        "CREATE TABLE n2 LIKE n1; INSERT INTO n2 SELECT * FROM n1;"
        "CREATE TABLE w1 (id INT PRIMARY KEY, txt TEXT, bin BLOB);"
        f"INSERT INTO w1 SELECT seq, REPEAT(MD5(seq), 8), UNHEX(MD5(seq)) FROM seq_1_to_{wide};"
        "CREATE TABLE w2 LIKE w1; INSERT INTO w2 SELECT * FROM w1;"
        "CREATE TABLE small (id INT PRIMARY KEY, n1_id INT, FOREIGN KEY (n1_id) REFERENCES n1 (id));"
        "INSERT INTO small SELECT seq, seq FROM seq_1_to_1000;",
        database=name,
    )


def test_restore_parallel_vs_single_stream(mariadb_server: MariaDbServer) -> None:
    """Prints seconds per run and medians; asserts only that every restore was complete."""
    server = mariadb_server
    server.execute("SET GLOBAL innodb_buffer_pool_size = 256 * 1024 * 1024;")
    engine = MySQLEngine()
    source, target, raw = "bench_source", "bench_target", "bench_raw"
    _generate(server, source, MB)
    with tempfile.TemporaryDirectory(prefix="dataferry-bench-") as tmp:
        dump = Path(tmp) / "dump.sql"
        with engine.dump(_ref(server, source)) as d, dump.open("wb") as out:
            start = time.monotonic()
            while chunk := d.stream.read(1 << 20):
                out.write(chunk)
            dump_s = time.monotonic() - start
            counts = dict(d.row_counts)
        size_mb = dump.stat().st_size / 1e6
        opts = server.option_file(Path(tmp) / "client.cnf")

        def baseline() -> float:
            server.execute(f"DROP DATABASE IF EXISTS `{raw}`; CREATE DATABASE `{raw}`;")
            start = time.monotonic()
            with dump.open("rb") as f:
                subprocess.run(
                    ["mariadb", f"--defaults-extra-file={opts}", "--binary-mode", raw], stdin=f, check=True
                )
            took = time.monotonic() - start
            server.execute(f"DROP DATABASE `{raw}`;")
            return took

        def restore(jobs: int) -> float:
            start = time.monotonic()
            with dump.open("rb") as f:
                options = RestoreOptions(jobs=jobs, spool_dir=Path(tmp))
                shadow = engine.restore_shadow(_ref(server, target), f, options)
            took = time.monotonic() - start
            assert engine.row_counts(shadow) == counts
            engine.drop_shadow(shadow)
            return took

        runs: dict[str, list[float]] = {"mariadb < dump": [], "jobs=1": [], "jobs=2": [], "jobs=4": []}
        for _ in range(REPS):
            runs["mariadb < dump"].append(baseline())
            for jobs in (1, 2, 4):
                runs[f"jobs={jobs}"].append(restore(jobs))
    server.execute(f"DROP DATABASE `{source}`;")
    load = os.getloadavg()
    print(
        f"\nMySQL restore benchmark: dump {size_mb:.0f} MB in {dump_s:.1f}s ({size_mb / dump_s:.0f} MB/s), "
        f"{os.cpu_count()} CPUs, load average {load[0]:.1f}"
    )
    base = statistics.median(runs["mariadb < dump"])
    for label, times in runs.items():
        med = statistics.median(times)
        print(
            f"  {label:15} median {med:6.1f}s  {size_mb / med:5.1f} MB/s  x{base / med:4.2f}  "
            f"runs: {', '.join(f'{t:.1f}' for t in times)}"
        )
