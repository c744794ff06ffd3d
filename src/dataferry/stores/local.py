"""A store in a local directory: temp file, fsync, rename, fsync the directory."""

from __future__ import annotations

import builtins
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from dataferry.errors import ConfigError, NotFound, StoreError
from dataferry.stores.base import ObjectInfo
from dataferry.streams import ByteSource

_CHUNK = 1024 * 1024
_TMP_PREFIX = ".dataferry-tmp-"


class LocalStore:
    """Artifacts as files below a root directory; keys are relative POSIX paths."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root).rstrip("/") + "/"

    @classmethod
    def from_url(cls, url: str) -> LocalStore:
        """Build from ``file:///path`` or a plain path."""
        path = url[len("file://") :] if url.startswith("file://") else url
        if not path:
            raise ConfigError(f"empty local store path in {url!r}")
        return cls(Path(path))

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        parts = [p for p in key.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise StoreError(f"invalid key {key!r}: keys are relative paths without '.' or '..'")
        return self.root.joinpath(*parts)

    def put(self, key: str, src: ByteSource) -> ObjectInfo:
        """Copy ``src`` to a temp file beside the target, fsync it, then rename it into place."""
        target = self._path(key)
        with _os_errors(f"write {key!r} to {self.root}"):
            fd, tmp = self._temp_file(target)
            try:
                with os.fdopen(fd, "wb") as out:
                    size = _copy(src, out)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            _fsync_dir(target.parent)
            return ObjectInfo(key=key, size=size, modified=_mtime(target))

    def _temp_file(self, target: Path) -> tuple[int, str]:
        """A temp file beside ``target`` (same filesystem, so renaming it in is atomic)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(prefix=_TMP_PREFIX, dir=target.parent)

    @contextlib.contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        """Open the file behind ``key`` for reading."""
        path = self._path(key)
        try:
            f = path.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            # A directory, or a path through an object, is no object either (as in S3).
            raise NotFound(f"no object {key!r} in {self.root}") from None
        except OSError as exc:
            raise _store_error(f"read {key!r} from {self.root}", exc) from exc
        with f:
            yield f

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Walk the directory below the longest directory part of ``prefix``."""
        base_dir = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self._path(base_dir) if base_dir else self.root
        if not start.is_dir():
            return
        for dirpath, _dirs, files in os.walk(start):
            for name in files:
                if name.startswith(_TMP_PREFIX):
                    continue  # an upload in progress, or one killed halfway: never an object
                path = Path(dirpath, name)
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    try:
                        st = path.stat()
                    except FileNotFoundError:
                        continue  # deleted since the directory was read (cleanup, retention)
                    yield ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def delete(self, key: str) -> None:
        """Unlink the file; missing is fine (and a directory is not an object, so it is missing)."""
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        except OSError as exc:
            raise _store_error(f"delete {key!r} from {self.root}", exc) from exc

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Write a temp file whole, then hard-link it to ``key``: link fails if ``key`` exists.

        Like ``O_EXCL`` two processes can never both succeed, but a reader also never sees a
        lock that is empty or half written, and a crash leaves only a temp file that cleanup
        removes, never a truncated lock that blocks the job for good.
        """
        path = self._path(key)
        with _os_errors(f"create {key!r} in {self.root}"):
            fd, tmp = self._temp_file(path)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    return False
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            _fsync_dir(path.parent)
        return True

    def cleanup_incomplete(
        self, older_than: timedelta, prefix: str = "", *, dry_run: bool = False
    ) -> builtins.list[str]:
        """Remove temp files of uploads to keys under ``prefix`` killed halfway, once older than
        ``older_than``; ``dry_run`` lists them only. A temp file sits beside its key, so its
        directory says which prefix it belongs to."""
        cutoff = time.time() - older_than.total_seconds()
        found: builtins.list[str] = []
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, self.root).replace(os.sep, "/")
                if not name.startswith(_TMP_PREFIX) or not rel.startswith(prefix):
                    continue
                # A running upload may rename its temp file into place at any moment.
                with contextlib.suppress(FileNotFoundError):
                    if os.stat(path).st_mtime < cutoff:
                        if not dry_run:
                            os.unlink(path)
                        found.append(rel)
        return found


@contextlib.contextmanager
def _os_errors(action: str) -> Iterator[None]:
    """Filesystem failures (disk full, read-only, a file where a directory should be) as StoreError."""
    try:
        yield
    except OSError as exc:
        raise _store_error(action, exc) from exc


def _store_error(action: str, exc: OSError) -> StoreError:
    return StoreError(
        f"cannot {action}: {exc.strerror or exc}",
        hint="the store must be a writable directory with free space, and keys must not run through objects",
    )


def _copy(src: ByteSource, out: BinaryIO) -> int:
    """Copy ``src`` into ``out``, asking the kernel to start writing every ``WRITE_BEHIND`` bytes.

    ``put`` fsyncs the file before renaming it into place. Left to that fsync, all of the file is
    written after the data has ended (measured: 0.1 s for a 210 MB artifact, at the end of a
    5.5 s backup); started as the data arrives, the writes overlap the dump and the fsync
    finds little left to do.
    """
    size = started = 0
    while chunk := src.read(_CHUNK):
        out.write(chunk)
        size += len(chunk)
        if size - started >= WRITE_BEHIND:
            out.flush()
            _start_writeback(out.fileno(), started, size - started)
            started = size
    return size


#: Bytes written between two requests to start writing them to disk (see ``_copy``).
WRITE_BEHIND = 8 * 1024 * 1024


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing a range of a file to disk, without waiting for it.

    Linux starts the write-back of a range's dirty pages when told it is not needed
    (``POSIX_FADV_DONTNEED``, mm/fadvise.c) and drops only pages already clean, so the new
    artifact stays mostly cached. Measured: the fsync after writing 220 MiB this way took
    0.003 s instead of 0.12-0.14 s. Best effort: durability still comes from that fsync, and
    other systems simply leave it all to it.
    """
    with contextlib.suppress(OSError, AttributeError):  # AttributeError: no posix_fadvise here
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def disk_free(path: Path) -> int:
    """Free bytes on the filesystem holding ``path`` (or its nearest existing parent)."""
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free
