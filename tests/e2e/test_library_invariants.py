"""The invariants hold for a Python caller of the public API, not only for the command line.

Each test calls ``dataferry.*`` directly (no CLI, no job runner) on the quickstart's SQLite chain
(production protected; staging and integration require sanitised data) and tries to get round one
rule: restore into a protected environment, restore or publish unsanitised data where sanitised
data is required, destroy before checking, or swap in a half-made shadow.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest

import dataferry
from dataferry.artifacts import Sanitisation
from dataferry.quickstart import DB, PROFILE, SALT_ENV, config_for, make_sample_database, personal_data


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dataferry.config.Config:  # type: ignore[name-defined]
    """The quickstart's chain, with production backed up once and a live staging database."""
    (tmp_path / "dataferry.toml").write_text(config_for(tmp_path), encoding="utf-8")
    (tmp_path / "sanitise").mkdir()
    (tmp_path / "sanitise" / f"{DB}.toml").write_text(PROFILE, encoding="utf-8")
    for env in ("production", "staging", "integration"):
        (tmp_path / "databases" / env).mkdir(parents=True)
    make_sample_database(tmp_path / "databases" / "production" / f"{DB}.db", subscribers=200)
    _sqlite(tmp_path, "staging", "CREATE TABLE marker (v TEXT); INSERT INTO marker VALUES ('old staging')")
    monkeypatch.setenv(SALT_ENV, "library-invariants-salt-0123456789")
    config = dataferry.load_config(tmp_path / "dataferry.toml")
    dataferry.backup(config, DB, "production")
    return config


def _path(root: Path, env: str) -> Path:
    return root / "databases" / env / f"{DB}.db"


def _sqlite(root: Path, env: str, script: str) -> None:
    con = sqlite3.connect(_path(root, env))
    try:
        con.executescript(script)
        con.commit()
    finally:
        con.close()


def _world(root: Path) -> dict[str, bytes]:
    """Every file under the databases directory and its bytes: shadows and half-made copies show."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted((root / "databases").rglob("*"))
        if p.is_file()
    }


def _root(cfg: object) -> Path:
    path = cfg.path  # type: ignore[attr-defined]
    assert path is not None
    return Path(path).parent


def _req(target: str, source: str = "production", **kw: object) -> dataferry.RestoreRequest:
    return dataferry.RestoreRequest(database=DB, environment=target, source=source, **kw)  # type: ignore[arg-type]


# -- invariant 6: production is protected ----------------------------------------------------------


def test_a_protected_environment_is_not_restored_into_without_force(cfg: object) -> None:
    root = _root(cfg)
    before = _world(root)
    with pytest.raises(dataferry.Refused, match="protected"):
        dataferry.plan_restore(cfg, _req("production"))  # type: ignore[arg-type]
    assert _world(root) == before


def test_a_forced_plan_with_the_force_taken_away_is_refused(cfg: object) -> None:
    """A plan edited by hand after planning cannot restore into the protected environment."""
    root = _root(cfg)
    plan = dataferry.plan_restore(cfg, _req("production", force=True))  # type: ignore[arg-type]
    edited = dataclasses.replace(plan, request=dataclasses.replace(plan.request, force=False))
    before = _world(root)
    with pytest.raises(dataferry.Refused, match="protected"):
        dataferry.restore(edited)
    assert _world(root) == before


# -- invariant 5: sanitised means verified ---------------------------------------------------------


def test_a_raw_artifact_restored_into_a_sanitised_environment_is_sanitised_on_the_shadow(cfg: object) -> None:
    """No sanitise flag anywhere: the target's rule alone makes the library sanitise."""
    root = _root(cfg)
    plan = dataferry.plan_restore(cfg, _req("staging"))  # type: ignore[arg-type]
    assert plan.sanitiser is not None and "holds only sanitised data" in (plan.sanitise_reason or "")
    result = dataferry.restore(plan)
    assert result.swapped and result.sanitisation is not None and result.sanitisation.passed
    emails, phones = personal_data(_path(root, "staging"))
    prod_emails, prod_phones = personal_data(_path(root, "production"))
    assert not emails & prod_emails and not phones & prod_phones


def test_a_plan_without_its_sanitisation_step_is_refused(cfg: object) -> None:
    """Dropping the sanitiser from the plan (by hand) does not swap raw data into staging."""
    root = _root(cfg)
    plan = dataferry.plan_restore(cfg, _req("staging"))  # type: ignore[arg-type]
    before = _world(root)
    with pytest.raises(dataferry.Refused, match="must sanitise the shadow"):
        dataferry.restore(dataclasses.replace(plan, sanitiser=None))
    assert _world(root) == before


def test_a_sanitiser_that_does_not_pass_never_reaches_the_swap(cfg: object) -> None:
    root = _root(cfg)
    plan = dataferry.plan_restore(cfg, _req("staging"))  # type: ignore[arg-type]
    failing = Sanitisation(profile="x", profile_sha256="0" * 64, passed=False)
    before = _world(root)
    with pytest.raises(dataferry.SanitisationFailed):
        dataferry.restore(dataclasses.replace(plan, sanitiser=lambda engine, shadow: failing))
    assert _world(root) == before  # live as it was, no shadow left


def test_unsanitised_live_data_is_not_published_into_a_sanitised_store(cfg: object) -> None:
    """staging holds raw data (put there by hand): its backup checks it and publishes nothing."""
    root = _root(cfg)
    _path(root, "staging").write_bytes(_path(root, "production").read_bytes())
    with pytest.raises(dataferry.SanitisationFailed):
        dataferry.backup(cfg, DB, "staging")  # type: ignore[arg-type]
    assert dataferry.list_artifacts(cfg, DB, "staging") == []  # type: ignore[arg-type]


def test_a_restore_result_of_another_database_or_environment_does_not_vouch(cfg: object) -> None:
    """``after=`` only counts for the very database and environment it restored."""
    root = _root(cfg)
    result = dataferry.restore(dataferry.plan_restore(cfg, _req("staging")))  # type: ignore[arg-type]
    _path(root, "integration").write_bytes(_path(root, "production").read_bytes())  # raw data
    with pytest.raises(dataferry.SanitisationFailed):
        dataferry.backup(cfg, DB, "integration", after=result)  # type: ignore[arg-type]
    published = dataferry.backup(cfg, DB, "staging", after=result)  # type: ignore[arg-type]
    assert published.manifest.is_publishable_sanitised()


def test_an_unsanitised_artifact_in_a_sanitised_store_is_never_restored(cfg: object) -> None:
    """An artifact that reached staging's store unsanitised (copied by hand) is refused."""
    root = _root(cfg)
    prod = root / "stores" / "production" / DB
    staging = root / "stores" / "staging" / DB
    staging.mkdir(parents=True)
    for f in prod.iterdir():
        (staging / f.name).write_bytes(f.read_bytes())
    before = _world(root)
    with pytest.raises(dataferry.Refused, match="not sanitised"):
        dataferry.plan_restore(cfg, _req("integration", source="staging"))  # type: ignore[arg-type]
    assert _world(root) == before


# -- invariant 1: check before you destroy; invariant 4: shadow, then swap -------------------------


def test_a_missing_salt_is_found_before_anything_is_touched(
    cfg: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _root(cfg)
    monkeypatch.delenv(SALT_ENV)
    before = _world(root)
    with pytest.raises(dataferry.NotReady, match=SALT_ENV):
        dataferry.plan_restore(cfg, _req("staging"))  # type: ignore[arg-type]
    assert _world(root) == before


def test_a_missing_artifact_is_found_before_anything_is_touched(cfg: object) -> None:
    root = _root(cfg)
    before = _world(root)
    with pytest.raises(dataferry.NotFound):
        dataferry.plan_restore(cfg, _req("staging", artifact="2001-01-01T000000Z-" + DB))  # type: ignore[arg-type]
    assert _world(root) == before


def test_a_failure_before_the_swap_leaves_live_exactly_as_it_was(cfg: object) -> None:
    root = _root(cfg)
    plan = dataferry.plan_restore(cfg, _req("staging"))  # type: ignore[arg-type]
    before = _world(root)

    def boom(engine: object, shadow: object) -> None:
        raise dataferry.FerryError("stopped just before the swap")

    with pytest.raises(dataferry.FerryError, match="just before the swap"):
        dataferry.restore(plan, before_swap=boom)
    assert _world(root) == before  # old staging, no shadow, no lock file


def test_a_table_the_manifest_does_not_list_is_never_swapped_in(cfg: object) -> None:
    """Row counts cover every table: a dump carrying rows of a table its manifest does not list (an
    edited manifest, or a forged dump) is refused before the swap, and live is untouched."""
    root = _root(cfg)
    manifest_path = next((root / "stores" / "production" / DB).glob("*.manifest.json"))
    data = json.loads(manifest_path.read_text(encoding="utf-8"))
    assert data["row_counts"].pop("emails") > 0
    manifest_path.write_text(json.dumps(data), encoding="utf-8")
    plan = dataferry.plan_restore(cfg, _req("staging"))  # type: ignore[arg-type]
    before = _world(root)
    with pytest.raises(dataferry.VerificationFailed, match=r"emails: \d+ rows restored, not in the manifest"):
        dataferry.restore(plan)
    assert _world(root) == before


def test_a_shadow_that_cannot_be_dropped_does_not_hide_what_failed(
    cfg: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19, item 10: the error reported is the one that stopped the restore; the failed drop of
    its shadow is a note on it (the CLI prints it as ``note: ...``), not a replacement."""
    from dataferry.engines.sqlite import SQLiteEngine

    plan = dataferry.plan_restore(cfg, _req("staging"))  # type: ignore[arg-type]

    def boom(engine: object, shadow: object) -> None:
        raise dataferry.VerificationFailed("the check before the swap failed")

    def cannot_drop(self: object, shadow: object) -> None:
        raise dataferry.NotReady("cannot connect to drop it")

    monkeypatch.setattr(SQLiteEngine, "drop_shadow", cannot_drop)
    with pytest.raises(dataferry.VerificationFailed) as info:
        dataferry.restore(plan, before_swap=boom)
    lines = info.value.report_lines()
    assert lines[0] == "error: the check before the swap failed"
    assert any(line.startswith("note: the shadow ") and "cannot connect" in line for line in lines)
