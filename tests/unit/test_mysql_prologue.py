"""The first lines of a MySQL dump as dataferry publishes it: no sandbox line, the original's name."""

from __future__ import annotations

import pytest

from dataferry.engines.mysql.backup import tidy_prologue
from dataferry.engines.mysql.dumpfile import DumpHeader

TOOL = (
    b"/*M!999999\\- enable the sandbox mode */ \n"
    b"-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)\n"
    b"--\n"
    b"-- Host: 127.0.0.1    Database: app_dfshadow\n"
    b"-- ------------------------------------------------------\n"
    b"INSERT INTO `t` VALUES ('/*M!999999\\\\- enable the sandbox mode */ ');\n"
)


def test_the_sandbox_line_goes_and_the_copy_is_named_as_its_original() -> None:
    out = tidy_prologue(TOOL, ("app_dfshadow", "app"))
    assert out.startswith(b"-- MariaDB dump 10.19")
    assert b"-- Host: 127.0.0.1    Database: app\n" in out
    assert out.endswith(TOOL.split(b"\n")[-2] + b"\n")  # data is never touched


@pytest.mark.parametrize(
    "line", [b"/*!999999\\- enable the sandbox mode */\n", b"/*M!999999\\- enable the sandbox mode */ \r\n"]
)
def test_both_forms_of_the_sandbox_line(line: bytes) -> None:
    assert tidy_prologue(line + b"-- MySQL dump 10.13\n", None) == b"-- MySQL dump 10.13\n"


def test_an_unterminated_first_chunk_and_another_database_are_left_alone() -> None:
    assert tidy_prologue(b"/*M!999999\\- enable the sandbox", None) == b"/*M!999999\\- enable the sandbox"
    line = b"-- Host: h    Database: other\n"
    assert tidy_prologue(line, ("app_dfshadow", "app")) == line


def test_headers_of_earlier_versions_are_still_read() -> None:
    header = DumpHeader("app", "utf8mb4", "utf8mb4_general_ci")
    assert DumpHeader.parse(header.line()) == header
    assert header.line().startswith(b"-- MySQL dump made by dataferry-mysql: ")
    old = b'-- dataferry-mysql: {"charset": "latin1", "collation": null, "database": "x", "version": 1}\n'
    assert DumpHeader.parse(old) == DumpHeader("x", "latin1", None)
