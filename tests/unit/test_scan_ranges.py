"""The key ranges the parallel scan cuts a table into (``sanitise/scanning.py``): every value, below
the lowest key and above the highest too, falls in exactly one range. Evaluated by SQLite."""

from __future__ import annotations

import sqlite3

import pytest

from dataferry.sanitise.scanning import key_ranges

LOWEST, HIGHEST = -(2**63), 2**63 - 1


@pytest.mark.parametrize(
    ("low", "high", "parts"),
    [
        (1, 10, 3),
        (5, 5, 4),
        (0, 1, 4),
        (-7, 7, 2),
        (1, 1000, 8),
        (LOWEST, HIGHEST, 3),
        (LOWEST, LOWEST + 2, 5),
    ],
)
def test_key_ranges_cover_every_value_exactly_once(low: int, high: int, parts: int) -> None:
    con = sqlite3.connect(":memory:")
    conds = key_ranges("k", low, high, parts)
    assert len(conds) == min(parts, high - low + 1)
    middle = (low + high) // 2
    probes = {
        low - 3,
        low - 1,
        low,
        low + 1,
        middle - 1,
        middle,
        middle + 1,
        high - 1,
        high,
        high + 1,
        high + 3,
    }
    for k in sorted(v for v in probes if LOWEST <= v <= HIGHEST):
        hits = [c for c in conds if con.execute(f"SELECT {c} FROM (SELECT ? AS k)", (k,)).fetchone()[0]]
        assert len(hits) == 1, (k, hits)
