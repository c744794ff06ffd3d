"""A store in an S3 bucket (any S3-compatible endpoint) through boto3.

Uploads stream as multipart uploads with a fixed part size and concurrency, so memory is bounded
(part size x (concurrency + 1), ``s3parts.py``) whatever the object size. S3 makes an object
visible only when its upload completes, and boto3 aborts the multipart upload when reading the
source raises: a failed dump therefore never leaves an object behind.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, BinaryIO

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    IncompleteReadError,
    NoCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
    ResponseStreamingError,
)

from dataferry import heap
from dataferry.config import S3Options
from dataferry.errors import ConfigError, FerryError, NotFound, NotReady, StoreError, StoreUnavailable
from dataferry.stores.base import ObjectInfo
from dataferry.stores.s3parts import (
    CONCURRENCY,
    MIN_PART_MIB,
    PART_SIZE_MIB,
    LimitedReader,
    max_object_bytes,
    transfer_config,
)
from dataferry.streams import ByteSource

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

_MiB = 1024 * 1024


@functools.cache
def _models() -> botocore.loaders.Loader:
    """The loader of botocore's service models and endpoints, one for the whole process: each
    store has its own session (its own credentials and profile), and a session with its own loader
    parses its own copy of the S3 model, 12 MiB per store (a job reading one store and writing
    another held two)."""
    return botocore.loaders.create_loader()


def _session(opts: S3Options) -> boto3.session.Session:
    """A session with this store's credentials and profile, sharing the process's model loader."""
    core = botocore.session.get_session()
    core.register_component("data_loader", _models())
    return boto3.session.Session(
        botocore_session=core,
        profile_name=opts.profile,
        aws_access_key_id=_env(opts.access_key_id_env, "access_key_id_env"),
        aws_secret_access_key=_env(opts.secret_access_key_env, "secret_access_key_env"),
    )


class S3Store:
    """Objects under ``s3://bucket/prefix``; keys are relative to the prefix."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        client: S3Client,
        *,
        sse: str | None = None,
        sse_kms_key_id: str | None = None,
        part_size: int = PART_SIZE_MIB * _MiB,
        concurrency: int = CONCURRENCY,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}"
        self._client = client
        self._extra: dict[str, str] = {}
        if sse:
            self._extra["ServerSideEncryption"] = sse
        if sse_kms_key_id:
            self._extra["SSEKMSKeyId"] = sse_kms_key_id
        self._transfer = transfer_config(part_size, concurrency)
        heap.release_large_buffers()  # freed parts go back to the system (heap.py)

    @classmethod
    def from_url(cls, url: str, options: S3Options | Mapping[str, object]) -> S3Store:
        """Build from ``s3://bucket/prefix`` and the store's S3 options (a mapping of them is
        validated into ``S3Options``)."""
        opts = options if isinstance(options, S3Options) else S3Options.from_mapping(options)
        rest = url[len("s3://") :]
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise ConfigError(f"no bucket in store URL {url!r}", hint="write it as s3://bucket/prefix")
        try:
            client = _session(opts).client(
                "s3",
                endpoint_url=opts.endpoint_url,
                region_name=opts.region,
                # Checksums only where S3 requires them: third-party endpoints reject the newer
                # defaults, and dataferry checks its own sha256 end to end anyway.
                config=BotoConfig(
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    # Adaptive: backs off on throttling (SlowDown) client-side too; 10 attempts, as
                    # a 30% SlowDown rate exhausted the standard mode's 5 (issue 19).
                    retries={"max_attempts": RETRY_ATTEMPTS, "mode": "adaptive"},
                ),
            )
        except ProfileNotFound:  # raised by the session or, with a shared loader, by the client
            raise NotReady(
                f"AWS profile {opts.profile!r} (store option profile of {url}) does not exist",
                hint="add it to ~/.aws/config (or $AWS_CONFIG_FILE), or fix the store's profile",
            ) from None
        return cls(
            bucket,
            prefix,
            client,
            sse=opts.sse,
            sse_kms_key_id=opts.sse_kms_key_id,
            part_size=max(opts.part_size_mib, MIN_PART_MIB) * _MiB,
            concurrency=opts.concurrency,
        )

    def __repr__(self) -> str:
        return f"S3Store({self.url!r})"

    def _key(self, key: str) -> str:
        return self.prefix + key.lstrip("/")

    def put(self, key: str, src: ByteSource) -> ObjectInfo:
        """Stream ``src`` as a multipart upload; an exception while reading aborts it."""
        counter = LimitedReader(src, max_object_bytes(self._transfer), f"upload {key!r} to {self.url}")
        with _mapped(f"upload {key!r} to {self.url}"):
            self._client.upload_fileobj(
                counter,  # type: ignore[arg-type]
                self.bucket,
                self._key(key),
                ExtraArgs=dict(self._extra) or None,
                Config=self._transfer,
            )
        return ObjectInfo(key=key, size=counter.count)

    @contextlib.contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        """Stream the whole object with one GET (ranged GETs are slow on some endpoints); a
        connection cut mid-object is resumed with a ranged GET from the offset reached, of the
        same object version (``If-Match`` its ETag), so the caller's checksum still covers it all."""
        with _mapped(f"read {key!r} from {self.url}", missing_key=key):
            resp = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
        reader = _BodyReader(resp, f"read {key!r} from {self.url}", self._resume(key))
        try:
            yield reader  # type: ignore[misc]
        finally:
            reader.close()

    def _resume(self, key: str) -> Callable[[int, str], Any]:
        def get_from(offset: int, etag: str) -> Any:
            return self._client.get_object(
                Bucket=self.bucket, Key=self._key(key), Range=f"bytes={offset}-", IfMatch=etag
            )["Body"]

        return get_from

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Paginate ListObjectsV2 under the store prefix."""
        paginator = self._client.get_paginator("list_objects_v2")
        with _mapped(f"list {self.url}{prefix}"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                for obj in page.get("Contents", []):
                    yield ObjectInfo(obj["Key"][len(self.prefix) :], obj["Size"], obj["LastModified"])

    def delete(self, key: str) -> None:
        """DeleteObject is idempotent in S3."""
        with _mapped(f"delete {key!r} from {self.url}"):
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """PutObject with ``If-None-Match: *``: S3 answers 412 when the key exists.

        409 ConditionalRequestConflict means another conditional write to the key is in flight:
        that writer wins, so this one reports False. Every other error is translated like the
        other operations (a lock attempt must not end in a boto traceback).
        """
        with _mapped(f"create {key!r} in {self.url}"):
            try:
                self._client.put_object(
                    Bucket=self.bucket,
                    Key=self._key(key),
                    Body=data,
                    IfNoneMatch="*",
                    **self._extra,  # type: ignore[arg-type]
                )
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                    return False
                raise
        return True

    def cleanup_incomplete(
        self, older_than: timedelta, prefix: str = "", *, dry_run: bool = False
    ) -> builtins.list[str]:
        """Abort multipart uploads to keys under ``prefix`` started before ``older_than`` ago
        (killed runs); ``dry_run`` lists them only."""
        cutoff = datetime.now(UTC) - older_than
        found: builtins.list[str] = []
        paginator = self._client.get_paginator("list_multipart_uploads")
        with _mapped(f"clean up incomplete uploads in {self.url}"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for up in page.get("Uploads", []):
                    if up["Initiated"] < cutoff:
                        found.append(up["Key"][len(self.prefix) :])
                        if not dry_run:
                            self._client.abort_multipart_upload(
                                Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"]
                            )
        return found


#: Attempts of every S3 request (botocore's adaptive retry mode).
RETRY_ATTEMPTS = 10
#: How often one download is resumed after its connection was cut.
RESUMES = 5
#: What a connection cut or stalled mid-body raises while it is read.
_CUT = (ResponseStreamingError, IncompleteReadError, ReadTimeoutError, ConnectionClosedError)


class _BodyReader:
    """Adapts botocore's StreamingBody to the small file-like surface we use, and resumes a body
    whose connection is cut: a ranged GET from the offset reached, of the same ETag.

    A connection that drops or stalls mid-object surfaces here, long after ``get_object``
    returned, so reads are translated too.
    """

    def __init__(self, resp: Any, action: str, resume: Callable[[int, str], Any]) -> None:
        self._body = resp["Body"]
        self._etag = str(resp.get("ETag", ""))
        self._action = action
        self._resume = resume
        self._offset = 0
        self._resumed = 0

    def read(self, n: int = -1) -> bytes:
        while True:
            try:
                with _mapped(self._action):
                    data = self._read(n)
            except _Cut as cut:
                if self._resumed >= RESUMES or not self._etag:
                    raise StoreUnavailable(
                        f"cannot {self._action}: the connection was cut at byte {self._offset} ({cut})",
                        hint="the network or the endpoint is unreliable; nothing was swapped in, run again",
                    ) from None
                self._reopen()
                continue
            self._offset += len(data)
            return data

    def _read(self, n: int) -> bytes:
        try:
            return bytes(self._body.read(None if n < 0 else n))
        except _CUT as exc:
            raise _Cut(str(exc)) from exc

    def _reopen(self) -> None:
        self._resumed += 1
        with contextlib.suppress(Exception):
            self._body.close()
        with _mapped(self._action):
            self._body = self._resume(self._offset, self._etag)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._body.close()


class _Cut(Exception):
    """A body's connection was cut or stalled mid-read (resumable)."""


def _env(var: str | None, name: str) -> str | None:
    """The value of the environment variable that store option ``name`` names (None when the option
    is not set; a named variable that is not set is a missing credential, ``NotReady``)."""
    if var is None:
        return None
    value = os.environ.get(var)
    if not value:
        raise NotReady(
            f"environment variable {var} (from store option {name}) is not set",
            hint=f"export {var} before running dataferry",
        )
    return value


#: Failures of the connection rather than of the request: retrying may succeed.
_CONNECTION_ERRORS = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ConnectionClosedError,
    ReadTimeoutError,
    ResponseStreamingError,
    IncompleteReadError,
)


@contextlib.contextmanager
def _mapped(action: str, missing_key: str | None = None) -> Iterator[None]:
    """Translate boto errors into dataferry errors at this boundary; dataferry errors pass through."""
    try:
        yield
    except FerryError:
        raise
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if missing_key is not None and code in ("NoSuchKey", "404", "NotFound"):
            raise NotFound(f"no object {missing_key!r} in the store") from None
        raise _translate(exc, action) from exc
    except _CONNECTION_ERRORS as exc:
        raise StoreUnavailable(f"cannot {action}: {exc}", hint="check endpoint_url and the network") from exc
    except NoCredentialsError:
        # A missing credential is "not ready" (exit 3), as the exit-code table says, not a store error.
        raise NotReady(
            f"cannot {action}: no AWS credentials found",
            hint="set the store's access_key_id_env and secret_access_key_env, or its profile, "
            "or provide credentials the usual AWS ways (an instance or pod role)",
        ) from None
    except BotoCoreError as exc:
        raise StoreError(f"cannot {action}: {exc}") from exc


def _translate(exc: ClientError, action: str) -> StoreError:
    err = exc.response.get("Error", {})
    code, msg = err.get("Code", "?"), err.get("Message", "")
    hint = None
    if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        hint = "check the store credentials and the bucket policy"
    elif code == "NoSuchBucket":
        hint = "create the bucket or fix the store URL"
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    cls = StoreUnavailable if status >= 500 or code in ("SlowDown", "RequestTimeout") else StoreError
    return cls(f"cannot {action}: {code} {msg}".strip(), hint=hint)
