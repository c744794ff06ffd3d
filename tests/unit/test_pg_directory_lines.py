"""Counting a table's rows in pg_dump's data file (``directory._Lines``): one line per row, then
pg_dump's trailer; a file that does not end with the trailer gives no count (the backup then counts
that table with ``count(*)`` instead)."""

from __future__ import annotations

import io

import pytest

from dataferry.engines.postgresql.directory import _Lines

TRAILER = b"\\.\n\n\n"


def read_all(data: bytes, chunk: int) -> _Lines:
    lines = _Lines(io.BytesIO(data))
    while lines.read(chunk):
        pass
    return lines


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 64, 1 << 20])
def test_rows_are_the_lines_before_the_trailer_whatever_the_chunks(chunk: int) -> None:
    rows = [b"1\ttwo\\nlines", b"2\t", b"3\t\\N", b"4\t\\\\.", b"5\tend\\r\\n"]
    lines = read_all(b"".join(r + b"\n" for r in rows) + TRAILER, chunk)
    assert lines.rows() == 5


@pytest.mark.parametrize("chunk", [1, 3, 1 << 20])
def test_an_empty_table_has_only_the_trailer(chunk: int) -> None:
    assert read_all(TRAILER, chunk).rows() == 0


@pytest.mark.parametrize(
    "data",
    [b"", b"1\tx\n", b"1\tx\n\\.\n", b"1\tx\n\\.\n\n", b"1\tx\n\\.\n\n\nmore\n"],
    ids=["empty file", "no trailer", "marker only", "one blank line", "data after the trailer"],
)
def test_a_file_that_does_not_end_as_pg_dump_ends_one_gives_no_count(data: bytes) -> None:
    assert read_all(data, 2).rows() is None
