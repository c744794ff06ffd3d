"""Sanitisation against real SQLite, PostgreSQL and MariaDB: every rule kind, consistent and unique
pseudonyms, the scan, and the gate (a failing script, check or unclassified column leaves the live
database and the stores untouched; a requires_sanitised store refuses unsanitised artifacts).

The same scenario runs on each engine. Expected values are computed from the seeded data with the
Python reference in ``dataferry.sanitise.fakes``, never written out by hand.
"""

from __future__ import annotations

import random
import re
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dataferry import ops
from dataferry.cli import cli
from dataferry.config import Config, database_ref, load
from dataferry.engines import RunsSql, get_engine
from dataferry.errors import Refused, SanitisationFailed
from dataferry.progress import NullReporter
from dataferry.sanitise import (
    check_live,
    fakes,
    plan_live,
)
from dataferry.sanitise import checks as scan_checks
from dataferry.sanitise.dialects import dialect_for
from dataferry.sanitise.execution import ChecksFailed, Target, dry_run, sanitise
from dataferry.sanitise.profile import load as load_profile
from servers import MariaDbServer, PgServer
from signing_keys import signed_config
from unit.test_sanitise_profile import EMAIL_CASES, PHONE_CASES

pytestmark = pytest.mark.integration

SALT = "integration-salt-'quote'-\\backslash-0123456789"
SALT_ENV = "FERRY_TEST_SALT"
PASSWORD_ENV = "FERRY_TEST_DB_PASSWORD"
DOMAINS = ["gmail.com", "outlook.com", "btinternet.com", "yahoo.co.uk"]
FIRST = ["Ann", "Bilal", "Cerys", "Dmitri", "Efua", "Fionn"]
LAST = ["Okafor", "Nowak", "Price", "Rahman", "Sutherland"]
SEED_SUBSCRIBERS = 24

# -- the scenario ---------------------------------------------------------------------------------

SCHEMA = """
CREATE TABLE subscribers (
  id INTEGER PRIMARY KEY, address VARCHAR(255) NOT NULL UNIQUE, name VARCHAR(255), phone VARCHAR(64),
  home VARCHAR(255), token VARCHAR(64) UNIQUE, notes VARCHAR(255), status VARCHAR(32),
  password_digest VARCHAR(255), created_at {ts} NOT NULL);
CREATE TABLE emails (
  id INTEGER PRIMARY KEY, address VARCHAR(255) NOT NULL, subject VARCHAR(255), body TEXT,
  created_at {ts} NOT NULL);
CREATE TABLE sessions (id INTEGER PRIMARY KEY, data VARCHAR(255));
CREATE TABLE audit (id INTEGER PRIMARY KEY, who VARCHAR(255), happened_at {ts});
"""

PROFILE = """
description = "test scenario"
salt_env = "FERRY_TEST_SALT"
strict = true
scripts = [{scripts}]

[[rows]]
table = "emails"
keep_newer_than_days = 1
column = "created_at"

[[rows]]
table = "sessions"
truncate = true

[[rows]]
table = "audit"
delete_where = "who <> 'system'"

[tables.subscribers]
keep = ["id", "created_at"]
drop = ["password_digest"]
[tables.subscribers.mask]
address = "fake_email"
name = "fake_name"
phone = "fake_phone"
home = "fake_address"
token = {{ rule = "hash", length = 32 }}
notes = "redact"
status = {{ rule = "constant", value = "imported" }}
{extra_subscriber_rules}

[tables.emails]
keep = [{emails_keep}]
[tables.emails.mask]
address = "fake_email"
subject = {{ rule = "substitute", source = "address", fake = "fake_email" }}
{body_rule}

[tables.audit]
keep = ["id", "who", "happened_at"]

[[checks]]
name = "no password digests"
sql = "SELECT id FROM subscribers WHERE password_digest IS NOT NULL"
{extra_checks}
"""

BODY_RULE = 'body = { rule = "substitute", source = "address", fake = "fake_email" }'
#: a profile that forgets to pseudonymise email bodies: the scan must catch it
KEEP_BODY = {"emails_keep": '"id", "created_at", "body"', "body_rule": ""}


@dataclass
class Seed:
    """The personal data put in, to compute expectations and to look for leaks."""

    subscribers: list[dict[str, Any]] = field(default_factory=list)
    emails: list[dict[str, Any]] = field(default_factory=list)

    def personal_values(self) -> list[str]:
        """Every personal value seeded (none may appear in a report, manifest or message)."""
        out = []
        for s in self.subscribers:
            out += [v for k, v in s.items() if k in ("address", "name", "phone", "home", "token") and v]
        return out


def make_seed(rng_seed: int = 11) -> Seed:
    rng = random.Random(rng_seed)
    seed = Seed()
    now = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
    for i in range(1, SEED_SUBSCRIBERS + 1):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        address = f"{first}.{last}{i}@{rng.choice(DOMAINS)}".lower()
        seed.subscribers.append(
            {
                "id": i,
                "address": address,
                "name": None if i % 7 == 0 else f"{first} {last}",
                "phone": None if i % 5 == 0 else f"07{rng.randint(100, 999)} {rng.randint(100000, 999999)}",
                "home": f"{rng.randint(1, 99)} Real Street, Leeds",
                "token": uuid.UUID(int=rng.getrandbits(128)).hex,
                "notes": f"called on {first}'s mobile",
                "status": "active",
                "password_digest": "$2a$12$" + uuid.UUID(int=rng.getrandbits(128)).hex,
                "created_at": now - timedelta(days=rng.randint(2, 400)),
            }
        )
        for j, age in enumerate((timedelta(hours=2), timedelta(days=3))):
            seed.emails.append(
                {
                    "id": i * 10 + j,
                    "address": address,
                    "subject": f"Update for {address}",
                    "body": f"Dear {first},\nThere is an update.\nUnsubscribe {address} at any time.",
                    "created_at": now - age,
                }
            )
    return seed


def insert_sql(seed: Seed, literal: Callable[[object], str]) -> str:
    lines = []
    for s in seed.subscribers:
        cols = list(s)
        lines.append(
            f"INSERT INTO subscribers ({', '.join(cols)}) VALUES ({', '.join(literal(s[c]) for c in cols)});"
        )
    for e in seed.emails:
        cols = list(e)
        lines.append(
            f"INSERT INTO emails ({', '.join(cols)}) VALUES ({', '.join(literal(e[c]) for c in cols)});"
        )
    lines += [f"INSERT INTO sessions VALUES ({i}, 'session-{i}');" for i in range(1, 6)]
    lines += [
        "INSERT INTO audit VALUES (1, 'system', NULL);",
        "INSERT INTO audit VALUES (2, 'ann.okafor1@gmail.com', NULL);",
    ]
    return "\n".join(lines)


def sql_literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        value = value.strftime("%Y-%m-%d %H:%M:%S")
    return "'" + str(value).replace("'", "''") + "'"


# -- engines --------------------------------------------------------------------------------------


@dataclass
class Backend:
    """One engine under test: how to make databases on it and talk to it."""

    engine: str
    ts_type: str
    workdir: Path
    make_db: Callable[[str], str]  # name -> url (database created empty)
    execute: Callable[[str, str], None]  # (sql, url)
    names: Callable[[], set[str]]  # databases or files that exist (to find leftover shadows)
    password: str | None = None

    def runner(self) -> RunsSql:
        engine = get_engine(self.engine)
        assert isinstance(engine, RunsSql)
        return engine


def _sqlite_backend(tmp_path: Path) -> Backend:
    dbdir = tmp_path / "db"
    dbdir.mkdir()

    def make(name: str) -> str:
        sqlite3.connect(dbdir / f"{name}.db").close()
        return f"sqlite:///{dbdir / name}.db"

    def execute(sql: str, url: str) -> None:
        con = sqlite3.connect(url.removeprefix("sqlite:///"))
        con.executescript(sql)
        con.close()

    return Backend("sqlite", "TEXT", tmp_path, make, execute, lambda: {p.name for p in dbdir.iterdir()})


def _pg_backend(tmp_path: Path, pg: PgServer) -> Backend:
    created: list[str] = []

    def make(name: str) -> str:
        real = f"{name}_{uuid.uuid4().hex[:8]}"
        pg.create_db(real)
        created.append(real)
        return pg.dsn(real)

    def execute(sql: str, url: str) -> None:
        pg.psql(sql, url.rsplit("/", 1)[1])

    return Backend("postgresql", "timestamp", tmp_path, make, execute, pg.databases, pg.password)


def _mysql_backend(tmp_path: Path, my: MariaDbServer) -> Backend:
    def make(name: str) -> str:
        real = f"{name}_{uuid.uuid4().hex[:8]}"
        my.create_db(real)
        return my.url(real)

    def execute(sql: str, url: str) -> None:
        my.execute(sql, url.rsplit("/", 1)[1])

    return Backend("mysql", "DATETIME", tmp_path, make, execute, my.databases, my.password)


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    monkeypatch.setenv(SALT_ENV, SALT)
    if request.param == "sqlite":
        return _sqlite_backend(tmp_path)
    return server_backend(request.param, request, tmp_path, monkeypatch)


def server_backend(
    name: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Backend:
    """A PostgreSQL or MariaDB backend on the session's throwaway server, its password in the env."""
    if name == "postgresql":
        b = _pg_backend(tmp_path, request.getfixturevalue("pg_server"))
    else:
        b = _mysql_backend(tmp_path, request.getfixturevalue("mariadb_server"))
    monkeypatch.setenv(PASSWORD_ENV, b.password or "")
    return b


@dataclass
class World:
    """A configuration with production (raw), staging (requires sanitised) and integration
    (requires sanitised) environments, local stores, and the seeded production database."""

    backend: Backend
    cfg: Config
    seed: Seed
    urls: dict[str, str]

    def rows(self, env: str, table: str, columns: str = "*") -> list[tuple[object, ...]]:
        ref = database_ref(self.cfg, "app", env)
        return self.backend.runner().query(ref, f"SELECT {columns} FROM {table} ORDER BY id")

    def snapshot(self, env: str) -> list[list[tuple[object, ...]]]:
        return [self.rows(env, t) for t in ("subscribers", "emails", "sessions", "audit")]

    def store_keys(self, env: str) -> list[str]:
        """Keys of artifacts (state under ``_dataferry/``, such as what a restore made live, is not one)."""
        return sorted(
            o.key for o in ops.store_for(self.cfg, env).list("") if not o.key.startswith("_dataferry/")
        )


def write_profile(directory: Path, **parts: str) -> Path:
    values = {
        "scripts": "",
        "extra_subscriber_rules": "",
        "body_rule": BODY_RULE,
        "extra_checks": "",
        "emails_keep": '"id", "created_at"',
    }
    values.update(parts)
    path = directory / "app-sanitise.toml"
    path.write_text(PROFILE.format(**values), encoding="utf-8")
    return path


def make_world(backend: Backend, *, scratch: bool = False) -> World:
    seed = make_seed()
    urls = {env: backend.make_db(f"app_{env}") for env in ("production", "staging", "integration")}
    schema = SCHEMA.format(ts=backend.ts_type)
    for url in urls.values():
        backend.execute(schema, url)
    backend.execute(insert_sql(seed, sql_literal), urls["production"])
    backend.execute("INSERT INTO sessions VALUES (99, 'old staging data');", urls["staging"])
    write_profile(backend.workdir)
    pw = f', password_env = "{PASSWORD_ENV}"' if backend.password else ""
    text = f"""
[environments.production]
store = "stores/production"
[environments.staging]
store = "stores/staging"
requires_sanitised = true
[environments.integration]
store = "stores/integration"
requires_sanitised = true

[databases.app]
engine = "{backend.engine}"
sanitise = "app-sanitise.toml"
[databases.app.environments]
""" + "\n".join(f'{env} = {{ url = "{url}"{pw} }}' for env, url in urls.items())
    if scratch:
        text += f'\n[databases.app.scratch]\nurl = "{backend.make_db("app_scratch")}"\n' + (
            f'password_env = "{PASSWORD_ENV}"\n' if backend.password else ""
        )
        backend.execute(schema, text.rsplit('url = "', 1)[1].split('"', 1)[0])
    path = backend.workdir / "dataferry.toml"
    path.write_text(signed_config(text, backend.workdir), encoding="utf-8")
    return World(backend, load(path), seed, urls)


@pytest.fixture
def world(backend: Backend) -> World:
    return make_world(backend)


def direct_target(w: World, env: str = "production") -> Target:
    ref = database_ref(w.cfg, "app", env)
    return Target(w.backend.runner(), ref, None, dialect_for(w.backend.engine), (SALT,))


def assert_no_leak(text: str, seed: Seed) -> None:
    for value in seed.personal_values():
        assert value not in text, f"personal value leaked: {value[:3]}..."
    assert SALT not in text


# -- the rules -------------------------------------------------------------------------------------


def test_each_rule_kind_gives_the_reference_pseudonyms(world: World) -> None:
    profile = load_profile(world.backend.workdir / "app-sanitise.toml")
    result = sanitise(direct_target(world), profile, SALT, NullReporter())
    assert result.passed and result.profile_sha256 == profile.sha256
    assert "subscribers.address: fake_email" in result.rules

    got = world.rows(
        "production", "subscribers", "id, address, name, phone, home, token, notes, status, password_digest"
    )
    want = [
        (
            s["id"],
            fakes.fake_email(SALT, s["address"], "example.com"),
            s["name"] and fakes.fake_name(SALT, s["name"]),
            s["phone"] and fakes.fake_phone(SALT, s["phone"]),
            fakes.fake_address(SALT, s["home"]),
            fakes.keyed_hash(SALT, s["token"], 32),
            fakes.redact(s["notes"]),
            "imported",
            None,
        )
        for s in world.seed.subscribers
    ]
    assert [tuple(r) for r in got] == want

    recent = [e for e in world.seed.emails if e["id"] % 10 == 0]  # the old ones must be gone
    emails = world.rows("production", "emails", "id, address, subject, body")
    fake = {e["id"]: fakes.fake_email(SALT, e["address"], "example.com") for e in recent}
    assert [tuple(r) for r in emails] == [
        (
            e["id"],
            fake[e["id"]],
            e["subject"].replace(e["address"], fake[e["id"]]),
            e["body"].replace(e["address"], fake[e["id"]]),
        )
        for e in recent
    ]
    assert world.rows("production", "sessions") == []
    assert [r[1] for r in world.rows("production", "audit")] == ["system"]


def test_pseudonyms_are_consistent_across_tables_and_runs_and_stay_unique(world: World) -> None:
    profile = load_profile(world.backend.workdir / "app-sanitise.toml")
    sanitise(direct_target(world), profile, SALT, NullReporter())
    # a second run on another database with the same data gives the same pseudonyms
    world.backend.execute(insert_sql(world.seed, sql_literal), world.urls["integration"])
    sanitise(direct_target(world, "integration"), profile, SALT, NullReporter())
    first = world.rows("production", "subscribers", "id, address, name, token")
    assert first == world.rows("integration", "subscribers", "id, address, name, token")
    # across tables: every email still joins to its subscriber through the pseudonym
    addresses = {r[1] for r in first}
    assert {r[0] for r in world.rows("production", "emails", "address")} <= addresses
    assert len(addresses) == len(first) and len({r[3] for r in first}) == len(first)


def test_scan_matches_the_same_text_on_every_engine(world: World) -> None:
    """One corpus, one pattern set: PostgreSQL ARE, MariaDB PCRE and Python re must agree."""
    corpus = [text for text, _ in EMAIL_CASES + PHONE_CASES]
    url = world.urls["integration"]
    world.backend.execute("CREATE TABLE corpus (id INTEGER PRIMARY KEY, t VARCHAR(255));", url)
    world.backend.execute(
        "\n".join(f"INSERT INTO corpus VALUES ({i}, {sql_literal(t)});" for i, t in enumerate(corpus)), url
    )
    d = dialect_for(world.backend.engine)
    email = scan_checks.email_pattern(["example.com", "example.org"])
    sql = (
        f"SELECT id, CASE WHEN {d.regex('t', email)} THEN 1 ELSE 0 END, "
        f"CASE WHEN {d.regex('t', scan_checks.PHONE_PATTERN)} THEN 1 ELSE 0 END FROM corpus ORDER BY id"
    )
    got = direct_target(world, "integration").query(sql, "corpus")
    expected = [
        (i, int(bool(re.search(email, t, re.I))), int(bool(re.search(scan_checks.PHONE_PATTERN, t, re.I))))
        for i, t in enumerate(corpus)
    ]
    assert [tuple(int(str(v)) for v in r) for r in got] == expected
    # the scan's shortcuts (needs, prefilter, clean) never change a row's answer
    profile = load_profile(
        write_profile(
            world.backend.workdir,
            extra_checks='[scan]\nallowed_email_domains = ["example.com", "example.org"]',
        )
    )
    sums = ", ".join(scan_checks._match_sum(d, "t", det) for det in scan_checks.detectors(profile))
    via_scan = direct_target(world, "integration").query(
        f"SELECT id, {sums} FROM corpus GROUP BY id ORDER BY id", "corpus"
    )
    assert [tuple(int(str(v)) for v in r) for r in via_scan] == expected
    assert [e for _, e, _ in expected[: len(EMAIL_CASES)]] == [int(m) for _, m in EMAIL_CASES]
    assert [p for _, _, p in expected[len(EMAIL_CASES) :]] == [int(m) for _, m in PHONE_CASES]
    # the clean_address shortcut, in SQL, is exactly "ends with '@example.com', no other '@'"
    shortcut = d.one_address_at("t", "example.com")
    fired = direct_target(world, "integration").query(
        f"SELECT id, CASE WHEN {shortcut} THEN 1 ELSE 0 END FROM corpus ORDER BY id", "corpus"
    )
    want = [(i, int(t.endswith("@example.com") and t.count("@") == 1)) for i, t in enumerate(corpus)]
    assert [tuple(int(str(v)) for v in r) for r in fired] == want
    assert any(w for _, w in want)  # it does fire, on the corpus's own fakes
    # and clean_fake_phone: exactly fakes.FAKE_PHONE_PREFIX and three ASCII digits
    phone = d.prefix_then_digits("t", fakes.FAKE_PHONE_PREFIX, 3)
    fired = direct_target(world, "integration").query(
        f"SELECT id, CASE WHEN {phone} THEN 1 ELSE 0 END FROM corpus ORDER BY id", "corpus"
    )
    prefix = fakes.FAKE_PHONE_PREFIX
    want = [
        (i, int(t.startswith(prefix) and len(t) == len(prefix) + 3 and all("0" <= c <= "9" for c in t[-3:])))
        for i, t in enumerate(corpus)
    ]
    assert [tuple(int(str(v)) for v in r) for r in fired] == want
    assert any(w for _, w in want)


# -- the gate, through ops.restore / ops.backup ---------------------------------------------------


def backup_production(w: World) -> str:
    result = ops.backup(w.cfg, "app", "production")
    assert not result.manifest.sanitised
    return result.manifest.id


def restore_staging(w: World, *, sanitise: bool = False) -> ops.RestoreResult:
    req = ops.RestoreRequest(database="app", environment="staging", source="production", sanitise=sanitise)
    return ops.restore(ops.plan_restore(w.cfg, req))


def test_restore_into_a_requires_sanitised_environment_sanitises_on_the_shadow(world: World) -> None:
    backup_production(world)
    result = restore_staging(world)  # no --sanitise: staging requires sanitised data
    assert result.swapped and result.sanitisation is not None and result.sanitisation.passed
    addresses = [r[0] for r in world.rows("staging", "subscribers", "address")]
    assert addresses == [fakes.fake_email(SALT, s["address"], "example.com") for s in world.seed.subscribers]
    assert world.rows("staging", "sessions") == []  # the swap brought the sanitised copy, not old staging

    # staging is now sanitised: its backup is checked live and published as sanitised
    published = ops.backup(world.cfg, "app", "staging")
    manifest = published.manifest
    assert manifest.is_publishable_sanitised() and manifest.sanitisation is not None
    assert (
        manifest.sanitisation.profile_sha256
        == load_profile(world.backend.workdir / "app-sanitise.toml").sha256
    )
    assert {c["check"] for c in manifest.sanitisation.checks} == {"coverage", "sql", "scan", "masked"}
    assert_no_leak(manifest.model_dump_json(), world.seed)
    assert_no_leak(
        (world.backend.workdir / "stores" / "staging").joinpath(manifest.key).read_text(), world.seed
    )


@pytest.mark.parametrize(
    "breakage",
    [
        "failing script",
        "failing check",
        "scan finds emails",
        "custom pattern",
        "unclassified column",
        "vanished column",
    ],
)
def test_a_failure_stops_the_run_with_live_database_and_stores_untouched(world: World, breakage: str) -> None:
    backup_production(world)
    workdir = world.backend.workdir
    if breakage == "failing script":
        # re-inserting every subscriber violates the unique address: the database's own message
        # carries a personal value (PostgreSQL DETAIL, MariaDB "Duplicate entry"), which must not leak
        (workdir / "dup.sql").write_text(
            "INSERT INTO subscribers (id, address, created_at) SELECT id + 1000, address, created_at FROM subscribers;"
        )
        write_profile(workdir, scripts='"dup.sql"')
    elif breakage == "failing check":
        write_profile(
            workdir,
            extra_checks='[[checks]]\nname = "nobody imported"\nsql = "SELECT id FROM subscribers WHERE status = \'imported\'"',
        )
    elif breakage == "scan finds emails":
        write_profile(workdir, **KEEP_BODY)
    elif breakage == "custom pattern":  # audit.who keeps staff user names such as 'system'
        write_profile(
            workdir, extra_checks='[scan.patterns]\nstaff_user = "(?:^|[^a-z0-9])system(?:[^a-z0-9]|$)"'
        )
    elif breakage == "unclassified column":
        world.backend.execute(
            "ALTER TABLE subscribers ADD COLUMN nickname VARCHAR(64);", world.urls["production"]
        )
        backup_production(world)
    else:
        write_profile(workdir, extra_subscriber_rules='signon_uid = "hash"')
    before = world.snapshot("staging")
    names_before = world.backend.names()

    with pytest.raises(SanitisationFailed) as info:
        restore_staging(world)

    assert info.value.exit_code == 8
    assert world.snapshot("staging") == before  # live untouched
    assert world.backend.names() == names_before  # the shadow was dropped
    assert world.store_keys("staging") == []  # nothing published
    assert_no_leak(info.value.message + (info.value.hint or ""), world.seed)
    expected = {
        "failing script": "script dup.sql",
        "failing check": "'nobody imported' returned 24 row(s)",
        "scan finds emails": "scan found email in emails.body (24)",
        "custom pattern": "scan found staff_user in audit.who (1)",
        "unclassified column": "unclassified column(s): subscribers.nickname",
        "vanished column": "vanished table(s)/column(s): subscribers.signon_uid",
    }[breakage]
    assert expected in info.value.message
    if isinstance(info.value, ChecksFailed):
        assert not info.value.report.passed
        assert_no_leak(info.value.report.model_dump_json(), world.seed)


def test_a_requires_sanitised_store_refuses_unsanitised_artifacts(world: World) -> None:
    ident = backup_production(world)
    with pytest.raises(Refused, match="accepts only sanitised artifacts"):
        # a transformed copy is not a sanitised one: refused before dumping
        ops.backup(world.cfg, "app", "staging", transform=lambda engine, shadow: None)
    assert world.store_keys("staging") == []
    # an unsanitised artifact that got into the staging store anyway is refused by restores from it
    prod, staging = ops.store_for(world.cfg, "production"), ops.store_for(world.cfg, "staging")
    for obj in prod.list("app/"):
        with prod.open(obj.key) as src:
            staging.put(obj.key, src)
    before = world.snapshot("integration")
    req = ops.RestoreRequest(database="app", environment="integration", source="staging", artifact=ident)
    with pytest.raises(Refused, match="not sanitised"):
        ops.plan_restore(world.cfg, req)
    assert world.snapshot("integration") == before


def test_backing_up_a_requires_sanitised_database_checks_it_first(world: World) -> None:
    backup_production(world)
    restore_staging(world)
    world.backend.execute(
        "INSERT INTO emails VALUES (7, 'leak@hotmail.com', 'hi', 'call 07911 123456', '2030-01-01 00:00:00');",
        world.urls["staging"],
    )
    with pytest.raises(ChecksFailed) as info:
        ops.backup(world.cfg, "app", "staging")
    assert "leak@hotmail.com" not in info.value.message and "07911" not in info.value.message
    assert (
        "email in emails.address (1)" in info.value.message
        and "phone in emails.body (1)" in info.value.message
    )
    assert world.store_keys("staging") == []
    with pytest.raises(SanitisationFailed):
        check_live(world.cfg, "app", "staging", NullReporter())


def test_sanitised_backup_goes_through_scratch_and_leaves_the_source_alone(backend: Backend) -> None:
    w = make_world(backend, scratch=True)
    source_before = w.snapshot("production")
    result = ops.backup(w.cfg, "app", "production", sanitise=True)
    assert w.snapshot("production") == source_before
    manifest = result.manifest
    assert manifest.is_publishable_sanitised() and manifest.source_environment == "production"
    assert_no_leak(manifest.model_dump_json(), w.seed)
    # the artifact holds sanitised data: integration (requires sanitised) takes it without re-sanitising
    req = ops.RestoreRequest(
        database="app", environment="integration", source="production", artifact=manifest.id
    )
    plan = ops.plan_restore(w.cfg, req)
    assert plan.sanitiser is None
    ops.restore(plan)
    assert [r[0] for r in w.rows("integration", "subscribers", "address")] == [
        fakes.fake_email(SALT, s["address"], "example.com") for s in w.seed.subscribers
    ]


def test_sanitised_backup_that_fails_publishes_nothing(backend: Backend) -> None:
    w = make_world(backend, scratch=True)
    write_profile(backend.workdir, **KEEP_BODY)
    source_before = w.snapshot("production")
    names = backend.names()
    with pytest.raises(ChecksFailed):
        ops.backup(w.cfg, "app", "production", sanitise=True)
    assert w.snapshot("production") == source_before
    assert w.store_keys("production") == []
    assert backend.names() == names


def test_dry_run_counts_what_would_be_touched_and_changes_nothing(world: World) -> None:
    before = world.snapshot("production")
    plan = plan_live(world.cfg, "app", "production", NullReporter())
    assert plan.ok
    counts = dict(c for step in plan.steps for c in step.counts)
    n = SEED_SUBSCRIBERS
    assert counts["rows emails: keep only created_at newer than 1 days"] == n
    assert counts["rows sessions: truncate"] == 5
    assert counts["rows audit: delete where who <> 'system'"] == 1
    assert counts["subscribers.address: fake_email"] == n
    assert counts["subscribers.name: fake_name"] == sum(1 for s in world.seed.subscribers if s["name"])
    assert counts["subscribers.status: constant"] == n
    assert counts["emails.body: substitute fake_email(address)"] == 2 * n
    scan = {r["name"]: r for r in plan.checks if r["check"] == "scan"}
    assert {"table": "subscribers", "column": "address", "count": n} in scan["email"]["findings"]
    assert world.snapshot("production") == before

    runner = CliRunner()
    args = ["--config", str(world.cfg.path), "sanitise", "app", "--env", "production"]
    out = runner.invoke(cli, [*args, "--dry-run"])
    assert out.exit_code == 0, out.output
    assert f"subscribers.address: fake_email: {n} row(s)" in out.output
    assert_no_leak(out.output, world.seed)
    checked = runner.invoke(cli, [*args, "--check"])
    assert checked.exit_code == 8
    assert_no_leak(checked.output, world.seed)
    assert runner.invoke(cli, args).exit_code == 2  # neither --dry-run nor --check


def test_cli_restore_sanitises_for_staging_and_fails_with_exit_8(world: World) -> None:
    backup_production(world)
    runner = CliRunner()
    args = ["--config", str(world.cfg.path), "restore", "app", "--env", "staging", "--from", "production"]
    out = runner.invoke(cli, args)
    assert out.exit_code == 0, out.output
    assert "sanitised" in out.output
    write_profile(world.backend.workdir, **KEEP_BODY)
    failed = runner.invoke(cli, args)
    assert failed.exit_code == 8
    assert_no_leak(failed.output, world.seed)


def test_masked_columns_of_sanitised_data_have_their_rules_form_on_every_engine(world: World) -> None:
    """Issue 12, masked means masked: the forms the checks-only backup verifies are exactly what the
    rules write, on every engine (pseudonyms, hash length, redaction, constant, NULL, row rules)."""
    backup_production(world)
    restore_staging(world)
    result = check_live(world.cfg, "app", "staging", NullReporter())
    masked = [r for r in result.checks if r["check"] == "masked"]
    assert len(masked) == 12 and all(r["passed"] for r in masked), masked
    # a value of the right kind but not masked: a hash of the wrong length, a real-looking name
    world.backend.execute(
        "UPDATE subscribers SET token = 'abc123', name = 'Mary Smith' WHERE id = 1;", world.urls["staging"]
    )
    with pytest.raises(ChecksFailed) as info:
        ops.backup(world.cfg, "app", "staging")
    assert "subscribers.token: hash(32): 1 row(s)" in info.value.message
    assert "subscribers.name: fake_name: 1 row(s)" in info.value.message
    assert "Mary" not in info.value.message and "abc123" not in info.value.message
    assert world.store_keys("staging") == []


def test_a_time_row_rule_on_an_epoch_column_deletes_nothing_on_every_engine(world: World) -> None:
    """Issue 12, item 7: keep_newer_than_days on an integer epoch column is an error, not a silent
    delete of every row (SQLite read it as no time, MariaDB compared numbers)."""
    url = world.urls["staging"]
    world.backend.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, at BIGINT);", url)
    now = int(datetime.now(UTC).timestamp())
    world.backend.execute(f"INSERT INTO events VALUES (1, {now}), (2, {now - 86400});", url)
    (world.backend.workdir / "epoch.toml").write_text(
        f'salt_env = "{SALT_ENV}"\n[[rows]]\ntable = "events"\nkeep_newer_than_days = 30\ncolumn = "at"\n'
        '[tables.events]\nkeep = ["id", "at"]\n'
    )
    profile = load_profile(world.backend.workdir / "epoch.toml")
    with pytest.raises(SanitisationFailed) as info:
        sanitise(direct_target(world, "staging"), profile, SALT, NullReporter())
    assert "events" in info.value.message and info.value.exit_code == 8
    assert len(world.rows("staging", "events")) == 2


NOTE_SCRIPT = """-- a comment; with a semicolon
CREATE TABLE scratch_note (t TEXT);
INSERT INTO scratch_note VALUES ('a;b');
UPDATE subscribers SET status = 'x' WHERE id > 0;
DELETE FROM audit WHERE who = 'nobody-at-all';
DROP TABLE scratch_note;
"""


def test_script_statements_report_their_rows_and_a_zero_is_a_warning_or_with_expect_rows_fatal(
    world: World,
) -> None:
    """Issue 12, item 7: what each script statement changed is in the result; 0 rows warns."""
    (world.backend.workdir / "note.sql").write_text(NOTE_SCRIPT)
    write_profile(world.backend.workdir, scripts='"note.sql"')
    profile = load_profile(world.backend.workdir / "app-sanitise.toml")
    world.backend.execute(insert_sql(world.seed, sql_literal), world.urls["integration"])
    subscribers = len(world.seed.subscribers)
    # a dry run counts the plain UPDATE and DELETE (not the INSERT), numbered as the run numbers them
    plan = dry_run(direct_target(world, "integration"), profile, NullReporter())
    (script,) = [s for s in plan.steps if s.kind == "script"]
    assert script.counts == [
        ("script note.sql: statement 2 (UPDATE)", subscribers),
        ("script note.sql: statement 3 (DELETE)", 0),
    ]
    result = sanitise(direct_target(world, "integration"), profile, SALT, NullReporter())
    extra = result.model_extra or {}
    assert [(s["statement"], s["kind"], s["rows"]) for s in extra["statements"]] == [
        (1, "INSERT", 1),
        (2, "UPDATE", subscribers),
        (3, "DELETE", 0),
    ]
    assert extra["warnings"] == ["script note.sql: statement 3 (DELETE) changed 0 rows"]
    # expect_rows = true makes it fatal
    text = (world.backend.workdir / "app-sanitise.toml").read_text()
    (world.backend.workdir / "app-sanitise.toml").write_text("expect_rows = true\n" + text)
    strict = load_profile(world.backend.workdir / "app-sanitise.toml")
    with pytest.raises(SanitisationFailed) as info:
        sanitise(direct_target(world, "integration"), strict, SALT, NullReporter())
    assert (
        "statement 3 (DELETE) changed 0 rows, and the profile sets expect_rows = true" in info.value.message
    )
