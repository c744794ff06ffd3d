"""The gate and trust half of issue 12: nothing runs between the gate and publication, signed
manifests, masked means masked, silent no-ops, interrupted sanitisations and raw leftovers.

SQLite throughout (the quickstart's sample database and profile): these are rules of ``ops`` and the
job runner, the same for every engine."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dataferry import artifacts, ops, signing
from dataferry.cli import cli
from dataferry.config import Config, DatabaseRef, load
from dataferry.engines import get_engine
from dataferry.engines.sqlite import _SHADOW_MARK
from dataferry.errors import ChecksFailed, ConfigError, NotReady, SanitisationFailed, UntrustedArtifact
from dataferry.jobs import state
from dataferry.jobs.runner import run_job
from dataferry.jobs.state import StoreCache
from dataferry.jobs.triggers import pending_after
from dataferry.progress import NullReporter
from dataferry.quickstart import DB, PROFILE, SALT_ENV, make_sample_database, personal_data
from dataferry.sanitise import check_live
from dataferry.sanitise.execution import sanitise, target
from dataferry.sanitise.profile import load as load_profile
from dataferry.stores import Store, put_bytes, read_bytes
from signing_keys import key_pair, signed_config

SALT = "trust-test-salt-0123456789abcdef"
STAGE = ["restore:production", "sanitise", "backup"]


def chain(
    root: Path, stage_steps: list[str] | None = None, extra: str = "", profile: str = PROFILE
) -> Config:
    """production -> staging (sanitised) -> integration, SQLite databases and local stores."""
    (root / "profile.toml").write_text(profile)
    for env in ("production", "staging", "integration"):
        (root / "databases" / env).mkdir(parents=True, exist_ok=True)
    make_sample_database(root / "databases" / "production" / f"{DB}.db", subscribers=50)
    steps = ", ".join(f'"{s}"' for s in (stage_steps or STAGE))
    text = f"""
[environments.production]
store = "stores/production"
protected = true
[environments.staging]
store = "stores/staging"
requires_sanitised = true
[environments.integration]
store = "stores/integration"
requires_sanitised = true

[databases.{DB}]
engine = "sqlite"
sanitise = "profile.toml"
[databases.{DB}.environments]
production = {{ url = "sqlite:///databases/production/{DB}.db" }}
staging = {{ url = "sqlite:///databases/staging/{DB}.db" }}
integration = {{ url = "sqlite:///databases/integration/{DB}.db" }}

[jobs.prod]
environment = "production"
database = "{DB}"
steps = ["backup"]
[jobs.stage]
environment = "staging"
database = "{DB}"
steps = [{steps}]
[jobs.integ]
environment = "integration"
database = "{DB}"
steps = ["restore:staging"]
{extra}
"""
    (root / "dataferry.toml").write_text(signed_config(text, root))
    return load(root / "dataferry.toml")


@pytest.fixture(autouse=True)
def _salt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SALT_ENV, SALT)


def manifests(cfg: Config, env: str) -> list[str]:
    return artifacts.manifest_keys(ops.store_for(cfg, env), DB)


# -- nothing runs between the gate and publication ----------------------------------------------


LEAK_HOOK = """\
import os, sqlite3
path = os.environ["DATAFERRY_DATABASE_URL"].removeprefix("sqlite:///")
con = sqlite3.connect(path)
with con:
    con.execute("UPDATE subscribers SET phone = '07911 223344' WHERE id = 1")
con.close()
"""


def test_a_hook_between_sanitise_and_backup_is_checked_again_and_its_leak_not_published(
    tmp_path: Path,
) -> None:
    (tmp_path / "leak.py").write_text(LEAK_HOOK)
    cfg = chain(tmp_path, ["restore:production", "sanitise", f"hook:{sys.executable} leak.py", "backup"])
    run_job(cfg, "prod")
    with pytest.raises(ChecksFailed) as info:
        run_job(cfg, "stage")
    assert info.value.exit_code == 8
    assert "phone in subscribers.phone (1)" in info.value.message
    assert manifests(cfg, "staging") == []  # nothing published
    record = state.last_run(StoreCache(cfg).for_job("stage"), "stage")
    assert record is not None and record.status == "failed"
    assert [s.status for s in record.steps] == ["succeeded", "succeeded", "succeeded", "failed"]


def test_without_a_hook_the_backup_trusts_the_restores_gate(tmp_path: Path) -> None:
    cfg = chain(tmp_path)
    run_job(cfg, "prod")
    record = run_job(cfg, "stage")
    assert record is not None and record.status == "succeeded"
    assert record.steps[2].detail == "sanitised"  # not checked again: nothing ran in between
    emails, phones = personal_data(tmp_path / "databases" / "staging" / f"{DB}.db")
    prod_emails, prod_phones = personal_data(tmp_path / "databases" / "production" / f"{DB}.db")
    assert not emails & prod_emails and not phones & prod_phones


def test_a_harmless_hook_before_the_backup_passes_the_second_check_and_says_so(tmp_path: Path) -> None:
    cfg = chain(tmp_path, ["restore:production", "sanitise", f"hook:{sys.executable} -c pass", "backup"])
    run_job(cfg, "prod")
    record = run_job(cfg, "stage")
    assert record is not None and record.status == "succeeded"
    assert record.steps[3].detail == "sanitised, live data checked again after step 3"
    assert len(manifests(cfg, "staging")) == 1


# -- signed manifests --------------------------------------------------------------------------


def published_chain(root: Path) -> Config:
    """production backed up, staging restored, sanitised and published (signed)."""
    cfg = chain(root)
    run_job(cfg, "prod")
    record = run_job(cfg, "stage")
    assert record is not None and record.status == "succeeded"
    return cfg


def staged_manifest(cfg: Config) -> tuple[Store, dict[str, Any], str]:
    store = ops.store_for(cfg, "staging")
    (key,) = manifests(cfg, "staging")
    return store, json.loads(read_bytes(store, key)), key


def restore_integration(cfg: Config) -> ops.RestoreResult:
    req = ops.RestoreRequest(database=DB, environment="integration", source="staging")
    return ops.restore(ops.plan_restore(cfg, req))


def test_a_sanitised_artifact_is_signed_and_restored_from_a_requires_sanitised_store(tmp_path: Path) -> None:
    cfg = published_chain(tmp_path)
    _, body, _ = staged_manifest(cfg)
    signer = signing.load_signer(cfg)
    assert signer is not None
    assert body["signature"]["algorithm"] == "ed25519"
    assert body["signature"]["key"] == signer.fingerprint  # the fingerprint names the key; nothing else
    assert body["sanitisation"]["profile_sha256"] and body["objects"][0]["sha256"]
    private = (tmp_path / "signing.key").read_text()
    assert "PRIVATE" in private and private.splitlines()[1] not in json.dumps(body)
    assert restore_integration(cfg).swapped
    assert ops.verify(cfg, DB, "staging").signature is not None
    findings = {what: (ok, detail) for what, ok, detail in ops.check(cfg).findings}
    assert findings[f"newest artifact of {DB} in staging"][0]


def forge(store: Store, key: str, body: dict[str, Any]) -> None:
    put_bytes(store, key, json.dumps(body).encode())


@pytest.mark.parametrize("attack", ["unsigned", "edited", "copied production artifact", "wrong key"])
def test_a_requires_sanitised_store_refuses_a_sanitised_artifact_it_cannot_trust(
    tmp_path: Path, attack: str
) -> None:
    cfg = published_chain(tmp_path)
    store, body, key = staged_manifest(cfg)
    if attack == "unsigned":
        del body["signature"]
        reason = "it is not signed"
    elif attack == "edited":
        body["row_counts"]["subscribers"] += 1
        reason = "does not match its content"
    elif attack == "copied production artifact":
        # production's raw artifact put into the staging store, its manifest given staging's
        # sanitisation fields and signature
        prod = ops.store_for(cfg, "production")
        (prod_key,) = artifacts.manifest_keys(prod, DB)
        raw = json.loads(read_bytes(prod, prod_key))
        for obj in raw["objects"]:
            with prod.open(obj["key"]) as src:
                store.put(obj["key"], src)
        for field in ("sanitised", "sanitisation", "signature"):
            raw[field] = body[field]
        store.delete(key)
        key, body = prod_key, raw
        reason = "does not match its content"
    else:
        other, _ = key_pair(tmp_path, "other.key")
        signed = signing.signer_from_file(other).sign(artifacts.Manifest.model_validate(body))
        body = json.loads(signed.model_dump_json())
        reason = "which is not one of the trusted keys"
    forge(store, key, body)
    before = sorted((tmp_path / "databases" / "integration").iterdir())
    with pytest.raises(UntrustedArtifact) as info:
        restore_integration(cfg)
    assert info.value.exit_code == 9 and reason in info.value.message
    assert "says it is sanitised" in info.value.message and "PRIVATE" not in info.value.message
    assert sorted((tmp_path / "databases" / "integration").iterdir()) == before
    # the job says the same, and its run is recorded failed with exit 9
    with pytest.raises(UntrustedArtifact):
        run_job(cfg, "integ")
    with pytest.raises(UntrustedArtifact):
        ops.verify(cfg, DB, "staging")  # 'dataferry verify' too
    findings = {what: (ok, detail) for what, ok, detail in ops.check(cfg).findings}
    ok, detail = findings[f"newest artifact of {DB} in staging"]  # 'dataferry check' says so
    assert not ok and reason in detail


def test_a_forged_sanitised_artifact_from_an_untrusted_store_is_sanitised_again(tmp_path: Path) -> None:
    """Production does not require sanitised data: a "sanitised" manifest there is not trusted by
    staging without a signature by a key staging trusts, so the restore sanitises the shadow."""
    cfg = chain(tmp_path)
    run_job(cfg, "prod")
    prod = ops.store_for(cfg, "production")
    (key,) = artifacts.manifest_keys(prod, DB)
    body = json.loads(read_bytes(prod, key))
    body["sanitised"] = True
    body["sanitisation"] = {"profile": "x", "profile_sha256": "0" * 64, "passed": True}
    forge(prod, key, body)
    plan = ops.plan_restore(cfg, ops.RestoreRequest(database=DB, environment="staging", source="production"))
    assert plan.sanitiser is not None and plan.sanitise_reason is not None
    assert "it is not signed" in plan.sanitise_reason


def test_publishing_into_a_requires_sanitised_store_needs_a_key_it_trusts(tmp_path: Path) -> None:
    cfg = chain(tmp_path)
    run_job(cfg, "prod")
    text = (tmp_path / "dataferry.toml").read_text()
    key_pair(tmp_path, "other.key")
    (tmp_path / "dataferry.toml").write_text(text.replace("signing.key", "other.key"))
    with pytest.raises(UntrustedArtifact, match="does not trust the signing key SHA256:") as info:
        run_job(load(tmp_path / "dataferry.toml"), "stage")
    assert "other.key" in info.value.message
    assert info.value.hint and f"keygen --show {tmp_path / 'other.key'}'" in info.value.hint  # as typed
    assert manifests(cfg, "staging") == []
    # no key at all: a configuration error before anything runs
    (tmp_path / "dataferry.toml").write_text(re.sub(r'signing_key_file = ".*"\n', "", text))
    with pytest.raises(ConfigError, match="no signing key is configured"):
        ops.backup(load(tmp_path / "dataferry.toml"), DB, "staging")
    # a key file others can read is refused
    (tmp_path / "signing.key").chmod(0o644)
    with pytest.raises(NotReady, match="readable by others"):
        run_job(cfg, "stage")
    assert manifests(cfg, "staging") == []


def test_requires_sanitised_without_trusted_keys_is_a_configuration_error(tmp_path: Path) -> None:
    chain(tmp_path)
    text = (tmp_path / "dataferry.toml").read_text()
    (tmp_path / "dataferry.toml").write_text(re.sub(r"trusted_keys = .*\n", "", text, count=1))
    with pytest.raises(ConfigError, match="requires_sanitised needs the public keys"):
        load(tmp_path / "dataferry.toml")
    (tmp_path / "dataferry.toml").write_text(
        text.replace('trusted_keys = ["ed25519:', 'trusted_keys = ["rsa:', 1)
    )
    with pytest.raises(ConfigError, match="is not a public key"):
        load(tmp_path / "dataferry.toml")


def test_keygen_writes_a_private_key_only_its_owner_reads_and_prints_the_public_key(tmp_path: Path) -> None:
    out = tmp_path / "k" / "signing.key"
    first = CliRunner().invoke(cli, ["keygen", "--out", str(out)])
    assert first.exit_code == 0, first.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    public = re.search(r'trusted_keys = \["(ed25519:[^"]+)"\]', first.output)
    assert public is not None and "PRIVATE" not in first.output
    shown = CliRunner().invoke(cli, ["keygen", "--show", str(out)])
    assert shown.exit_code == 0 and public.group(1) in shown.output
    again = CliRunner().invoke(cli, ["keygen", "--out", str(out)])
    assert again.exit_code == 2 and "never overwrites" in again.output


# -- masked means masked --------------------------------------------------------------------------

ROW_RULE = """
[[rows]]
table = "subscriptions"
delete_where = "topic = 'passports'"
"""


def staging_sql(root: Path, sql: str) -> None:
    con = sqlite3.connect(root / "databases" / "staging" / f"{DB}.db")
    with con:
        con.execute(sql)
    con.close()


def test_a_checks_only_backup_verifies_every_masked_column_holds_only_its_rules_form(tmp_path: Path) -> None:
    cfg = chain(
        tmp_path, profile=PROFILE.replace("[tables.subscribers]", ROW_RULE + "\n[tables.subscribers]")
    )
    run_job(cfg, "prod")
    run_job(cfg, "stage")
    result = check_live(cfg, DB, "staging", NullReporter())
    masked = {r["name"]: r for r in result.checks if r["check"] == "masked"}
    assert set(masked) == {
        "subscribers.address: fake_email",
        "subscribers.name: fake_name",
        "subscribers.phone: fake_phone",
        "emails.address: fake_email",
        "rows subscriptions: delete where topic = 'passports'",
    }  # the substitute rule (emails.body) has no form: the scan covers it
    assert all(r["passed"] for r in masked.values())
    # a real name under a fake_name rule: no email or phone pattern matches it, but it is not masked
    staging_sql(tmp_path, "UPDATE subscribers SET name = 'Józef Nowak' WHERE id = 1")
    staging_sql(tmp_path, "INSERT INTO subscriptions (subscriber_id, topic) VALUES (2, 'passports')")
    with pytest.raises(ChecksFailed) as info:
        ops.backup(cfg, DB, "staging")
    message = info.value.message
    assert info.value.exit_code == 8 and "Józef" not in message and "Nowak" not in message
    assert "subscribers.name: fake_name: 1 row(s) not of the rule's form" in message
    assert "rows subscriptions: delete where topic = 'passports': 1 row(s)" in message
    assert not info.value.report.passed
    assert manifests(cfg, "staging") == [manifests(cfg, "staging")[0]]  # only the job's artifact


# -- silent no-ops --------------------------------------------------------------------------------

EPOCH_PROFILE = """
salt_env = "{salt_env}"
[[rows]]
table = "events"
keep_newer_than_days = 30
column = "{column}"
[tables.events]
keep = ["id", "at", "iso"]
"""


@pytest.mark.parametrize("column", ["at", "iso"])
def test_a_row_rule_on_a_column_that_does_not_hold_times_stops_instead_of_deleting_everything(
    tmp_path: Path, column: str
) -> None:
    db = tmp_path / "events.db"
    con = sqlite3.connect(db)
    with con:
        con.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, at INTEGER, iso TEXT)")
        now = int(time.time())
        con.executemany(
            "INSERT INTO events VALUES (?, ?, ?)",
            [(i, now - i * 86400, "yesterday" if i == 3 else f"2026-11-{i:02d}") for i in range(1, 6)],
        )
    con.close()
    (tmp_path / "p.toml").write_text(EPOCH_PROFILE.format(salt_env=SALT_ENV, column=column))
    profile = load_profile(tmp_path / "p.toml")
    ref = DatabaseRef(name="events", engine="sqlite", environment="scratch", url=f"sqlite:///{db}")
    t = target(get_engine("sqlite"), ref, None)
    with pytest.raises(SanitisationFailed) as info:
        sanitise(t, profile, SALT, NullReporter())
    expected = {"at": "holds 5 value(s) that are not times", "iso": "holds 1 value(s) that are not times"}
    assert info.value.exit_code == 8
    assert f"events.{column} {expected[column]}" in info.value.message
    assert "nothing was deleted" in info.value.message
    with closing(sqlite3.connect(db)) as con:
        assert con.execute("SELECT count(*) FROM events").fetchone() == (5,)


# -- interrupted, not failed ---------------------------------------------------------------------

#: A script that keeps SQLite busy calling back into Python (regexp) for minutes: the stop request
#: arrives while the sanitisation statement runs.
SLOW_SCRIPT = (
    "CREATE TEMP TABLE slow AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
    "WHERE x < 500000000) SELECT count(*) AS n FROM c WHERE 'a' REGEXP CAST(x AS TEXT);\n"
)


def slow_chain(root: Path) -> Config:
    """The chain with a slow sanitisation script, and staging's job triggered by production's."""
    (root / "slow.sql").write_text(SLOW_SCRIPT)
    chain(root, profile=PROFILE.replace("strict = true", 'strict = true\nscripts = ["slow.sql"]'))
    text = (root / "dataferry.toml").read_text()
    steps = 'steps = ["restore:production", "sanitise", "backup"]'
    (root / "dataferry.toml").write_text(text.replace(steps, steps + '\nafter = "prod"'))
    cfg = load(root / "dataferry.toml")
    run_job(cfg, "prod")
    return cfg


def stop_during_sanitisation(
    root: Path, sig: signal.Signals, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``dataferry ARGS`` and send ``sig`` once the slow script runs."""
    argv = [sys.executable, "-m", "dataferry", "--config", str(root / "dataferry.toml"), *args]
    environ = {**os.environ, SALT_ENV: SALT, **(env or {})}
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=environ, cwd=root)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "sanitise: script slow.sql" in line:
            time.sleep(0.5)  # inside the statement
            proc.send_signal(sig)
            break
    rest = proc.communicate(timeout=120)[1]
    return subprocess.CompletedProcess(argv, proc.returncode, "", "".join(seen) + rest)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_sanitisation_stopped_by_a_signal_is_interrupted_and_does_not_use_up_its_trigger(
    tmp_path: Path, sig: signal.Signals
) -> None:
    cfg = slow_chain(tmp_path)
    upstream = pending_after(cfg, "stage", StoreCache(cfg))
    assert upstream is not None
    done = stop_during_sanitisation(tmp_path, sig, "run", "stage")
    assert done.returncode == 1, done.stderr  # Interrupted, not 8 (sanitisation failed)
    assert "error: job stage was stopped by" in done.stderr
    record = state.last_run(StoreCache(cfg).for_job("stage"), "stage")
    assert record is not None and record.status == "interrupted", record
    assert record.error is not None and record.error.type == "Interrupted"
    assert [s.status for s in record.steps] == ["interrupted", "interrupted", "skipped"]
    # the trigger is still pending: the scheduler runs the job again for the same artifact
    assert pending_after(cfg, "stage", StoreCache(cfg)) == upstream
    assert manifests(cfg, "staging") == []
    leftovers = [p.name for p in (tmp_path / "databases" / "staging").iterdir()]
    assert leftovers == [], leftovers  # the shadow was dropped


def test_a_restore_stopped_during_its_sanitisation_is_not_a_failed_sanitisation(tmp_path: Path) -> None:
    slow_chain(tmp_path)
    done = stop_during_sanitisation(
        tmp_path, signal.SIGTERM, "restore", DB, "--env", "staging", "--from", "production"
    )
    assert done.returncode not in (0, 8), done.stderr
    assert "sanitisation step" not in done.stderr and "user-defined function" not in done.stderr
    assert [p.name for p in (tmp_path / "databases" / "staging").iterdir()] == []


# -- leftovers of a killed run -------------------------------------------------------------------


def readable_by_others(root: Path) -> list[str]:
    """Files under ``root`` that a user other than the owner could read (their mode, and every
    directory on the way down from ``root`` letting others through)."""
    found = []
    for directory, dirs, files in os.walk(root):
        here = Path(directory)
        if here != root and stat.S_IMODE(here.stat().st_mode) & 0o077 == 0:
            dirs.clear()  # a private directory: nothing below it is reachable by others
            continue
        found += [f"{here / f}" for f in files if stat.S_IMODE((here / f).stat().st_mode) & 0o044]
    return found


def test_a_run_killed_during_sqlite_sanitisation_leaves_nothing_readable_and_is_swept(tmp_path: Path) -> None:
    slow_chain(tmp_path)
    staging = tmp_path / "databases" / "staging"
    done = stop_during_sanitisation(tmp_path, signal.SIGKILL, "run", "stage")
    assert done.returncode == -signal.SIGKILL
    left = sorted(p.name for p in staging.iterdir())
    assert left, "the killed run left its shadow"
    assert readable_by_others(staging) == [], left
    config = str(tmp_path / "dataferry.toml")
    check = subprocess.run(
        [sys.executable, "-m", "dataferry", "--config", config, "check"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    shadow = next(p.name for p in staging.iterdir() if _SHADOW_MARK in p.name and "journal" not in p.name)
    assert "shadows left by killed restores" in check.stdout + check.stderr
    assert shadow in check.stdout + check.stderr, check.stdout + check.stderr
    cleanup = subprocess.run(
        [sys.executable, "-m", "dataferry", "--config", config, "cleanup", DB, "--env", "staging"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert cleanup.returncode == 0, cleanup.stderr
    assert [p.name for p in staging.iterdir()] == []
    # the next restore removes them too, and says so
    restore = ("restore", DB, "--env", "staging", "--from", "production")
    stop_during_sanitisation(tmp_path, signal.SIGKILL, *restore)
    assert any(_SHADOW_MARK in p.name for p in staging.iterdir())
    (tmp_path / "slow.sql").write_text("SELECT 1;\n")
    done = subprocess.run(
        [sys.executable, "-m", "dataferry", "--config", config, *restore],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, SALT_ENV: SALT},
    )
    assert done.returncode == 0, done.stderr
    assert "left by a dataferry run that was killed" in done.stderr
    assert sorted(p.name for p in staging.iterdir()) == [f"{DB}.db"]


def test_a_killed_sanitised_backup_leaves_no_copy_readable_by_others_and_the_next_one_sweeps(
    tmp_path: Path,
) -> None:
    (tmp_path / "slow.sql").write_text(SLOW_SCRIPT)
    (tmp_path / "databases" / "scratch").mkdir(parents=True)
    scratch = f'[databases.{DB}.scratch]\nurl = "sqlite:///databases/scratch/{DB}.db"\n'
    chain(
        tmp_path,
        extra=scratch,
        profile=PROFILE.replace("strict = true", 'strict = true\nscripts = ["slow.sql"]'),
    )
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    backup = ("backup", DB, "--env", "production", "--sanitise")
    done = stop_during_sanitisation(tmp_path, signal.SIGKILL, *backup, env={"TMPDIR": str(tmp)})
    assert done.returncode == -signal.SIGKILL, done.stderr
    left = [*(tmp_path / "databases" / "scratch").iterdir(), *tmp.iterdir()]
    assert any(_SHADOW_MARK in p.name for p in left), left  # the copy being sanitised is still there...
    assert readable_by_others(tmp_path / "databases" / "scratch") == readable_by_others(tmp) == []  # private
    (tmp_path / "slow.sql").write_text("SELECT 1;\n")
    again = subprocess.run(
        [sys.executable, "-m", "dataferry", "--config", str(tmp_path / "dataferry.toml"), *backup],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, SALT_ENV: SALT, "TMPDIR": str(tmp)},
    )
    assert again.returncode == 0, again.stderr
    assert "left by a dataferry run that was killed" in again.stderr
    assert sorted(p.name for p in (tmp_path / "databases" / "scratch").iterdir()) == [f"{DB}.db"]
    assert list(tmp.iterdir()) == []


def test_a_script_statement_that_changes_nothing_is_a_warning_in_the_run_record(tmp_path: Path) -> None:
    (tmp_path / "noop.sql").write_text("DELETE FROM subscriptions WHERE topic = 'no such topic';\n")
    cfg = chain(tmp_path, profile=PROFILE.replace("strict = true", 'strict = true\nscripts = ["noop.sql"]'))
    run_job(cfg, "prod")
    record = run_job(cfg, "stage")
    assert record is not None and record.status == "succeeded"
    warning = "script noop.sql: statement 1 (DELETE) changed 0 rows"
    assert record.steps[1].warnings == [warning]
    shown = CliRunner().invoke(cli, ["--config", str(tmp_path / "dataferry.toml"), "history", "stage"])
    assert f"       warning: {warning}" in shown.output
    _, body, _ = staged_manifest(cfg)
    assert body["sanitisation"]["warnings"] == [warning]
    assert body["sanitisation"]["statements"] == [
        {"script": "noop.sql", "statement": 1, "kind": "DELETE", "rows": 0}
    ]


def test_check_reports_the_signing_key_and_who_trusts_it(tmp_path: Path) -> None:
    cfg = chain(tmp_path)
    findings = {what: (ok, detail) for what, ok, detail in ops.check(cfg).findings}
    ok, detail = findings["manifest signing key"]
    signer = signing.load_signer(cfg)
    assert signer is not None
    assert ok and detail.startswith(signer.fingerprint) and "trusted by staging, integration" in detail
    (tmp_path / "signing.key").chmod(0o640)
    ok, detail = {w: (o, d) for w, o, d in ops.check(cfg).findings}["manifest signing key"]
    assert not ok and "readable by others" in detail
