"""``dataferry quickstart``: the embedded default, with no servers.

Creates a sample "production" SQLite database with realistic fake personal data, a configuration
with production and staging environments on local directory stores, then backs up production,
restores into staging, and lists and verifies the artifact, saying what it did and where.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

from dataferry import ops
from dataferry.config import Config, load
from dataferry.errors import ConfigError
from dataferry.progress import Reporter, human_bytes

FIRST = ["Amara", "Ben", "Chloe", "Dev", "Elif", "Femi", "Grace", "Hamza", "Isla", "Jonah", "Kemi", "Liam"]
LAST = ["Okafor", "Smith", "Patel", "Nowak", "Jones", "Khan", "Murphy", "Evans", "Ahmed", "Taylor"]
DOMAINS = ["gmail.com", "outlook.com", "yahoo.co.uk", "btinternet.com", "hotmail.com"]
TOPICS = ["tax", "benefits", "passports", "driving", "housing", "education", "business", "pensions"]

CONFIG = """\
# dataferry quickstart: SQLite databases and local directory stores, no servers needed.
[environments.production]
store = "stores/production"
protected = true

[environments.staging]
store = "stores/staging"

[environments.integration]
store = "stores/integration"

[databases.email-alert-api]
engine = "sqlite"
[databases.email-alert-api.environments]
production = { url = "sqlite:///databases/production/email-alert-api.db" }
staging = { url = "sqlite:///databases/staging/email-alert-api.db" }
integration = { url = "sqlite:///databases/integration/email-alert-api.db" }
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
            body = f"Dear {first},\nThere is an update on {rng.choice(TOPICS)}.\nUnsubscribe: {address}"
            con.execute(
                "INSERT INTO emails (address, subject, body) VALUES (?,?,?)", (address, "Update", body)
            )
    con.close()


def run_quickstart(directory: Path, *, reporter: Reporter, echo: Callable[[str], None]) -> Config:
    """Create the sample chain in ``directory`` and run it; returns the loaded configuration."""
    config_path = directory / "dataferry.toml"
    if config_path.exists() and "quickstart" not in config_path.read_text(encoding="utf-8"):
        raise ConfigError(f"{config_path} exists and was not made by quickstart; choose another directory")
    directory.mkdir(parents=True, exist_ok=True)
    config_path.write_text(CONFIG, encoding="utf-8")
    for env in ("production", "staging", "integration"):
        (directory / "databases" / env).mkdir(parents=True, exist_ok=True)
    prod_db = directory / "databases" / "production" / "email-alert-api.db"
    make_sample_database(prod_db)
    cfg = load(config_path)
    echo(f"1. made a sample production database with fake personal data: {prod_db}")
    result = ops.backup(cfg, "email-alert-api", "production", reporter=reporter)
    echo(f"2. backed it up: {result.store_url}{result.manifest.key} ({human_bytes(result.manifest.size)})")
    req = ops.RestoreRequest(database="email-alert-api", environment="staging", source="production")
    restored = ops.restore(cfg, req, reporter=reporter)
    rows = sum(restored.row_counts.values())
    echo(f"3. restored {restored.manifest.id} into staging (shadow, checksum, {rows} rows checked, swap)")
    listed = ops.list_artifacts(cfg, "email-alert-api", "production")
    echo(f"4. production's store holds {len(listed)} artifact(s); newest {listed[0].id}")
    ops.verify(cfg, "email-alert-api", "production")
    echo("5. verified the newest artifact against its manifest (size and sha256)")
    echo("")
    echo(f"config: {config_path}")
    echo(f"try:    dataferry --config {config_path} list email-alert-api --env production")
    return cfg
