"""The checks that gate publication: SQL queries that must return no rows, and a scan of every text
column for personal data left behind.

Results carry names, tables, columns and counts, never a value: a check is wrapped as
``SELECT count(*) FROM (<query>)`` and the scan sums matches per column, so no row leaves the server.

The scan's regular expressions use the subset PostgreSQL (ARE), MariaDB (PCRE) and Python agree on,
including ``(?!...)`` lookahead; matching ignores case. The tests run one corpus through all three.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from dataferry.sanitise import fakes
from dataferry.sanitise.dialects import Dialect
from dataferry.sanitise.profile import Profile
from dataferry.sanitise.schema import Schema

#: PII-scan results carry at most this many findings each (the count of columns is always complete)
MAX_FINDINGS = 50


@dataclass(frozen=True)
class Detector:
    """A named regular expression, with optional shortcuts that never change the answer: ``clean``
    matches only whole values that cannot contain a match (a column of our own fakes), and ``needs``
    (a substring) and ``prefilter`` (a simple regular expression) hold for every value that does.
    ``clean_address`` is a domain: a value whose one and only ``@`` starts ``'@' + domain`` at its
    very end cannot contain a match either, and it is tested with string functions, cheaper than
    any regular expression (Dialect.one_address_at). ``clean_fake_phone``: a value that is exactly
    ``fakes.FAKE_PHONE_PREFIX`` and three digits (our fake_phone) cannot match the phone detector
    (it is in the drama range), tested the same way (Dialect.prefix_then_digits). Both are used
    where they were measured to pay (``Dialect.string_shortcuts``: PostgreSQL).
    Regular expressions with lookahead are several times slower than these in PostgreSQL and MariaDB,
    and most scanned values are decided by the shortcuts."""

    name: str
    pattern: str
    needs: str | None = None
    prefilter: str | None = None
    clean: str | None = None
    clean_address: str | None = None
    clean_fake_phone: bool = False


def _allowed(allowed_domains: list[str]) -> str:
    assert allowed_domains, "the profile always allows the domain of its own fakes"
    return "|".join(d.replace(".", r"\.") for d in allowed_domains)  # validated: [a-z0-9.-] only


#: Any character outside ASCII (the letters of internationalised addresses: ``józef@bücher.de``,
#: ``山田@例え.jp``). Written as a negated ASCII range because ``\xhh`` is the one escape PostgreSQL's
#: ARE, PCRE and Python read alike.
NON_ASCII = r"[^\x01-\x7f]"
#: An ASCII character that cannot continue a domain name (not a letter, digit, '.' or '-').
_NOT_DOMAIN = r"[\x01-\x2c\x2f\x3a-\x40\x5b-\x60\x7b-\x7f]"
_LABEL = rf"(?:[a-z0-9-]|{NON_ASCII})+"


def email_clean(allowed_domains: list[str]) -> str:
    """A whole value that is exactly one allowed address (it has one ``@``, followed by an allowed
    domain and the end, so ``email_pattern`` cannot match in it)."""
    return rf"^[a-z0-9._%+-]+@(?:[a-z0-9-]+\.)*(?:{_allowed(allowed_domains)})\.?$"


def email_pattern(allowed_domains: list[str]) -> str:
    """An address whose domain is not one of ``allowed_domains`` (or a subdomain of one); local
    parts and domain labels may hold non-ASCII letters (internationalised addresses).

    The lookahead right after ``@`` rejects allowed domains followed by the end of the address (a
    trailing full stop of a sentence is allowed); ``example.com.evil.org`` is still found.
    """
    allowed = _allowed(allowed_domains)
    return (
        rf"(?:[a-z0-9._%+-]|{NON_ASCII})+@"
        rf"(?!(?:{_LABEL}\.)*(?:{allowed})\.?(?:{_NOT_DOMAIN}|$))"
        rf"{_LABEL}(?:\.{_LABEL})*\.(?:[a-z]|{NON_ASCII}){{2,}}"
    )


#: UK numbers (0, +44 or 0044, then 9-10 more digits with optional spaces, hyphens or brackets;
#: or dotted as 07911.334.455; or a bare 447 mobile) and international ones (+ and 8-15 digits),
#: standing alone (not inside a longer run of letters or digits: hex digests, UUIDs and our own
#: pseudonyms are full of digit runs), and not in Ofcom's drama range 07700 900xxx (which our
#: fake_phone uses). Dots are allowed only in the three dotted UK groupings, so dates and version
#: numbers (01.02.2026, 3.0.1) are not numbers.
PHONE_PATTERN = (
    r"(?:^|[^0-9a-z+])"
    r"(?!(?:\+44\s?|00\s?44\s?|44|0)7700[\s.]?900\d{3}(?:[^0-9a-z]|$))"
    r"(?:(?:\+44\s?(?:\(0\)\s?)?|00\s?44\s?(?:\(0\)\s?)?|\(?0)[1-9](?:[\s-]?\)?[\s-]?\d){8,9}"
    r"|0[1-9](?:\d{3}\.\d{3}\.\d{3}|\d\.\d{4}\.\d{4}|\d{2}\.\d{3}\.\d{4})"
    r"|447\d{9}"
    r"|\+[1-9](?:[\s.-]?\d){7,14})"
    r"(?:[^0-9a-z]|$)"
)


#: Every PHONE_PATTERN match, without its boundaries, is 9 or more characters of ``[0-9\s().+-]``
#: starting with a digit, "+" or "(": a necessary condition, and a cheap one to test.
PHONE_PREFILTER = r"[0-9+(][0-9\s().+-]{8}"
#: A whole value that is one number of the drama range, as fake_phone writes them.
PHONE_CLEAN = r"^(?:\+44\s?|0)7700\s?900[0-9]{3}$"


def detectors(profile: Profile) -> list[Detector]:
    """The scan's detectors for this profile."""
    found = []
    if profile.scan.emails:
        domains = profile.allowed_domains()
        found.append(
            Detector(
                "email",
                email_pattern(domains),
                needs="@",
                clean=email_clean(domains),
                # allowed_domains() always holds the domain of our fakes: the one address of a
                # value ending in it is allowed, so the pattern cannot match
                clean_address=profile.fake_email_domain,
            )
        )
    if profile.scan.phones:
        found.append(
            Detector(
                "phone", PHONE_PATTERN, prefilter=PHONE_PREFILTER, clean=PHONE_CLEAN, clean_fake_phone=True
            )
        )
    found += [Detector(name, pattern) for name, pattern in profile.scan.patterns.items()]
    return found


@dataclass(frozen=True)
class ScanQuery:
    """One table's scan: a single pass that sums matches of every detector in every text column."""

    table: str
    cells: tuple[tuple[str, str], ...]  # (column, detector) per result column
    sql: str


def scan_queries(profile: Profile, schema: Schema, d: Dialect) -> list[ScanQuery]:
    """The scan as one query per table with text columns."""
    if not profile.scan.enabled:
        return []
    dets = detectors(profile)
    skip = set(profile.scan.skip)
    out = []
    for table, columns in schema.tables.items():
        if table in skip:
            continue
        cells: list[tuple[str, str]] = []
        sums: list[str] = []
        for column in columns:
            if not column.is_text or f"{table}.{column.name}" in skip:
                continue
            for det in dets:
                cells.append((column.name, det.name))
                sums.append(_match_sum(d, d.scan_text(d.ident(column.name), column.data_type), det))
        if cells:
            source = d.scan_from(d.table(table), schema.kinds.get(table, "table"))
            out.append(ScanQuery(table, tuple(cells), f"SELECT {', '.join(sums)} FROM {source}"))
    return out


#: the "column" of a piece of schema text in scan results: ``view contacts.definition (1)``
DEFINITION = "definition"


def scan_definitions(profile: Profile, rows: list[tuple[object, ...]]) -> dict[tuple[str, str, str], int]:
    """``{(object, DEFINITION, detector): 0 or 1}`` for the schema text of ``definitions_query``,
    matched here in Python (the text is small, and the patterns mean the same in Python)."""
    if not profile.scan.enabled:
        return {}
    dets = [(det.name, re.compile(det.pattern, re.IGNORECASE)) for det in detectors(profile)]
    counts: dict[tuple[str, str, str], int] = {}
    for obj, text in rows:
        name = str(obj)
        if name in profile.scan.skip or text is None:
            continue
        for det, pattern in dets:
            key = (name, DEFINITION, det)
            counts[key] = max(counts.get(key, 0), int(pattern.search(str(text)) is not None))
    return counts


def _match_sum(d: Dialect, col: str, det: Detector) -> str:
    """Matches of one detector in one column. The shortcuts come first, cheapest first, in a CASE
    (whose order every engine keeps; the order of AND's operands is not guaranteed)."""
    arms = []
    if cannot := d.holds_no_text(col):
        arms.append(f"WHEN {cannot} THEN 0")
    if det.needs:
        arms.append(f"WHEN NOT ({d.contains(d.as_text(col), d.string(det.needs))}) THEN 0")
    if det.clean_address and d.string_shortcuts:
        arms.append(f"WHEN {d.one_address_at(col, det.clean_address)} THEN 0")
    if det.clean_fake_phone and d.string_shortcuts:
        arms.append(f"WHEN {d.prefix_then_digits(col, fakes.FAKE_PHONE_PREFIX, 3)} THEN 0")
    if det.prefilter:
        arms.append(f"WHEN NOT ({d.regex(col, det.prefilter)}) THEN 0")
    if det.clean:
        arms.append(f"WHEN {d.regex(col, det.clean)} THEN 0")
    arms.append(f"WHEN {d.regex(col, det.pattern)} THEN 1")
    return f"COALESCE(SUM(CASE {' '.join(arms)} ELSE 0 END), 0)"


def check_query(sql: str) -> str:
    """A check's query wrapped so only its row count comes back."""
    return f"SELECT count(*) FROM ({sql}) AS dataferry_check"


def scan_results(profile: Profile, counts: dict[tuple[str, str, str], int]) -> list[dict[str, Any]]:
    """One result per detector from ``{(table, column, detector): matches}``."""
    results = []
    for det in detectors(profile):
        mine = {(t, c): n for (t, c, name), n in counts.items() if name == det.name}
        findings = [{"table": t, "column": c, "count": n} for (t, c), n in sorted(mine.items()) if n > 0]
        results.append(
            {
                "check": "scan",
                "name": det.name,
                "columns_scanned": sum(1 for _, c in mine if c != DEFINITION),
                "definitions_scanned": sum(1 for _, c in mine if c == DEFINITION),
                "passed": not findings,
                "findings": findings[:MAX_FINDINGS],
            }
        )
    return results


def failures(results: list[dict[str, Any]]) -> list[str]:
    """One line per failed result: names and counts only."""
    lines = []
    for r in results:
        if r["passed"]:
            continue
        if r["check"] == "sql":
            lines.append(f"check {r['name']!r} returned {r['rows']} row(s)")
        elif r["check"] == "rows":
            lines.append(f"{r['name']}: {r['rows']} row(s) still there after the rules")
        elif r["check"] == "scan":
            where = ", ".join(f"{f['table']}.{f['column']} ({f['count']})" for f in r["findings"][:10])
            lines.append(f"scan found {r['name']} in {where}")
        else:
            lines.append(f"{r['check']} {r.get('name', '')}: {r.get('detail', 'failed')}")
    return lines
