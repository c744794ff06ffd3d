"""Benchmark dataferry's MySQL/MariaDB backup and restore against the raw tools (issue 3).

    .venv/bin/python bench/mysql/run.py --size-mb 256 1024

For each size, on a throwaway MariaDB server and a moto S3 server started here:

1. generate a realistic database of at least that size (bench/mysql/generate_mysql.py);
2. back it up with the raw pipeline ``mariadb-dump --single-transaction | zstd -3 -T0 > file``,
   then with ``dataferry backup`` to a local store and to S3;
3. restore the raw file with ``zstd -dc file | mariadb``, then with ``dataferry restore``
   (the default settings, ``--jobs 1`` and ``--jobs 2``, from the local store and from S3); every restore is checked by
   row counts;
4. print a Markdown table with times, ratios and peak RSS, and write it under bench/results/.

Raw tools first, then dataferry, in the same run. bench/README.md explains the numbers.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common
import generate_mysql
from common import Series

# Production-like settings applied over the test fixture's with SET GLOBAL (all dynamic in MariaDB
# 10.11). The fixture's innodb_flush_log_at_trx_commit=0 stays unless --durable is given; its
# innodb_doublewrite=0 and skip-log-bin are start-up options and stay in any case.
SERVER_SETTINGS = {
    "innodb_buffer_pool_size": str(1024 * common.MiB),
    "innodb_log_file_size": str(512 * common.MiB),
    "innodb_io_capacity": "2000",
    "max_allowed_packet": str(64 * common.MiB),
}
DURABLE_SETTINGS = {"innodb_flush_log_at_trx_commit": "1"}
SHOWN_SETTINGS = [*SERVER_SETTINGS, *DURABLE_SETTINGS, "innodb_doublewrite", "log_bin", "version"]
TARGET_DB = "bench_target"
RAW_DB = "bench_raw"

BACKUP_RAW = "backup: raw mariadb-dump --single-transaction | zstd -3 -T0"
RESTORE_RAW = "restore: raw zstd -dc | mariadb"


def tune_server(client: generate_mysql.Client, durable: bool) -> dict[str, str]:
    """Apply SERVER_SETTINGS (and DURABLE_SETTINGS) with SET GLOBAL; return what is in force."""
    settings = dict(SERVER_SETTINGS)
    if durable:
        settings.update(DURABLE_SETTINGS)
    client.run("".join(f"SET GLOBAL {k} = {v};\n" for k, v in settings.items()))
    out = client.run(" UNION ALL ".join(f"SELECT '{k}', @@GLOBAL.{k}" for k in SHOWN_SETTINGS) + ";")
    return {name: value for name, _, value in (line.partition("\t") for line in out.splitlines())}


def write_config(server: Any, s3: common.S3Endpoint, workdir: Path, size_mb: int, src: str) -> Path:
    """The benchmark's dataferry config for one size: ``src`` backed up, ``bench_target`` restored."""
    return common.write_config(
        workdir / f"dataferry-{size_mb}.toml",
        engine="mysql",
        source_url=server.url(src),
        target_url=server.url(TARGET_DB),
        workdir=workdir,
        s3=s3,
        s3_prefix=f"mysql-{size_mb}mb",
    )


def settle(client: generate_mysql.Client, timeout: float = 120.0) -> None:
    """Let InnoDB write out the previous command's dirty pages before the next one is measured,
    so no command pays for its predecessor's flushing (the same for raw tools and dataferry)."""
    saved = client.run("SELECT @@GLOBAL.innodb_max_dirty_pages_pct;")
    client.run("SET GLOBAL innodb_max_dirty_pages_pct = 0;")
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dirty = client.run("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty';").split("\t")[-1]
            if int(dirty or 0) < 100:
                return
            time.sleep(0.5)
    finally:
        client.run(f"SET GLOBAL innodb_max_dirty_pages_pct = {saved};")


@dataclass
class SizeResult:
    """Everything measured for one database size."""

    size_mb: int
    generated: generate_mysql.Generated
    series: dict[str, Series]
    raw_dump_bytes: int
    raw_zst_bytes: int
    ferry_artifact_bytes: int


class SizeRun:
    """Generates one size and runs every measurement on it, checking every restore."""

    def __init__(
        self,
        server: Any,
        client: generate_mysql.Client,
        s3: common.S3Endpoint,
        workdir: Path,
        size_mb: int,
        args: argparse.Namespace,
    ) -> None:
        self.server = server
        self.client = client
        self.workdir = workdir
        self.size_mb = size_mb
        self.src = f"bench_src_{size_mb}"
        self.raw_zst = workdir / f"raw-{size_mb}.sql.zst"
        config = write_config(server, s3, workdir, size_mb, self.src)
        self.runner = common.Runner(
            config=config,
            log=workdir / f"mysql-{size_mb}mb.log",
            repeat=args.repeat,
            quiet=not args.keep_logs,
            tool_env=common.clean_env(),
            ferry_env=common.ferry_env(server.password, s3),
            settle=lambda: settle(client),
            s3_pid=s3.pid,
        )
        self.generated = generate_mysql.generate(client, self.src, size_mb)
        self.expected_rows = generate_mysql.row_counts(client, self.src)
        self.raw_dump_bytes = self.raw_zst_bytes = self.ferry_artifact_bytes = 0

    def check_restored(self, database: str) -> None:
        """Every restore must bring back every row, or its time means nothing."""
        got = generate_mysql.row_counts(self.client, database)
        if got != self.expected_rows:
            raise RuntimeError(f"restore into {database} is incomplete: {got} != {self.expected_rows}")

    def fresh_raw_db(self) -> None:
        """An empty database for the raw restore (outside the timing)."""
        self.client.run(f"DROP DATABASE IF EXISTS {RAW_DB}; CREATE DATABASE {RAW_DB} CHARACTER SET utf8mb4;")

    def raw_restored(self) -> None:
        """Check and drop the raw restore's database (outside the timing)."""
        self.check_restored(RAW_DB)
        self.client.run(f"DROP DATABASE {RAW_DB};")

    def backups(self) -> None:
        """Raw pipeline, then dataferry to the local store and to S3."""
        # --defaults-extra-file must come first; it is a 0600 file, so no password in argv.
        dump = f"mariadb-dump --defaults-extra-file={self.client.opts} --single-transaction {self.src}"
        self.runner.raw(BACKUP_RAW, f"{dump} | zstd -3 -T0 -q > {self.raw_zst}")
        self.raw_zst_bytes = self.raw_zst.stat().st_size
        self.runner.ferry("backup: dataferry -> local store", "backup", "bench", "--env", "local")
        self.ferry_artifact_bytes = max(
            p.stat().st_size for p in (self.workdir / "store-local").rglob("*.zst")
        )
        self.runner.ferry("backup: dataferry -> S3 (moto)", "backup", "bench", "--env", "s3")

    def restores(self) -> None:
        """The raw single stream, then dataferry's restores (default, --jobs 1/2) from each store."""
        self.raw_dump_bytes = common.uncompressed_size(self.raw_zst)
        self.runner.raw(
            RESTORE_RAW,
            f"zstd -dc -q {self.raw_zst} | mariadb --defaults-extra-file={self.client.opts} {RAW_DB}",
            before=self.fresh_raw_db,
            after=self.raw_restored,
        )
        self.client.run(f"CREATE DATABASE {TARGET_DB} CHARACTER SET utf8mb4;")  # a live database to replace
        # the default settings (issue 15: --jobs auto), then --jobs 1 and 2, from each store
        for source, where in (("local", "local store"), ("s3", "S3 (moto)")):
            for jobs in (None, "1", "2"):
                flags = ("--jobs", jobs) if jobs else ()
                self.runner.ferry(
                    f"restore: dataferry {'--jobs ' + jobs if jobs else '(default jobs)'} <- {where}",
                    *("restore", "bench", "--env", "target", "--from", source, *flags),
                    after=lambda: self.check_restored(TARGET_DB),
                )
        self.client.run(f"DROP DATABASE IF EXISTS {TARGET_DB};")

    def finish(self) -> SizeResult:
        """Drop the source database and the local stores' files (disk); keep the numbers."""
        self.client.run(f"DROP DATABASE IF EXISTS {self.src};")
        for name in ("store-local", "store-target", "spool"):
            for path in (self.workdir / name).rglob("*"):
                if path.is_file():
                    path.unlink()
        self.raw_zst.unlink(missing_ok=True)
        return SizeResult(
            self.size_mb,
            self.generated,
            self.runner.series,
            self.raw_dump_bytes,
            self.raw_zst_bytes,
            self.ferry_artifact_bytes,
        )


# -- reporting -------------------------------------------------------------------------------------


def _versus(label: str, seconds: float, s: dict[str, Series]) -> str:
    """The ratio of one dataferry command to the raw command it competes with."""
    if label.startswith("backup: dataferry"):
        return f"{common.ratio(seconds, s[BACKUP_RAW].seconds)} of raw backup"
    if label.startswith("restore: dataferry"):
        raw = s[RESTORE_RAW].seconds
        return f"{common.ratio(seconds, raw)} of the raw restore (speed-up {common.ratio(raw, seconds)})"
    return ""


def _targets(s: dict[str, Series]) -> list[str]:
    """Issue 3's targets, each with its verdict; time targets judge the local store (see
    ``common.judged``), and S3's ratios are reported beside them."""
    raw_backup = s[BACKUP_RAW].seconds
    raw_restore = s[RESTORE_RAW].seconds
    backups, s3_backups = common.judged(
        [x for label, x in s.items() if label.startswith("backup: dataferry")]
    )
    j2, s3_j2 = common.judged([x for label, x in s.items() if "--jobs 2" in label])
    defaults, _ = common.judged([x for label, x in s.items() if "(default jobs)" in label])
    ferry_rss = common.max_ferry_rss(s)

    def name(x: Series) -> str:
        return x.label.split("dataferry ")[-1]

    def backup_ratios(xs: list[Series]) -> str:
        return ", ".join(f"{common.ratio(x.seconds, raw_backup)} ({name(x)})" for x in xs)

    def speed_ups(xs: list[Series]) -> str:
        return ", ".join(f"speed-up {common.ratio(raw_restore, x.seconds)} ({name(x)})" for x in xs)

    return [
        f"- backup within 1.10x of the raw pipeline ({raw_backup:.2f} s): {backup_ratios(backups)} "
        + common.verdict(all(x.seconds <= 1.10 * raw_backup for x in backups))
        + (f"; not judged: {backup_ratios(s3_backups)}" if s3_backups else ""),
        f"- restore --jobs 2 at least 2x faster than the raw single stream ({raw_restore:.2f} s): "
        f"{speed_ups(j2)} "
        + common.verdict(all(raw_restore >= 2 * x.seconds for x in j2))
        + (f"; not judged: {speed_ups(s3_j2)}" if s3_j2 else ""),
        f"- issue 15: restore with the default settings at least 2.65x faster than the raw single stream: "
        f"{speed_ups(defaults)} " + common.verdict(all(raw_restore >= 2.65 * x.seconds for x in defaults)),
        f"- dataferry's peak RSS under 150 MiB (issue 15): {common.mib(ferry_rss)} MiB "
        + common.verdict(ferry_rss < 150 * 1024),
        f"- {common.S3_NOT_JUDGED}",
    ]


def size_section(r: SizeResult) -> str:
    """The Markdown section of one size: the data, the table, the targets."""
    s = r.series
    rows = [common.table_row(x, _versus(label, x.seconds, s)) for label, x in s.items()]
    g = r.generated
    return "\n".join(
        [
            f"### {r.size_mb} MB",
            "",
            f"Database: {common.human_size(g.size_bytes)} (information_schema data + index length), "
            + ", ".join(f"{n} {t}" for t, n in g.rows.items())
            + f" rows; generated in {g.seconds:.0f} s.  ",
            f"Dump: {common.human_size(r.raw_dump_bytes)} of SQL, {common.human_size(r.raw_zst_bytes)} with "
            f"zstd -3 ({r.raw_dump_bytes / max(r.raw_zst_bytes, 1):.2f}x); "
            f"dataferry's artifact {common.human_size(r.ferry_artifact_bytes)}.",
            "",
            common.markdown_table(common.TABLE_HEADER, rows),
            "",
            *_targets(s),
            "",
        ]
    )


def render(
    argv: list[str], facts: list[tuple[str, str]], settings: dict[str, str], results: list[SizeResult]
) -> str:
    """The whole results file."""
    return "\n".join(
        [
            "# MySQL (MariaDB): dataferry against the raw tools",
            "",
            f"`.venv/bin/python bench/mysql/run.py {' '.join(argv)}`",
            "",
            common.markdown_table(["machine", ""], [list(f) for f in facts]),
            "",
            "Server: a throwaway MariaDB started by tests/servers.py, over TCP on 127.0.0.1, with "
            + ", ".join(f"`{k}={v}`" for k, v in sorted(settings.items()))
            + ". S3: moto's server in its own process on the same machine.",
            "",
            "## Results",
            "",
            *[size_section(r) for r in results],
            "## dataferry's own peak RSS across sizes",
            "",
            common.flatness([(r.size_mb, r.series) for r in results]),
            "## Commands (largest size)",
            "",
            common.commands_section(results[-1].series),
        ]
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--size-mb", type=int, nargs="+", default=[256, 1024], help="database sizes (default: 256 1024)"
    )
    p.add_argument("--repeat", type=int, default=1, help="runs per measurement; tables show the median")
    p.add_argument("--work-dir", type=Path, help="where dumps, stores and spool go (default: system temp)")
    p.add_argument("--durable", action="store_true", help="innodb_flush_log_at_trx_commit = 1")
    p.add_argument("--results", type=Path, help="results file (default: bench/results/mysql-*.md)")
    p.add_argument("--no-results", action="store_true", help="print the results; write no file")
    p.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep the commands' output (dataferry without -q) in the work dir",
    )
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    """Run the benchmark for every size and write the results."""
    args = parse_args(argv)
    common.compile_dataferry()
    common.ensure_tools({"zstd": "zstd", "time": common.TIME, "mariadb-client": "mariadb-dump"})
    sizes = sorted(args.size_mb)
    workdir = common.workdir_for(args.work_dir)
    servers = common.import_servers()
    results: list[SizeResult] = []
    ok = False
    try:
        with servers.start_mariadb() as server, common.moto_s3(workdir, workdir / "moto.log") as s3:
            client = generate_mysql.Client(server, workdir / "client.cnf")
            settings = tune_server(client, args.durable)
            facts = common.machine_facts(
                workdir, {"mariadb-dump": ["mariadb-dump", "--version"], "mariadb": ["mariadb", "--version"]}
            )
            for size in sizes:
                print(f"{size} MB: generating", flush=True)
                run = SizeRun(server, client, s3, workdir, size, args)
                print(f"  {common.human_size(run.generated.size_bytes)} in {run.generated.seconds:.0f} s")
                run.backups()
                run.restores()
                results.append(run.finish())
        ok = True
    finally:
        common.remove_workdir(workdir, ok, args.keep_logs)
    text = render(argv, facts, settings, results)
    print("\n" + text)
    if not args.no_results:
        print(f"results written to {common.write_results(text, args.results, 'mysql', sizes)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
