"""Sanitisation profiles, detectors, pseudonyms and error scrubbing: everything that needs no database."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from dataferry import sanitise
from dataferry.errors import ConfigError, NotReady
from dataferry.sanitise import checks, fakes, rules
from dataferry.sanitise.dialects import dialect_for
from dataferry.sanitise.profile import Profile, load
from dataferry.sanitise.schema import Column, Schema, coverage
from dataferry.sanitise.scrub import scrub

SALT = "unit-test-salt-0123456789"

MINIMAL = """
salt_env = "FERRY_TEST_SALT"
strict = true
[tables.people]
keep = ["id"]
mask = { email = "fake_email" }
"""


def write(tmp_path: Path, text: str, name: str = "profile.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- profile validation --------------------------------------------------------------------------


def test_minimal_profile_loads_with_hash_and_path(tmp_path: Path) -> None:
    profile = load(write(tmp_path, MINIMAL))
    assert profile.strict and profile.salt_env == "FERRY_TEST_SALT"
    assert profile.tables["people"].rules()["email"].rule == "fake_email"
    assert len(profile.sha256) == 64 and profile.name == "profile.toml"


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ('[tables.t]\nmask = { a = "constant" }', "constant rule needs value"),
        ('[tables.t]\nmask = { a = { rule = "null", value = 1 } }', "value is only for constant"),
        ('[tables.t]\nmask = { a = { rule = "substitute", source = "b" } }', "substitute rule needs"),
        ('[tables.t]\nmask = { a = { rule = "redact", length = 3 } }', "length is only for hash"),
        ('[tables.t]\nmask = { a = "shuffle" }', "Input should be"),
        ('[tables.t]\nkeep = ["a"]\ndrop = ["a"]', "classified twice"),
        ('[tables.t]\nmask = { a = "fake_name" }', "need a salt"),
        ('salt_env = "not a name!"', "not an environment variable name"),
        ('[[rows]]\ntable = "t"', "exactly one of"),
        ('[[rows]]\ntable = "t"\nkeep_newer_than_days = 3', "go together"),
        ('[[checks]]\nname = "x"\nsql = "SELECT 1; DROP TABLE t"', "one query"),
        ('[scan]\npatterns = { nino = "([" }', "not a regular expression"),
        ('[scan]\nallowed_email_domains = ["not a domain"]', "not domain names"),
        (
            'salt_env = "S"\n[tables.t]\nkeep = ["a"]\nmask = { b = { rule = "substitute", source = "c", fake = "hash" } }',
            "source 'c'",
        ),
        ("unknown_key = 1", "unknown key"),
        ('strict = "yes"', "write true or false"),
        ('[scan]\nenabled = "no"', "write true or false"),
    ],
)
def test_bad_profiles_are_config_errors_naming_the_problem(
    tmp_path: Path, snippet: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, snippet))
    assert expected in info.value.message
    assert info.value.exit_code == 2


def test_problem_is_reported_with_its_line(tmp_path: Path) -> None:
    text = 'strict = true\n\n[tables.t]\nkeep = ["a"]\nmask = { b = "constant" }\n'
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, text))
    assert "profile.toml:3" in info.value.message or "profile.toml:5" in info.value.message


def test_missing_profile_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(write(tmp_path, "strict = = true"))


def test_scripts_are_relative_to_the_profile_and_part_of_its_hash(tmp_path: Path) -> None:
    (tmp_path / "sql").mkdir()
    script = tmp_path / "sql" / "one.sql"
    script.write_text("DELETE FROM t;")
    path = write(tmp_path, 'scripts = ["sql/one.sql"]\n')
    first = load(path)
    assert first.script_paths() == [script.resolve()]
    script.write_text("DELETE FROM t WHERE 1 = 0;")
    assert load(path).sha256 != first.sha256
    script.unlink()
    with pytest.raises(ConfigError, match="cannot be read"):
        load(path)


def test_salt_comes_from_the_named_variable_and_must_be_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = load(write(tmp_path, MINIMAL))
    with pytest.raises(NotReady, match="FERRY_TEST_SALT is not set"):
        sanitise.load_salt(profile)
    monkeypatch.setenv("FERRY_TEST_SALT", "short")
    with pytest.raises(NotReady, match="shorter than") as info:
        sanitise.load_salt(profile)
    assert "short" not in info.value.message.replace("shorter", "")
    monkeypatch.setenv("FERRY_TEST_SALT", SALT)
    assert sanitise.load_salt(profile) == SALT


def test_allowed_domains_always_include_the_fake_domain(tmp_path: Path) -> None:
    profile = load(
        write(tmp_path, 'fake_email_domain = "Fake.Test"\n[scan]\nallowed_email_domains = ["gov.uk"]')
    )
    assert profile.allowed_domains() == ["gov.uk", "fake.test"]


# -- pseudonyms ----------------------------------------------------------------------------------


def test_pseudonyms_are_deterministic_and_depend_on_the_salt() -> None:
    a = fakes.fake_email(SALT, "ann@example.net", "example.com")
    assert a == fakes.fake_email(SALT, "ann@example.net", "example.com")
    assert a != fakes.fake_email(SALT + "x", "ann@example.net", "example.com")
    assert re.fullmatch(r"anon-[0-9a-f]{24}@example\.com", a)
    assert fakes.fake_name(SALT, "Ann Smith").split(" ")[0] in fakes.FIRST_NAMES
    assert re.fullmatch(r"07700 900\d{3}", fakes.fake_phone(SALT, "07911 123456"))
    assert fakes.fake_address(SALT, "1 Real Street").split(", ")[1] in fakes.TOWNS
    assert len(fakes.keyed_hash(SALT, "x", 10)) == 10
    assert fakes.redact("héllo") == "*****"


def test_fake_email_keeps_distinct_inputs_distinct() -> None:
    values = {fakes.fake_email(SALT, f"user{i}@mail.test", "example.com") for i in range(20000)}
    assert len(values) == 20000


# -- detectors -----------------------------------------------------------------------------------

EMAIL_CASES = [
    ("ann@gmail.com", True),
    ("Contact ANN@GMAIL.COM today", True),
    ("a.b+tag@digital.cabinet-office.gov.uk", True),
    ("mailto:<bob@x.co.uk>", True),
    ("x@notexample.com", True),
    ("x@example.community", True),
    ("x@example.com.evil.org", True),
    ("anon-0123abcd@example.com", False),
    ("x@sub.example.com", False),
    ("Write to x@example.com.", False),
    ("X@EXAMPLE.ORG", False),
    ("no address here", False),
    ("user@localhost", False),
    # internationalised addresses (non-ASCII local parts and domains)
    ("józef.nowak@bücher.de", True),
    ("write to 山田@例え.jp today", True),
    ("Ünal@gmail.com", True),
    ("x@bücher.example.com", False),
    ("józef@example.com", False),
    ("“@someone” said hello", False),
    ("résumé @ café.", False),
    ("山田@例え", False),
    # the clean_address shortcut (one '@', then the fakes' domain at the very end) must not fire on
    # these: another '@' before it (counted in characters, not bytes, on every engine)
    ("ééééééééé@evil.org@example.com", True),
    ("x@gmail.com y@example.com", True),
    ("a@b.co@example.com", True),
    ("write to anon-3f2a@example.com", False),
]
PHONE_CASES = [
    ("07911 123456", True),
    ("+44 7911 123456", True),
    ("+447911123456", True),
    ("call 020 7946 0123 now", True),
    ("(01632) 960123", True),
    ("+1 415 555 0100", True),
    ("07700 900123", False),
    ("+44 7700 900123", False),
    ("Call 07700 900999.", False),
    ("order 1207911123456", False),
    ("07911123456789", False),
    ("anon-a07123456789bcd0e1f2a3b4@example.com", False),
    ("550e8400-e29b-41d4-a716-07911234567f", False),
    ("tel:07911123456;", True),
    ("2026-11-20 01:02:03", False),
    # the clean_fake_phone shortcut (exactly "07700 900" and three ASCII digits) must not fire on these
    ("07700 9001 2", True),
    ("07700 900 123", True),
    ("07700 900ab1", False),
    ("version 3.0.1, 12345", False),
    # UK numbers with the 0044 prefix, dots, or a bare 44
    ("0044 7911 223344", True),
    ("call 00447911223344.", True),
    ("07911.334.455", True),
    ("020.7946.0123", True),
    ("447911654321", True),
    ("0044 7700 900123", False),
    ("447700900123", False),
    ("on 01.02.2026 10:11", False),
    ("10.0.0.1", False),
    ("id 4479116543219", False),
    ("1447911654321", False),
]


def test_email_detector_respects_the_allow_list() -> None:
    pattern = checks.email_pattern(["example.com", "example.org"])
    found = {text: bool(re.search(pattern, text, re.IGNORECASE)) for text, _ in EMAIL_CASES}
    assert found == dict(EMAIL_CASES)


def test_phone_detector_skips_fiction_numbers_and_long_digit_strings() -> None:
    found = {text: bool(re.search(checks.PHONE_PATTERN, text, re.IGNORECASE)) for text, _ in PHONE_CASES}
    assert found == dict(PHONE_CASES)


def test_scan_shortcuts_never_change_an_answer() -> None:
    """``clean`` values never match and every match satisfies ``needs`` and ``prefilter``: checked on
    random strings built from the characters that matter (digits, hex, separators, addresses)."""
    rng = random.Random(1)
    pieces = ["0", "7", "07700", " 900", "+44", "(0)", "-", ".", " ", "a", "f", "@", "example.com", "gmail.com",
              "anon-", "0123456789", "(", ")", "x", "\n", "ü", "0044", "447", "山"]  # fmt: skip
    values = ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 12))) for _ in range(20000)]
    values += [fakes.fake_phone(SALT, str(i)) for i in range(200)] + [
        fakes.fake_email(SALT, str(i), "example.com") for i in range(200)
    ]
    profile = Profile()
    for det in checks.detectors(profile):
        full = re.compile(det.pattern, re.I)
        for v in values:
            if not full.search(v):
                continue
            assert det.needs is None or det.needs in v, (det.name, v)
            assert det.prefilter is None or re.search(det.prefilter, v, re.I), (det.name, v)
            assert det.clean is None or not re.search(det.clean, v, re.I), (det.name, v)
            assert det.clean_address is None or not _one_address_at(v, det.clean_address), (det.name, v)
            assert not det.clean_fake_phone or not _fake_phone_shape(v), (det.name, v)
    # and the clean shortcuts do fire on our own fakes, which fill the columns scanned most
    clean = {det.name: re.compile(det.clean or "(?!)", re.I) for det in checks.detectors(profile)}
    assert all(clean["email"].search(fakes.fake_email(SALT, str(i), "example.com")) for i in range(200))
    assert all(clean["phone"].search(fakes.fake_phone(SALT, str(i))) for i in range(200))
    email = next(det for det in checks.detectors(profile) if det.name == "email")
    assert email.clean_address == "example.com"
    assert all(
        _one_address_at(fakes.fake_email(SALT, str(i), "example.com"), "example.com") for i in range(200)
    )
    assert next(det for det in checks.detectors(profile) if det.name == "phone").clean_fake_phone
    assert all(_fake_phone_shape(fakes.fake_phone(SALT, str(i))) for i in range(200))


def _fake_phone_shape(value: str) -> bool:
    """What ``Dialect.prefix_then_digits(x, FAKE_PHONE_PREFIX, 3)`` tests in SQL."""
    prefix = fakes.FAKE_PHONE_PREFIX
    tail = value[len(prefix) :]
    return value.startswith(prefix) and len(tail) == 3 and all("0" <= c <= "9" for c in tail)


def _one_address_at(value: str, domain: str) -> bool:
    """What ``Dialect.one_address_at`` tests in SQL: ends with '@' + domain exactly, no other '@'."""
    return value.endswith("@" + domain) and value.count("@") == 1


def test_clean_address_is_exact_and_counts_every_at() -> None:
    """The shortcut holds only for the exact lower-case domain at the very end and a single '@'."""
    assert _one_address_at("anon-0123@example.com", "example.com")
    for value in (
        "anon-0123@EXAMPLE.COM",
        "a@b@example.com",
        "x@example.com.",
        "x@éxample.com",
        "x@example.co",
    ):
        assert not _one_address_at(value, "example.com"), value


def test_our_own_fakes_pass_the_scan() -> None:
    email = checks.email_pattern(["example.com"])
    for i in range(500):
        assert not re.search(email, fakes.fake_email(SALT, str(i), "example.com"), re.I)
        assert not re.search(checks.PHONE_PATTERN, fakes.fake_phone(SALT, str(i)), re.I)
        assert not re.search(checks.PHONE_PATTERN, fakes.fake_address(SALT, str(i)), re.I)


def test_scan_results_carry_counts_not_values() -> None:
    profile = Profile()
    results = checks.scan_results(
        profile,
        {
            ("t", "c", "email"): 3,
            ("t", "d", "email"): 0,
            ("t", "c", "phone"): 0,
            ("view v", checks.DEFINITION, "email"): 1,
        },
    )
    email = next(r for r in results if r["name"] == "email")
    assert email == {
        "check": "scan",
        "name": "email",
        "columns_scanned": 2,
        "definitions_scanned": 1,
        "passed": False,
        "findings": [
            {"table": "t", "column": "c", "count": 3},
            {"table": "view v", "column": "definition", "count": 1},
        ],
    }
    assert checks.failures(results) == ["scan found email in t.c (3), view v.definition (1)"]


def test_definitions_are_scanned_with_the_same_detectors() -> None:
    rows: list[tuple[object, ...]] = [
        ("view a", "SELECT 1 WHERE x <> 'ann@gmail.com'"),
        ("view b", "SELECT 'anon-' || id || '@example.com'"),
        ("function c", "BEGIN RETURN '07911 123456'; END"),
        ("comment on table d", None),
    ]
    counts = checks.scan_definitions(Profile(scan={"skip": ["function c"]}), rows)
    assert {k: n for k, n in counts.items() if n} == {("view a", "definition", "email"): 1}
    assert checks.scan_definitions(Profile(scan={"enabled": False}), rows) == {}


def test_a_partition_named_in_a_profile_is_reported_with_what_to_do() -> None:
    schema = Schema(
        tables={"people": [Column("id", "integer", False)]},
        kinds={"people": "table", "people_2024": "partition"},
    )
    profile = Profile(tables={"people": {"keep": ["id"]}, "people_2024": {"keep": ["id"]}})
    assert coverage(profile, schema).vanished == [
        "people_2024 (a partition: classify its parent table instead)"
    ]


def test_truncated_tables_are_checked_empty_after_the_rules() -> None:
    profile = Profile(
        rows=[
            {"table": "sessions", "truncate": True},
            {"table": "users", "delete_where": "id NOT IN (SELECT user_id FROM orders)"},
        ]
    )
    assert rules.removed_rows_checks(profile, dialect_for("postgresql")) == [
        ("rows sessions: truncate", 'SELECT count(*) FROM "sessions"')
    ]  # a delete_where may rightly match more rows after later rules: not checked again
    result = {"check": "rows", "name": "rows sessions: truncate", "passed": False, "rows": 3}
    assert checks.failures([result]) == ["rows sessions: truncate: 3 row(s) still there after the rules"]


# -- scrubbing -----------------------------------------------------------------------------------


def test_scrub_removes_values_context_lines_and_secrets_but_keeps_names() -> None:
    pg = (
        "SQL script on app failed (exit 3): psql:<stdin>:2: ERROR:  duplicate key value violates unique "
        'constraint "people_email_key"\nDETAIL:  Key (email)=(ann@gmail.com) already exists.\n'
        f"LINE 1: SET dataferry.salt = '{SALT}'\n        ^"
    )
    out = scrub(pg, {"people", "email"}, [SALT])
    assert "ann@gmail.com" not in out and SALT not in out and "DETAIL" not in out
    assert '"people_email_key"' in out and "duplicate key" in out
    maria = "ERROR 1062 (23000) at line 2: Duplicate entry 'ann@gmail.com' for key 'email'"
    out = scrub(maria, {"email"})
    assert "ann@gmail.com" not in out and "'email'" in out
    assert "Ann" not in scrub('invalid input syntax for type integer: "Ann Smith"', {"people"})
    assert "Ann" not in scrub('invalid input syntax for type integer: "Ann"', {"people"})


def test_the_utf8_test_on_hex_digits_agrees_with_a_strict_decoder() -> None:
    """PostgreSQL decodes bytea as UTF-8 only where this test says so (convert_from would raise)."""
    from dataferry.sanitise.dialects.postgresql import _UTF8_HEX

    rng = random.Random(3)
    samples = [rng.randbytes(rng.randint(0, 6)) for _ in range(20000)]
    samples += [
        t.encode() for t in ("józef@bücher.de", "山田@例え.jp", "\U0001f600", "\ud7ff", "\ue000", "a\x00")
    ]
    samples += [b"\xed\xa0\x80", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80"]
    for raw in samples:
        try:
            raw.decode("utf-8")
            valid = b"\x00" not in raw
        except UnicodeDecodeError:
            valid = False
        assert bool(re.match(_UTF8_HEX, raw.hex())) == valid, raw


def test_string_shortcuts_are_used_where_they_were_measured_to_pay() -> None:
    """PostgreSQL's scan uses clean_address and clean_fake_phone; MariaDB's does not (they made its
    scan slower, bench/sanitise/README.md), and both keep every regular expression."""
    email, phone = checks.detectors(Profile())[:2]
    pg, my = dialect_for("postgresql"), dialect_for("mysql")
    assert "right(" in checks._match_sum(pg, '"c"', email) and "char_length(" in checks._match_sum(
        pg, '"c"', phone
    )
    assert "RIGHT(" not in checks._match_sum(my, "`c`", email)
    assert "CHAR_LENGTH(" not in checks._match_sum(my, "`c`", phone)
    for d, col in ((pg, '"c"'), (my, "`c`")):
        assert d.regex(col, email.pattern) in checks._match_sum(d, col, email)
        assert d.regex(col, phone.pattern) in checks._match_sum(d, col, phone)
