"""The usable CPU count (``dataferry.cpus``): the affinity mask bounded by the cgroup quota, read
from fake cgroup trees (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``) as Kubernetes pods have them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dataferry import cpus


def _proc(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proc-self-cgroup"
    path.write_text(text, encoding="utf-8")
    return path


def _write(path: Path, name: str, text: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / name).write_text(text + "\n", encoding="utf-8")


@pytest.fixture
def many_cpus(monkeypatch: pytest.MonkeyPatch) -> int:
    """Pretend the affinity mask holds 64 CPUs, so the quota is what bounds."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    return 64


def test_cgroup_v2_quota_of_a_pod_rounds_up(tmp_path: Path, many_cpus: int) -> None:
    """A pod with ``limits.cpu: 1500m`` in its own cgroup namespace: ``150000 100000`` is 2 CPUs."""
    root = tmp_path / "cgroup"
    _write(root, "cpu.max", "150000 100000")
    proc = _proc(tmp_path, "0::/\n")
    assert cpus.cgroup_quota(root, proc) == 2
    assert cpus.usable_cpus(root, proc) == 2


def test_cgroup_v2_max_means_no_quota(tmp_path: Path, many_cpus: int) -> None:
    root = tmp_path / "cgroup"
    _write(root, "cpu.max", "max 100000")
    proc = _proc(tmp_path, "0::/\n")
    assert cpus.cgroup_quota(root, proc) is None
    assert cpus.usable_cpus(root, proc) == many_cpus


def test_cgroup_v2_the_tightest_ancestor_bounds(tmp_path: Path, many_cpus: int) -> None:
    """Without a cgroup namespace the process's cgroup is a path below the root; every level's
    quota applies, so the tightest wins (here the parent's 3 CPUs, not the leaf's unlimited)."""
    root = tmp_path / "cgroup"
    _write(root / "kubepods.slice", "cpu.max", "300000 100000")
    _write(root / "kubepods.slice" / "pod1", "cpu.max", "max 100000")
    proc = _proc(tmp_path, "0::/kubepods.slice/pod1\n")
    assert cpus.usable_cpus(root, proc) == 3


def test_a_tiny_quota_is_still_one_cpu(tmp_path: Path, many_cpus: int) -> None:
    """``limits.cpu: 250m``: a quarter of a CPU is rounded up to 1, never 0."""
    root = tmp_path / "cgroup"
    _write(root, "cpu.max", "25000 100000")
    assert cpus.usable_cpus(root, _proc(tmp_path, "0::/\n")) == 1


def test_cgroup_v1_quota(tmp_path: Path, many_cpus: int) -> None:
    """cgroup v1 (older nodes): cpu.cfs_quota_us over cpu.cfs_period_us in the cpu controller."""
    root = tmp_path / "cgroup"
    cpu = root / "cpu,cpuacct"
    _write(cpu, "cpu.cfs_quota_us", "400000")
    _write(cpu, "cpu.cfs_period_us", "100000")
    proc = _proc(tmp_path, "4:memory:/\n3:cpu,cpuacct:/\n")
    assert cpus.usable_cpus(root, proc) == 4


def test_cgroup_v1_minus_one_means_no_quota(tmp_path: Path, many_cpus: int) -> None:
    root = tmp_path / "cgroup"
    cpu = root / "cpu"
    _write(cpu, "cpu.cfs_quota_us", "-1")
    _write(cpu, "cpu.cfs_period_us", "100000")
    assert cpus.usable_cpus(root, _proc(tmp_path, "1:cpu:/\n")) == many_cpus


def test_the_affinity_mask_bounds_below_the_quota(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``taskset -c 0`` under a 4-CPU quota: 1 CPU."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    root = tmp_path / "cgroup"
    _write(root, "cpu.max", "400000 100000")
    assert cpus.usable_cpus(root, _proc(tmp_path, "0::/\n")) == 1


def test_no_cgroup_files_at_all(tmp_path: Path, many_cpus: int) -> None:
    """No cgroup filesystem (not Linux, or not mounted): the affinity mask alone."""
    assert cpus.cgroup_quota(tmp_path / "none", tmp_path / "none-proc") is None
    assert cpus.usable_cpus(tmp_path / "none", tmp_path / "none-proc") == many_cpus


def test_garbage_in_the_files_is_no_quota(tmp_path: Path, many_cpus: int) -> None:
    root = tmp_path / "cgroup"
    _write(root, "cpu.max", "lots")
    assert cpus.cgroup_quota(root, _proc(tmp_path, "0::/\n")) is None


def test_this_machine(tmp_path: Path) -> None:
    """On the real files: at least 1, and never more than the affinity mask."""
    assert 1 <= cpus.usable_cpus() <= len(os.sched_getaffinity(0))
