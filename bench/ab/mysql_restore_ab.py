"""A/B of ``dataferry restore --jobs 2`` (MariaDB, local store) between two checkouts of dataferry,
with the raw single stream ``zstd -dc | mariadb`` in the same rounds: raw, old, new, raw, old, new...
on one server and one artifact, so that the server's drift (each restore leaves more for InnoDB to
purge) and a shared machine's load hit every side alike. Used for the redesign (issue 11) and for
the parallel restore of issue 15; see bench/README.md.

    .venv/bin/python bench/ab/mysql_restore_ab.py OLD_SRC NEW_SRC [--size-mb 256] [--rounds 3]
    # e.g. a checkout of main's src and this worktree's src

For every run: wall seconds, the CPU seconds of the command's process tree (``os.wait4``) and of
the MariaDB server meanwhile (``/proc``), and the load average. Every restore is checked by exact
row counts. The medians and the speed-ups over the raw stream are printed, and written as Markdown
under bench/results/ (``--no-results`` to skip).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "mysql"))
import common  # noqa: E402
import generate_mysql  # noqa: E402
from run import settle, tune_server, write_config  # noqa: E402

RAW_DB, TARGET_DB = "bench_raw", "bench_target"


def server_cpu(pid: int) -> float:
    """CPU seconds the server process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    """Generate, back up, then the interleaved rounds; print and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old_src")
    parser.add_argument("new_src")
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", default="2")
    parser.add_argument("--no-results", action="store_true")
    parser.add_argument("--phases", action="store_true", help="then one restore each with its phases timed")
    args = parser.parse_args()
    common.compile_dataferry(args.old_src, args.new_src)
    servers = common.import_servers()
    workdir = common.workdir_for(None)
    src_db = f"bench_src_{args.size_mb}"
    runs: dict[str, list[dict[str, float]]] = {"raw": [], "old": [], "new": []}
    with servers.start_mariadb() as server, common.moto_s3(workdir, workdir / "moto.log") as s3:
        client = generate_mysql.Client(server, workdir / "client.cnf")
        pid = int(Path(client.run("SELECT @@GLOBAL.pid_file;").strip()).read_text())
        tune_server(client, False)
        config = write_config(server, s3, workdir, args.size_mb, src_db)
        generate_mysql.generate(client, src_db, args.size_mb)
        expected = generate_mysql.row_counts(client, src_db)
        env = common.ferry_env(server.password, s3)
        raw_zst = workdir / "raw.sql.zst"
        subprocess.run(
            f"mariadb-dump --defaults-extra-file={client.opts} --single-transaction {src_db} "
            f"| zstd -3 -T0 -q > {raw_zst}",
            shell=True,
            check=True,
            env=common.clean_env(),
        )

        def ferry(code: str, *more: str) -> list[str]:
            env["PYTHONPATH"] = args.old_src if code == "old" else args.new_src
            return [sys.executable, "-m", "dataferry", "--config", str(config), "-q", *more]

        subprocess.run(ferry("new", "backup", "bench", "--env", "local"), env=env, check=True)
        client.run(f"CREATE DATABASE {TARGET_DB} CHARACTER SET utf8mb4;")
        raw = [
            "bash",
            "-o",
            "pipefail",
            "-c",
            f"zstd -dc -q {raw_zst} | mariadb --defaults-extra-file={client.opts} {RAW_DB}",
        ]
        restore = ("restore", "bench", "--env", "target", "--from", "local", "--jobs", args.jobs)
        for _ in range(args.rounds):
            for code in runs:
                if code == "raw":
                    client.run(
                        f"DROP DATABASE IF EXISTS {RAW_DB}; CREATE DATABASE {RAW_DB} CHARACTER SET utf8mb4;"
                    )
                settle(client)
                subprocess.run(["sync"], check=True)
                argv = raw if code == "raw" else ferry(code, *restore)
                runs[code].append(
                    common.timed_run(
                        argv, common.clean_env() if code == "raw" else env, lambda: server_cpu(pid)
                    )
                )
                got = generate_mysql.row_counts(client, RAW_DB if code == "raw" else TARGET_DB)
                if got != expected:
                    raise RuntimeError(f"{code}: restored {got}, expected {expected}")
                print(code, {k: round(v, 2) for k, v in runs[code][-1].items()}, flush=True)
        phases = {}
        for code in ("old", "new") if args.phases else ():
            settle(client)
            subprocess.run(["sync"], check=True)
            env["PYTHONPATH"] = args.old_src if code == "old" else args.new_src
            profiler = [sys.executable, str(HERE.parent / "mysql" / "restore_phases.py"), str(config)]
            out = subprocess.run(
                [*profiler, "--server-pid", str(pid), "--jobs", args.jobs],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            phases[code] = out.stdout
            print(out.stdout, flush=True)
        version = client.run("SELECT VERSION();").strip()
    common.remove_workdir(workdir, True)
    report = render(args, runs, version)
    for code, timeline in phases.items():
        report += (
            f"\n## Phases of one more {code} restore (bench/mysql/restore_phases.py)\n\n```\n{timeline}```\n"
        )
    print(report)
    if not args.no_results:
        print(f"written: {common.write_results(report, None, 'mysql-restore-ab', [args.size_mb])}")


def render(args: argparse.Namespace, runs: dict[str, list[dict[str, float]]], version: str) -> str:
    """The Markdown report: every run, then the medians and speed-ups."""
    label = {
        "raw": "raw `zstd -dc \\| mariadb`",
        "old": f"old `--jobs {args.jobs}`",
        "new": f"new `--jobs {args.jobs}`",
    }
    lines = [
        f"# MariaDB restore A/B, {args.size_mb} MB, {args.rounds} interleaved rounds",
        "",
        f"{version}; {os.cpu_count()} CPUs; old = `{args.old_src}`, new = `{args.new_src}`.",
        "`bench/ab/mysql_restore_ab.py` (bench/README.md, MariaDB section). Every restore checked by row counts.",
        "",
    ]
    lines += common.ab_tables(label, runs, speed_up=True)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
