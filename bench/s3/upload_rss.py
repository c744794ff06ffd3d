"""Peak RSS of one S3 upload (``S3Store.put``, no dump) by object size and parts in flight.

    .venv/bin/python bench/s3/upload_rss.py

Starts moto's S3 server, then for each (concurrency, size) uploads ``size`` MiB of random bytes
from a fresh process and prints that process's peak RSS before and after. Shows what an upload
holds per part in flight and that it stops growing once the pipeline is full (bench/README.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common

RUNS = ((4, 48), (4, 190), (4, 400), (4, 800), (3, 400), (2, 400))
KEY_ENV, SECRET_ENV = "BENCH_S3_KEY", "BENCH_S3_SECRET"


class RandomSource:
    """``total`` bytes, 1 MiB of random data repeated (incompressible, like an artifact)."""

    def __init__(self, total: int) -> None:
        self.left = total
        self.block = os.urandom(1 << 20)

    def read(self, n: int = -1) -> bytes:
        """Up to 1 MiB at a time; b'' at the end."""
        size = min(n if n > 0 else 1 << 20, self.left, 1 << 20)
        self.left -= size
        return self.block[:size]


def peak_mib() -> int:
    """This process's peak RSS (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) // 1024
    return 0


def upload(size_mib: int, endpoint: str, bucket: str, concurrency: int) -> str:
    """One upload in this process; returns the line to print."""
    from dataferry.config import S3Options
    from dataferry.stores.s3 import S3Store

    options = S3Options(
        endpoint_url=endpoint,
        region="us-east-1",
        access_key_id_env=KEY_ENV,
        secret_access_key_env=SECRET_ENV,
        concurrency=concurrency,
    )
    store = S3Store.from_url(f"s3://{bucket}/upload-rss", options)
    before = peak_mib()
    store.put(f"object-{size_mib}-{concurrency}", RandomSource(size_mib << 20))
    return f"{concurrency} parts in flight, {size_mib} MiB object: peak RSS {before} -> {peak_mib()} MiB"


def main() -> int:
    """Run every (concurrency, size) in its own process against one moto server."""
    if len(sys.argv) == 5:  # the child: size endpoint bucket concurrency
        print(upload(int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])))
        return 0
    work = Path(tempfile.mkdtemp(prefix="dataferry-bench-s3-"))
    env = common.clean_env({KEY_ENV: "benchmark", SECRET_ENV: "benchmark-secret"})
    with common.moto_s3(work, work / "moto.log") as s3:
        for concurrency, size in RUNS:
            argv = [sys.executable, __file__, str(size), s3.endpoint_url, s3.bucket, str(concurrency)]
            print(subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout.strip())
    common.remove_workdir(work, True, False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
