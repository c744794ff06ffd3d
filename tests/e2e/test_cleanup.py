"""Cleanup of interrupted backups and retention, on SQLite and a local store."""

from __future__ import annotations

import os
import time
from pathlib import Path

from click.testing import CliRunner

from dataferry import artifacts, ops
from dataferry.cli import cli
from dataferry.config import Config, load
from dataferry.quickstart import config_for, make_sample_database


def _setup(tmp_path: Path) -> Config:
    (tmp_path / "dataferry.toml").write_text(config_for(tmp_path), encoding="utf-8")
    for env in ("production", "staging", "integration"):
        (tmp_path / "databases" / env).mkdir(parents=True)
    make_sample_database(tmp_path / "databases/production/email-alert-api.db", subscribers=50)
    return load(tmp_path / "dataferry.toml")


def _age(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_orphans_and_killed_uploads_are_removed_only_when_old(tmp_path: Path) -> None:
    cfg = _setup(tmp_path)
    kept = ops.backup(cfg, "email-alert-api", "production").manifest
    store_dir = tmp_path / "stores/production/email-alert-api"
    orphan_old = store_dir / "2020-01-01T000000Z-email-alert-api.sqlite.zst"
    orphan_new = store_dir / "2030-01-01T000000Z-email-alert-api.sqlite.zst"
    killed_upload = store_dir / ".dataferry-tmp-abc123"
    other_db = tmp_path / "stores/production/content-store"
    other_db.mkdir(parents=True)
    others_upload = other_db / ".dataferry-tmp-def456"  # another database's: not this cleanup's
    for p in (orphan_old, orphan_new, killed_upload, others_upload):
        p.write_bytes(b"half a dump")
    _age(orphan_old, 2 * 86400)
    _age(killed_upload, 2 * 86400)
    _age(others_upload, 2 * 86400)

    dry = ops.cleanup(cfg, "email-alert-api", "production", dry_run=True)
    assert dry.orphans == ["email-alert-api/2020-01-01T000000Z-email-alert-api.sqlite.zst"]
    assert dry.incomplete_uploads == ["email-alert-api/.dataferry-tmp-abc123"]  # listed, not removed
    assert orphan_old.exists() and killed_upload.exists()

    report = ops.cleanup(cfg, "email-alert-api", "production")
    assert report.orphans == dry.orphans
    assert report.incomplete_uploads == dry.incomplete_uploads
    assert not orphan_old.exists() and not killed_upload.exists()
    assert others_upload.exists(), "one database's cleanup leaves another's uploads alone"
    assert orphan_new.exists(), "a recent object may belong to a backup still running"
    store = ops.store_for(cfg, "production")
    assert artifacts.latest(store, "email-alert-api").id == kept.id
    artifacts.verify(store, kept)


def test_keep_deletes_old_artifacts_manifest_first_and_never_the_newest(tmp_path: Path) -> None:
    cfg = _setup(tmp_path)
    ids = []
    for _ in range(3):
        ids.append(ops.backup(cfg, "email-alert-api", "production").manifest.id)
        time.sleep(1.05)
    result = CliRunner().invoke(
        cli,
        [
            "--config",
            str(tmp_path / "dataferry.toml"),
            "cleanup",
            "email-alert-api",
            "--env",
            "production",
            "--keep",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    store = ops.store_for(cfg, "production")
    assert [m.id for m in artifacts.iter_manifests(store, "email-alert-api")] == [ids[-1]]
    assert artifacts.orphans(store, "email-alert-api") == []
    refused = CliRunner().invoke(
        cli,
        [
            "--config",
            str(tmp_path / "dataferry.toml"),
            "cleanup",
            "email-alert-api",
            "--env",
            "production",
            "--keep",
            "0",
        ],
    )
    assert refused.exit_code == 2
    assert "never deletes the newest" in refused.output


def test_a_bad_duration_is_a_usage_error_that_touches_nothing(tmp_path: Path) -> None:
    cfg = _setup(tmp_path)
    kept = ops.backup(cfg, "email-alert-api", "production").manifest
    result = CliRunner().invoke(
        cli,
        [
            *("--config", str(tmp_path / "dataferry.toml"), "cleanup", "email-alert-api"),
            *("--env", "production", "--keep", "1", "--older-than", "soon"),
        ],
    )
    assert result.exit_code == 2, result.output
    assert "--older-than" in result.output and "Traceback" not in result.output
    store = ops.store_for(cfg, "production")
    assert artifacts.latest(store, "email-alert-api").id == kept.id
