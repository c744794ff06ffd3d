"""Private run directories: where a run keeps what must never outlive it or be read by anyone else.

MySQL option files (they hold the password) and parallel-restore spools (full cleartext copies of a
database) live in a directory made by ``private_dir``: mode 0700, named after the process that owns
it (``dataferry-run-<pid>-<start time>-<random>``) and removed when its ``with`` block ends. A
process killed by SIGKILL cannot remove anything, so ``leftovers`` finds the directories whose owner
is gone (the pid is dead, or now belongs to a process that started at another time) and ``sweep``
removes them: every restore sweeps the directories it is about to use, and ``dataferry cleanup``
sweeps, ``dataferry check`` reports. Loaders such a run left running (``orphans``: their argv names
a file in its directory) are killed first (``kill_orphans``) and reported the same way.

Spool space is reserved the same way: a parallel restore that passed its free-space check leaves a
private directory holding a ``reserved`` file (the bytes it will spool) until it ends, and the
next check counts what live runs reserved and have not written yet (``reserve``, ``spool_room``),
so two restores sharing a spool directory cannot both pass on the same free space.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dataferry.errors import NotReady

PREFIX = "dataferry-run-"
_NAME_RE = re.compile(rf"^{re.escape(PREFIX)}(?P<pid>\d+)-(?P<start>\d+)-")


def _start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def _own_prefix() -> str:
    pid = os.getpid()
    return f"{PREFIX}{pid}-{_start_time(pid) or 0}-"


@contextlib.contextmanager
def private_dir(base: Path | None = None) -> Iterator[Path]:
    """A new 0700 directory under ``base`` (default: the system temp dir) owned by this process;
    removed, with everything in it, when the block ends."""
    path = Path(tempfile.mkdtemp(prefix=_own_prefix(), dir=base))  # mkdtemp makes it 0700
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def bases(spool: Path | None) -> list[Path]:
    """Where runs on this machine make private directories: the temp dir, and ``spool``."""
    return sorted({Path(tempfile.gettempdir()), *([spool] if spool else [])})


def leftovers(base: Path | None = None) -> list[Path]:
    """Private directories under ``base`` whose owning process is gone."""
    root = base or Path(tempfile.gettempdir())
    found = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    for entry in entries:
        m = _NAME_RE.match(entry.name)
        if m and entry.is_dir() and _start_time(int(m["pid"])) != int(m["start"]):
            found.append(entry)
    return sorted(found)


def orphans(base: Path | None = None) -> list[tuple[int, str]]:
    """``(pid, program)`` of processes still running for a killed run: loaders (``pg_restore
    --jobs N``, ``mariadb`` clients) that a SIGKILLed restore left under init. They are known by
    their argv, which names a file in the dead run's private directory (the spool they read, the
    option file they log in with)."""
    dead = [str(d) for d in leftovers(base)]
    if not dead:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = [a.decode("utf-8", "replace") for a in (entry / "cmdline").read_bytes().split(b"\0")]
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if any(d in arg for d in dead for arg in argv[1:]):
            found.append((int(entry.name), Path(argv[0]).name))
    return sorted(found)


def kill_orphans(base: Path | None = None) -> list[str]:
    """SIGKILL the ``orphans`` under ``base`` (they load into a shadow that is dropped anyway);
    returns them as ``program (pid N)``."""
    killed = []
    for pid, program in orphans(base):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed.append(f"{program} (pid {pid})")
    return killed


def sweep(base: Path | None = None) -> list[Path]:
    """Remove what killed runs left under ``base``; returns what was removed."""
    removed = leftovers(base)
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


@contextlib.contextmanager
def disk_full_is_clear(where: Path) -> Iterator[None]:
    """Turn running out of disk (or quota) while writing under ``where`` into ``NotReady`` with what
    to do next, instead of a traceback. Callers write there before anything destructive."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise NotReady(
            f"the disk under {where} filled up while spooling the restore ({exc.strerror}); "
            "the live database was not touched",
            hint="free space there, set settings.spool_dir to a larger disk, or restore with --jobs 1 "
            "(streams, no spooling)",
        ) from None


#: The file in a private directory that says how many bytes its run reserved in that directory's base.
RESERVED = "reserved"


@contextlib.contextmanager
def space_lock(base: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the directory ``base`` itself (nothing is left in it): one
    free-space check and reservation at a time per spool directory."""
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def spool_room(base: Path) -> tuple[int, int]:
    """``(free, promised)``: the free bytes under ``base``, and what live runs reserved there but
    have not written yet (a run's reservation minus the size of its private directories)."""
    reserved: dict[str, int] = {}
    used: dict[str, int] = {}
    dead = set(leftovers(base))
    for entry in base.iterdir():
        m = _NAME_RE.match(entry.name)
        if not m or not entry.is_dir() or entry in dead:
            continue
        owner = f"{m['pid']}-{m['start']}"
        with contextlib.suppress(OSError, ValueError):
            reserved[owner] = reserved.get(owner, 0) + int((entry / RESERVED).read_text())
        used[owner] = used.get(owner, 0) + _size(entry)
    promised = sum(max(0, n - used.get(owner, 0)) for owner, n in reserved.items())
    free = shutil.disk_usage(base).free
    limit = size_limit(os.environ.get(SIZE_LIMIT_ENV, ""))
    if limit is not None:  # a Kubernetes emptyDir: its free space is the node's, its limit is this
        free = min(free, max(0, limit - _size(base)))
    return free, promised


#: Set by rendered Kubernetes pods to their spool volume's ``sizeLimit`` (``render``): the kubelet
#: evicts a pod that writes past it, while ``statvfs`` shows the node disk's free space.
SIZE_LIMIT_ENV = "DATAFERRY_SPOOL_SIZE_LIMIT"
_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_UNITS = {
    **{s: 1024 ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{s: 1000 ** (i + 1) for i, s in enumerate(("k", "M", "G", "T", "P", "E"))},
}


def size_limit(quantity: str) -> int | None:
    """Bytes of a Kubernetes quantity (``10Gi``, ``500M``, ``1.5Gi``, ``1048576``); None for an
    empty or unreadable one (no limit is applied then, as before)."""
    m = _QUANTITY.match(quantity.strip())
    if not m:
        return None
    return int(float(m.group(1)) * _UNITS.get(m.group(2) or "", 1))


def _size(directory: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(directory):
        for name in files:
            if name != RESERVED:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(root, name)).st_size
    return total


def reserve(base: Path, nbytes: int) -> Path:
    """Reserve ``nbytes`` under ``base`` for this process (call under ``space_lock``): a private
    directory with a ``reserved`` file, removed by ``release`` or at exit, and ignored (then swept)
    once this process is gone."""
    path = Path(tempfile.mkdtemp(prefix=_own_prefix(), dir=base))
    (path / RESERVED).write_text(str(nbytes), encoding="ascii")
    atexit.register(release, path)
    return path


def release(reservation: Path | None) -> None:
    """Give a reservation back; idempotent."""
    if reservation is not None:
        shutil.rmtree(reservation, ignore_errors=True)
