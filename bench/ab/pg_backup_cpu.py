"""Where the per-table PostgreSQL backup's time goes: its parts run alone, beside the raw pipeline,
with the CPU of the client processes and of the server measured apart.

    .venv/bin/python bench/ab/pg_backup_cpu.py --size-mb 1024 --rounds 3

Why: on two CPUs the backup is bound by CPU, not by waiting, so its wall time follows the CPU that
it and the server spend together. Each part is run on its own, in interleaved rounds on one
server: pg_dump's custom format into /dev/null (what the raw pipeline's pg_dump costs), the raw
pipeline ``pg_dump -Fc -Z0 | zstd -3 -T0``, pg_dump's directory format with two workers (what
dataferry's pg_dump costs), ``zstd -3 -T0`` of those files alone, and dataferry's backup to a local
store. Client CPU is the command's process tree (``os.wait4``); server CPU is the postmaster's own
and its exited backends' (``/proc/<postmaster>/stat``: utime, stime, cutime, cstime).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pg"))

import common
import generate_pg
from run import tune_server

Run = tuple[float, float, float]  # wall, client CPU, server CPU


def server_cpu(postmaster: int) -> float:
    """CPU seconds of the postmaster and the backends it has reaped."""
    fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def timed(argv: list[str], env: dict[str, str], server: object, postmaster: int) -> Run:
    """One command after a CHECKPOINT and a sync: wall, its tree's CPU, the server's CPU."""
    generate_pg.psql(server, "CHECKPOINT;", "postgres")
    subprocess.run(["sync"], check=True)
    before = server_cpu(postmaster)
    start = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    time.sleep(0.3)  # the backends' exit reaches the postmaster's accounts
    if status != 0:
        raise RuntimeError(f"{argv[:4]} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return wall, usage.ru_utime + usage.ru_stime, server_cpu(postmaster) - before


def commands(bindir: Path, workdir: Path, config: Path) -> dict[str, list[str]]:
    """The parts, in the order each round runs them."""
    files = workdir / "directory-dump"
    return {
        "`pg_dump -Fc -Z0 > /dev/null`": ["bash", "-c", f"{bindir}/pg_dump -Fc -Z0 -d src > /dev/null"],
        "raw `pg_dump -Fc -Z0 | zstd -3 -T0`": [
            "bash",
            "-o",
            "pipefail",
            "-c",
            f"{bindir}/pg_dump -Fc -Z0 -d src | zstd -3 -T0 -q -f -o {workdir}/raw.zst",
        ],
        "`pg_dump -Fd -Z0 -j2` into files": [
            "bash",
            "-c",
            f"rm -rf {files}; {bindir}/pg_dump -Fd -Z0 -j2 -d src -f {files}",
        ],
        "`zstd -3 -T0` of those files alone": [
            "bash",
            "-c",
            f"cat {files}/*.dat | zstd -3 -T0 -q -f -o {workdir}/files.zst",
        ],
        "dataferry backup (per-table, defaults)": [
            str(common.PYTHON),
            "-m",
            "dataferry",
            "--config",
            str(config),
            "-q",
            "backup",
            "bench",
            "--env",
            "local",
        ],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size-mb", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    servers = common.import_servers()
    workdir = common.workdir_for(None)
    with servers.start_postgres() as server, common.moto_s3(workdir, workdir / "moto.log") as s3:
        tune_server(servers, server, False)
        generate_pg.generate(server, "src", args.size_mb)
        pid_sql = "SELECT split_part(pg_read_file('postmaster.pid'), E'\\n', 1)"
        postmaster = int(generate_pg.psql(server, pid_sql, "postgres").strip())
        config = common.write_config(
            workdir / "ab.toml",
            engine="postgresql",
            source_url=server.dsn("src"),
            target_url=server.dsn("dst"),
            workdir=workdir,
            s3=s3,
            s3_prefix="ab",
        )
        env = {**os.environ, **server.env(), **common.ferry_env(server.password, s3)}
        parts = commands(Path(server.bindir), workdir, config)
        results: dict[str, list[Run]] = {name: [] for name in parts}
        for _ in range(args.rounds):
            for name, argv in parts.items():
                results[name].append(timed(argv, env, server, postmaster))
        print(
            f"| {args.size_mb} MB, {args.rounds} rounds | wall s (median; all) | client CPU s | server CPU s |"
        )
        print("| --- | --- | --- | --- |")
        for name, runs in results.items():
            walls = ", ".join(f"{w:.2f}" for w, _, _ in runs)
            print(
                f"| {name} | {statistics.median(r[0] for r in runs):.2f} ({walls}) "
                f"| {statistics.median(r[1] for r in runs):.2f} | {statistics.median(r[2] for r in runs):.2f} |"
            )
        print(f"load average at the end: {os.getloadavg()}")
    common.remove_workdir(workdir, True, False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
