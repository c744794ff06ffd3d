"""Client-side age encryption with PostgreSQL through S3 (moto): an encrypted backup restores
exactly (streaming, and spooled for ``--jobs 2``), and Debian's ``age`` and ``zstd`` turn the stored
object back into an archive ``pg_restore`` reads."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyrage import x25519

from dataferry import ops
from dataferry.layouts import store_for
from servers import PgServer, S3Server

from ._pg_helpers import PgSetup, fingerprint, new_setup, use_s3

IDENTITY_ENV = "FERRY_TEST_PG_AGE_IDENTITY"


@pytest.fixture
def pg_setup(pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PgSetup]:
    """A seeded source, a target with other data, local stores."""
    yield from new_setup(pg_server, tmp_path, monkeypatch)


@pytest.mark.parametrize("jobs", [1, 2])
def test_an_encrypted_backup_through_s3_restores_exactly(
    pg_setup: PgSetup,
    s3_server: S3Server,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    jobs: int,
) -> None:
    identity = x25519.Identity.generate()
    monkeypatch.setenv(IDENTITY_ENV, str(identity))
    use_s3(pg_setup, s3_server, s3_bucket, monkeypatch)
    pg_setup.prod_store += (
        f'\nencryption = {{ recipients = ["{identity.to_public()}"], identity_env = "{IDENTITY_ENV}" }}'
    )
    before = fingerprint(pg_setup.pg, pg_setup.src)

    manifest = ops.backup(pg_setup.config(), "app", "production").manifest
    req = ops.RestoreRequest(database="app", environment="staging", source="production", jobs=jobs)
    result = ops.restore(ops.plan_restore(pg_setup.config(), req))

    assert result.swapped and fingerprint(pg_setup.pg, pg_setup.dst) == before
    assert all(o.encryption is not None for o in manifest.objects)
    assert {tuple(o.encryption.recipients) for o in manifest.objects if o.encryption} == {
        (str(identity.to_public()),)
    }
    if jobs == 1 and shutil.which("age"):
        # by hand, as docs/engines.md says: every object through age -d | zstd -d into one
        # directory, which pg_restore reads as the directory-format dump pg_dump wrote
        key = tmp_path / "key.txt"
        key.write_text(str(identity) + "\n", encoding="utf-8")
        key.chmod(0o600)
        dump = tmp_path / "dump"
        dump.mkdir()
        for obj in manifest.objects:
            stored = tmp_path / "object.age"
            with store_for(pg_setup.config(), "production").open(obj.key) as src, stored.open("wb") as out:
                shutil.copyfileobj(src, out)
            assert stored.read_bytes().startswith(b"age-encryption.org/v1\n")
            shell = f"age -d -i {key} {stored} | zstd -d -q > {dump / str(obj.name)}"
            done = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
        listing = subprocess.run(
            [str(pg_setup.pg.bindir / "pg_restore"), "--list", str(dump)], capture_output=True, text=True
        )
        assert listing.returncode == 0, listing.stderr
        assert "TABLE DATA billing invoices" in listing.stdout
