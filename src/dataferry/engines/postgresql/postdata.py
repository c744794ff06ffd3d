"""Post-data (indexes, constraints, triggers) split so that a table's own entries can be built as
soon as its rows are in, while other tables still load.

``pg_restore --jobs`` does this: it points every post-data entry's dependency on a table at that
table's data, so a large table's indexes are built while the next table is loading. dataferry
loads the tables itself (``parallel.load_tables``), so it does the same from the table of
contents' own dependencies, which ``pg_restore --verbose`` prints above every entry it renders:

- an entry is *a table's own* when it depends on exactly one loaded table (its ``TABLE`` or
  ``TABLE DATA`` entry) and on no post-data entry other than that table's own: the table's
  indexes, primary and unique keys, triggers, policies, and comments on them;
- everything else waits for every table: foreign keys (they read a second table), an index of a
  partition (attached to its parent's index), entries on tables without data, and what
  ``pg_restore`` itself leaves to its last passes (privileges, event triggers, materialised views'
  refreshes).

The dependencies are read from a rendered script whose comments could be imitated by a crafted
comment or name; they are used only when the entries read are exactly the section's listing, in
order. Otherwise nothing is built early and post-data runs as one step, as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: ``pg_restore --verbose`` above each entry: its dump id, then the dump ids it depends on.
_HEADER = re.compile(
    rb"^--\n-- TOC entry (\d+) \(class \d+ OID \d+\)\n(?:-- Dependencies:((?: \d+)+)\n)?", re.M
)
#: A ``pg_restore --list`` line: dump id, then the entry's kind, schema, name and owner.
_ENTRY = re.compile(rb"^(\d+); \d+ \d+ (.*)$", re.M)
#: Kinds ``pg_restore`` restores in its last passes, after every other entry; never early.
_LAST_PASSES = (b"ACL ", b"DEFAULT ACL ", b"EVENT TRIGGER ", b"MATERIALIZED VIEW DATA ")


def headers(script: bytes) -> list[tuple[int, tuple[int, ...]]]:
    """Each entry of a ``pg_restore --verbose`` script: its dump id and its dependencies."""
    return [
        (int(m.group(1)), tuple(int(d) for d in (m.group(2) or b"").split()))
        for m in _HEADER.finditer(script)
    ]


def listing(listed: bytes) -> list[tuple[int, bytes]]:
    """Each entry of a ``pg_restore --list``: its dump id and its line (a ``--use-list`` line)."""
    return [(int(m.group(1)), m.group(0)) for m in _ENTRY.finditer(listed)]


def tables_by_id(data: list[tuple[int, tuple[int, ...]]], files: list[str]) -> dict[int, str]:
    """The data file each dump id stands for: a ``TABLE DATA`` entry's own id and its table's (its
    first dependency, as ``pg_restore`` reads it). ``data`` is the tables' rendered entries, in the
    order of ``files``; empty when they do not match, so that nothing is built early."""
    if [f"{dump_id}.dat" for dump_id, _ in data] != files:
        return {}
    owner: dict[int, str] = {}
    for (dump_id, deps), file in zip(data, files, strict=True):
        owner[dump_id] = file
        if deps:
            owner[deps[0]] = file
    return owner


@dataclass(frozen=True)
class PostData:
    """The post-data section: each loaded table's own entries (by data file) and the rest, as
    ``--use-list`` lines; ``order`` keeps the table of contents' order for the last step."""

    own: Mapping[str, list[bytes]]
    rest: list[bytes]
    order: Mapping[bytes, int]

    def remaining(self, built: Iterable[str]) -> list[bytes]:
        """Every entry not built early, in the table of contents' order."""
        done = set(built)
        lines = [*self.rest, *(line for file, own in self.own.items() if file not in done for line in own)]
        return sorted(lines, key=self.order.__getitem__)


def split(listed: bytes, script: bytes, tables: Mapping[int, str]) -> PostData:
    """Split the post-data section (``listed``: its ``--list``; ``script``: its ``--verbose``
    rendering) into each table's own entries and the rest."""
    entries = listing(listed)
    order = {line: i for i, (_, line) in enumerate(entries)}
    found = headers(script)
    if [dump_id for dump_id, _ in found] != [dump_id for dump_id, _ in entries] or not tables:
        return PostData({}, [line for _, line in entries], order)
    group: dict[int, str] = {}
    post_ids = {dump_id for dump_id, _ in entries}
    for (dump_id, deps), (_, line) in zip(found, entries, strict=True):
        kind = line.split(b" ", 3)[3]
        if not kind.startswith(_LAST_PASSES):
            table = _own_table(deps, tables, group, post_ids)
            if table is not None:
                group[dump_id] = table
    own: dict[str, list[bytes]] = {}
    rest: list[bytes] = []
    for dump_id, line in entries:
        if dump_id in group:
            own.setdefault(group[dump_id], []).append(line)
        else:
            rest.append(line)
    return PostData(own, rest, order)


def _own_table(
    deps: tuple[int, ...], tables: Mapping[int, str], group: Mapping[int, str], post_ids: set[int]
) -> str | None:
    """The one loaded table an entry belongs to, or None when it must wait for every table. A
    dependency on an entry that is neither a table nor post-data (a function, a type) is met:
    pre-data and the other data are restored before any table loads."""
    owners: set[str] = set()
    for dep in deps:
        if dep in tables:
            owners.add(tables[dep])
        elif dep in post_ids:
            if dep not in group:  # a post-data entry that waits for every table, or comes later
                return None
            owners.add(group[dep])
    return owners.pop() if len(owners) == 1 else None
