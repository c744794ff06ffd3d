"""The fault suite's phases, and a ``dataferry`` process killed at one of them.

``PHASES`` is the one list of points the suite kills at (``docs/reliability.md`` lists the same:
``tests/test_docs.py`` compares them). A run is started through ``fault_launch.py``, which pauses
at the point and says so in a flag file; ``killed_at`` waits for that flag (or for the process to
end, which fails the test with its output), sends the signal and returns how the process ended.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

LAUNCHER = str(Path(__file__).resolve().parent / "fault_launch.py")

#: point -> where the run is when it is killed.
PHASES: dict[str, str] = {
    "backup:dump": "the dump tool is running and its first bytes were read",
    "backup:upload": "the whole dump was read into the store's upload, which has not completed",
    "backup:between-objects": "PostgreSQL's one object per table: the first table's object is stored, "
    "the dump goes on (not a cell for the single-object engines)",
    "backup:before-commit": "the data object is stored, the manifest is being made",
    "backup:commit": "the manifest is being written (the commit)",
    "backup:committed": "the manifest was just written (the artifact is published)",
    "restore:download": "the first bytes of the data object were read from the store",
    "restore:load": "the whole object was read into the loader, which may still be loading the shadow",
    "restore:row-counts": "the shadow is loaded and verified, its rows are about to be counted",
    "restore:before-swap": "the shadow passed every check, the swap is about to start",
    "restore:swap": "inside the swap, before its atomic step (PostgreSQL: live blocked; "
    "MariaDB: live triggers dropped; SQLite: before the rename)",
}

SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGTERM": signal.SIGTERM}


@dataclass
class Ended:
    """How a killed run ended."""

    returncode: int
    stdout: str
    stderr: str


def start_paused(
    config: Path, args: list[str], point: str, flag: Path, env: dict[str, str], cwd: Path
) -> subprocess.Popen[str]:
    """Start ``dataferry --config CONFIG ARGS`` set to pause at ``point``."""
    flag.unlink(missing_ok=True)
    return subprocess.Popen(
        [sys.executable, LAUNCHER, "--config", str(config), *args],
        env={**os.environ, **env, "FAULT_PAUSE_AT": point, "FAULT_FLAG": str(flag)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )


def wait_for_flag(proc: subprocess.Popen[str], flag: Path, timeout: float = 120) -> None:
    """Return once the run is paused at its point; fail with its output if it ended instead."""
    deadline = time.monotonic() + timeout
    while not flag.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the run ended (exit {proc.returncode}) before its pause:\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.communicate()
            raise AssertionError("the run never reached its pause")
        time.sleep(0.02)


def kill(proc: subprocess.Popen[str], signame: str, timeout: float = 120) -> Ended:
    """Send the signal and wait for the process (a SIGTERMed run cleans up first)."""
    proc.send_signal(SIGNALS[signame])
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the run did not stop within {timeout}s of {signame}:\n{err}") from None
    return Ended(proc.returncode, out, err)


def killed_at(
    config: Path, args: list[str], point: str, signame: str, env: dict[str, str], work: Path
) -> Ended:
    """Run ``dataferry ARGS``, kill it with ``signame`` once it is paused at ``point``."""
    flag = work / "fault-flag"
    proc = start_paused(config, args, point, flag, env, work)
    try:
        wait_for_flag(proc, flag)
        assert flag.read_text(encoding="utf-8") == point
    except BaseException:
        proc.kill()  # a failed test leaves no paused run behind
        proc.communicate()
        raise
    return kill(proc, signame)
