"""A/B: the per-table PostgreSQL backup with pg_dump dumping serially (1 worker) against 2 workers,
beside the raw ``pg_dump -Fc -Z0 | zstd -3 -T0`` pipeline, in interleaved rounds on one server.

    .venv/bin/python bench/ab/pg_dump_workers_ab.py --size-mb 1024 --rounds 3

Why: on two CPUs shared with the server, the per-table backup measured 1.12-1.14x of the raw
pipeline with two pg_dump workers (issue 15); this says whether one worker (the raw pipeline's
shape) closes the gap. dataferry runs as the CLI in a child process with ``pieces.dump_workers``
replaced; the wall time and the process tree's CPU time are reported.
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

CHILD = (
    "import sys; from dataferry import pieces; n = int(sys.argv.pop(1)); pieces.dump_workers = lambda: n; "
    "from dataferry.cli import main; sys.argv[0] = 'dataferry'; main()"
)


def timed(argv: list[str], env: dict[str, str], before: object) -> tuple[float, float]:
    """Wall and CPU seconds (the process tree) of one command, after a settle step."""
    before()  # type: ignore[operator]
    subprocess.run(["sync"], check=True)
    start = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    if status != 0:
        raise RuntimeError(f"{argv[:4]} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size-mb", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    servers = common.import_servers()
    workdir = common.workdir_for(None)
    with servers.start_postgres() as server, common.moto_s3(workdir, workdir / "moto.log") as s3:
        tune_server(servers, server, False)
        src = "ab_src"
        generate_pg.generate(server, src, args.size_mb)
        config = common.write_config(
            workdir / "ab.toml",
            engine="postgresql",
            source_url=server.dsn(src),
            target_url=server.dsn("ab_target"),
            workdir=workdir,
            s3=s3,
            s3_prefix="ab",
        )
        ferry_env = {**os.environ, **server.env(), **common.ferry_env(server.password, s3)}
        settle = lambda: generate_pg.psql(server, "CHECKPOINT;", "postgres")  # noqa: E731
        out = workdir / "raw.zst"
        raw = [
            "bash",
            "-o",
            "pipefail",
            "-c",
            f"{server.bindir}/pg_dump -Fc -Z0 -d {src} | zstd -3 -T0 -q -f -o {out}",
        ]
        results: dict[str, list[tuple[float, float]]] = {"raw": [], "workers 1": [], "workers 2": []}
        for _ in range(args.rounds):
            results["raw"].append(timed(raw, {**os.environ, **server.env()}, settle))
            for n in ("1", "2"):
                argv = [
                    sys.executable,
                    "-c",
                    CHILD,
                    n,
                    "--config",
                    str(config),
                    "-q",
                    "backup",
                    "bench",
                    "--env",
                    "local",
                ]
                results[f"workers {n}"].append(timed(argv, ferry_env, settle))
        print(f"| {args.size_mb} MB, {args.rounds} rounds | wall s (median; all) | CPU s (median) | vs raw |")
        print("| --- | --- | --- | --- |")
        raw_wall = statistics.median(w for w, _ in results["raw"])
        for name, runs in results.items():
            wall = statistics.median(w for w, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            print(
                f"| {name} | {wall:.2f} ({', '.join(f'{w:.2f}' for w, _ in runs)}) | {cpu:.1f} | {wall / raw_wall:.2f}x |"
            )
        print(f"load average at the end: {os.getloadavg()}")
    common.remove_workdir(workdir, True, False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
