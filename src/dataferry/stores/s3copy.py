"""Copying one object between stores as ``aws s3 sync`` does: server-side between S3 buckets, with
the object's properties and user metadata, and a canned ACL (``bucket-owner-full-control``, so the
destination bucket's owner owns the copy, as GOV.UK's ``s3_sync`` jobs needed across accounts).

Between buckets of one endpoint the data never leaves S3 (CopyObject, or UploadPartCopy for large
objects through boto3's managed copy). A multipart copy does not carry the source's properties by
itself, so they are read with HeadObject and set explicitly, as the AWS CLI does. Between other
stores (a local directory on either side, or two endpoints) the object is streamed; only S3 has
properties to keep, and they are kept when the destination is a bucket.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dataferry.errors import ConfigError
from dataferry.stores.base import Store

if TYPE_CHECKING:
    from dataferry.stores.s3 import S3Store

#: The ACL GOV.UK's ``aws s3 sync --acl bucket-owner-full-control`` applied.
DEFAULT_ACL = "bucket-owner-full-control"
#: S3's canned ACLs; ``none`` sends no ACL (the bucket's defaults apply).
CANNED_ACLS = (
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
    "none",
)
#: HeadObject fields a copy keeps (the AWS CLI's ``--copy-props default``), besides ``Metadata``.
COPIED_PROPERTIES = (
    "ContentType",
    "ContentDisposition",
    "ContentEncoding",
    "ContentLanguage",
    "CacheControl",
    "Expires",
)


def check_acl(acl: str) -> str:
    """A canned ACL name, or a ``ConfigError`` that lists them."""
    if acl not in CANNED_ACLS:
        raise ConfigError(f"unknown ACL {acl!r}", hint=f"use one of {', '.join(CANNED_ACLS)}")
    return acl


def copy_object(src: Store, dst: Store, key: str, *, acl: str = DEFAULT_ACL) -> None:
    """Copy ``key`` from ``src`` to ``dst``: server-side between buckets of one endpoint."""
    check_acl(acl)
    # Imported here, as open_store does: boto3 costs 0.2 s of start-up, and most commands never copy.
    from dataferry.stores.s3 import S3Store

    if isinstance(src, S3Store) and isinstance(dst, S3Store):
        _s3_copy(src, dst, key, acl)
        return
    with src.open(key) as f:
        dst.put(key, f)


def _s3_copy(src: S3Store, dst: S3Store, key: str, acl: str) -> None:
    # The stores module's own helpers and attributes: this module is its sibling, not a caller.
    from dataferry.stores.s3 import _mapped

    with _mapped(f"read the properties of {key!r} in {src.url}", missing_key=key):
        head: dict[str, Any] = dict(src._client.head_object(Bucket=src.bucket, Key=src._key(key)))
    extra: dict[str, Any] = {k: head[k] for k in COPIED_PROPERTIES if head.get(k)}
    extra["Metadata"] = dict(head.get("Metadata") or {})
    extra["MetadataDirective"] = "REPLACE"  # the properties above, not the defaults
    extra.update(dst._extra)  # the destination store's encryption
    if acl != "none":
        extra["ACL"] = acl
    same_endpoint = src._client.meta.endpoint_url == dst._client.meta.endpoint_url
    with _mapped(f"copy {key!r} from {src.url} to {dst.url}"):
        if same_endpoint:
            dst._client.copy(
                {"Bucket": src.bucket, "Key": src._key(key)},
                dst.bucket,
                dst._key(key),
                ExtraArgs=extra,
                Config=dst._transfer,
                SourceClient=src._client,
            )
            return
        extra.pop("MetadataDirective")
        body = src._client.get_object(Bucket=src.bucket, Key=src._key(key))["Body"]
        try:
            dst._client.upload_fileobj(body, dst.bucket, dst._key(key), ExtraArgs=extra, Config=dst._transfer)
        finally:
            body.close()
