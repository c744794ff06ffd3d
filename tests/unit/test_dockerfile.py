"""The container image, as far as it can be tested without a container runtime (none here): the
Debian packages it installs provide every tool the engines look for (checked with this machine's
dpkg and apt, the same Debian family as the base image), its entrypoint is the ``dataferry`` CLI
installed from the wheel, and it runs as the non-root user the rendered pods ask for."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from dataferry.engines.mysql.conn import CLIENT_PROGRAMS, DUMP_PROGRAMS
from dataferry.engines.postgresql.tools import find_tools
from dataferry.render.values import CONFIG_DIR, CONFIG_FILE, SPOOL_DIR, UID

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"^\s*#.*\n", "", DOCKERFILE, flags=re.M).replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def apt_packages() -> list[str]:
    run = " ".join(args for word, args in final_stage() if word == "RUN" and "apt-get install" in args)
    words = run.split("apt-get install", 1)[1].split("&&", 1)[0].split()
    return [w for w in words if not w.startswith("-")]


def test_the_entrypoint_is_the_cli_installed_from_the_wheel() -> None:
    stage = final_stage()
    entrypoint = [args for word, args in stage if word == "ENTRYPOINT"]
    assert entrypoint == ['["dataferry"]']
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["dataferry"] == "dataferry.cli:main"
    assert any(word == "RUN" and "pip install" in args and "/wheels/*.whl" in args for word, args in stage)
    assert any(word == "RUN" and "pip wheel" in args for word, args in instructions())


def test_it_runs_as_the_pods_non_root_user_with_the_rendered_paths() -> None:
    stage = dict(final_stage())
    assert stage["USER"] == f"{UID}:{UID}"
    assert f"DATAFERRY_CONFIG={CONFIG_DIR}/{CONFIG_FILE}" in stage["ENV"]
    assert f"TMPDIR={SPOOL_DIR}" in stage["ENV"]
    assert stage["FROM"] == "${PYTHON_IMAGE}"
    assert instructions()[0] == ("ARG", "PYTHON_IMAGE=python:3.11-slim-bookworm")


def _owner(path: str) -> str:
    out = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True, check=True).stdout
    return out.split(":", 1)[0].strip()


def _closure(packages: list[str]) -> set[str]:
    """The packages installed with ``packages`` (their dependencies, recursively; no recommends)."""
    flags = ["--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces"]
    out = subprocess.run(
        ["apt-cache", "depends", "--recurse", "--no-enhances", *flags, *packages],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line.strip() for line in out.splitlines() if line and not line.startswith(" ")}


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="needs a Debian machine (dpkg, apt-cache)")
def test_the_packages_provide_every_tool_the_engines_need() -> None:
    pg = find_tools()
    paths = [pg.pg_dump.path, pg.pg_restore.path, pg.psql.path]
    for program in (DUMP_PROGRAMS[0], CLIENT_PROGRAMS[0], "zstd"):
        found = shutil.which(program)
        assert found, f"{program} is not installed here (scripts/test installs it)"
        paths.append(found)
    installed = _closure(apt_packages())
    for path in paths:
        for candidate in {path, os.path.realpath(path)}:
            assert _owner(candidate) in installed, f"{candidate} comes from a package the image lacks"
