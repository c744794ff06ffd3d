"""The database's schema as the profile sees it, and strict coverage (schema drift detection).

Coverage is checked before any rule runs: a table or column the profile names that no longer exists
("vanished") or, in strict mode, a column the profile does not classify as keep, mask or drop
("unclassified") stops the run with a message naming each one. GOV.UK's scripts broke silently when an
upstream migration removed a column; here the run fails before anything is published.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from dataferry.errors import SanitisationFailed
from dataferry.sanitise.profile import Profile

#: at most this many names are listed in one message; the count says how many there were
LISTED = 20


@dataclass(frozen=True)
class Column:
    """One column: its name, its declared type and whether the scan reads it."""

    name: str
    data_type: str
    is_text: bool


@dataclass
class Schema:
    """Tables (``schema.table`` outside PostgreSQL's ``public``) and their columns, in order."""

    tables: dict[str, list[Column]] = field(default_factory=dict)
    #: every object that can hold data, by kind (``Dialect.objects_query``)
    kinds: dict[str, str] = field(default_factory=dict)
    #: tables rebuilt from others after the rules (materialised views, FTS shadow tables): scanned,
    #: never classified
    derived: set[str] = field(default_factory=set)

    def columns(self, table: str) -> list[str]:
        """Column names of ``table`` (empty when it does not exist)."""
        return [c.name for c in self.tables.get(table, [])]

    def identifiers(self) -> set[str]:
        """Every table and column name (kept in scrubbed error messages)."""
        names = set(self.tables)
        for cols in self.tables.values():
            names.update(c.name for c in cols)
        return names


@dataclass
class Coverage:
    """What the profile misses (unclassified) and what it names that is gone (vanished)."""

    unclassified: list[str] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is missing or gone."""
        return not self.unclassified and not self.vanished


def from_rows(rows: list[tuple[object, ...]], is_text: Callable[[str], bool]) -> Schema:
    """Build a schema from ``(table, column, type)`` rows; ``is_text`` is the dialect's predicate.
    A fourth value in a row, when the dialect's query gives one, is that decision made by the server
    (PostgreSQL decides by type category, which also covers domains, arrays and extension types)."""
    schema = Schema()
    for table, column, data_type, *scanned in rows:
        dtype = str(data_type or "")
        text = bool(scanned[0]) if scanned else is_text(dtype)
        schema.tables.setdefault(str(table), []).append(Column(str(column), dtype, text))
    return schema


def coverage(profile: Profile, schema: Schema, *, strict: bool | None = None) -> Coverage:
    """Compare the profile with the schema; ``strict`` defaults to the profile's setting."""
    strict = profile.strict if strict is None else strict
    out = Coverage()
    truncated = profile.truncated()
    for rule in profile.rows:
        if rule.table not in schema.tables:
            out.vanished.append(rule.table)
        elif rule.column and rule.column not in schema.columns(rule.table):
            out.vanished.append(f"{rule.table}.{rule.column}")
    for table, rules in profile.tables.items():
        present = set(schema.columns(table))
        if table not in schema.tables:
            if schema.kinds.get(table) == "partition":  # masked and scanned through its parent
                out.vanished.append(f"{table} (a partition: classify its parent table instead)")
            elif strict or rules.mask or rules.drop:
                out.vanished.append(table)
            continue
        named = rules.classified() if strict else set(rules.rules())
        out.vanished += [f"{table}.{c}" for c in sorted(named - present)]
    if strict:
        for table, cols in schema.tables.items():
            if table in truncated or table in schema.derived:
                continue
            classified = profile.tables[table].classified() if table in profile.tables else set()
            out.unclassified += [f"{table}.{c.name}" for c in cols if c.name not in classified]
    out.vanished = sorted(set(out.vanished))
    return out


def require_coverage(profile: Profile, schema: Schema, *, strict: bool | None = None) -> Coverage:
    """Raise ``SanitisationFailed`` naming every unclassified or vanished column."""
    found = coverage(profile, schema, strict=strict)
    if found.ok:
        return found
    parts = []
    if found.unclassified:
        parts.append(f"{len(found.unclassified)} unclassified column(s): {_names(found.unclassified)}")
    if found.vanished:
        parts.append(f"{len(found.vanished)} vanished table(s)/column(s): {_names(found.vanished)}")
    raise SanitisationFailed(
        f"schema drift against sanitisation profile {profile.name}: " + "; ".join(parts),
        hint=f"classify new columns as keep, mask or drop (and remove vanished ones) in {profile.path}",
    )


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:LISTED])
    return shown + (f" and {len(items) - LISTED} more" if len(items) > LISTED else "")
