"""Finding PostgreSQL client tools (pg_dump, pg_restore, psql) that can handle a given server.

pg_dump refuses to dump a server newer than itself, and newer tools read older servers and
archives, so the newest tools installed win: ``$DATAFERRY_PG_BINDIR`` when set, else the newest
versioned install directory (``/usr/lib/postgresql/<major>/bin`` on Debian and Ubuntu,
``/usr/pgsql-<major>/bin`` on RHEL), else whatever is on ``PATH``. Whether they can handle a
given server is ``Tool.handles``, which ``check`` reports before anything runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dataferry.errors import NotReady
from dataferry.streams import process_failed, spawn

TOOLS = ("pg_dump", "pg_restore", "psql")
BINDIR_ENV = "DATAFERRY_PG_BINDIR"
_VERSIONED_DIRS = ("/usr/lib/postgresql/{major}/bin", "/usr/pgsql-{major}/bin")
_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class Tool:
    """One client program: where it is and what version it reports."""

    name: str
    path: str
    major: int
    version: str

    def handles(self, server_major: int) -> bool:
        """True when this tool can work with a server of ``server_major`` (tools are backward compatible)."""
        return self.major >= server_major


@dataclass(frozen=True)
class PgTools:
    """The three client programs dataferry runs, all from the same place."""

    pg_dump: Tool
    pg_restore: Tool
    psql: Tool

    def all(self) -> list[Tool]:
        """Every tool, in a stable order."""
        return [self.pg_dump, self.pg_restore, self.psql]


def candidate_dirs() -> list[Path]:
    """Install directories to look in, best (newest major) first."""
    override = os.environ.get(BINDIR_ENV)
    if override:
        return [Path(override)]
    found: list[tuple[int, Path]] = []
    for pattern in _VERSIONED_DIRS:
        major_re = re.compile(re.escape(pattern).replace(re.escape("{major}"), r"(\d+)") + "$")
        for path in Path("/").glob(pattern.format(major="*").lstrip("/")):
            m = major_re.match(str(path))
            if m and (path / "pg_dump").exists():
                found.append((int(m.group(1)), path))
    return [path for _, path in sorted(found, reverse=True)]


def tool_version(path: str) -> tuple[int, str]:
    """Run ``path --version`` and return (major, full version line)."""
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout.strip()
    except OSError as exc:
        raise NotReady(f"cannot run {path}: {exc.strerror}") from None
    m = _VERSION_RE.search(out)
    if not m:
        raise NotReady(f"{path} --version printed {out!r}; expected a PostgreSQL client tool")
    return int(m.group(1)), out


def find_tools() -> PgTools:
    """The newest complete set of client tools; ``NotReady`` when none is installed."""
    for directory in candidate_dirs():
        paths = [directory / name for name in TOOLS]
        if all(p.exists() for p in paths):
            return PgTools(*(_tool(name, str(p)) for name, p in zip(TOOLS, paths, strict=True)))
    if os.environ.get(BINDIR_ENV):  # an explicit choice is not silently replaced by PATH
        missing = [name for name in TOOLS if not (Path(os.environ[BINDIR_ENV]) / name).exists()]
        raise NotReady(
            f"{BINDIR_ENV}={os.environ[BINDIR_ENV]} lacks {', '.join(missing)}",
            hint=f"point {BINDIR_ENV} at the bin directory of a PostgreSQL client install, or unset it",
        )
    on_path = [shutil.which(name) for name in TOOLS]
    missing = [name for name, p in zip(TOOLS, on_path, strict=True) if p is None]
    if missing:
        where = os.environ.get(BINDIR_ENV) or "PATH or /usr/lib/postgresql/*/bin"
        raise NotReady(
            f"PostgreSQL client tools not found in {where}: {', '.join(missing)}",
            hint=f"install the PostgreSQL client package, or set {BINDIR_ENV} to its bin directory",
        )
    return PgTools(*(_tool(name, str(p)) for name, p in zip(TOOLS, on_path, strict=True)))


def _tool(name: str, path: str) -> Tool:
    major, version = tool_version(path)
    return Tool(name=name, path=path, major=major, version=version)


def run_tool(argv: Sequence[str], env: dict[str, str], what: str = "pg_restore") -> bytes:
    """Run a client tool to its end; its output (small here: listings and COPY statements)."""
    proc = spawn(argv, env=env, stdout=subprocess.PIPE)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise process_failed(what, argv, proc.returncode, err.decode("utf-8", "replace"))
    return out
