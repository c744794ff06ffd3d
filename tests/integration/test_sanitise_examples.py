"""The shipped examples, end to end: production is backed up, restored into staging (which requires
sanitised data, so the example profile runs on the shadow before the swap), and staging is then backed
up as a sanitised artifact. Expectations are computed from the seeded rows."""

from __future__ import annotations

import random
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dataferry import ops
from dataferry.config import Config, database_ref, load
from dataferry.engines import RunsSql, get_engine
from dataferry.errors import SanitisationFailed
from dataferry.sanitise import fakes
from servers import MariaDbServer, PgServer
from signing_keys import signed_config

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SALT = "example-salt-5f1c9e0b7a2d4c6e"
PASSWORD_ENV = "FERRY_TEST_DB_PASSWORD"


@dataclass
class Example:
    """An example copied into a temporary directory with a production and a staging database."""

    cfg: Config
    engine: RunsSql
    execute: Callable[[str, str], None]  # (sql, environment)

    def rows(self, env: str, sql: str) -> list[tuple[object, ...]]:
        return self.engine.query(database_ref(self.cfg, "app", env), sql)

    def restore_staging(self) -> ops.RestoreResult:
        req = ops.RestoreRequest(database="app", environment="staging", source="production")
        plan = ops.plan_restore(self.cfg, req)
        assert plan.sanitiser is not None  # staging requires sanitised data and the artifact is raw
        return ops.restore(plan)


def make_example(
    tmp_path: Path, name: str, engine: str, urls: dict[str, str], execute: Callable[[str, str], None]
) -> Example:
    shutil.copytree(EXAMPLES / name, tmp_path / name)
    lines = [
        '[environments.production]\nstore = "stores/production"',
        '[environments.staging]\nstore = "stores/staging"\nrequires_sanitised = true',
        f'[databases.app]\nengine = "{engine}"\nsanitise = "{name}/sanitise.toml"',
        "[databases.app.environments]",
        *(f'{env} = {{ url = "{url}", password_env = "{PASSWORD_ENV}" }}' for env, url in urls.items()),
    ]
    (tmp_path / "dataferry.toml").write_text(signed_config("\n".join(lines) + "\n", tmp_path))
    schema = (EXAMPLES / name / "schema.sql").read_text()
    for env in urls:
        execute(schema, env)
    engine_obj = get_engine(engine)
    assert isinstance(engine_obj, RunsSql)
    return Example(load(tmp_path / "dataferry.toml"), engine_obj, execute)


def literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        value = value.strftime("%Y-%m-%d %H:%M:%S")
    return "'" + str(value).replace("'", "''") + "'"


def inserts(table: str, rows: list[dict[str, object]], quote: str = '"') -> str:
    def cols(r: dict[str, object]) -> str:
        return ", ".join(f"{quote}{c}{quote}" for c in r)

    return "\n".join(
        f"INSERT INTO {table} ({cols(r)}) VALUES ({', '.join(literal(v) for v in r.values())});" for r in rows
    )


# -- email-alert-api on PostgreSQL -----------------------------------------------------------------


@pytest.fixture
def email_alert_api(tmp_path: Path, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch) -> Example:
    monkeypatch.setenv(PASSWORD_ENV, pg_server.password)
    monkeypatch.setenv("EMAIL_ALERT_API_SANITISE_SALT", SALT)
    names = {env: f"eaa_{env}_{uuid.uuid4().hex[:8]}" for env in ("production", "staging")}
    for db in names.values():
        pg_server.create_db(db)
    urls = {env: pg_server.dsn(db) for env, db in names.items()}
    return make_example(
        tmp_path, "email-alert-api", "postgresql", urls, lambda sql, env: pg_server.psql(sql, names[env])
    )


def seed_email_alert_api(ex: Example, rng: random.Random) -> dict[str, list[dict[str, object]]]:
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    lists = [
        {"id": i, "title": f"Updates on {t}", "slug": t, "created_at": now, "updated_at": now}
        for i, t in enumerate(["tax", "passports", "driving", "housing"], 1)
    ]
    subscribers, subscriptions, emails, attempts = [], [], [], []
    for i in range(1, 41):
        address = (
            f"person{i}.{rng.choice(['smith', 'khan', 'jones'])}@{rng.choice(['gmail.com', 'icloud.com'])}"
        )
        subscribers.append(
            {
                "id": i,
                "address": address,
                "govuk_account_id": None if i % 3 else str(uuid.UUID(int=rng.getrandbits(128))),
                "created_at": now - timedelta(days=100),
                "updated_at": now,
            }
        )
        subscriptions.append(
            {"id": i, "subscriber_id": i, "subscriber_list_id": 1 + i % 4, "created_at": now}
        )
        for age in (timedelta(hours=3), timedelta(days=2), timedelta(days=30)):
            eid = str(uuid.UUID(int=rng.getrandbits(128)))
            emails.append(
                {
                    "id": eid,
                    "address": address,
                    "subject": f"Update for {address}",
                    "body": f"Hello,\nA page changed.\nThis email was sent to {address}.\n"
                    f"Unsubscribe: https://example.gov.uk/unsubscribe?address={address}\n"
                    "Questions? noreply@notifications.service.gov.uk",
                    "subscriber_id": i,
                    "created_at": now - age,
                }
            )
            attempts.append(
                {
                    "id": str(uuid.UUID(int=rng.getrandbits(128))),
                    "email_id": eid,
                    "status": "delivered",
                    "provider_reference": f"notify-{rng.getrandbits(32)}",
                    "created_at": now - age,
                }
            )
    tokens = [{"id": 1, "address": subscribers[0]["address"], "token": "secret-token", "created_at": now}]
    data = {
        "subscriber_lists": lists,
        "subscribers": subscribers,
        "subscriptions": subscriptions,
        "emails": emails,
        "delivery_attempts": attempts,
        "auth_tokens": tokens,
    }
    ex.execute("\n".join(inserts(t, rows) for t, rows in data.items()), "production")
    return data


def test_email_alert_api_pseudonymises_consistently_and_keeps_one_day_of_emails(
    email_alert_api: Example,
) -> None:
    ex = email_alert_api
    data = seed_email_alert_api(ex, random.Random(3))
    ops.backup(ex.cfg, "app", "production")
    result = ex.restore_staging()
    assert result.sanitisation is not None and result.sanitisation.passed
    assert all(c["passed"] for c in result.sanitisation.checks)

    fake = {
        s["address"]: fakes.fake_email(SALT, str(s["address"]), "example.com") for s in data["subscribers"]
    }
    got = dict(ex.rows("staging", "SELECT id, address FROM subscribers"))
    assert got == {s["id"]: fake[str(s["address"])] for s in data["subscribers"]}

    cutoff = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=1)
    recent = {e["id"]: e for e in data["emails"] if e["created_at"] > cutoff}  # type: ignore[operator]
    emails = ex.rows("staging", "SELECT id::text, address, subject, body, subscriber_id FROM emails")
    assert {r[0] for r in emails} == set(recent)
    for eid, address, subject, body, subscriber_id in emails:
        original = str(recent[eid]["address"])
        assert address == fake[original] == got[subscriber_id]  # the same pseudonym in both tables
        assert subject == str(recent[eid]["subject"]).replace(original, fake[original])
        assert body == str(recent[eid]["body"]).replace(original, fake[original])
        assert "noreply@notifications.service.gov.uk" in str(body)
    attempts = ex.rows("staging", "SELECT email_id::text, provider_reference FROM delivery_attempts")
    assert {a[0] for a in attempts} == set(recent) and {a[1] for a in attempts} == {None}
    assert ex.rows("staging", "SELECT count(*) FROM auth_tokens") == [(0,)]

    published = ops.backup(ex.cfg, "app", "staging").manifest
    assert published.is_publishable_sanitised()
    text = published.model_dump_json()
    assert not any(str(s["address"]) in text for s in data["subscribers"])


# -- whitehall on MariaDB --------------------------------------------------------------------------


@pytest.fixture
def whitehall(tmp_path: Path, mariadb_server: MariaDbServer, monkeypatch: pytest.MonkeyPatch) -> Example:
    monkeypatch.setenv(PASSWORD_ENV, mariadb_server.password)
    monkeypatch.setenv("WHITEHALL_SANITISE_SALT", SALT)
    names = {env: f"wh_{env}_{uuid.uuid4().hex[:8]}" for env in ("production", "staging")}
    for db in names.values():
        mariadb_server.create_db(db)
    s = mariadb_server
    urls = {env: s.url(db) for env, db in names.items()}
    return make_example(tmp_path, "whitehall", "mysql", urls, lambda sql, env: s.execute(sql, names[env]))


@dataclass
class WhitehallSeed:
    limited_editions: set[int]
    published_editions: set[int]
    documents_kept: set[int]
    documents_gone: set[int]
    files_kept: set[int]
    files_gone: set[int]
    users: list[dict[str, object]]
    fact_checks: list[dict[str, object]]


def seed_whitehall(ex: Example, rng: random.Random) -> WhitehallSeed:
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    users = [
        {
            "id": i,
            "name": f"Editor {n}",
            "email": f"{n.lower()}@digital.example-dept.gov.uk",
            "uid": uuid.uuid4().hex,
            "created_at": now,
        }
        for i, n in enumerate(["Asha", "Bryn", "Carys"], 1)
    ]
    rows: dict[str, list[dict[str, object]]] = {
        k: []
        for k in (
            "documents", "editions", "edition_translations", "edition_authors", "attachment_data", "attachments",
            "govspeak_contents", "fact_check_requests", "access_limiting_individuals", "versions", "sessions",
        )
    }  # fmt: skip
    seed = WhitehallSeed(set(), set(), set(), set(), set(), set(), users, [])
    eid = aid = fid = 0
    for doc in range(1, 13):
        rows["documents"].append(
            {
                "id": doc,
                "content_id": str(uuid.uuid4()),
                "slug": f"policy-{doc}",
                "document_type": "news",
                "created_at": now,
            }
        )
        # documents 1-8 have a published edition; 5-12 have an access-limited draft (9-12: only that)
        kinds = (["published"] if doc <= 8 else []) + (["limited"] if doc >= 5 else [])
        shared_file = None
        for kind in kinds:
            eid += 1
            limited = kind == "limited"
            (seed.limited_editions if limited else seed.published_editions).add(eid)
            rows["editions"].append(
                {
                    "id": eid,
                    "document_id": doc,
                    "state": "draft" if limited else "published",
                    "access_limited": limited,
                    "created_at": now,
                }
            )
            rows["edition_translations"].append(
                {
                    "id": eid,
                    "edition_id": eid,
                    "locale": "en",
                    "title": f"Title {eid}",
                    "body": "Contact press@dept.gov.uk",
                }
            )
            rows["edition_authors"].append({"id": eid, "edition_id": eid, "user_id": 1 + eid % 3})
            rows["versions"].append(
                {
                    "id": eid,
                    "item_type": "Edition",
                    "item_id": eid,
                    "event": "create",
                    "whodunnit": "1",
                    "created_at": now,
                }
            )
            aid += 1
            if shared_file is None or (limited and doc % 2):
                fid += 1
                rows["attachment_data"].append(
                    {"id": fid, "carrierwave_file": f"file{fid}.pdf", "content_type": "application/pdf"}
                )
                shared_file = fid
            rows["attachments"].append(
                {"id": aid, "attachable_id": eid, "title": f"Annex {aid}", "attachment_data_id": shared_file}
            )
            rows["govspeak_contents"].append({"id": aid, "attachment_id": aid, "body": "## Annex"})
            if limited:
                check = {
                    "id": eid, "edition_id": eid, "requestor_id": 1, "email_address": f"checker{eid}@hotmail.com",
                    "key": uuid.uuid4().hex, "comments": "see my number 07911 234567", "instructions": "by Friday", "created_at": now,
                }  # fmt: skip
                rows["fact_check_requests"].append(check)
                rows["access_limiting_individuals"].append(
                    {"id": eid, "edition_id": eid, "email": f"insider{eid}@gmail.com"}
                )
        (seed.documents_kept if doc <= 8 else seed.documents_gone).add(doc)
    used_by_published = {
        a["attachment_data_id"] for a in rows["attachments"] if a["attachable_id"] in seed.published_editions
    }
    seed.files_kept = {int(str(f)) for f in used_by_published}
    seed.files_gone = {int(str(f["id"])) for f in rows["attachment_data"]} - seed.files_kept
    # a fact check on a published edition survives, pseudonymised
    check = {
        "id": 100, "edition_id": min(seed.published_editions), "requestor_id": 2, "email_address": "reviewer@outlook.com",
        "key": uuid.uuid4().hex, "comments": "Looks right to me", "instructions": "Check the dates", "created_at": now,
    }  # fmt: skip
    rows["fact_check_requests"].append(check)
    seed.fact_checks = [check]
    rows["sessions"] = [{"id": 1, "session_id": "abc", "data": "user=1"}]
    order = ["users", *rows]
    everything = {"users": users, **rows}
    ex.execute("\n".join(inserts(t, everything[t], "`") for t in order), "production")
    return seed


def ids(ex: Example, table: str, column: str = "id") -> set[int]:
    return {int(str(r[0])) for r in ex.rows("staging", f"SELECT {column} FROM {table}")}


def test_whitehall_removes_access_limited_editions_and_everything_hanging_off_them(
    whitehall: Example,
) -> None:
    ex = whitehall
    seed = seed_whitehall(ex, random.Random(5))
    ops.backup(ex.cfg, "app", "production")
    result = ex.restore_staging()
    assert result.sanitisation is not None and result.sanitisation.passed

    assert ids(ex, "editions") == seed.published_editions
    assert ids(ex, "documents") == seed.documents_kept
    for table, column in [
        ("edition_translations", "edition_id"),
        ("edition_authors", "edition_id"),
        ("attachments", "attachable_id"),
        ("versions", "item_id"),
    ]:
        assert ids(ex, table, column) == seed.published_editions, table
    assert ids(ex, "attachment_data") == seed.files_kept and seed.files_gone
    assert ids(ex, "govspeak_contents") == ids(ex, "attachments")
    assert ids(ex, "access_limiting_individuals") == set()
    assert ex.rows("staging", "SELECT count(*) FROM sessions") == [(0,)]

    users = ex.rows("staging", "SELECT id, name, email FROM users ORDER BY id")
    assert users == [
        (
            u["id"],
            fakes.fake_name(SALT, str(u["name"])),
            fakes.fake_email(SALT, str(u["email"]), "example.com"),
        )
        for u in seed.users
    ]
    (check,) = seed.fact_checks
    got = ex.rows("staging", "SELECT id, email_address, comments FROM fact_check_requests")
    assert got == [
        (
            check["id"],
            fakes.fake_email(SALT, str(check["email_address"]), "example.com"),
            fakes.redact(str(check["comments"])),
        )
    ]


def test_whitehall_profile_fails_loudly_when_a_column_is_dropped_upstream(whitehall: Example) -> None:
    """GOV.UK's Whitehall script broke when an upstream migration removed a column; here the
    restore stops with the column named and staging keeps what it had."""
    ex = whitehall
    seed_whitehall(ex, random.Random(6))
    ex.execute("INSERT INTO sessions (id, session_id) VALUES (7, 'staging-own');", "staging")
    ex.execute("ALTER TABLE fact_check_requests DROP COLUMN instructions;", "production")
    ops.backup(ex.cfg, "app", "production")
    with pytest.raises(SanitisationFailed, match=r"fact_check_requests\.instructions"):
        ex.restore_staging()
    assert ex.rows("staging", "SELECT id, session_id FROM sessions") == [(7, "staging-own")]
    assert ex.rows("staging", "SELECT count(*) FROM editions") == [(0,)]
