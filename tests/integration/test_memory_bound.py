"""dataferry's own peak RSS during a backup's upload to S3 stays under 150 MiB and stops growing
(issue 15), measured in a separate process as the operating system sees it (VmHWM).

The child process imports what a command imports, then streams a generated dump (prose made on
the fly from a 4 MiB pool: it compresses about 3.5x, like the benchmarks' dumps; nothing is
stored) through zstd -3 and sha256 into ``S3Store.put`` against the session's moto server, with
the store's default part size and parts in flight. It reports its peak RSS when half the stream
was read and at the end: a pipeline whose memory grew with the size would show it in the second
half, long after the upload's parts were all in flight. A 4 GB stream measured the same way is in
bench/README.md ("Memory"); this is the same path at a size that runs in seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from servers import S3Server

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
#: The issue's bound for every command.
PEAK_BUDGET_MIB = 150
#: "Flat": what the second half of the stream may add to the peak.
GROWTH_BUDGET_MIB = 10
STREAM_MIB = 384

CHILD = textwrap.dedent(
    """
    import json, random, sys
    import dataferry.cli, dataferry.engines.mysql, dataferry.engines.postgresql  # a command's imports
    from dataferry import codecs, heap
    from dataferry.stores.s3 import S3Store
    from dataferry.streams import HashingReader

    def hwm():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM"):
                return int(line.split()[1]) // 1024

    class Prose:
        def __init__(self, total):
            rng = random.Random(7)
            words = [b"w%d" % i for i in range(300)]
            pool = bytearray()
            while len(pool) < 4 << 20:
                pool += b" ".join(words[int(300 * rng.random() ** 2)] for _ in range(16)) + b"\\n"
            self.pool, self.left, self.at, self.total, self.half = bytes(pool[: 4 << 20]), total, 0, total, None

        def read(self, n=-1):
            size = min(n if n > 0 else 1 << 20, self.left, len(self.pool) - self.at)
            data = self.pool[self.at : self.at + size]
            self.at = (self.at + size) % len(self.pool)
            self.left -= size
            if self.half is None and self.left <= self.total // 2:
                self.half = hwm()
            return data

    heap.release_large_buffers()  # as cli.run does first
    endpoint, bucket, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    options = {"endpoint_url": endpoint, "region": "us-east-1",
               "access_key_id_env": "MEM_KEY", "secret_access_key_env": "MEM_SECRET"}
    store = S3Store.from_url(f"s3://{bucket}/memory", options)
    source = Prose(size << 20)
    baseline = hwm()
    hashed = HashingReader(codecs.zstd_compress(source, level=3))
    info = store.put("stream.zst", hashed)
    print(json.dumps({"baseline": baseline, "half": source.half, "peak": hwm(), "stored": info.size}))
    """
)


def test_backup_upload_to_s3_stays_under_budget_and_flat(s3_server: S3Server, s3_bucket: str) -> None:
    """Peak RSS <= 150 MiB, and the second half of a 384 MiB stream adds at most 10 MiB."""
    env = {
        **s3_server.env(),
        "MEM_KEY": s3_server.access_key,
        "MEM_SECRET": s3_server.secret_key,
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    argv = [sys.executable, "-c", CHILD, s3_server.endpoint_url, s3_bucket, str(STREAM_MIB)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["stored"] > 40 * MiB  # many times the parts in flight: the pipeline was full
    report = (
        f"RSS MiB: {result['baseline']} after imports, {result['half']} at half, {result['peak']} at the end"
    )
    assert result["peak"] <= PEAK_BUDGET_MIB, report
    assert result["peak"] - result["half"] <= GROWTH_BUDGET_MIB, report
