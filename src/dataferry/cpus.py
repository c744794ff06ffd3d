"""How many CPUs this process may really use: its CPU affinity, bounded by the cgroup CPU quota.

``os.cpu_count()`` counts the machine's CPUs; a Kubernetes pod with ``resources.limits.cpu: 2`` on
a 64-CPU node sees 64 there but is throttled to two CPUs' worth of time by its cgroup's quota.
A restore that started 64 workers there would run them in turns, each holding a database
connection. So the count is the affinity mask (``os.sched_getaffinity``, which ``taskset`` and
cpusets narrow), bounded by the quota of the process's cgroup and of every cgroup above it:

- cgroup v2: ``cpu.max`` holds ``<quota> <period>`` in microseconds, or ``max <period>``
  (unlimited);
- cgroup v1: ``cpu.cfs_quota_us`` (``-1`` is unlimited) and ``cpu.cfs_period_us`` in the ``cpu``
  controller's hierarchy.

A quota of 150000 per 100000 is 1.5 CPUs: rounded up to 2, as the half CPU still does work.
``root`` and ``proc_cgroup`` are parameters so tests can point them at fake files.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
#: cgroup v1 mounts the cpu controller under one of these names (often joined with cpuacct).
_V1_CPU_DIRS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


def usable_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> int:
    """The CPUs this process can use: the affinity mask, bounded by the cgroup quota; at least 1."""
    cpus = _affinity()
    quota = cgroup_quota(root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, quota)
    return max(1, cpus)


def cgroup_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> int | None:
    """The CPUs the cgroup quotas allow (the tightest of this cgroup's and its ancestors', rounded
    up, at least 1), or None when no quota is set or none can be read."""
    limits = [_v2_limit(d) for d in _v2_dirs(root, proc_cgroup)]
    limits += [_v1_limit(d) for d in _v1_dirs(root, proc_cgroup)]
    found = [limit for limit in limits if limit is not None]
    return min(found) if found else None


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def _cgroup_paths(proc_cgroup: Path) -> dict[str, str]:
    """``/proc/self/cgroup`` as {controllers: path}; v2's line is ``0::/path`` (controllers ``""``)."""
    try:
        text = proc_cgroup.read_text(encoding="utf-8")
    except OSError:
        return {}
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            paths[parts[1]] = parts[2]
    return paths


def _up_from(base: Path, relative: str | None) -> Iterator[Path]:
    """``base/relative`` and each directory above it up to ``base`` (each level's quota applies).
    In a container with its own cgroup namespace ``relative`` is ``/``: ``base`` is the pod's."""
    yield base
    if not relative:
        return
    current = base
    for part in [p for p in relative.split("/") if p and p != ".."]:
        current = current / part
        yield current


def _v2_dirs(root: Path, proc_cgroup: Path) -> Iterator[Path]:
    yield from _up_from(root, _cgroup_paths(proc_cgroup).get(""))


def _v1_dirs(root: Path, proc_cgroup: Path) -> Iterator[Path]:
    paths = _cgroup_paths(proc_cgroup)
    relative = next((p for ctrls, p in paths.items() if "cpu" in ctrls.split(",")), None)
    for name in _V1_CPU_DIRS:
        if (root / name).is_dir():
            yield from _up_from(root / name, relative)
            return


def _v2_limit(directory: Path) -> int | None:
    """``cpu.max``: ``<quota> <period>`` or ``max <period>``."""
    fields = _read(directory / "cpu.max").split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    return _ratio(fields[0], fields[1])


def _v1_limit(directory: Path) -> int | None:
    """``cpu.cfs_quota_us`` (-1: no quota) over ``cpu.cfs_period_us``."""
    return _ratio(_read(directory / "cpu.cfs_quota_us"), _read(directory / "cpu.cfs_period_us"))


def _ratio(quota: str, period: str) -> int | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    if q <= 0 or p <= 0:
        return None
    return max(1, math.ceil(q / p))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""
