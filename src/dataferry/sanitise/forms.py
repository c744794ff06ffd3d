"""Masked means masked: on data that should already be sanitised (a checks-only backup, ``mode
"checked live"``), every masked column must hold only values of its rule's form, and no row a row rule
removes may be left. The scan alone would pass real names under a ``fake_name`` rule.

The forms: ``null`` (and dropped columns) NULL; ``constant`` its value; ``fake_email``
``anon-<24 hex>@<fake_email_domain>``; ``fake_name``, ``fake_phone`` and ``fake_address`` built from
the lists in ``fakes.py`` only; ``hash`` as many hex digits as the rule keeps; ``redact`` only ``*``.
The fakes and hashes leave NULL as NULL, so NULL is their form too. A ``substitute`` rule replaces
a value inside text, which has no form to check: the scan covers it.

Results carry names and counts only, like every check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dataferry.sanitise import fakes, rules
from dataferry.sanitise.dialects import Dialect
from dataferry.sanitise.profile import ColumnRule, Profile

if TYPE_CHECKING:
    from dataferry.sanitise.execution import Target


def _one_of(words: tuple[str, ...]) -> str:
    return "(?:" + "|".join(re.escape(w) for w in words) + ")"


def shape(rule: ColumnRule, profile: Profile) -> str | None:
    """The anchored regular expression every non-NULL value of a pseudonym rule matches, or None
    for rules checked otherwise (null, constant) or not at all (substitute)."""
    hexes = "[0-9a-f]"
    if rule.rule == "fake_email":
        return f"^{fakes.FAKE_EMAIL_PREFIX}{hexes}{{{fakes.EMAIL_DIGEST_CHARS}}}@{re.escape(profile.fake_email_domain)}$"
    if rule.rule == "fake_name":
        return f"^{_one_of(fakes.FIRST_NAMES)} {_one_of(fakes.LAST_NAMES)}$"
    if rule.rule == "fake_phone":
        return f"^{fakes.FAKE_PHONE_PREFIX}[0-9]{{3}}$"
    if rule.rule == "fake_address":
        return f"^[0-9]{{1,3}} {_one_of(fakes.STREETS)}, {_one_of(fakes.TOWNS)}$"
    if rule.rule == "hash":
        return f"^{hexes}{{{rule.length or fakes.HASH_CHARS}}}$"
    if rule.rule == "redact":
        return "^[*]*$"
    return None


def violation(rule: ColumnRule, column: str, profile: Profile, d: Dialect) -> str | None:
    """Condition: this row's value is not of the rule's form (None: the rule has no form)."""
    col = d.ident(column)
    if rule.rule == "null":
        return f"{col} IS NOT NULL"
    if rule.rule == "constant":
        assert rule.value is not None  # checked by the profile model
        return f"({col} IS NULL OR {d.as_text(col)} <> {d.as_text(d.literal(rule.value))})"
    pattern = shape(rule, profile)
    if pattern is None:
        return None
    return f"({col} IS NOT NULL AND NOT ({d.regex(col, pattern)}))"


@dataclass(frozen=True)
class FormQuery:
    """One table's form check: one count per masked column (and per row rule)."""

    table: str
    names: tuple[str, ...]
    sql: str


def queries(profile: Profile, d: Dialect) -> list[FormQuery]:
    """Per table, a single pass counting the values that are not of their rule's form; then one
    query per row rule counting the rows it would still remove."""
    out = []
    for table, table_rules in profile.tables.items():
        names, sums = [], []
        for column, rule in table_rules.rules().items():
            bad = violation(rule, column, profile, d)
            if bad is None:
                continue
            cond = f"({rule.where}) AND {bad}" if rule.where else bad
            names.append(f"{table}.{column}: {rule.describe()}")
            sums.append(f"COALESCE(SUM(CASE WHEN {cond} THEN 1 ELSE 0 END), 0)")
        if sums:
            out.append(FormQuery(table, tuple(names), f"SELECT {', '.join(sums)} FROM {d.table(table)}"))
    for row_rule in profile.rows:
        step = rules.plan_row(row_rule, d)
        assert step.count_sql is not None
        out.append(FormQuery(row_rule.table, (step.description,), step.count_sql))
    return out


def results(t: Target, profile: Profile) -> list[dict[str, Any]]:
    """One ``masked`` result per masked column and row rule: passed when no value breaks the form."""
    out: list[dict[str, Any]] = []
    for q in queries(profile, t.dialect):
        row = t.query(q.sql, f"masked-form check of {q.table}")[0]
        for name, value in zip(q.names, row, strict=True):
            count = int(str(value or 0))
            out.append(
                {
                    "check": "masked",
                    "name": name,
                    "passed": count == 0,
                    "rows": count,
                    "detail": f"{count} row(s) not of the rule's form" if count else "",
                }
            )
    return out
