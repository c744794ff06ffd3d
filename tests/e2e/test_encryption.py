"""Client-side age encryption, end to end on SQLite and local stores.

Interoperability is checked both ways with Debian's ``age`` command-line tool: an artifact dataferry
encrypted is decrypted by ``age -d`` and ``zstd -d`` into a database file, and a data object ``age
-r`` encrypted is restored by dataferry. A missing or wrong identity exits 3 and a damaged ciphertext
exits 7, both with the target untouched; the identity (a sentinel) never shows in argv, output,
logs, manifests or errors.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner
from pyrage import x25519

from dataferry import artifacts, ops
from dataferry.cli import cli
from dataferry.config import load
from dataferry.stores.local import LocalStore

needs_age = pytest.mark.skipif(
    not (shutil.which("age") and shutil.which("zstd")), reason="needs Debian's age and zstd"
)

IDENTITY_ENV = "FERRY_TEST_AGE_IDENTITY"

CONFIG = """\
[environments.production]
store = "stores/production"
protected = true
encryption = {{ recipients = ["{recipient}"], identity_env = "{identity_env}" }}

[environments.staging]
store = "stores/staging"

[databases.app]
engine = "sqlite"
[databases.app.environments]
production = {{ url = "sqlite:///db/production/app.db" }}
staging = {{ url = "sqlite:///db/staging/app.db" }}
"""


def make_db(path: Path, rows: int, label: str) -> None:
    """A one-table SQLite database."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path)) as con, con:
        con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, label TEXT)")
        con.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"{label}-{i}") for i in range(rows)])


def rows(path: Path) -> list[tuple[object, ...]]:
    """Every row of the items table."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
        return con.execute("SELECT * FROM items ORDER BY id").fetchall()


def digest(path: Path) -> str:
    """sha256 of a file: 'unchanged' means byte for byte."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Project:
    """Production (encrypted store, 300 rows, one artifact) and staging (5 other rows)."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.identity = x25519.Identity.generate()
        self.secret = str(self.identity)
        self.recipient = str(self.identity.to_public())
        self.key_file = root / "key.txt"
        self.key_file.write_text(f"# test key\n{self.secret}\n", encoding="utf-8")
        self.key_file.chmod(0o600)
        self.config = root / "dataferry.toml"
        self.config.write_text(
            CONFIG.format(recipient=self.recipient, identity_env=IDENTITY_ENV), encoding="utf-8"
        )
        self.production, self.staging = root / "db/production/app.db", root / "db/staging/app.db"
        make_db(self.production, 300, "prod")
        make_db(self.staging, 5, "staging")
        monkeypatch.setenv(IDENTITY_ENV, self.secret)
        self.manifest = ops.backup(load(self.config), "app", "production").manifest
        self.store = LocalStore(root / "stores/production")
        self.data_file = root / "stores/production" / self.manifest.objects[0].key

    def run(self, *args: str) -> tuple[int, str]:
        """Run the command in this process; exit status and everything it printed."""
        result = CliRunner().invoke(cli, ["--config", str(self.config), *args], prog_name="dataferry")
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return result.exit_code, result.stdout + result.stderr

    def restore(self) -> tuple[int, str]:
        """Restore production's latest into staging."""
        return self.run("restore", "app", "--env", "staging", "--from", "production")

    def rewrite(self, data: bytes, *, fix_manifest: bool) -> None:
        """Replace the data object; with ``fix_manifest``, record its new size and sha256 too (as a
        forger would, so only age's own authentication can catch the change)."""
        self.data_file.write_bytes(data)
        if fix_manifest:
            path = self.root / "stores/production" / self.manifest.key
            doc = json.loads(path.read_text(encoding="utf-8"))
            doc["objects"][0]["size"] = len(data)
            doc["objects"][0]["sha256"] = hashlib.sha256(data).hexdigest()
            path.write_text(json.dumps(doc), encoding="utf-8")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    return Project(tmp_path, monkeypatch)


def test_the_manifest_records_the_recipients_and_the_object_is_an_age_file(project: Project) -> None:
    obj = project.manifest.objects[0]
    assert obj.encryption is not None and obj.encryption.recipients == [project.recipient]
    assert project.data_file.read_bytes().startswith(b"age-encryption.org/v1\n")
    assert obj.key.endswith(".sqlite.zst.age")
    manifest_text = (project.root / "stores/production" / project.manifest.key).read_text()
    assert project.recipient in manifest_text and project.secret not in manifest_text
    # verify needs no identity: the sha256 is that of the stored (encrypted) bytes
    artifacts.verify(project.store, artifacts.latest(project.store, "app"))


def test_an_encrypted_artifact_is_restored_with_the_identity(project: Project) -> None:
    code, out = project.restore()
    assert code == 0, out
    assert rows(project.staging) == rows(project.production)


@needs_age
def test_the_age_tool_and_zstd_decrypt_what_dataferry_wrote(project: Project, tmp_path: Path) -> None:
    out = tmp_path / "decrypted.db"
    age = subprocess.run(
        ["age", "-d", "-i", str(project.key_file), str(project.data_file)], capture_output=True, check=True
    )
    subprocess.run(["zstd", "-d", "-q", "-o", str(out)], input=age.stdout, check=True)
    assert rows(out) == rows(project.production)


@needs_age
def test_dataferry_restores_what_the_age_tool_encrypted(project: Project, tmp_path: Path) -> None:
    plain = tmp_path / "plain.zst"
    subprocess.run(
        ["age", "-d", "-i", str(project.key_file), "-o", str(plain), str(project.data_file)], check=True
    )
    by_age = subprocess.run(
        ["age", "-r", project.recipient, str(plain)], capture_output=True, check=True
    ).stdout
    assert by_age != project.data_file.read_bytes()  # a fresh file key: other bytes
    project.rewrite(by_age, fix_manifest=True)
    code, out = project.restore()
    assert code == 0, out
    assert rows(project.staging) == rows(project.production)


def test_a_missing_identity_exits_3_before_anything_changes(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(IDENTITY_ENV)
    before = digest(project.staging)
    code, out = project.restore()
    assert code == 3, out
    assert IDENTITY_ENV in out and "Traceback" not in out
    assert digest(project.staging) == before
    assert sorted(p.name for p in project.staging.parent.iterdir()) == ["app.db"]


def test_a_wrong_identity_exits_3_before_anything_changes(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = str(x25519.Identity.generate())
    monkeypatch.setenv(IDENTITY_ENV, other)
    before = digest(project.staging)
    code, out = project.restore()
    assert code == 3, out
    assert "not encrypted for the age identity" in out and other not in out
    assert digest(project.staging) == before
    assert sorted(p.name for p in project.staging.parent.iterdir()) == ["app.db"]


@pytest.mark.parametrize("fix_manifest", [False, True], ids=["checksum", "age-authentication"])
def test_a_damaged_ciphertext_is_refused_before_the_swap(project: Project, fix_manifest: bool) -> None:
    data = bytearray(project.data_file.read_bytes())
    data[len(data) // 2] ^= 0x10  # inside the payload: the header (and the identity check) pass
    project.rewrite(bytes(data), fix_manifest=fix_manifest)
    before = digest(project.staging)
    code, out = project.restore()
    assert code == 7, out
    assert digest(project.staging) == before
    assert sorted(p.name for p in project.staging.parent.iterdir()) == ["app.db"]


def test_the_identity_never_shows(
    project: Project, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A sentinel identity: not in any argv or child environment, output, log record, manifest or
    error, whether the restore succeeds, lacks the key or is handed a malformed one."""
    launched: list[str] = []
    real_popen = subprocess.Popen.__init__

    def spy(self: subprocess.Popen[bytes], args: object, *a: object, **kw: object) -> None:
        launched.append(repr(args) + repr(kw.get("env")))
        real_popen(self, args, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(subprocess.Popen, "__init__", spy)
    outputs = [project.run("--json-logs", "restore", "app", "--env", "staging", "--from", "production")]
    assert outputs[0][0] == 0, outputs[0][1]
    outputs.append(project.run("list", "app", "--env", "production", "--json"))
    malformed = project.secret[:-6] + "XXXXXX"  # a broken key: its error must not quote it
    monkeypatch.setenv(IDENTITY_ENV, malformed)
    outputs.append(project.restore())
    assert outputs[-1][0] == 3, outputs[-1][1]
    plan_error = None
    monkeypatch.setenv(IDENTITY_ENV, project.secret)
    plan = ops.plan_restore(load(project.config), ops.RestoreRequest("app", "staging", "production"))
    plan_error = repr(plan) + str(plan)
    stored = "".join(p.read_text(errors="replace") for p in project.root.glob("stores/**/*.json"))
    seen = "\n".join([*(o for _, o in outputs), *launched, caplog.text, stored, plan_error])
    for secret in (project.secret, malformed, project.secret[15:40]):
        assert secret not in seen


def test_a_secret_key_written_as_a_recipient_is_rejected_without_echoing_it(project: Project) -> None:
    text = project.config.read_text(encoding="utf-8").replace(project.recipient, project.secret)
    project.config.write_text(text, encoding="utf-8")
    code, out = project.run("check")
    assert code == 2, out
    assert "environments.production.encryption.recipients" in out and project.secret not in out


def test_a_govuk_layout_store_is_not_encrypted(project: Project) -> None:
    """GOV.UK's scripts read the govuk layouts' dumps, and they cannot read age files."""
    text = project.config.read_text(encoding="utf-8").replace(
        'store = "stores/production"', 'store = { url = "stores/govuk", layout = "govuk" }'
    )
    project.config.write_text(text, encoding="utf-8")
    code, out = project.run("backup", "app", "--env", "production")
    assert code == 2, out
    assert "cannot read age files" in out
    assert not (project.root / "stores/govuk").exists() or not any(
        (project.root / "stores/govuk").rglob("*.gz")
    )


def test_files_for_recipients_and_identity_and_what_check_says(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project.root / "recipients.txt").write_text(f"# team keys\n{project.recipient}\n", encoding="utf-8")
    text = project.config.read_text(encoding="utf-8").replace(
        f'recipients = ["{project.recipient}"], identity_env = "{IDENTITY_ENV}"',
        'recipients_file = "recipients.txt", identity_file = "key.txt"',
    )
    project.config.write_text(text, encoding="utf-8")
    monkeypatch.delenv(IDENTITY_ENV)
    code, out = project.run("backup", "app", "--env", "production")
    assert code == 0, out
    code, out = project.restore()
    assert code == 0, out
    assert rows(project.staging) == rows(project.production)
    code, out = project.run("check")
    assert "ok    encryption of production: recipients: 1 age recipient(s)" in out
    assert f"ok    encryption of production: identity: from the identity file {project.key_file}" in out
    project.key_file.write_text("AGE-SECRET-KEY-1NOTAKEY\n", encoding="utf-8")
    code, out = project.run("check")
    assert code == 3 and "FAIL  encryption of production: identity: " in out, out
    assert "line 1 of the identity file" in out and "NOTAKEY" not in out
