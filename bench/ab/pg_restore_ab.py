"""A/B of ``dataferry restore`` (PostgreSQL, per-table artifact, local store) between two checkouts
of dataferry, with the raw ``pg_restore -j 2`` from an uncompressed local file in the same rounds:
raw, old, new, raw, old, new... on one server and one artifact, so that a drifting machine hits
every side alike. Used for issue 15's restore target (bench/README.md).

    .venv/bin/python bench/ab/pg_restore_ab.py OLD_SRC NEW_SRC [--size-mb 1024] [--rounds 3] [--jobs 2]
    # e.g. a worktree of an older commit's src and this checkout's src; --jobs auto = the default

For every run: wall seconds, the CPU seconds of the command's process tree (``os.wait4``) and of
the server meanwhile (the postmaster and its exited backends), and the load average. Every
dataferry restore is checked by exact row counts and a content fingerprint of every table, the raw
one by row counts (outside the timing). Medians and ratios to the raw restore are printed and
written as Markdown under bench/results/ (``--no-results`` to skip).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "pg"))
import common  # noqa: E402
import generate_pg  # noqa: E402
from run import tune_server  # noqa: E402

RAW_DB, TARGET_DB = "ab_raw", "ab_target"


def main() -> None:
    """Generate, dump and back up, then the interleaved rounds; print and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old_src")
    parser.add_argument("new_src")
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", default="auto", help="dataferry's --jobs (auto: the default settings)")
    parser.add_argument("--no-results", action="store_true")
    args = parser.parse_args()
    common.compile_dataferry(args.old_src, args.new_src)
    servers = common.import_servers()
    workdir = common.workdir_for(None)
    src = f"ab_src_{args.size_mb}"
    runs: dict[str, list[dict[str, float]]] = {"raw": [], "old": [], "new": []}
    with servers.start_postgres() as server, common.moto_s3(workdir, workdir / "moto.log") as s3:
        tune_server(servers, server, False)
        generate_pg.generate(server, src, args.size_mb)
        pid_sql = "SELECT split_part(pg_read_file('postmaster.pid'), E'\\n', 1)"
        postmaster = int(generate_pg.psql(server, pid_sql, "postgres").strip())
        counts = generate_pg.row_counts(server, src)
        content = generate_pg.content_fingerprint(server, src)
        config = common.write_config(
            workdir / "ab.toml",
            engine="postgresql",
            source_url=server.dsn(src),
            target_url=server.dsn(TARGET_DB),
            workdir=workdir,
            s3=s3,
            s3_prefix="ab",
        )
        env = {**os.environ, **server.env(), **common.ferry_env(server.password, s3)}
        tools_env = {**os.environ, **server.env()}
        dump = workdir / "raw.pgdump"
        subprocess.run(
            [f"{server.bindir}/pg_dump", "-Fc", "-Z0", "-f", str(dump), "-d", src], env=tools_env, check=True
        )

        def ferry(code: str, *more: str) -> list[str]:
            env["PYTHONPATH"] = args.old_src if code == "old" else args.new_src
            return [sys.executable, "-m", "dataferry", "--config", str(config), "-q", *more]

        subprocess.run(ferry("new", "backup", "bench", "--env", "local"), env=env, check=True)
        server.create_db(TARGET_DB)  # a live database to replace
        raw = [f"{server.bindir}/pg_restore", "-j", "2", "-d", RAW_DB, str(dump)]
        jobs = () if args.jobs == "auto" else ("--jobs", args.jobs)
        restore = ("restore", "bench", "--env", "target", "--from", "local", *jobs)
        for _ in range(args.rounds):
            for code in runs:
                if code == "raw":
                    server.drop_db(RAW_DB)
                    server.create_db(RAW_DB)
                generate_pg.psql(server, "CHECKPOINT;", "postgres")
                subprocess.run(["sync"], check=True)
                argv = raw if code == "raw" else ferry(code, *restore)
                runs[code].append(
                    common.timed_run(
                        argv,
                        tools_env if code == "raw" else env,
                        lambda: common.reaped_cpu_seconds(postmaster),
                        0.3,
                    )
                )
                db = RAW_DB if code == "raw" else TARGET_DB
                if generate_pg.row_counts(server, db) != counts:
                    raise RuntimeError(f"{code}: the restored row counts differ")
                if code != "raw" and generate_pg.content_fingerprint(server, db) != content:
                    raise RuntimeError(f"{code}: the restored content differs")
                print(code, {k: round(v, 2) for k, v in runs[code][-1].items()}, flush=True)
        version = generate_pg.psql(server, "SELECT version();", "postgres").strip()
    common.remove_workdir(workdir, True, False)
    report = render(args, runs, version)
    print(report)
    if not args.no_results:
        print(f"written: {common.write_results(report, None, 'pg-restore-ab', [args.size_mb])}")


def render(args: argparse.Namespace, runs: dict[str, list[dict[str, float]]], version: str) -> str:
    """The Markdown report: every run, then the medians and the ratios to the raw restore."""
    label = {
        "raw": "raw `pg_restore -j 2` (uncompressed local file)",
        "old": f"old `--jobs {args.jobs}`",
        "new": f"new `--jobs {args.jobs}`",
    }
    lines = [
        f"# PostgreSQL restore A/B, {args.size_mb} MB, {args.rounds} interleaved rounds",
        "",
        f"{version}; {os.cpu_count()} CPUs; old = `{args.old_src}`, new = `{args.new_src}`.",
        "`bench/ab/pg_restore_ab.py` (bench/README.md). Every dataferry restore checked by row counts",
        "and a content fingerprint of every table; dataferry's times include the row-count check and the swap.",
        "",
    ]
    lines += common.ab_tables(label, runs, speed_up=False)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
