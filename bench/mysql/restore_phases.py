"""Where a MySQL restore's time goes: one ``dataferry.restore`` in this process, with its phases
timed (wall, this process tree's CPU, the server's CPU), for either layout of the mysql engine
(the spool-then-load of main before issue 15, or the overlapped load after it).

    PYTHONPATH=SRC python bench/mysql/restore_phases.py CONFIG --server-pid PID [--jobs 2]

CONFIG is a benchmark config (``bench/common.py: write_config``) with the secrets in the environment
(``BENCH_DB_PASSWORD``); the restore is ``bench`` from ``local`` into ``target``. Used by
``bench/ab/mysql_restore_ab.py --phases``; the numbers are in bench/README.md (MariaDB section).
A phase's start is in seconds from the start of this process, its length in seconds; chunk and key scripts are listed
one by one where the engine loads them through ``_Loads.load``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dataferry
from dataferry.engines.mysql import engine as mysql_engine
from dataferry.engines.mysql import load as mysql_load
from dataferry.engines.mysql import swap as mysql_swap

T0 = time.monotonic()
EVENTS: list[tuple[str, float, float, float, float]] = []
SERVER_PID = 0


def server_cpu() -> float:
    """The server's CPU seconds so far."""
    fields = Path(f"/proc/{SERVER_PID}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """This process's CPU seconds, and its children's that ended."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(name: str | Callable[..., str], fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, recording its start, wall, server CPU and own CPU under ``name``."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t, s, c = time.monotonic(), server_cpu(), own_cpu()
        try:
            return fn(*args, **kwargs)
        finally:
            label = name if isinstance(name, str) else name(*args, **kwargs)
            EVENTS.append((label, t - T0, time.monotonic() - t, server_cpu() - s, own_cpu() - c))

    return wrapper


def instrument() -> None:
    """Wrap the phases of whichever layout this checkout has."""
    if hasattr(mysql_load, "load_spooled"):  # before issue 15: spool everything, then load
        mysql_engine.spool = timed("spool (whole dump)", mysql_load.spool)  # type: ignore[attr-defined]
        mysql_engine.load_spooled = timed("load (schema, chunks, keys, objects)", mysql_load.load_spooled)  # type: ignore[attr-defined]
        mysql_load.parallel_load = timed(  # type: ignore[attr-defined]
            lambda client, chunks, jobs, *a: f"  parallel_load of {len(chunks)} scripts",
            mysql_load.parallel_load,  # type: ignore[attr-defined]
        )
    else:
        from dataferry.engines.mysql import parallel

        parallel.ParallelLoad.feed = timed("read + spool, loading meanwhile", parallel.ParallelLoad.feed)  # type: ignore[method-assign]
        parallel.ParallelLoad.finish = timed(
            "rest: chunks, keys, foreign keys, objects", parallel.ParallelLoad.finish
        )  # type: ignore[method-assign]
        mysql_load._Loads.load = timed(lambda self, path: f"    {path.name}", mysql_load._Loads.load)  # type: ignore[method-assign]
    mysql_load.Client.run = timed(lambda self, script, what: f"  {what}", mysql_load.Client.run)  # type: ignore[method-assign]
    mysql_engine.MySQLEngine.row_counts = timed("row counts", mysql_engine.MySQLEngine.row_counts)  # type: ignore[method-assign]
    mysql_swap.swap = timed("swap", mysql_swap.swap)


def main() -> None:
    """Restore once and print the phases."""
    global SERVER_PID
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    SERVER_PID = args.server_pid
    instrument()
    cfg = dataferry.load_config(args.config)
    t, s, c = time.monotonic(), server_cpu(), own_cpu()
    request = dataferry.RestoreRequest(database="bench", environment="target", source="local", jobs=args.jobs)
    dataferry.restore(dataferry.plan_restore(cfg, request))
    print(
        f"restore: wall {time.monotonic() - t:.2f} s, server CPU {server_cpu() - s:.2f} s, "
        f"dataferry + clients CPU {own_cpu() - c:.2f} s, load average {os.getloadavg()[0]:.1f}"
    )
    print("   start   length  server CPU  own CPU  phase")
    for label, start, wall, scpu, ccpu in sorted(EVENTS, key=lambda e: e[1]):
        print(f"  {start:6.2f}  {wall:6.2f}  {scpu:10.2f}  {ccpu:7.2f}  {label}")


if __name__ == "__main__":
    main()
