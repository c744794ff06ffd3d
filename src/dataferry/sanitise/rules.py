"""Compile a profile into an ordered plan of set-based SQL steps for one engine.

Order: the profile's scripts (in file order), then row rules (in file order, so children can be
deleted before their parents), then one UPDATE per table (and per ``where`` condition) that applies
all of that table's column rules in a single pass. Nothing is row-by-row in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dataferry.sanitise import fakes
from dataferry.sanitise.dialects import Dialect
from dataferry.sanitise.profile import ColumnRule, Profile, RowRule, read_script

StepKind = Literal["script", "rows", "mask"]


@dataclass(frozen=True)
class Step:
    """One unit of work: its SQL, what it is called in manifests, and how a dry run counts it."""

    kind: StepKind
    description: str
    sql: str
    keyed: bool = False  # needs the salt prelude
    count_sql: str | None = None  # dry run: one row of counts
    items: tuple[str, ...] = field(default_factory=tuple)  # per-column rules of a mask step


def plan(profile: Profile, dialect: Dialect) -> list[Step]:
    """Every step of the profile, in the order it runs."""
    steps = [Step("script", f"script {path.name}", read_script(path)) for path in profile.script_paths()]
    steps += [_row_step(rule, dialect) for rule in profile.rows]
    for table, rules in profile.tables.items():
        steps += _mask_steps(table, rules.rules(), profile, dialect)
    return steps


def plan_row(rule: RowRule, d: Dialect) -> Step:
    """The step of one row rule (its ``count_sql`` counts the rows it removes)."""
    return _row_step(rule, d)


def _row_step(rule: RowRule, d: Dialect) -> Step:
    table = d.table(rule.table)
    if rule.truncate:
        return Step("rows", rule.describe(), d.truncate(table), count_sql=f"SELECT count(*) FROM {table}")
    if rule.keep_newer_than_days is not None and rule.column is not None:
        cond = d.older_than(d.ident(rule.column), rule.keep_newer_than_days)
    else:
        cond = f"({rule.delete_where})"
    return Step(
        "rows",
        rule.describe(),
        f"DELETE FROM {table} WHERE {cond};",
        count_sql=f"SELECT count(*) FROM {table} WHERE {cond}",
    )


def removed_rows_checks(profile: Profile, d: Dialect) -> list[tuple[str, str]]:
    """For each truncating row rule, a count that must be 0 after the run: the table is still empty
    after every later statement. (A ``delete_where`` or ``keep_newer_than_days`` condition is not
    checked again: a later rule may rightly make it match more rows, and rows age.)"""
    return [
        (rule.describe(), f"SELECT count(*) FROM {d.table(rule.table)}")
        for rule in profile.rows
        if rule.truncate
    ]


def _mask_steps(table: str, rules: dict[str, ColumnRule], profile: Profile, d: Dialect) -> list[Step]:
    """One UPDATE per distinct ``where``; substitutions first, because MariaDB assigns left to right
    and a substitution must see its source column's original value."""
    groups: dict[str | None, list[tuple[str, ColumnRule]]] = {}
    for column, rule in rules.items():
        groups.setdefault(rule.where, []).append((column, rule))
    steps = []
    for where, items in groups.items():
        items.sort(key=lambda item: item[1].rule != "substitute")
        sets = ", ".join(f"{d.ident(c)} = {expression(r, c, profile, d)}" for c, r in items)
        cond = f" WHERE {where}" if where else ""
        counts = ", ".join(_count(c, r, d) for c, r in items)
        steps.append(
            Step(
                "mask",
                "; ".join(f"{table}.{c}: {r.describe()}" for c, r in items),
                f"UPDATE {d.table(table)} SET {sets}{cond};",
                keyed=any(r.keyed for _, r in items),
                count_sql=f"SELECT {counts} FROM {d.table(table)}{cond}",
                items=tuple(f"{table}.{c}: {r.describe()}" for c, r in items),
            )
        )
    return steps


def _count(column: str, rule: ColumnRule, d: Dialect) -> str:
    """Rows whose value the rule would change (NULLs stay NULL except for null/constant)."""
    col = d.ident(column)
    if rule.rule == "constant":
        return "count(*)"
    if rule.rule == "substitute" and rule.source:
        src = d.ident(rule.source)
        return f"COALESCE(SUM(CASE WHEN {src} IS NOT NULL AND {d.contains(col, src)} THEN 1 ELSE 0 END), 0)"
    return f"count({col})"


def expression(rule: ColumnRule, column: str, profile: Profile, d: Dialect) -> str:
    """The SQL expression a column is set to."""
    col = d.ident(column)
    if rule.rule == "null":
        return "NULL"
    if rule.rule == "constant":
        assert rule.value is not None  # checked by the profile model
        return d.literal(rule.value)
    if rule.rule == "redact":
        return d.stars(col)
    if rule.rule == "substitute":
        assert rule.source is not None and rule.fake is not None
        src = d.ident(rule.source)
        fake = fake_expression(rule.fake, src, profile, d)
        return (
            f"(CASE WHEN {src} IS NULL OR {d.as_text(src)} = '' THEN {col} "
            f"ELSE replace({col}, {d.as_text(src)}, {fake}) END)"
        )
    return fake_expression(rule.rule, col, profile, d, rule.length)


def fake_expression(kind: str, value: str, profile: Profile, d: Dialect, length: int | None = None) -> str:
    """The pseudonym of ``value`` as ``fakes.py`` defines it; NULL stays NULL."""
    h = d.digest(value)
    if kind == "fake_email":
        body = d.concat(
            d.string(fakes.FAKE_EMAIL_PREFIX),
            d.substr(h, 1, fakes.EMAIL_DIGEST_CHARS),
            d.string("@" + profile.fake_email_domain),
        )
    elif kind == "fake_name":
        first = d.pick(d.hex_int(h, fakes.NAME_FIRST_AT), fakes.FIRST_NAMES)
        last = d.pick(d.hex_int(h, fakes.NAME_LAST_AT), fakes.LAST_NAMES)
        body = d.concat(first, "' '", last)
    elif kind == "fake_phone":
        body = d.concat(d.string(fakes.FAKE_PHONE_PREFIX), d.pad3(f"{d.hex_int(h, fakes.PHONE_AT)} % 1000"))
    elif kind == "fake_address":
        house = d.as_text(f"1 + {d.hex_int(h, fakes.HOUSE_AT)} % {fakes.HOUSE_NUMBERS}")
        street = d.pick(d.hex_int(h, fakes.STREET_AT), fakes.STREETS)
        town = d.pick(d.hex_int(h, fakes.TOWN_AT), fakes.TOWNS)
        body = d.concat(house, "' '", street, "', '", town)
    elif kind == "hash":
        body = d.substr(h, 1, length or fakes.HASH_CHARS)
    else:  # pragma: no cover - the profile model only allows the kinds above
        raise ValueError(f"unknown pseudonym {kind}")
    return f"(CASE WHEN {value} IS NULL THEN NULL ELSE {body} END)"
