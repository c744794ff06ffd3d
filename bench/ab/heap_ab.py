"""A/B of ``dataferry/heap.py`` on real PostgreSQL commands: dataferry's own peak RSS with glibc's
mmap threshold fixed (as shipped) and left dynamic (``BENCH_NO_HEAP=1``), alternating.

    .venv/bin/python bench/ab/heap_ab.py --size-mb 256 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pg"))

import common
import generate_pg

COMMANDS = {
    "backup -> local": ["backup", "bench", "--env", "local"],
    "backup -> S3": ["backup", "bench", "--env", "s3"],
    "restore --jobs 1 <- local": ["restore", "bench", "--env", "target", "--from", "local", "--jobs", "1"],
    "restore --jobs 2 <- local": ["restore", "bench", "--env", "target", "--from", "local", "--jobs", "2"],
    "restore --jobs 1 <- S3": ["restore", "bench", "--env", "target", "--from", "s3", "--jobs", "1"],
}


VARIANTS: list[tuple[str, dict[str, str]]] = [("fixed", {}), ("dynamic", {"BENCH_NO_HEAP": "1"})]


def main(argv: list[str]) -> int:
    """Generate one database, then run every command with and without heap.py, alternating."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=int, default=256)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--base-src", help="also run this source tree (an older dataferry's src/) as 'base'")
    args = p.parse_args(argv)
    if args.base_src:
        VARIANTS.append(("base", {"PYTHONPATH": args.base_src}))
    work = common.workdir_for(None)
    servers = common.import_servers()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    with servers.start_postgres() as server, common.moto_s3(work, work / "moto.log") as s3:
        src = "bench_src"
        config = common.write_config(
            work / "dataferry.toml",
            engine="postgresql",
            source_url=server.dsn(src),
            target_url=server.dsn("bench_target"),
            workdir=work,
            s3=s3,
            s3_prefix="ab",
        )
        generate_pg.generate(server, src, args.size_mb)
        base_env = common.ferry_env(server.password, s3)
        rows: dict[str, dict[str, list[int]]] = {}
        for _ in range(args.rounds):
            for label, cmd in COMMANDS.items():
                for variant, extra in VARIANTS:
                    m = common.measure_ferry(
                        label, ["--config", str(config), "-q", *cmd], {**base_env, **extra}, work / "ab.log"
                    )
                    rows.setdefault(label, {}).setdefault(variant, []).append((m.ferry_rss_kib or 0) // 1024)
                    print(
                        f"{label} [{variant}]: {(m.ferry_rss_kib or 0) // 1024} MiB, {m.seconds:.1f} s",
                        flush=True,
                    )
    common.remove_workdir(work, True, False)
    header = ["command", *(f"RSS MiB, {name}" for name, _ in VARIANTS)]
    table = [[k, *(", ".join(map(str, v[name])) for name, _ in VARIANTS)] for k, v in rows.items()]
    print(common.markdown_table(header, table))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
