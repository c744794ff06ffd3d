"""Client-side age encryption with MariaDB (the mysql engine): an encrypted backup restores through
dataferry, and Debian's ``age`` and ``zstd`` turn the stored object back into SQL the ``mariadb``
client loads."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from pyrage import x25519

from dataferry import ops
from dataferry.config import load
from dataferry.layouts import store_for
from servers import MariaDbServer

pytestmark = pytest.mark.integration

IDENTITY_ENV = "FERRY_TEST_MY_AGE_IDENTITY"
PASSWORD_ENV = "FERRY_TEST_MY_PASSWORD"


def count(maria: MariaDbServer, db: str) -> str:
    return maria.execute("SELECT COUNT(*), SUM(id) FROM items", db).strip()


def test_an_encrypted_mariadb_backup_restores_and_the_age_tool_reads_it(
    mariadb_server: MariaDbServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    maria = mariadb_server
    suffix = uuid.uuid4().hex[:8]
    src, dst, by_hand = f"enc_src_{suffix}", f"enc_dst_{suffix}", f"enc_hand_{suffix}"
    for db in (src, dst, by_hand):
        maria.create_db(db)
    maria.execute(
        "CREATE TABLE items (id INT PRIMARY KEY, label VARCHAR(64)); INSERT INTO items "
        + "VALUES "
        + ", ".join(f"({i}, 'label {i}')" for i in range(1, 501))
        + ";",
        src,
    )
    identity = x25519.Identity.generate()
    monkeypatch.setenv(IDENTITY_ENV, str(identity))
    monkeypatch.setenv(PASSWORD_ENV, maria.password)
    (tmp_path / "dataferry.toml").write_text(
        f"""
[environments.production]
store = "{tmp_path / "store"}"
encryption = {{ recipients = ["{identity.to_public()}"], identity_env = "{IDENTITY_ENV}" }}
[environments.staging]
store = "{tmp_path / "store-staging"}"

[databases.app]
engine = "mysql"
[databases.app.environments]
production = {{ url = "{maria.url(src)}", password_env = "{PASSWORD_ENV}" }}
staging = {{ url = "{maria.url(dst)}", password_env = "{PASSWORD_ENV}" }}
""",
        encoding="utf-8",
    )
    cfg = load(tmp_path / "dataferry.toml")
    try:
        manifest = ops.backup(cfg, "app", "production").manifest
        req = ops.RestoreRequest(database="app", environment="staging", source="production")
        assert ops.restore(ops.plan_restore(cfg, req)).swapped
        assert count(maria, dst) == count(maria, src) == "500\t125250"
        if not shutil.which("age"):
            pytest.skip("Debian's age is not installed")
        stored = tmp_path / "object.age"
        with store_for(cfg, "production").open(manifest.objects[0].key) as f, stored.open("wb") as out:
            shutil.copyfileobj(f, out)
        key = tmp_path / "key.txt"
        key.write_text(str(identity) + "\n", encoding="utf-8")
        key.chmod(0o600)
        opts = maria.option_file(tmp_path / "client.cnf")
        shell = (
            f"age -d -i {key} {stored} | zstd -d -q | "
            f"{maria.client} --defaults-extra-file={opts} --database={by_hand}"
        )
        loaded = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True)
        assert loaded.returncode == 0, loaded.stderr
        assert count(maria, by_hand) == "500\t125250"
    finally:
        for db in (src, dst, by_hand):
            maria.drop_db(db)
