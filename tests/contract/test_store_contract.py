"""The Store contract: one behavioural suite run against every store implementation.

Every test takes the parametrised ``store`` fixture and runs against a ``LocalStore`` in a temporary
directory and an ``S3Store`` talking HTTP to a real moto S3 server (no mocks). Tests at the end are
specific to S3 (encryption options, error translation) and use the same server.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config as BotoConfig

from dataferry.errors import EngineError, FerryError, NotFound, StoreError, StoreUnavailable
from dataferry.stores import CleansIncomplete, Store, exists, open_store, put_bytes, read_bytes
from dataferry.stores.s3 import S3Store
from servers import S3Server

MiB = 1024 * 1024
PART = 5 * MiB  # the smallest part S3 accepts: objects above it are uploaded in several parts
CONCURRENCY = 2
S3_PREFIX = "team/backups"
KEY_ENV = "FERRY_TEST_S3_KEY_ID"
SECRET_ENV = "FERRY_TEST_S3_SECRET"


# -- fixtures ------------------------------------------------------------------------------------


@dataclass
class StoreCase:
    """How a test reaches a store: its URL and options (as in a config file), plus raw access."""

    kind: str
    url: str
    options: dict[str, object]
    env: dict[str, str] = field(default_factory=dict)
    root: Path | None = None  # local stores: the directory
    s3: S3Server | None = None  # S3 stores: the server
    bucket: str = ""

    def build(self) -> Store:
        """The store under test, built the way the product builds it."""
        return open_store(self.url, self.options)

    def raw_s3(self) -> Any:
        """A plain boto3 client for looking behind the store's back."""
        assert self.s3 is not None
        return self.s3.client()


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
def store_case(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StoreCase:
    """One case per Store implementation."""
    if request.param == "local":
        root = tmp_path / "store"
        return StoreCase("local", str(root), {}, root=root)
    server: S3Server = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    env = {KEY_ENV: server.access_key, SECRET_ENV: server.secret_key}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    options: dict[str, object] = {
        "endpoint_url": server.endpoint_url,
        "region": server.region,
        "access_key_id_env": KEY_ENV,
        "secret_access_key_env": SECRET_ENV,
        "part_size_mib": PART // MiB,
        "concurrency": CONCURRENCY,
    }
    return StoreCase("s3", f"s3://{bucket}/{S3_PREFIX}", options, env=env, s3=server, bucket=bucket)


@pytest.fixture
def store(store_case: StoreCase) -> Store:
    """The store under test."""
    return store_case.build()


# -- sources -------------------------------------------------------------------------------------


class Boom(Exception):
    """The failure injected into a source halfway through."""


class PatternSource:
    """Pseudo-random bytes made as they are read (never held whole), with their sha256.

    Records the largest read request so tests can check the store streams in bounded pieces.
    ``max_chunk`` makes every read short (like a pipe); ``fail_at`` raises once that many bytes
    were handed out.
    """

    def __init__(
        self,
        size: int,
        *,
        seed: int = 1,
        max_chunk: int | None = None,
        fail_at: int | None = None,
        error: Exception | None = None,
    ) -> None:
        self.size = size
        self.sent = 0
        self.largest_request = 0
        self.unbounded_requests = 0
        self._rng = random.Random(seed)
        self._sha = hashlib.sha256()
        self._max_chunk = max_chunk
        self._fail_at = fail_at
        self._error = error or Boom(f"source failed after {fail_at} bytes")

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (a negative ``n`` is counted: bounded stores never ask for all)."""
        if n is None or n < 0:
            self.unbounded_requests += 1
            n = self.size
        self.largest_request = max(self.largest_request, n)
        if self._fail_at is not None and self.sent >= self._fail_at:
            raise self._error
        n = min(n, self.size - self.sent)
        if self._max_chunk is not None:
            n = min(n, self._max_chunk)
        if self._fail_at is not None:
            n = min(n, self._fail_at - self.sent)
        data = self._rng.randbytes(n) if n > 0 else b""
        self.sent += len(data)
        self._sha.update(data)
        return data

    @property
    def sha256(self) -> str:
        """Digest of everything handed out."""
        return self._sha.hexdigest()


def read_back(store: Store, key: str) -> tuple[int, str]:
    """Size and sha256 of an object, read in chunks."""
    sha = hashlib.sha256()
    size = 0
    with store.open(key) as f:
        while chunk := f.read(MiB):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()


def keys(store: Store, prefix: str = "") -> set[str]:
    """Keys listed under ``prefix``."""
    return {o.key for o in store.list(prefix)}


def leftovers(case: StoreCase) -> list[str]:
    """Anything a failed upload could have left: files (temp files too) or multipart uploads."""
    if case.kind == "local":
        assert case.root is not None
        if not case.root.exists():
            return []
        return sorted(str(p.relative_to(case.root)) for p in case.root.rglob("*") if p.is_file())
    uploads = case.raw_s3().list_multipart_uploads(Bucket=case.bucket).get("Uploads", [])
    objects = case.raw_s3().list_objects_v2(Bucket=case.bucket).get("Contents", [])
    return sorted([f"upload:{u['Key']}" for u in uploads] + [o["Key"] for o in objects])


# -- put and open --------------------------------------------------------------------------------


def test_multipart_sized_round_trip_streams_in_bounded_pieces(store: Store) -> None:
    """An object bigger than two parts comes back byte for byte; the store never reads it whole."""
    src = PatternSource(2 * PART + 12345)
    info = store.put("db/big.sql.zst", src)
    assert info.key == "db/big.sql.zst"
    assert info.size == src.size
    assert read_back(store, "db/big.sql.zst") == (src.size, src.sha256)
    assert src.unbounded_requests == 0
    assert src.largest_request <= PART


def test_short_reads_still_make_valid_parts(store: Store) -> None:
    """Sources that return less than asked (pipes, decompressors) must still upload correctly."""
    src = PatternSource(2 * PART + 777, seed=2, max_chunk=64 * 1024)
    info = store.put("db/short.bin", src)
    assert info.size == src.size
    assert read_back(store, "db/short.bin") == (src.size, src.sha256)
    assert src.unbounded_requests == 0


def test_put_memory_stays_bounded(store_case: StoreCase) -> None:
    """Python allocations during an upload stay well under the object size (parts x concurrency)."""
    if store_case.kind == "s3":
        # moto runs in this process and keeps the uploaded parts in memory, so its allocations would
        # be counted too; S3Store's bound is measured out of process (the whole process's RSS:
        # tests/integration/test_memory_bound.py) and its read pattern by the round-trip test.
        pytest.skip("moto shares this process: measured out of process (test_memory_bound.py)")
    store = store_case.build()
    size = 64 * MiB
    src = PatternSource(size, seed=3)
    gc.collect()  # start from a quiet heap: other tests' garbage is not this upload's
    tracemalloc.start()
    try:
        store.put("db/bounded.bin", src)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert src.sent == size
    assert peak < size / 4, f"peak Python allocation {peak / MiB:.1f} MiB while uploading {size // MiB} MiB"


def test_empty_object_round_trip(store: Store) -> None:
    """A zero-byte object is still an object."""
    info = store.put("db/empty", PatternSource(0))
    assert info.size == 0
    assert read_back(store, "db/empty") == (0, hashlib.sha256().hexdigest())
    assert keys(store, "db/") == {"db/empty"}


def test_put_replaces_an_existing_object(store: Store) -> None:
    """A second put to the same key replaces the first."""
    put_bytes(store, "state/x", b"first")
    put_bytes(store, "state/x", b"second, longer")
    assert read_bytes(store, "state/x") == b"second, longer"
    assert [o.size for o in store.list("state/")] == [len(b"second, longer")]


@pytest.mark.parametrize("fail_at", [100 * 1024, PART + MiB], ids=["small", "multipart"])
def test_put_is_atomic_when_the_source_fails(store_case: StoreCase, fail_at: int) -> None:
    """A source that raises halfway leaves no object, no temp file and no open multipart upload."""
    store = store_case.build()
    src = PatternSource(3 * PART, fail_at=fail_at, error=EngineError("pg_dump failed (exit 1)"))
    with pytest.raises(EngineError, match="pg_dump failed"):
        store.put("db/partial.sql.zst", src)
    assert src.sent == fail_at  # it really did fail halfway, after streaming some data
    assert keys(store) == set()
    with pytest.raises(NotFound), store.open("db/partial.sql.zst"):
        pass
    assert leftovers(store_case) == []


def test_failed_overwrite_keeps_the_old_object(store: Store) -> None:
    """A failing put to an existing key leaves the previous object intact."""
    old = PatternSource(PART + 1, seed=4)
    store.put("db/object", old)
    with pytest.raises(Boom):
        store.put("db/object", PatternSource(2 * PART, seed=5, fail_at=PART + MiB))
    assert read_back(store, "db/object") == (old.size, old.sha256)


_KILLED_PUT = """
import json, os, sys, time
from dataferry.stores import open_store

class Stalls:
    def __init__(self):
        self.sent = 0
    def read(self, n=-1):
        if self.sent >= {stall_at}:
            print("stalled", flush=True)
            time.sleep(600)
        n = min(n if n and n > 0 else 1 << 20, {stall_at} - self.sent)
        self.sent += n
        return os.urandom(n)

spec = json.loads(sys.argv[1])
open_store(spec["url"], spec["options"]).put("db/killed.sql.zst", Stalls())
"""


def test_upload_killed_halfway_leaves_no_visible_object(store_case: StoreCase) -> None:
    """kill -9 during a put: the key never becomes visible, and cleanup removes what is left."""
    store = store_case.build()
    if store_case.root is not None:
        store_case.root.mkdir(parents=True, exist_ok=True)
    stall_at = PART + MiB  # past the first part, so S3 has started a multipart upload
    script = _KILLED_PUT.format(stall_at=stall_at)
    spec = json.dumps({"url": store_case.url, "options": store_case.options})
    env = {**os.environ, **store_case.env}
    with subprocess.Popen(
        [sys.executable, "-c", script, spec], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == b"stalled", proc.stderr.read() if proc.stderr else b""
            # The multipart upload is created concurrently with reading the parts: wait until the
            # upload really is in flight before killing it.
            deadline = time.monotonic() + 30
            while not leftovers(store_case) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert keys(store) == set()
    with pytest.raises(NotFound), store.open("db/killed.sql.zst"):
        pass
    # What the killed upload left (a temp file, an open multipart upload) is there but never listed;
    # the cleanup capability removes it.
    assert leftovers(store_case) != []
    assert isinstance(store, CleansIncomplete)
    assert store.cleanup_incomplete(timedelta(0), "other/") == []  # another database's prefix
    listed = store.cleanup_incomplete(timedelta(0), "db/", dry_run=True)
    assert len(listed) == 1 and listed[0].startswith("db/")  # S3: the key; local: the temp file
    assert leftovers(store_case) != []  # a dry run removes nothing
    assert len(store.cleanup_incomplete(timedelta(0), "db/")) == 1
    assert leftovers(store_case) == []


def test_open_missing_key_raises_not_found(store: Store) -> None:
    """Missing keys are NotFound (exit code 4), both in an empty store and beside other objects."""
    with pytest.raises(NotFound) as excinfo, store.open("db/nothing-here"):
        pass
    assert excinfo.value.exit_code == 4
    put_bytes(store, "db/something", b"x")
    with pytest.raises(NotFound), store.open("db/something-else"):
        pass


# -- list, delete, keys --------------------------------------------------------------------------


def test_list_by_prefix(store: Store) -> None:
    """list() returns exactly the keys starting with the prefix, with their sizes."""
    contents = {
        "alpha/one": b"1",
        "alpha/two/deeper": b"22",
        "alphabet/x": b"333",
        "beta/y": b"4444",
        "top": b"55555",
    }
    for key, data in contents.items():
        put_bytes(store, key, data)
    listed = {o.key: o.size for o in store.list()}
    assert listed == {k: len(v) for k, v in contents.items()}
    assert keys(store, "alpha/") == {"alpha/one", "alpha/two/deeper"}
    assert keys(store, "alpha") == {"alpha/one", "alpha/two/deeper", "alphabet/x"}
    assert keys(store, "alpha/two/") == {"alpha/two/deeper"}
    assert keys(store, "alpha/o") == {"alpha/one"}
    assert keys(store, "gamma/") == set()
    assert all(o.modified is not None for o in store.list())


def test_delete_is_idempotent(store: Store) -> None:
    """Deleting removes the object; deleting again, or something never written, is fine."""
    put_bytes(store, "db/a", b"a")
    put_bytes(store, "db/b", b"b")
    store.delete("db/a")
    store.delete("db/a")
    store.delete("db/never-existed")
    assert keys(store) == {"db/b"}
    with pytest.raises(NotFound), store.open("db/a"):
        pass


def test_nested_keys(store: Store) -> None:
    """Keys are paths: deep nesting works and siblings do not leak into each other's listing."""
    deep = "_dataferry/runs/publishing-api-staging/2026/11/26/run-0001.json"
    put_bytes(store, deep, b'{"ok": true}')
    put_bytes(store, "_dataferry/locks/publishing-api-staging.lock", b"owner")
    assert read_bytes(store, deep) == b'{"ok": true}'
    assert keys(store, "_dataferry/runs/") == {deep}
    assert exists(store, deep)
    assert not exists(store, deep.removesuffix(".json"))


# -- create_exclusive ----------------------------------------------------------------------------


def test_create_exclusive_once(store: Store) -> None:
    """True for the first creation, False afterwards, and the first content wins."""
    assert store.create_exclusive("_dataferry/locks/job.lock", b"first owner") is True
    assert store.create_exclusive("_dataferry/locks/job.lock", b"second owner") is False
    assert read_bytes(store, "_dataferry/locks/job.lock") == b"first owner"
    store.delete("_dataferry/locks/job.lock")
    assert store.create_exclusive("_dataferry/locks/job.lock", b"third owner") is True
    assert read_bytes(store, "_dataferry/locks/job.lock") == b"third owner"


def test_create_exclusive_refuses_over_a_put_object(store: Store) -> None:
    """An object written by put counts as existing."""
    put_bytes(store, "locks/x", b"from put")
    assert store.create_exclusive("locks/x", b"lock") is False
    assert read_bytes(store, "locks/x") == b"from put"


def test_create_exclusive_content_is_never_seen_half_written(store: Store) -> None:
    """A reader polling for a lock sees nothing, or the whole content: never an empty or partial one."""
    data = random.Random(8).randbytes(8 * MiB)
    seen: list[bytes] = []
    created = threading.Event()

    def poll() -> None:
        while True:
            # Read the flag before the object: a NotFound from a read that started before the
            # creation finished is not a failure, only one that started after it.
            was_created = created.is_set()
            try:
                seen.append(read_bytes(store, "_dataferry/locks/big.lock"))
                return
            except NotFound:
                if was_created:
                    seen.append(b"missing after creation")
                    return

    reader = threading.Thread(target=poll)
    reader.start()
    assert store.create_exclusive("_dataferry/locks/big.lock", data) is True
    created.set()
    reader.join()
    assert len(seen) == 1
    assert len(seen[0]) == len(data)
    assert seen[0] == data


def test_create_exclusive_race_has_one_winner(store: Store) -> None:
    """Many threads racing for the same key: exactly one wins, and its content is what is stored."""
    contenders = 8
    barrier = threading.Barrier(contenders)
    results: dict[int, bool] = {}

    def contend(i: int) -> None:
        barrier.wait()
        results[i] = store.create_exclusive("_dataferry/locks/race.lock", f"owner-{i}".encode())

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(contenders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, won in results.items() if won]
    assert len(results) == contenders
    assert len(winners) == 1
    assert read_bytes(store, "_dataferry/locks/race.lock") == f"owner-{winners[0]}".encode()


# -- S3 specifics --------------------------------------------------------------------------------


def _s3_case(store_case: StoreCase) -> StoreCase:
    if store_case.kind != "s3":
        pytest.skip("S3-specific behaviour")
    return store_case


@pytest.mark.parametrize(
    ("sse", "kms_key"), [("AES256", None), ("aws:kms", "alias/dataferry-test")], ids=["aes256", "kms"]
)
def test_s3_server_side_encryption_passes_through(
    store_case: StoreCase, sse: str, kms_key: str | None
) -> None:
    """sse / sse_kms_key_id reach S3 on single and multipart uploads and on lock objects."""
    case = _s3_case(store_case)
    options = dict(case.options, sse=sse)
    if kms_key:
        options["sse_kms_key_id"] = kms_key
    store = open_store(case.url, options)
    small, big = PatternSource(1000, seed=6), PatternSource(PART + 10, seed=7)
    store.put("db/small", small)
    store.put("db/big", big)
    assert store.create_exclusive("locks/l", b"lock") is True
    assert read_back(store, "db/big") == (big.size, big.sha256)
    raw = case.raw_s3()
    for key in ("db/small", "db/big", "locks/l"):
        head = raw.head_object(Bucket=case.bucket, Key=f"{S3_PREFIX}/{key}")
        assert head["ServerSideEncryption"] == sse, key
        if kms_key:
            assert kms_key in head["SSEKMSKeyId"], key


def test_s3_keys_live_under_the_prefix(store_case: StoreCase) -> None:
    """Keys are relative to the store's prefix; objects outside it are invisible to the store."""
    case = _s3_case(store_case)
    store = case.build()
    put_bytes(store, "db/x", b"x")
    raw = case.raw_s3()
    raw.put_object(Bucket=case.bucket, Key="elsewhere/db/y", Body=b"y")
    names = {o["Key"] for o in raw.list_objects_v2(Bucket=case.bucket)["Contents"]}
    assert names == {f"{S3_PREFIX}/db/x", "elsewhere/db/y"}
    assert keys(store) == {"db/x"}


def _missing_bucket_calls(store: Store) -> dict[str, Any]:
    return {
        "put": lambda: store.put("db/x", PatternSource(10)),
        "open": lambda: store.open("db/x").__enter__(),
        "list": lambda: list(store.list("db/")),
        "delete": lambda: store.delete("db/x"),
        "create_exclusive": lambda: store.create_exclusive("locks/x", b"x"),
    }


@pytest.mark.parametrize("operation", ["put", "open", "list", "delete", "create_exclusive"])
def test_s3_missing_bucket_is_a_store_error_with_a_hint(store_case: StoreCase, operation: str) -> None:
    """A missing bucket is StoreError (exit 1) with a hint, not a boto traceback and not NotFound."""
    case = _s3_case(store_case)
    store = open_store("s3://dataferry-no-such-bucket-here/prefix", case.options)
    with pytest.raises(FerryError) as excinfo:
        _missing_bucket_calls(store)[operation]()
    err = excinfo.value
    assert type(err) is StoreError
    assert err.exit_code == 1
    assert "NoSuchBucket" in err.message
    assert err.hint is not None and "bucket" in err.hint
    assert case.env[SECRET_ENV] not in err.message


def test_s3_unreachable_endpoint_is_transient(store_case: StoreCase) -> None:
    """Connection failures are StoreUnavailable (retryable), for reads, writes and locks alike."""
    case = _s3_case(store_case)
    import boto3

    port = _closed_port()
    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
        config=BotoConfig(retries={"max_attempts": 1}, connect_timeout=2),
    )
    store = S3Store(case.bucket, "p", client, part_size=PART)
    for name, call in _missing_bucket_calls(store).items():
        with pytest.raises(StoreUnavailable):
            call()
        assert name  # every operation was tried


def _closed_port() -> int:
    import socket

    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port
