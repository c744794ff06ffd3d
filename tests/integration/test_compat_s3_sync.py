"""``dataferry legacy`` with a GOV.UK ``s3_sync`` job file, between two buckets on moto's S3."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from dataferry.cli import cli
from s3_fault_proxy import Seen, fault_proxy
from servers import S3Server

pytestmark = pytest.mark.integration


@pytest.fixture
def buckets(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    for key, value in s3_server.env().items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    src, dst = s3_server.create_bucket("activestorage-prod"), s3_server.create_bucket("activestorage-stag")
    yield src, dst
    s3_server.delete_bucket(src)
    s3_server.delete_bucket(dst)


def _keys(s3: S3Server, bucket: str) -> dict[str, bytes]:
    client = s3.client()
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


@pytest.mark.parametrize("delete", ["true", "false"])
def test_s3_sync_job_file(s3_server: S3Server, buckets: tuple[str, str], tmp_path: Path, delete: str) -> None:
    src, dst = buckets
    client = s3_server.client()
    client.put_object(Bucket=src, Key="blobs/ab/cd/abcd1234", Body=b"image bytes" * 1000)
    client.put_object(Bucket=src, Key="blobs/ef/gh/efgh5678", Body=b"pdf")
    client.put_object(Bucket=dst, Key="blobs/ef/gh/efgh5678", Body=b"older")  # size differs: copied
    client.put_object(Bucket=dst, Key="blobs/zz/only-in-staging", Body=b"stale")
    cfg = tmp_path / "s3_sync_content_publisher_from_production_daily.cfg"
    cfg.write_text(
        f'action="s3_sync"\nsource_bucket="{src}"\ndestination_bucket="{dst}"\ndelete="{delete}"\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["legacy", "-f", str(cfg)])
    assert result.exit_code == 0, result.output
    expected = _keys(s3_server, src)
    if delete == "false":
        expected["blobs/zz/only-in-staging"] = b"stale"
    assert _keys(s3_server, dst) == expected
    deleted = 1 if delete == "true" else 0
    assert f"2 copied, {deleted} deleted, 0 unchanged" in result.stdout
    again = CliRunner().invoke(cli, ["legacy", "-f", str(cfg)])
    assert "0 copied, 0 deleted, 2 unchanged" in again.stdout


BIG = 17 * 1024 * 1024  # over the 16 MiB part size: boto3 copies it part by part (UploadPartCopy)


def _props(s3: S3Server, bucket: str, key: str) -> dict[str, object]:
    head = s3.client().head_object(Bucket=bucket, Key=key)
    return {k: head.get(k) for k in ("ContentType", "ContentDisposition", "CacheControl", "Metadata")}


def _acl_headers(seen: list[Seen], bucket: str) -> list[str]:
    """The ``x-amz-acl`` of each request that created an object in ``bucket`` (a copy, or the start
    of a multipart copy)."""
    found = []
    for req in seen:
        headers = {k.lower(): v for k, v in req.headers.items()}
        creates = (req.method == "PUT" and "partNumber=" not in req.path) or req.path.endswith("?uploads")
        if req.path.startswith(f"/{bucket}/") and creates:
            found.append(headers.get("x-amz-acl", ""))
    return found


def test_s3_sync_copies_server_side_with_properties_metadata_and_the_acl(
    s3_server: S3Server, buckets: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13, item 4: GOV.UK's ``aws s3 sync --acl bucket-owner-full-control`` keeps Content-Type,
    Content-Disposition and user metadata, and the destination's owner gets full control."""
    src, dst = buckets
    client = s3_server.client()
    props = {
        "ContentType": "image/png",
        "ContentDisposition": "inline; filename=\"map.png\"; filename*=UTF-8''map.png",
        "CacheControl": "max-age=60",
        "Metadata": {"identified": "true", "analyzed": "true"},
    }
    client.put_object(Bucket=src, Key="blobs/ab/cd/abcd1234", Body=b"png" * 1000, **props)
    client.put_object(Bucket=src, Key="blobs/ef/gh/big", Body=b"\x00" * BIG, **props)
    cfg = tmp_path / "s3_sync_content_publisher_from_production_daily.cfg"
    cfg.write_text(f'action="s3_sync"\nsource_bucket="{src}"\ndestination_bucket="{dst}"\n', encoding="utf-8")
    with fault_proxy(s3_server.endpoint_url, lambda *_: "pass") as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        result = CliRunner().invoke(cli, ["legacy", "-f", str(cfg)])
    assert result.exit_code == 0, result.output
    for key in ("blobs/ab/cd/abcd1234", "blobs/ef/gh/big"):
        assert _props(s3_server, dst, key) == _props(s3_server, src, key) == {**props}, key
    assert _acl_headers(proxy.seen, dst) == ["bucket-owner-full-control"] * 2
    object_gets = [r for r in proxy.seen if r.method == "GET" and r.path.startswith(f"/{src}/blobs/")]
    assert object_gets == [], "server-side: no object's data went through dataferry"

    client.put_object(Bucket=src, Key="public/notice.txt", Body=b"hello", ContentType="text/plain")
    with cfg.open("a", encoding="utf-8") as f:
        f.write('acl="public-read"\n')
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    assert CliRunner().invoke(cli, ["legacy", "-f", str(cfg)]).exit_code == 0
    grants = client.get_object_acl(Bucket=dst, Key="public/notice.txt")["Grants"]
    assert any(
        g["Grantee"].get("URI", "").endswith("/AllUsers") and g["Permission"] == "READ" for g in grants
    )
    assert _props(s3_server, dst, "public/notice.txt")["ContentType"] == "text/plain"


def test_s3_sync_refuses_an_unknown_acl_before_copying(
    s3_server: S3Server, buckets: tuple[str, str], tmp_path: Path
) -> None:
    src, dst = buckets
    s3_server.client().put_object(Bucket=src, Key="a", Body=b"x")
    cfg = tmp_path / "s3_sync.cfg"
    cfg.write_text(
        f'action="s3_sync"\nsource_bucket="{src}"\ndestination_bucket="{dst}"\nacl="owner-only"\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["legacy", "-f", str(cfg)])
    assert result.exit_code == 2, result.output
    assert "unknown ACL 'owner-only'" in result.stderr
    assert _keys(s3_server, dst) == {}
