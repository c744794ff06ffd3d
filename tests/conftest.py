"""Shared pytest configuration and fixtures for the dataferry test suite.

Sections (append new fixtures to the matching section, or add a new one):

* hooks            -- pytest_configure (markers) and other pytest hooks
* environment      -- autouse isolation of process environment variables
* servers          -- throwaway PostgreSQL / MariaDB / S3 servers (see servers.py)
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

# Make tests/servers.py importable as ``servers`` whatever --import-mode is used.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from servers import (  # noqa: E402
    MariaDbServer,
    PgServer,
    S3Server,
    start_mariadb,
    start_postgres,
    start_s3,
)

# --------------------------------------------------------------------------
# hooks
# --------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    """Register the project's custom markers."""
    config.addinivalue_line(
        "markers",
        "integration: needs real external servers (PostgreSQL, MariaDB, S3)",
    )


#: How long threads still finishing at the end of the run may take before they count as leaked.
_THREAD_GRACE_SECONDS = 10.0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a test left a thread running, naming it and where it is.

    A daemon thread still alive when the interpreter shuts down is ended by ``pthread_exit``
    as soon as it wants the GIL; if it is inside a Rust extension at that moment (pydantic-core
    serialising a lock, say), the process aborts with "FATAL: exception not rethrown" after every
    test passed. That was seen once, from a job lock a test never released. A named failure here
    instead of a random abort in CI.
    """
    leaked = _leaked_threads()
    if not leaked:
        return
    frames = sys._current_frames()
    lines = [f"{len(leaked)} thread(s) still running after the tests (a test did not stop them):"]
    for thread in leaked:
        lines.append(f"--- {thread.name} (daemon={thread.daemon})")
        frame = frames.get(thread.ident or 0)
        if frame is not None:
            lines.append("".join(traceback.format_stack(frame)).rstrip())
    sys.stderr.write("\n".join(lines) + "\n")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _leaked_threads() -> list[threading.Thread]:
    """Threads other than the main one still alive after a short grace period."""
    others = [t for t in threading.enumerate() if t is not threading.main_thread()]
    deadline = time.monotonic() + _THREAD_GRACE_SECONDS
    for thread in others:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [t for t in others if t.is_alive()]


# --------------------------------------------------------------------------
# environment
# --------------------------------------------------------------------------

_ISOLATED_ENV_PREFIXES = ("PG", "MYSQL", "AWS_", "DATAFERRY_")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove PG*, MYSQL*, AWS_* and DATAFERRY_* variables for every test.

    Variables leaked from the shell (or from another test) make results
    depend on the machine; monkeypatch restores them after the test.
    """
    for name in list(os.environ):
        if name.startswith(_ISOLATED_ENV_PREFIXES):
            monkeypatch.delenv(name, raising=False)


# --------------------------------------------------------------------------
# servers
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A throwaway PostgreSQL server shared by the whole test session."""
    with start_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDbServer]:
    """A throwaway MariaDB server shared by the whole test session."""
    with start_mariadb() as server:
        yield server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A moto S3 server (fake credentials) shared by the whole test session."""
    with start_s3() as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> Iterator[str]:
    """A fresh, uniquely named empty bucket; emptied and deleted afterwards."""
    name = s3_server.create_bucket()
    yield name
    s3_server.delete_bucket(name)
