"""Peak RSS of dataferry's data paths (no database), by stream size, part size and parts in flight.

    .venv/bin/python bench/s3/memory.py --size-mb 256 1024 4096
    .venv/bin/python bench/s3/memory.py --size-mb 1024 --parts 8x2 8x4 16x2 16x3 --paths s3-backup

A backup is ``dump -> zstd -3 (multi-threaded) -> sha256 -> store.put``; a restore is
``store.open -> sha256 -> zstd -d -> the engine``; ``s3-backup-age`` (not run by default) adds age
encryption after zstd, as for an environment with ``encryption`` recipients. The dump is replaced here by a generated
stream of prose that compresses about 3.5x with zstd -3, like the benchmarks' dumps, made on the
fly from an 8 MiB pool (larger than zstd -3's window, so the pool's repeats do not compress), so
4 GB need neither a 4 GB database nor 4 GB of disk. The engine is replaced by reading to nowhere.

Each (path, size, parts) runs in a fresh process that first imports ``dataferry.cli`` with the
engines and the S3 store, as a real command does, and reports its own VmHWM: after the imports
(the baseline), and after the transfer. Runs against moto's server in its own process (its CPU is
reported apart: it shares the machine), and against a local store.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common

KEY_ENV, SECRET_ENV = "BENCH_S3_KEY", "BENCH_S3_SECRET"
POOL = 8 << 20
PATHS = ("local-backup", "local-restore", "s3-backup", "s3-restore", "s3-backup-age")


class ProseSource:
    """``total`` bytes of generated prose: an 8 MiB pool read round and round (8 MiB of the
    process's RSS, in the baseline)."""

    def __init__(self, total: int, seed: int = 1) -> None:
        rng = random.Random(seed)
        words = [w.encode() for w in common.VOCABULARY]
        n = len(words)
        pool = bytearray(POOL)  # filled in place: the pool is the only copy
        at = 0
        while at < POOL:
            line = b" ".join(words[int(n * rng.random() ** common.WORD_SKEW)] for _ in range(24)) + b"\n"
            pool[at : at + len(line)] = line[: POOL - at]
            at += len(line)
        self.pool = memoryview(pool)
        self.left = total
        self.at = 0

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (1 MiB when unbounded); b'' at the end."""
        size = min(n if n and n > 0 else 1 << 20, self.left, POOL - self.at)  # short at the wrap
        data = bytes(self.pool[self.at : self.at + size])
        self.at = (self.at + size) % POOL
        self.left -= size
        return data


def status() -> dict[str, int]:
    """VmHWM and VmRSS of this process, in KiB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmHWM", "VmRSS")):
            out[line.split(":")[0]] = int(line.split()[1])
    return out


def child(args: argparse.Namespace) -> None:
    """One transfer in this process; prints one JSON line."""
    import dataferry.cli
    import dataferry.engines.mysql
    import dataferry.engines.postgresql  # noqa: F401
    from dataferry import codecs, heap
    from dataferry.config import S3Options
    from dataferry.stores.local import LocalStore
    from dataferry.stores.s3 import S3Store
    from dataferry.streams import CHUNK, HashingReader

    if args.no_heap:  # the A/B of heap.py: glibc's own dynamic threshold
        heap.release_large_buffers = lambda: False  # type: ignore[assignment]
    heap.release_large_buffers()  # as every command does first (cli.run)
    if args.path.startswith("s3"):
        part, conc = args.spec.split("x")
        options = S3Options(
            endpoint_url=args.endpoint,
            region="us-east-1",
            access_key_id_env=KEY_ENV,
            secret_access_key_env=SECRET_ENV,
            part_size_mib=int(part),
            concurrency=int(conc),
        )
        store: object = S3Store.from_url(f"s3://{args.bucket}/memory", options)
    else:
        store = LocalStore(Path(args.local))
    key = f"object-{args.size}.zst"
    source = ProseSource(args.size << 20) if "backup" in args.path else None
    before = status()["VmHWM"]
    if args.trace:
        import tracemalloc

        tracemalloc.start()
    start, cpu = time.monotonic(), time.process_time()
    if "backup" in args.path:
        encoded = codecs.zstd_compress(source, level=3)  # type: ignore[arg-type]
        with contextlib.ExitStack() as stack:
            if args.path.endswith("age"):  # as pipeline.upload does for an environment's recipients
                import pyrage

                from dataferry import encryption

                recipient = str(pyrage.x25519.Identity.generate().to_public())
                keys = encryption.parse_recipients([recipient], "bench")
                encoded = stack.enter_context(encryption.encrypting(encoded, keys))
            hashed = HashingReader(encoded)
            store.put(key, hashed)  # type: ignore[attr-defined]
        moved = hashed.size
    else:
        with store.open(key) as raw:  # type: ignore[attr-defined]
            stream = codecs.zstd_decompress(HashingReader(raw))
            moved = 0
            while data := stream.read(CHUNK):
                moved += len(data)
    out = {
        "path": args.path,
        "size": args.size,
        "parts": args.spec if args.path.startswith("s3") else "-",
        "baseline_kib": before,
        "peak_kib": status()["VmHWM"],
        "seconds": round(time.monotonic() - start, 2),
        "cpu": round(time.process_time() - cpu, 2),
        "bytes": moved,
    }
    if args.trace:
        out["traced_peak_kib"] = tracemalloc.get_traced_memory()[1] // 1024
    print(json.dumps(out))


def main(argv: list[str]) -> int:
    """Run every (path, size, parts) in its own process and print a Markdown table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=int, nargs="+", default=[256, 1024, 4096], dest="sizes")
    p.add_argument(
        "--parts", nargs="+", default=["default"], help="PARTMIBxCONCURRENCY, or default (the store's own)"
    )
    p.add_argument("--paths", nargs="+", default=list(PATHS[:4]), choices=PATHS)
    p.add_argument("--trace", action="store_true", help="also report tracemalloc's peak (slower)")
    p.add_argument("--no-heap", action="store_true", help="leave glibc's mmap threshold dynamic (A/B)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--endpoint", help=argparse.SUPPRESS)
    p.add_argument("--bucket", help=argparse.SUPPRESS)
    p.add_argument("--local", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return 0
    from dataferry.stores.s3parts import CONCURRENCY, PART_SIZE_MIB  # the parent is not measured

    default_parts = f"{PART_SIZE_MIB}x{CONCURRENCY}"
    work = Path(tempfile.mkdtemp(prefix="dataferry-bench-mem-"))
    env = common.clean_env({KEY_ENV: "benchmark", SECRET_ENV: "benchmark-secret"})
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    rows = []
    with common.moto_s3(work, work / "moto.log") as s3:
        for size in args.sizes:
            for parts in args.parts:
                for path in args.paths:
                    if parts != "default" and not path.startswith("s3"):
                        continue
                    local = work / "local"
                    local.mkdir(exist_ok=True)
                    spec = parts if parts != "default" else default_parts
                    argv_ = [sys.executable, __file__, "--child", "--path", path, "--size", str(size)]
                    argv_ += ["--spec", spec, "--endpoint", s3.endpoint_url, "--bucket", s3.bucket]
                    argv_ += ["--local", str(local)] + (["--trace"] if args.trace else [])
                    argv_ += ["--no-heap"] if args.no_heap else []
                    moto_cpu = common.process_cpu_seconds(s3.pid)
                    done = subprocess.run(argv_, env=env, capture_output=True, text=True, check=False)
                    if done.returncode != 0:
                        print(done.stderr[-3000:], file=sys.stderr)
                        return 1
                    row = json.loads(done.stdout.strip().splitlines()[-1])
                    row["moto_cpu"] = round(common.process_cpu_seconds(s3.pid) - moto_cpu, 1)
                    row["load"] = round(os.getloadavg()[0], 1)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    common.remove_workdir(work, True, False)
    header = [
        "path",
        "stream MiB",
        "parts MiB x in flight",
        "baseline MiB",
        "peak MiB",
        "s",
        "CPU s",
        "moto CPU s",
        "load",
    ]
    table = [
        [
            r["path"],
            str(r["size"]),
            r["parts"],
            common.mib(r["baseline_kib"]),
            common.mib(r["peak_kib"]),
            f"{r['seconds']:.1f}",
            f"{r['cpu']:.1f}",
            f"{r['moto_cpu']:.1f}" if r["path"].startswith("s3") else "-",
            str(r["load"]),
        ]
        for r in rows
    ]
    print(common.markdown_table(header, table))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
