"""Peak RSS of ``dataferry backup`` to S3 (moto) at several MariaDB database sizes.

    .venv/bin/python bench/mysql/s3_backup_rss.py --size-mb 1024 2048

A backup to S3 holds the parts in flight, so its memory grows with the artifact until the upload
pipeline is full; this shows where it levels off (bench/README.md, "S3 backup memory"). One run
per size, same server settings as bench/mysql/run.py.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common
import generate_mysql
import run as mysql_run


def main(argv: list[str]) -> int:
    """Generate each size, back it up to S3 and print dataferry's peak RSS."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=int, nargs="+", default=[1024, 2048])
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="dataferry-bench-s3rss-"))
    servers = common.import_servers()
    with servers.start_mariadb() as server, common.moto_s3(work, work / "moto.log") as s3:
        client = generate_mysql.Client(server, work / "client.cnf")
        mysql_run.tune_server(client, durable=False)
        for size in sorted(args.size_mb):
            src = f"bench_src_{size}"
            config = mysql_run.write_config(server, s3, work, size, src)
            runner = common.Runner(
                config=config,
                log=work / "backup.log",
                repeat=1,
                tool_env=common.clean_env(),
                ferry_env=common.ferry_env(server.password, s3),
            )
            generated = generate_mysql.generate(client, src, size)
            print(f"{size} MB: {common.human_size(generated.size_bytes)} generated", flush=True)
            runner.ferry(f"backup: dataferry -> S3 (moto) at {size} MB", "backup", "bench", "--env", "s3")
            client.run(f"DROP DATABASE {src};")
    common.remove_workdir(work, True, False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
