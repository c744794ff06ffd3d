"""A/B of ``dataferry restore --jobs 2`` (MariaDB, local store) between two checkouts of dataferry,
alternating on one server and one artifact, so that the server's drift (each restore leaves more for
InnoDB to purge) hits both sides alike. Used for the redesign (issue 11); see bench/README.md.

    .venv/bin/python bench/ab/mysql_restore_ab.py OLD_SRC NEW_SRC   # e.g. a worktree's src and src

Wall seconds and the process tree's CPU seconds (os.wait4) of each run are printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "mysql"))
import common  # noqa: E402
import generate_mysql  # noqa: E402
from run import settle, tune_server, write_config  # noqa: E402

SRC = {"old": sys.argv[1], "new": sys.argv[2]}
servers = common.import_servers()
workdir = common.workdir_for(None)
with servers.start_mariadb() as server, common.moto_s3(workdir, workdir / "moto.log") as s3:
    client = generate_mysql.Client(server, workdir / "client.cnf")
    tune_server(client, False)
    config = write_config(server, s3, workdir, 256, "bench_src_256")
    generate_mysql.generate(client, "bench_src_256", 256)
    env = common.ferry_env(server.password, s3)

    def ferry(code: str, *args: str) -> tuple[float, float, int, str]:
        e = dict(env)
        e["PYTHONPATH"] = SRC[code]
        argv = [sys.executable, "-m", "dataferry", "--config", str(config), "-q", *args]
        t = time.monotonic()
        p = subprocess.Popen(argv, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert p.stderr is not None
        err = p.stderr.read().decode()
        _, status, ru = os.wait4(p.pid, 0)
        return time.monotonic() - t, ru.ru_utime + ru.ru_stime, status, err[-300:]

    print("backup", ferry("new", "backup", "bench", "--env", "local"), flush=True)
    client.run("CREATE DATABASE bench_target CHARACTER SET utf8mb4;")
    for _ in range(3):
        for code in ("old", "new"):
            settle(client)
            subprocess.run(["sync"], check=True)
            print(
                code,
                ferry(code, "restore", "bench", "--env", "target", "--from", "local", "--jobs", "2"),
                flush=True,
            )
common.remove_workdir(workdir, True)
