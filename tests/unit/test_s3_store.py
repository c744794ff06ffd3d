"""S3Store construction from configuration, and failures moto cannot produce.

The behaviour of S3Store against a real S3 server is in ``tests/contract/test_store_contract.py``.
Here: ``from_url`` validation (no server needed), and a connection that drops in the middle of an
object's body, which needs a deliberately broken HTTP server (a tiny socket server below: moto
always sends whole bodies).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config as BotoConfig

from dataferry.config import S3Options
from dataferry.errors import ConfigError, NotReady, StoreUnavailable, Transient
from dataferry.stores import open_store
from dataferry.stores.s3 import S3Store


def test_from_url_splits_bucket_and_prefix() -> None:
    """The prefix is normalised to end in one slash (or be empty)."""
    assert S3Store.from_url("s3://bucket/a/b/", {"region": "eu-west-2"}).prefix == "a/b/"
    assert S3Store.from_url("s3://bucket/a/b", {"region": "eu-west-2"}).prefix == "a/b/"
    assert S3Store.from_url("s3://bucket", {"region": "eu-west-2"}).prefix == ""
    store = open_store("s3://bucket/x", {"region": "eu-west-2"})
    assert isinstance(store, S3Store)
    assert store.bucket == "bucket"
    assert store.url == "s3://bucket/x/"


def test_from_url_without_bucket_is_a_config_error() -> None:
    """``s3://`` alone names no bucket."""
    with pytest.raises(ConfigError, match="no bucket") as excinfo:
        S3Store.from_url("s3:///prefix", {})
    assert excinfo.value.exit_code == 2


@pytest.fixture
def no_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials anywhere boto3 looks (variables, files, the instance metadata service)."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "empty").write_text("", encoding="utf-8")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "empty"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "empty"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.usefixtures("no_aws_credentials")
def test_an_unknown_profile_is_a_missing_credential() -> None:
    """``profile`` naming no AWS profile: NotReady (exit 3) naming it, not a boto traceback."""
    with pytest.raises(NotReady, match="nosuchprofile") as excinfo:
        S3Store.from_url("s3://bucket", {"profile": "nosuchprofile", "region": "eu-west-2"})
    assert excinfo.value.exit_code == 3 and excinfo.value.hint


@pytest.mark.usefixtures("no_aws_credentials")
def test_no_credentials_at_all_is_a_missing_credential() -> None:
    """No credentials anywhere: NotReady (exit 3, as the table says), not a store error (exit 1)."""
    store = S3Store.from_url("s3://bucket", {"region": "eu-west-2", "endpoint_url": "http://127.0.0.1:9"})
    with pytest.raises(NotReady) as excinfo:
        list(store.list())
    assert excinfo.value.exit_code == 3 and "credentials" in excinfo.value.message


def test_unknown_option_is_a_config_error() -> None:
    """A misspelt option is refused rather than ignored."""
    with pytest.raises(ConfigError, match="part_size"):
        S3Store.from_url("s3://bucket", {"part_size": 8})


def test_missing_credential_variable_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unset credentials variable is reported by name, as a missing credential (NotReady, exit 3);
    a set one never appears anywhere."""
    monkeypatch.setenv("FERRY_KEY_ID", "AKIAEXAMPLEKEYID")
    with pytest.raises(NotReady) as excinfo:
        S3Store.from_url(
            "s3://bucket",
            {"access_key_id_env": "FERRY_KEY_ID", "secret_access_key_env": "FERRY_SECRET_UNSET"},
        )
    assert "FERRY_SECRET_UNSET" in excinfo.value.message
    assert "AKIAEXAMPLEKEYID" not in excinfo.value.message


def test_repr_shows_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's repr is its URL only."""
    monkeypatch.setenv("FERRY_KEY_ID", "AKIAEXAMPLEKEYID")
    monkeypatch.setenv("FERRY_SECRET", "very-secret-access-key")
    store = S3Store.from_url(
        "s3://bucket/p",
        {"access_key_id_env": "FERRY_KEY_ID", "secret_access_key_env": "FERRY_SECRET", "region": "x"},
    )
    assert repr(store) == "S3Store('s3://bucket/p/')"
    assert "very-secret" not in repr(vars(store))


def test_part_size_below_the_s3_minimum_is_raised_to_it() -> None:
    """S3 rejects parts under 5 MiB; the store never asks for them."""
    store = S3Store.from_url("s3://bucket", {"part_size_mib": 1, "region": "x"})
    assert store._transfer.multipart_chunksize == 5 * 1024 * 1024


def test_in_memory_parts_are_bounded_by_concurrency() -> None:
    """Memory is part size x concurrency, not boto3's default of ten buffered parts."""
    store = S3Store.from_url("s3://bucket", {"concurrency": 3, "region": "x"})
    assert store._transfer.max_in_memory_upload_chunks == 3
    assert store._transfer.max_request_concurrency == 3


# -- a connection that drops mid-body ------------------------------------------------------------


@pytest.fixture
def truncating_endpoint() -> Iterator[str]:
    """An HTTP endpoint that promises 1 MiB for any request, sends 10 bytes and hangs up."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\nContent-Type: binary/octet-stream\r\n"
                    b'ETag: "x"\r\n\r\n0123456789'
                )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    server.close()


def test_connection_dropped_mid_object_is_transient_store_error(truncating_endpoint: str) -> None:
    """A body cut short raises StoreUnavailable from read(), never a botocore exception."""
    client = boto3.client(
        "s3",
        endpoint_url=truncating_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
        config=BotoConfig(retries={"max_attempts": 1}),
    )
    store = S3Store("bucket", "p", client)
    with pytest.raises(StoreUnavailable) as excinfo, store.open("db/object") as f:
        assert f.read(10) == b"0123456789"
        while f.read(65536):
            pass
    assert isinstance(excinfo.value, Transient)
    assert "db/object" in excinfo.value.message


def test_options_are_one_typed_model() -> None:
    """A mapping of options is validated into S3Options; unknown or bad ones are config errors."""
    assert S3Options.from_mapping({"region": "eu-west-2"}) == S3Options(region="eu-west-2")
    with pytest.raises(ConfigError, match="unknown S3 store option"):
        open_store("s3://bucket/x", {"regoin": "eu-west-2"})
    with pytest.raises(ConfigError, match="concurrency"):
        S3Store.from_url("s3://bucket/x", {"concurrency": 0})
    store = S3Store.from_url("s3://bucket/x", S3Options(region="eu-west-2", part_size_mib=8, concurrency=2))
    assert store.url == "s3://bucket/x/"
