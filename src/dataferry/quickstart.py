"""``dataferry quickstart``: the embedded default, the whole chain, with no servers.

Creates a sample "production" SQLite database with realistic fake personal data (an
email-alert-api-like subscription service), a configuration with production, staging and
integration environments on local directory stores, a sanitisation profile and three jobs, then:

1. runs the production job (backup);
2. lets the scheduler's trigger logic take over: the staging job runs *after* production published
   a new artifact (restore into a shadow, sanitise, checks, swap, sanitised backup), and the
   integration job runs after staging's (restore of the sanitised artifact);
3. shows ``status``, and shows that none of production's addresses or phone numbers reached
   staging or integration.
"""

from __future__ import annotations

import os
import random
import re
import secrets
import shlex
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from dataferry import artifacts, signing
from dataferry.config import Config, load
from dataferry.errors import ConfigError, FerryError
from dataferry.jobs import state
from dataferry.jobs.runner import run_job
from dataferry.jobs.scheduler import run_pending_inline
from dataferry.jobs.state import RunRecord
from dataferry.jobs.status import collect_status
from dataferry.jobs.status_text import render_lines
from dataferry.ops import store_for
from dataferry.progress import Reporter, human_bytes

FIRST = ["Amara", "Ben", "Chloe", "Dev", "Elif", "Femi", "Grace", "Hamza", "Isla", "Jonah", "Kemi", "Liam"]
LAST = ["Okafor", "Smith", "Patel", "Nowak", "Jones", "Khan", "Murphy", "Evans", "Ahmed", "Taylor"]
DOMAINS = ["gmail.com", "outlook.com", "yahoo.co.uk", "btinternet.com", "hotmail.com"]
TOPICS = ["tax", "benefits", "passports", "driving", "housing", "education", "business", "pensions"]

DB = "email-alert-api"
JOBS = (f"{DB}-production", f"{DB}-staging", f"{DB}-integration")
SALT_ENV = "EMAIL_ALERT_API_QUICKSTART_SALT"
SALT_FILE = "sanitise-salt"
SIGNING_KEY_FILE = "signing.key"
#: In CONFIG, replaced by the public key of the quickstart's signing key.
PUBLIC_KEY = "@PUBLIC_KEY@"

CONFIG = f"""\
# dataferry quickstart: SQLite databases and local directory stores, no servers needed.
# The chain: production is backed up; staging restores it, sanitises it on the shadow before the
# swap, checks it and publishes a sanitised backup; integration restores that. Each job runs
# *after* the one before it has published a new artifact: no clock offsets.

[settings]
# The private key that signs the manifests of sanitised artifacts, made by quickstart (as
# 'dataferry keygen --out signing.key' would) with mode 600. Staging and integration trust its
# public key only: a "sanitised" artifact they did not see signed by it is refused (exit 9).
# On Kubernetes a pod has no such file: use signing_key_env (docs/kubernetes.md).
signing_key_file = "{SIGNING_KEY_FILE}"

[environments.production]
store = "stores/production"
protected = true

[environments.staging]
store = "stores/staging"
requires_sanitised = true
trusted_keys = ["{PUBLIC_KEY}"]

[environments.integration]
store = "stores/integration"
requires_sanitised = true
trusted_keys = ["{PUBLIC_KEY}"]

[databases.{DB}]
engine = "sqlite"
sanitise = "sanitise/{DB}.toml"
[databases.{DB}.environments]
production = {{ url = "sqlite:///databases/production/{DB}.db" }}
staging = {{ url = "sqlite:///databases/staging/{DB}.db" }}
integration = {{ url = "sqlite:///databases/integration/{DB}.db" }}

[jobs.{DB}-production]
environment = "production"
database = "{DB}"
steps = ["backup"]
schedule = "0 23 * * *"
timezone = "Europe/London"

[jobs.{DB}-staging]
environment = "staging"
database = "{DB}"
steps = ["restore:production", "sanitise", "backup"]
after = "{DB}-production"
max_age = "26h"

[jobs.{DB}-integration]
environment = "integration"
database = "{DB}"
steps = ["restore:staging"]
after = "{DB}-staging"
max_age = "8d"
"""

PROFILE = f"""\
# Sanitisation profile of the quickstart's {DB} (SQLite). Addresses become deterministic
# pseudonyms (the same address gets the same anon-...@example.com everywhere, also inside email
# bodies), names and phone numbers are replaced by fakes. Then the checks and the scan for
# addresses and phone numbers must find nothing, or nothing is swapped in or published.
description = "quickstart {DB}: pseudonymise subscribers, fake names and phones"
salt_env = "{SALT_ENV}"
strict = true

[tables.subscribers]
keep = ["id", "created_at"]
[tables.subscribers.mask]
address = "fake_email"
name = "fake_name"
phone = "fake_phone"

[tables.subscriptions]
keep = ["id", "subscriber_id", "topic"]

[tables.emails]
keep = ["id", "subject"]
[tables.emails.mask]
address = "fake_email"
body = {{ rule = "substitute", source = "address", fake = "fake_email" }}

[[checks]]
name = "every subscriber address is a pseudonym"
sql = "SELECT id FROM subscribers WHERE address NOT LIKE 'anon-%@example.com'"

[[checks]]
name = "every email address is a pseudonym"
sql = "SELECT id FROM emails WHERE address NOT LIKE 'anon-%@example.com'"
"""


def make_sample_database(path: Path, subscribers: int = 2000, seed: int = 7) -> None:
    """A small email-alert-api-like database: subscribers, subscriptions and sent emails."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    with con:
        con.executescript(
            """
            CREATE TABLE subscribers (id INTEGER PRIMARY KEY, address TEXT UNIQUE NOT NULL,
                                      name TEXT, phone TEXT, created_at TEXT NOT NULL);
            CREATE TABLE subscriptions (id INTEGER PRIMARY KEY, subscriber_id INTEGER NOT NULL
                                        REFERENCES subscribers(id), topic TEXT NOT NULL);
            CREATE TABLE emails (id INTEGER PRIMARY KEY, address TEXT NOT NULL, subject TEXT, body TEXT);
            CREATE INDEX emails_address ON emails(address);
            """
        )
        for i in range(1, subscribers + 1):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            address = f"{first}.{last}{i}@{rng.choice(DOMAINS)}".lower()
            phone = f"07{rng.randint(100, 999)} {rng.randint(100000, 999999)}"
            day = f"2026-{rng.randint(1, 11):02d}-{rng.randint(1, 28):02d}"
            con.execute(
                "INSERT INTO subscribers VALUES (?,?,?,?,?)", (i, address, f"{first} {last}", phone, day)
            )
            for topic in rng.sample(TOPICS, rng.randint(1, 3)):
                con.execute("INSERT INTO subscriptions (subscriber_id, topic) VALUES (?,?)", (i, topic))
            body = (
                f"There is an update on {rng.choice(TOPICS)}.\n"
                f"This email was sent to {address}. Unsubscribe: https://www.gov.uk/email/unsubscribe"
            )
            con.execute(
                "INSERT INTO emails (address, subject, body) VALUES (?, ?, ?)", (address, "Update", body)
            )
    con.close()


def run_quickstart(
    directory: Path, *, reporter: Reporter, echo: Callable[[str], None], program: str = "dataferry"
) -> Config:
    """Create the sample chain in ``directory`` and run it; returns the loaded configuration.
    ``program`` is how the closing "try:" line calls dataferry (as this run was called)."""
    config_path = directory / "dataferry.toml"
    if config_path.exists() and "quickstart" not in config_path.read_text(encoding="utf-8"):
        raise ConfigError(f"{config_path} exists and was not made by quickstart; choose another directory")
    directory.mkdir(parents=True, exist_ok=True)
    config_path.write_text(config_for(directory), encoding="utf-8")
    (directory / "sanitise").mkdir(exist_ok=True)
    (directory / "sanitise" / f"{DB}.toml").write_text(PROFILE, encoding="utf-8")
    for env in ("production", "staging", "integration"):
        (directory / "databases" / env).mkdir(parents=True, exist_ok=True)
    prod_db = directory / "databases" / "production" / f"{DB}.db"
    make_sample_database(prod_db)
    cfg = load(config_path)
    echo(f"1. made a sample production database with fake personal data: {prod_db}")
    with _salt(directory):
        prod = run_job(cfg, JOBS[0], reporter=reporter)
        if prod is None or not prod.published_artifact:
            raise FerryError(f"quickstart: job {JOBS[0]} published nothing")
        size = artifacts.latest(store_for(cfg, "production"), DB).size
        echo(f"2. job {JOBS[0]}: backed it up as {prod.published_artifact} ({human_bytes(size)})")
        for record in run_pending_inline(cfg, reporter=reporter):
            echo(f"{_chain_line(record)}")
        _require_chain(cfg)
    echo("")
    echo("dataferry status:")
    for line in render_lines(collect_status(cfg)):
        echo(f"  {line}")
    echo("")
    for line in personal_data_report(directory):
        echo(line)
    echo("")
    echo(f"config: {config_path}")
    echo(
        f"        export DATAFERRY_CONFIG={shlex.quote(str(config_path.resolve()))} "
        "and the docs' commands need no --config"
    )
    salt_file = shlex.quote(str(directory / SALT_FILE))
    echo(f"jobs:   export {SALT_ENV}=$(cat {salt_file}) to run the sanitising jobs and 'check' yourself")
    for line in try_lines(directory, program):
        echo(line)
    return cfg


def try_lines(directory: Path, program: str) -> list[str]:
    """The closing lines: commands to run next, each working as printed from where quickstart ran."""
    config = shlex.quote(str(directory / "dataferry.toml"))
    # Staging's store: it holds the sanitised, signed artifacts (integration only restores them).
    source = shlex.quote(str(directory / "stores" / "staging" / DB))
    into = shlex.quote(f"sqlite:///{directory / f'{DB}-copy.db'}")
    key_file = shlex.quote(str(directory / SIGNING_KEY_FILE))
    return [
        f"try:    {program} --config {config} status",
        f"try:    {program} --config {config} serve",
        f"try:    {program} pull {source} --into {into} --trust-key {_public_key(directory)}",
        f"        (a developer's copy, no config: staging's store holds the sanitised, signed artifacts; "
        f"the key is what '{program} keygen --show {key_file}' prints)",
    ]


def _chain_line(record: RunRecord) -> str:
    n = 3 if record.job == JOBS[1] else 4
    if record.status != "succeeded":
        why = record.error.message if record.error else record.skip_reason
        return f"{n}. job {record.job}: {record.status}: {why}"
    steps = {s.kind: s for s in record.steps}
    if "sanitise" in steps:
        return (
            f"{n}. job {record.job} (after {JOBS[0]}): restored {record.restored_artifact} into a shadow, "
            f"sanitised it ({steps['sanitise'].detail}), swapped it in, published sanitised backup "
            f"{record.published_artifact}"
        )
    return f"{n}. job {record.job} (after {JOBS[1]}): restored {record.restored_artifact}"


def _require_chain(cfg: Config) -> None:
    """The quickstart fails loudly if a job of the chain did not succeed."""
    for job in JOBS[1:]:
        last = state.last_run(state.StoreCache(cfg).for_job(job), job)
        if last is None or last.status != "succeeded":
            raise FerryError(
                f"quickstart: job {job} did not succeed",
                hint=f"see 'dataferry --config {cfg.path} history {job}'",
            )


def config_for(directory: Path) -> str:
    """The quickstart's configuration for ``directory``, trusting the public key of its signing key
    (made in ``directory`` on the first call)."""
    return CONFIG.replace(PUBLIC_KEY, _public_key(directory))


def _public_key(directory: Path) -> str:
    """The public key of the quickstart's signing key, made on the first run (kept on re-runs, so
    the artifacts it signed stay trusted)."""
    path = directory / SIGNING_KEY_FILE
    if not path.exists():
        pem, _, _ = signing.generate()
        signing.write_private_key(path, pem)
    return signing.public_text(signing.signer_from_file(path).key.public_key())


@contextmanager
def _salt(directory: Path) -> Iterator[None]:
    """The pseudonym salt: kept in a 0600 file so re-runs give the same pseudonyms; put in the
    environment of this process only while the jobs run."""
    path = directory / SALT_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    old = os.environ.get(SALT_ENV)
    os.environ[SALT_ENV] = old or path.read_text().strip()
    try:
        yield
    finally:
        if old is None:
            del os.environ[SALT_ENV]


_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_PHONE_RE = re.compile(r"07\d{3} \d{6}")


def personal_data(path: Path) -> tuple[set[str], set[str]]:
    """Every email address and UK mobile number found in any text of a SQLite database."""
    emails: set[str] = set()
    phones: set[str] = set()
    for value in _texts(path):
        emails.update(e.lower() for e in _EMAIL_RE.findall(value))
        phones.update(_PHONE_RE.findall(value))
    return emails, phones


def _texts(path: Path) -> Iterator[str]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in con.execute(f'SELECT * FROM "{table}"'):
                yield from (v for v in row if isinstance(v, str))


def personal_data_report(directory: Path) -> list[str]:
    """Lines showing that production's addresses and phone numbers are in no other environment."""
    base = directory / "databases"
    prod_emails, prod_phones = personal_data(base / "production" / f"{DB}.db")
    lines = [
        f"personal data: production holds {len(prod_emails)} email addresses and {len(prod_phones)} phone numbers"
    ]
    for env in ("staging", "integration"):
        emails, phones = personal_data(base / env / f"{DB}.db")
        leaked = len(emails & prod_emails) + len(phones & prod_phones)
        sample = sorted(emails)[0] if emails else "-"
        lines.append(
            f"  {env}: {leaked} of them found; its {len(emails)} addresses are pseudonyms (e.g. {sample})"
        )
    return lines
