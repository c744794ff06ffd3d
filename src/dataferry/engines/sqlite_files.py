"""SQLite's files beside the database: the restore lock (``<file>.dataferry-lock``) and the owner
and mode a restored file must keep. Split from ``engines/sqlite.py`` to keep both small."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from pathlib import Path

from dataferry.engines._locks import busy, holder_label
from dataferry.errors import EngineError, NotReady

#: Beside the database: ``flock``ed by a restore from start to swap (see ``engines._locks``).
LOCK_SUFFIX = ".dataferry-lock"


class SQLiteRestoreLock:
    """An exclusive ``flock`` on ``<file>.dataferry-lock``; the kernel drops it when the holder dies.
    The file says who holds it (for the message of a refused restore) and is removed on release."""

    def __init__(self, target: Path, environment: str) -> None:
        self._path = Path(str(target) + LOCK_SUFFIX)
        self._fd: int | None = None
        for _ in range(10):
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
                os.close(fd)
                raise busy(f"{target} ({environment})", f"held by {owner}") from None
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, self._path):
                self._fd = fd
                break
            os.close(fd)  # the holder released and removed it between our open and our flock
        else:
            raise EngineError(f"cannot take the restore lock {self._path}: it keeps being replaced")
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder_label().encode(), 0)

    def release(self) -> None:
        """Remove the file, then close it (which releases the lock); idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()
            os.close(fd)


def keep_access(shadow: Path, target: Path) -> None:
    """Give the shadow the live file's owner, group and mode before it replaces it: the application
    that opens the database must still be able to after a refresh. The shadow was created 0600 by
    ``mkstemp``; a target that does not exist yet gets what a new file gets (0666 less the umask)."""
    try:
        st = target.stat()
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(shadow, 0o666 & ~umask)
        return
    if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.chown(shadow, st.st_uid, st.st_gid)
        except PermissionError as exc:
            raise NotReady(
                f"cannot give the restored {target} its owner and group ({st.st_uid}:{st.st_gid}): "
                f"{exc.strerror}; nothing was swapped",
                hint="run the restore as the file's owner or as root, so the application can still open it",
            ) from None
    os.chmod(shadow, stat.S_IMODE(st.st_mode))  # after chown, which may clear set-id bits


def _same_file(fd: int, path: Path) -> bool:
    """True when ``path`` still names the file open as ``fd`` (a lock on a removed file is no lock)."""
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False
