"""``dataferry legacy`` with a GOV.UK ``s3_sync`` job file, between two buckets on moto's S3."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from dataferry.cli import cli
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
