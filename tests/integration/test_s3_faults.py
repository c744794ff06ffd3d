"""S3 behind a fault-injecting proxy (issue 19, item 11): throttling (SlowDown), server errors and
a download cut mid-object. Real moto server, real HTTP; the proxy is ``tests/s3_fault_proxy.py``."""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Callable

import pytest

from dataferry.errors import StoreUnavailable
from dataferry.stores import read_bytes
from dataferry.stores.s3 import RESUMES, RETRY_ATTEMPTS, S3Store
from s3_fault_proxy import FaultProxy, fault_proxy
from servers import S3Server

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
KEY_ENV, SECRET_ENV = "FAULT_TEST_S3_KEY", "FAULT_TEST_S3_SECRET"


@pytest.fixture
def through(
    s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> Callable[[FaultProxy], S3Store]:
    """A store of the test bucket that talks to S3 through a given proxy."""
    monkeypatch.setenv(KEY_ENV, s3_server.access_key)
    monkeypatch.setenv(SECRET_ENV, s3_server.secret_key)

    def build(proxy: FaultProxy) -> S3Store:
        options: dict[str, object] = {
            "endpoint_url": proxy.url,
            "region": s3_server.region,
            "access_key_id_env": KEY_ENV,
            "secret_access_key_env": SECRET_ENV,
            "part_size_mib": 5,
        }
        return S3Store.from_url(f"s3://{s3_bucket}/faults", options)

    return build


def _data(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def _gets_of(key: str) -> Callable[[str, str], bool]:
    return lambda method, path: method == "GET" and path.split("?")[0].endswith(key)


@pytest.mark.fault
def test_a_download_cut_mid_object_is_resumed_from_where_it_stopped(
    s3_server: S3Server, through: Callable[[FaultProxy], S3Store]
) -> None:
    """The first GET is cut after 3 MiB: the reader resumes with a ranged GET of the same ETag,
    and every byte arrives once, in order (so the caller's sha256 holds)."""
    data = _data(12 * MiB)
    is_get = _gets_of("big.bin")

    def rule(method: str, path: str, headers: dict[str, str], n: int) -> str:
        first_get = is_get(method, path) and not any(is_get(s.method, s.path) for s in proxy.seen[:n])
        return "cut:3145728" if first_get else "pass"

    with fault_proxy(s3_server.endpoint_url, rule) as proxy:
        store = through(proxy)
        store.put("big.bin", io.BytesIO(data))
        with store.open("big.bin") as f:
            got = bytearray()
            while chunk := f.read(1024 * 1024):
                got += chunk
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    gets = [s for s in proxy.seen if is_get(s.method, s.path)]
    assert [g.action for g in gets][:1] == ["cut:3145728"]
    ranges = [g.headers.get("Range") or g.headers.get("range") for g in gets[1:]]
    assert ranges and ranges[0] is not None and ranges[0].startswith("bytes=")
    assert int(ranges[0].removeprefix("bytes=").rstrip("-")) <= 3 * MiB
    assert all((g.headers.get("If-Match") or g.headers.get("if-match")) for g in gets[1:])


@pytest.mark.fault
def test_a_download_cut_every_time_fails_loudly(
    s3_server: S3Server, through: Callable[[FaultProxy], S3Store]
) -> None:
    """A connection that keeps dropping is a clear, transient error after a bounded number of resumes."""
    data = _data(8 * MiB)
    is_get = _gets_of("flaky.bin")

    def rule(method: str, path: str, headers: dict[str, str], n: int) -> str:
        return "cut:65536" if is_get(method, path) else "pass"

    with fault_proxy(s3_server.endpoint_url, rule) as proxy:
        store = through(proxy)
        store.put("flaky.bin", io.BytesIO(data))
        with pytest.raises(StoreUnavailable, match="connection was cut"), store.open("flaky.bin") as f:
            while f.read(MiB):
                pass
    assert len([s for s in proxy.seen if is_get(s.method, s.path)]) == 1 + RESUMES


@pytest.mark.fault
@pytest.mark.parametrize("fault", ["slowdown", "error500"])
def test_throttling_and_server_errors_are_retried_with_a_long_budget(
    s3_server: S3Server, through: Callable[[FaultProxy], S3Store], fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first upload part and the download fail 6 times in a row before they pass: more than
    the 5 attempts that used to be the budget, within the adaptive mode's 10."""
    # What is tested is how many attempts a request gets, not botocore's back-off: make it short.
    from botocore.retries.standard import ExponentialBackoff

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.01)
    data = _data(11 * MiB)  # three parts
    failures: dict[tuple[str, str], int] = {}

    def rule(method: str, path: str, headers: dict[str, str], n: int) -> str:
        if method not in ("PUT", "GET") or ("uploadId" not in path and method == "PUT"):
            return "pass"
        seen = failures.get((method, path), 0)
        if seen < 6:
            failures[(method, path)] = seen + 1
            return fault
        return "pass"

    with fault_proxy(s3_server.endpoint_url, rule) as proxy:
        store = through(proxy)
        store.put("throttled.bin", io.BytesIO(data))
        assert read_bytes(store, "throttled.bin", limit=len(data)) == data
    assert RETRY_ATTEMPTS > 6
    assert len(failures) >= 2 and set(failures.values()) == {6}  # the first part and the download
    assert sum(1 for s in proxy.seen if s.action == fault) == 6 * len(failures)


#: The S3 fault cells of the fault suite (docs/reliability.md lists the same).
S3_FAULTS = ["error500", "error503", "slowdown", "reset", "stall"]


@pytest.mark.fault
@pytest.mark.parametrize("direction", ["upload", "download"])
@pytest.mark.parametrize("fault", S3_FAULTS)
def test_each_s3_fault_on_uploads_and_downloads_is_retried_and_the_data_arrives_whole(
    s3_server: S3Server,
    through: Callable[[FaultProxy], S3Store],
    fault: str,
    direction: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fault hits the first two attempts of one request (upload: the first part of a
    three-part upload; download: the GET), then the request passes: the object stored and read
    back is byte for byte the one sent. A stall is an endpoint that answers nothing: the client
    gives up after its read timeout (shortened here from botocore's 60 s to 1 s) and retries."""
    from botocore.config import Config as BotoConfig
    from botocore.retries.standard import ExponentialBackoff

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.01)
    monkeypatch.setattr(
        "dataferry.stores.s3.BotoConfig", lambda **kw: BotoConfig(**kw, read_timeout=1, connect_timeout=1)
    )
    data = _data(11 * MiB)  # three parts
    action = "stall:3" if fault == "stall" else fault
    hit: list[str] = []

    def targeted(method: str, path: str) -> bool:
        if direction == "upload":
            return method == "PUT" and "partNumber=1&" in path + "&" and "uploadId" in path
        return _gets_of("cell.bin")(method, path)

    def rule(method: str, path: str, headers: dict[str, str], n: int) -> str:
        if targeted(method, path) and len(hit) < 2:
            hit.append(path)
            return action
        return "pass"

    with fault_proxy(s3_server.endpoint_url, rule) as proxy:
        store = through(proxy)
        store.put("cell.bin", io.BytesIO(data))
        assert read_bytes(store, "cell.bin", limit=len(data)) == data
    assert len(hit) == 2 and sum(1 for s in proxy.seen if s.action == action) == 2
