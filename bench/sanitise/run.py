"""Benchmark: sanitising a 1M-row table (three masking rules plus the PII scan) against one plain
three-column ``UPDATE t SET email = md5(email), name = md5(name), phone = md5(phone)`` over the same
table, on PostgreSQL and MariaDB, in the same run (issue 15's target: the profile <= 1.6x of it).

    .venv/bin/python bench/sanitise/run.py [--rows 1000000] [--rounds 3] [--engines postgresql,mysql]

Throwaway servers come from tests/servers.py (the test fixtures' own code), tuned with larger buffers.
Each round copies a pristine source table to ``t`` (so both contenders start from identical, freshly
vacuumed/analysed tables), times the baseline three-column UPDATE, copies again, and times the whole profile:
schema read, strict coverage, one UPDATE with fake_email/fake_name/fake_phone, and the checks (the
coverage re-check and the scan of every text column for emails and phone numbers). Both go through
the dataferry engine's ``run_sql``/``query`` (psql for PostgreSQL scripts, PyMySQL for MariaDB), so
the comparison includes the same client overheads. Nothing is written to the repository; the output
is a Markdown report on stdout (pasted into bench/sanitise/README.md).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from pydantic import SecretStr  # noqa: E402

import servers  # noqa: E402  (tests/servers.py: the fixtures' throwaway servers)
from dataferry.config import DatabaseRef  # noqa: E402
from dataferry.engines import RunsSql, get_engine  # noqa: E402
from dataferry.progress import NullReporter  # noqa: E402
from dataferry.sanitise import checks, fakes  # noqa: E402
from dataferry.sanitise.dialects import dialect_for  # noqa: E402
from dataferry.sanitise.execution import Target, read_schema, sanitise  # noqa: E402
from dataferry.sanitise.profile import Profile  # noqa: E402

SALT = "bench-salt-3c6a1f0e9b8d7c5a"
DB = "bench_sanitise"
FIRST = ", ".join(
    f"'{n}'" for n in ("Ann", "Ben", "Chloe", "Dev", "Elif", "Femi", "Grace", "Hamza", "Isla", "Jonah")
)
LAST = ", ".join(f"'{n}'" for n in ("Okafor", "Smith", "Patel", "Nowak", "Jones", "Khan", "Murphy", "Evans"))
DOMAINS = "'gmail.com', 'outlook.com', 'yahoo.co.uk', 'btinternet.com'"

# ``src`` is the pristine copy each round starts from: classified (strict coverage) and left out of
# the scan, because it is the benchmark's own fixture, not part of the database being sanitised.
PROFILE = {
    "salt_env": "BENCH_SALT",
    "strict": True,
    "tables": {
        "t": {"keep": ["id"], "mask": {"email": "fake_email", "name": "fake_name", "phone": "fake_phone"}},
        "src": {"keep": ["id", "email", "name", "phone"]},
    },
    "scan": {"skip": ["src"]},
}

#: The cheapest masking of the same three columns: one UPDATE, md5 of each (issue 15's baseline).
BASELINE = "UPDATE t SET email = md5(email), name = md5(name), phone = md5(phone);"
#: Issue 15: the whole profile (rules, checks and scan) within this factor of BASELINE.
TARGET = 1.6

PG_SETTINGS = {
    "shared_buffers": "512MB",
    "work_mem": "16MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "30min",
}
MARIADB_SETTINGS = {
    "innodb_buffer_pool_size": str(1024 * 1024 * 1024),
    "innodb_log_file_size": str(512 * 1024 * 1024),
}


@dataclass
class Engine:
    """One server under test: how to reach it and its SQL for the table."""

    name: str
    ref: DatabaseRef
    create_source: str
    copy: str
    version: str = ""
    settings: dict[str, str] = field(default_factory=dict)
    server_pid: int = 0  # the postmaster / mariadbd, whose CPU time (with its children's) is read


def server_cpu(pid: int) -> float:
    """CPU seconds the server has used so far: the process, its reaped children (PostgreSQL's
    backends end and are reaped by the postmaster) and its live descendants. The load of a shared
    machine stretches wall times; it hardly changes the CPU a statement needs."""

    def own(p: int, children: bool = False) -> int:
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0
        return int(f[11]) + int(f[12]) + (int(f[13]) + int(f[14]) if children else 0)

    def kids(p: int) -> list[int]:
        out: list[int] = []
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{p}/task"):
                out += [int(c) for c in Path(f"/proc/{p}/task/{task}/children").read_text().split()]
        return out

    ticks, todo = own(pid, children=True), kids(pid)
    while todo:
        p = todo.pop()
        ticks += own(p)
        todo += kids(p)
    return ticks / os.sysconf("SC_CLK_TCK")


class TimedTarget(Target):
    """A Target that adds up time spent in statements (rules) and in queries (schema, checks)."""

    statements = 0.0
    queries = 0.0

    def run(self, sql: str, what: str) -> None:
        start = time.monotonic()
        super().run(sql, what)
        self.statements += time.monotonic() - start

    def query(self, sql: str, what: str) -> list[tuple[object, ...]]:
        start = time.monotonic()
        try:
            return super().query(sql, what)
        finally:
            self.queries += time.monotonic() - start


# -- servers ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres(rows: int) -> Iterator[Engine]:
    with servers.start_postgres() as pg:
        _restart_pg_with(pg, PG_SETTINGS)
        pg.create_db(DB)
        ref = DatabaseRef(
            name="bench",
            environment="bench",
            engine="postgresql",
            url=pg.dsn(DB),
            password=SecretStr(pg.password),
        )
        create = f"""
            CREATE TABLE src (id bigint PRIMARY KEY, email text NOT NULL UNIQUE, name text, phone text);
            INSERT INTO src SELECT i,
              'user' || i || '@' || (ARRAY[{DOMAINS}])[1 + i % 4],
              (ARRAY[{FIRST}])[1 + i % 10] || ' ' || (ARRAY[{LAST}])[1 + (i / 10) % 8],
              '07' || lpad((i % 1000)::text, 3, '0') || ' ' || lpad((i::bigint * 7919 % 1000000)::text, 6, '0')
            FROM generate_series(1, {rows}) AS i;
            VACUUM ANALYZE src;"""
        copy = """
            DROP TABLE IF EXISTS t;
            CREATE TABLE t (LIKE src INCLUDING ALL);
            INSERT INTO t SELECT * FROM src;
            VACUUM ANALYZE t;
            CHECKPOINT;"""
        settings = dict(
            line.split("|", 1)
            for line in pg.psql(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name IN "
                "('shared_buffers', 'work_mem', 'max_wal_size', 'fsync', 'synchronous_commit');"
            ).splitlines()
        )
        pid = int((Path(pg.psql("SHOW data_directory;")) / "postmaster.pid").read_text().split()[0])
        yield Engine("postgresql", ref, create, copy, pg.psql("SHOW server_version;"), settings, pid)


def _restart_pg_with(pg: Any, settings: dict[str, str]) -> None:
    """ALTER SYSTEM, then restart the fixture's server (shared_buffers needs a restart)."""
    pg.psql("".join(f"ALTER SYSTEM SET {k} = '{v}';\n" for k, v in settings.items()))
    datadir = Path(pg.psql("SHOW data_directory;"))
    account = servers._pg_run_as()
    env = servers.clean_client_env({"LC_ALL": "C", "TZ": "UTC"})
    as_user: dict[str, Any] = {}
    if account is not None:
        as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        env["HOME"] = str(datadir.parent)
    ctl = [str(pg.bindir / "pg_ctl"), "-D", str(datadir), "-l", str(datadir.parent / "server.log")]
    subprocess.run(
        [*ctl, "-m", "fast", "-w", "-t", "120", "restart"],
        env=env,
        cwd=datadir.parent,
        check=True,
        capture_output=True,
        **as_user,
    )


@contextlib.contextmanager
def mariadb(rows: int) -> Iterator[Engine]:
    with servers.start_mariadb() as my:
        my.execute("".join(f"SET GLOBAL {k} = {v};\n" for k, v in MARIADB_SETTINGS.items()))
        my.create_db(DB)
        ref = DatabaseRef(
            name="bench",
            environment="bench",
            engine="mysql",
            url=my.url(DB),
            password=SecretStr(my.password),
        )
        create = f"""
            CREATE TABLE src (id BIGINT PRIMARY KEY, email VARCHAR(255) NOT NULL UNIQUE,
                              name VARCHAR(255), phone VARCHAR(32)) ENGINE=InnoDB;
            INSERT INTO src SELECT seq,
              CONCAT('user', seq, '@', ELT(1 + seq % 4, {DOMAINS})),
              CONCAT(ELT(1 + seq % 10, {FIRST}), ' ', ELT(1 + (seq DIV 10) % 8, {LAST})),
              CONCAT('07', LPAD(seq % 1000, 3, '0'), ' ', LPAD(seq * 7919 % 1000000, 6, '0'))
            FROM seq_1_to_{rows};
            ANALYZE TABLE src;"""
        copy = "DROP TABLE IF EXISTS t; CREATE TABLE t LIKE src; INSERT INTO t SELECT * FROM src; ANALYZE TABLE t;"
        names = (
            "innodb_buffer_pool_size",
            "innodb_log_file_size",
            "innodb_flush_log_at_trx_commit",
            "innodb_doublewrite",
        )
        out = my.execute(" UNION ALL ".join(f"SELECT '{n}', @@GLOBAL.{n}" for n in names) + ";")
        settings = dict(line.split("\t", 1) for line in out.splitlines())
        pid = int(Path(my.execute("SELECT @@GLOBAL.pid_file;")).read_text().strip())
        yield Engine("mysql", ref, create, copy, my.execute("SELECT VERSION();"), settings, pid)


# -- measuring -------------------------------------------------------------------------------------


@dataclass
class Round:
    baseline: float
    profile: float
    statements: float
    queries: float
    baseline_cpu: float = 0.0  # the server's CPU seconds
    profile_cpu: float = 0.0


def one_round(engine: Engine, runner: RunsSql, profile: Profile, rows: int) -> Round:
    script(runner, engine, engine.copy)
    cpu, start = server_cpu(engine.server_pid), time.monotonic()
    runner.run_sql(engine.ref, BASELINE)
    baseline = time.monotonic() - start
    baseline_cpu = server_cpu(engine.server_pid) - cpu

    script(runner, engine, engine.copy)
    target = TimedTarget(runner, engine.ref, None, dialect_for(engine.name), (SALT,))
    cpu, start = server_cpu(engine.server_pid), time.monotonic()
    result = sanitise(target, profile, SALT, NullReporter())
    elapsed = time.monotonic() - start
    profile_cpu = server_cpu(engine.server_pid) - cpu
    assert result.passed, result.checks
    _verify(runner, engine, rows)
    return Round(baseline, elapsed, target.statements, target.queries, baseline_cpu, profile_cpu)


def script(runner: RunsSql, engine: Engine, sql: str) -> None:
    """Set-up SQL. PostgreSQL: one statement at a time, because VACUUM cannot run inside the
    engine's single-transaction scripts (``query`` runs in autocommit)."""
    if engine.name == "mysql":
        runner.run_sql(engine.ref, sql)
        return
    for statement in filter(str.strip, sql.split(";")):
        runner.query(engine.ref, statement)


def _verify(runner: RunsSql, engine: Engine, rows: int) -> None:
    """The sanitised table really holds the reference pseudonyms (spot check of a few rows)."""
    got = runner.query(engine.ref, "SELECT id, email, name, phone FROM t WHERE id IN (1, 2, 3) ORDER BY id")
    original = runner.query(
        engine.ref, "SELECT id, email, name, phone FROM src WHERE id IN (1, 2, 3) ORDER BY id"
    )
    for (i, email, name, phone), (_, e0, n0, p0) in zip(got, original, strict=True):
        assert email == fakes.fake_email(SALT, str(e0), "example.com"), i
        assert name == fakes.fake_name(SALT, str(n0)) and phone == fakes.fake_phone(SALT, str(p0)), i
    count = runner.query(engine.ref, "SELECT count(*) FROM t WHERE email LIKE 'anon-%@example.com'")
    assert int(str(count[0][0])) == rows


def bench(engine: Engine, rounds: int, rows: int) -> list[Round]:
    runner = get_engine(engine.name)
    assert isinstance(runner, RunsSql)
    profile = Profile.model_validate(PROFILE).model_copy(update={"path": Path("bench-profile.toml")})
    script(runner, engine, engine.create_source)
    out = []
    for i in range(rounds):
        r = one_round(engine, runner, profile, rows)
        print(
            f"# {engine.name} round {i + 1}: UPDATE md5 x3 {r.baseline:.2f}s, profile {r.profile:.2f}s "
            f"(rules {r.statements:.2f}s, schema+checks {r.queries:.2f}s); server CPU "
            f"{r.baseline_cpu:.2f}s / {r.profile_cpu:.2f}s",
            file=sys.stderr,
            flush=True,
        )
        out.append(r)
    return out


def scan_ab(engine: Engine, rounds: int) -> tuple[list[float], list[float]]:
    """The gate's scan of the sanitised ``t`` with and without the string-function shortcuts
    (issue 15), alternating on the same table: (seconds without, seconds with)."""
    runner = get_engine(engine.name)
    assert isinstance(runner, RunsSql)
    profile = Profile.model_validate(PROFILE).model_copy(update={"path": Path("bench-profile.toml")})
    target = Target(runner, engine.ref, None, dialect_for(engine.name), (SALT,))
    schema = read_schema(target)

    def scan_sql(shortcut: bool) -> str:
        original = checks.detectors

        def detectors(p: Profile) -> list[checks.Detector]:
            return [
                d if shortcut else replace(d, clean_address=None, clean_fake_phone=False) for d in original(p)
            ]

        checks.detectors = detectors  # type: ignore[assignment]
        try:
            return next(q.sql for q in checks.scan_queries(profile, schema, target.dialect) if q.table == "t")
        finally:
            checks.detectors = original  # type: ignore[assignment]

    without, with_ = scan_sql(False), scan_sql(True)
    if without == with_:  # the engine's dialect does not use them (Dialect.string_shortcuts)
        print(f"# {engine.name}: the scan uses no string shortcuts here", file=sys.stderr, flush=True)
        return [], []
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for sql, out in ((without, times[0]), (with_, times[1])):
            start = time.monotonic()
            runner.query(engine.ref, sql)
            out.append(time.monotonic() - start)
    print(
        f"# {engine.name} scan of t without / with the string shortcuts: {times}", file=sys.stderr, flush=True
    )
    return times


# -- report ----------------------------------------------------------------------------------------


def report(results: dict[str, tuple[Engine, list[Round]]], rows: int, rounds: int) -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
    lines = [
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- machine: {os.cpu_count()} x {cpu}, {mem / 1024 / 1024:.1f} GiB RAM, kernel {platform.release()}, "
        f"load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"- data: {rows:,} rows (id, email UNIQUE, name, phone); {rounds} rounds, median shown (min in brackets)",
        "",
        "| engine | server | UPDATE t SET email = md5(email), name = md5(name), phone = md5(phone) | whole profile | of which rules (one UPDATE) | of which schema + checks (scan) | profile / UPDATE | server CPU: UPDATE / profile | CPU ratio | target |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, (engine, rs) in results.items():
        med = {
            k: statistics.median(getattr(r, k) for r in rs)
            for k in ("baseline", "profile", "statements", "queries", "baseline_cpu", "profile_cpu")
        }
        low = {k: min(getattr(r, k) for r in rs) for k in ("baseline", "profile")}
        ratio = med["profile"] / med["baseline"]
        lines.append(
            f"| {name} | {engine.version.splitlines()[0]} | {med['baseline']:.2f} s ({low['baseline']:.2f}) "
            f"| {med['profile']:.2f} s ({low['profile']:.2f}) | {med['statements']:.2f} s | {med['queries']:.2f} s "
            f"| {ratio:.2f}x | {med['baseline_cpu']:.2f} s / {med['profile_cpu']:.2f} s "
            f"| {med['profile_cpu'] / max(med['baseline_cpu'], 1e-9):.2f}x "
            f"| {'met' if ratio <= TARGET else 'MISSED'} (<= {TARGET}x, wall) |"
        )
    lines.append("")
    for name, (engine, _) in results.items():
        lines.append(
            f"- {name} settings: " + ", ".join(f"{k}={v}" for k, v in sorted(engine.settings.items()))
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--engines", default="postgresql,mysql")
    parser.add_argument(
        "--scan-ab",
        type=int,
        default=0,
        help="then time the scan without/with the string shortcuts, N times each",
    )
    args = parser.parse_args()
    os.environ["BENCH_SALT"] = SALT
    results: dict[str, tuple[Engine, list[Round]]] = {}
    scans: dict[str, tuple[list[float], list[float]]] = {}
    for name in args.engines.split(","):
        server = postgres if name == "postgresql" else mariadb
        with server(args.rows) as engine:
            results[name] = (engine, bench(engine, args.rounds, args.rows))
            if args.scan_ab:
                scans[name] = scan_ab(engine, args.scan_ab)
    print(report(results, args.rows, args.rounds))
    for name, (without, with_) in scans.items():
        if not without:
            print(f"- {name}: the scan uses no string shortcuts on this engine (Dialect.string_shortcuts)")
            continue
        print(
            f"- {name}: the scan of the sanitised t without the string shortcuts (clean_address, clean_fake_phone) "
            f"{statistics.median(without):.2f} s ({', '.join(f'{x:.2f}' for x in without)}), with it "
            f"{statistics.median(with_):.2f} s ({', '.join(f'{x:.2f}' for x in with_)}), alternating"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
