"""``dataferry prune`` and the ``prune`` job step on local and S3 (moto) stores, with artifacts at
chosen timestamps: it keeps exactly what the retention policy says, plus the safety exceptions (the
newest, the latest a restore would take, one a running restore reads, one an ``after`` trigger
needs, a protected environment without --force), removes manifests before data, leaves a running
backup's data alone, and races a restore without ever breaking it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from dataferry import ops
from dataferry.artifacts import Manifest, artifact_id, manifest_key
from dataferry.cli import cli
from dataferry.config import Config, load
from dataferry.engines import Engine, Shadow
from dataferry.errors import NotFound, Refused
from dataferry.layouts import store_for
from dataferry.ops import leases
from dataferry.ops.prune import prune
from dataferry.progress import NullReporter
from dataferry.stores import Store, put_bytes, read_bytes
from servers import S3Server

# Newest first. Kept by keep_last = 2, keep_daily = 3: the two newest (last), 03-09 and 03-07 (daily).
TIMES = ["2026-03-10T18:00:00", "2026-03-10T06:00:00", "2026-03-09T12:00:00", "2026-03-07T12:00:00",
         "2026-03-02T12:00:00", "2026-02-15T12:00:00"]  # fmt: skip
POLICY_KEEPS = ["2026-03-10T180000Z", "2026-03-10T060000Z", "2026-03-09T120000Z", "2026-03-07T120000Z"]

CONFIG = """\
[environments.staging]
store = {store}
retention = {{ keep_last = 2, keep_daily = 3 }}

[environments.vault]
store = {store_vault}
protected = true
retention = {{ keep_last = 1 }}

[environments.dev]
store = "stores/dev"

[databases.app]
engine = "sqlite"
[databases.app.environments]
staging = {{ url = "sqlite:///db/staging/app.db" }}
vault = {{ url = "sqlite:///db/staging/app.db" }}
dev = {{ url = "sqlite:///db/dev/app.db" }}
"""


def make_db(path: Path, rows: int, label: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path)) as con, con:
        con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, label TEXT)")
        con.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"{label}-{i}") for i in range(rows)])


def labels(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as con:
        return {r[0].split("-")[0] for r in con.execute("SELECT label FROM items")}


class World:
    """A config, staging's store with six artifacts at ``TIMES``, a dev database to restore into."""

    def __init__(self, root: Path, store_line: str, vault_line: str) -> None:
        self.root = root
        self.config = root / "dataferry.toml"
        self.config.write_text(CONFIG.format(store=store_line, store_vault=vault_line), encoding="utf-8")
        make_db(root / "db/staging/app.db", 30, "staging")
        make_db(root / "db/dev/app.db", 3, "dev")
        self.cfg: Config = load(self.config)
        template = ops.backup(self.cfg, "app", "staging").manifest
        self.store: Store = store_for(self.cfg, "staging")
        data = read_bytes(self.store, template.objects[0].key)
        self.store.delete(template.key)
        self.store.delete(template.objects[0].key)
        for text in TIMES:
            self.plant(self.store, template, data, datetime.fromisoformat(text).replace(tzinfo=UTC))
        vault = store_for(self.cfg, "vault")
        for text in TIMES[:3]:
            self.plant(vault, template, data, datetime.fromisoformat(text).replace(tzinfo=UTC))

    @staticmethod
    def plant(store: Store, template: Manifest, data: bytes, when: datetime) -> str:
        """An artifact of ``template``'s data, as if backed up at ``when``: data, then manifest."""
        ident = artifact_id("app", when)
        obj = template.objects[0].model_copy(update={"key": f"app/{ident}.sqlite.zst"})
        put_bytes(store, obj.key, data)
        manifest = template.model_copy(
            update={"id": ident, "created_at": when, "finished_at": when, "objects": [obj]}
        )
        put_bytes(store, manifest_key("app", ident), manifest.model_dump_json().encode())
        return ident

    def object_keys(self, store: Store | None = None) -> list[str]:
        return sorted(o.key for o in (store or self.store).list("app/"))

    def ids(self, store: Store | None = None) -> list[str]:
        """Committed artifacts, newest first (their timestamps only)."""
        keys = self.object_keys(store)
        return sorted((k[4:22] for k in keys if k.endswith(".manifest.json")), reverse=True)

    def data_ids(self) -> list[str]:
        return sorted((k[4:22] for k in self.object_keys() if k.endswith(".sqlite.zst")), reverse=True)

    def run(self, *args: str) -> tuple[int, str]:
        """Exit status and everything printed."""
        code, out, err = self.run_split(*args)
        return code, out + err

    def run_split(self, *args: str) -> tuple[int, str, str]:
        """Exit status, stdout and stderr."""
        result = CliRunner().invoke(cli, ["--config", str(self.config), *args], prog_name="dataferry")
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return result.exit_code, result.stdout, result.stderr


@pytest.fixture(params=["local", "s3"])
def world(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    if request.param == "local":
        yield World(tmp_path, '"stores/staging"', '"stores/vault"')
        return
    s3: S3Server = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    line = '{{ url = "s3://{b}/{p}", endpoint_url = "{e}", region = "{r}" }}'
    yield World(
        tmp_path,
        line.format(b=bucket, p="staging", e=s3.endpoint_url, r=s3.region),
        line.format(b=bucket, p="vault", e=s3.endpoint_url, r=s3.region),
    )


def test_prune_keeps_exactly_what_the_policy_says(world: World) -> None:
    code, out = world.run("prune", "app", "--env", "staging")
    assert code == 0, out
    assert world.ids() == POLICY_KEEPS
    assert world.data_ids() == POLICY_KEEPS  # no data left without its manifest
    assert "removed\t2026-03-02T120000Z-app" in out


def test_dry_run_reports_as_json_and_removes_nothing(world: World) -> None:
    before = world.object_keys()
    code, out, err = world.run_split("prune", "app", "--env", "staging", "--dry-run", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["dry_run"] is True
    assert report["removed"] == ["2026-03-02T120000Z-app", "2026-02-15T120000Z-app"]
    assert {k["id"][:18] for k in report["kept"]} == set(POLICY_KEEPS)
    assert world.object_keys() == before


def test_a_protected_environment_is_pruned_only_with_force(world: World) -> None:
    vault = store_for(world.cfg, "vault")
    before = world.object_keys(vault)
    code, out = world.run("prune", "app", "--env", "vault")
    assert code == 9, out
    assert "protected" in out and world.object_keys(vault) == before
    # looking first changes nothing, so it needs no --force (the runbook: look first, then prune)
    code, out = world.run("prune", "app", "--env", "vault", "--dry-run")
    assert code == 0, out
    assert "would remove" in out and "--force" in out and world.object_keys(vault) == before
    code, out = world.run("prune", "app", "--env", "vault", "--force")
    assert code == 0, out
    assert world.ids(vault) == ["2026-03-10T180000Z"]


def test_an_artifact_a_restore_reads_and_one_a_trigger_needs_are_kept(world: World) -> None:
    oldest = "2026-02-15T120000Z-app"
    reading = leases.lease_prefix("app", "2026-03-02T120000Z-app") + "some-restore.json"
    put_bytes(world.store, reading, b"{}")
    report = prune(world.cfg, "app", "staging", pinned={oldest})
    assert report.kept["2026-03-02T120000Z-app"] == ["in use by a restore"]
    assert report.kept[oldest] == ["needed by an 'after' trigger"]
    assert world.ids() == sorted([*POLICY_KEEPS, "2026-03-02T120000Z", "2026-02-15T120000Z"], reverse=True)


def test_the_latest_is_kept_even_when_the_policy_would_not(world: World) -> None:
    newest = datetime(2026, 3, 11, 9, tzinfo=UTC)
    template = next(iter(ops.list_artifacts(world.cfg, "app", "staging")))
    data = read_bytes(world.store, template.objects[0].key)
    World.plant(world.store, template, data, newest)
    # keep_daily would keep this day's newest only; keep_last = 2 the two newest: always the newest
    report = prune(world.cfg, "app", "staging")
    assert report.kept["2026-03-11T090000Z-app"][:2] == ["last", "daily"]
    assert "newest" in report.kept["2026-03-11T090000Z-app"]
    assert "latest (what a restore takes now)" in report.kept["2026-03-11T090000Z-app"]


def test_manifests_go_before_their_data(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    deleted: list[str] = []
    real = type(world.store).delete

    def spy(store: Store, key: str) -> None:
        deleted.append(key)
        real(store, key)  # type: ignore[arg-type]

    monkeypatch.setattr(type(world.store), "delete", spy)
    prune(world.cfg, "app", "staging")
    for ident in ("2026-03-02T120000Z-app", "2026-02-15T120000Z-app"):
        assert deleted.index(f"app/{ident}.manifest.json") < deleted.index(f"app/{ident}.sqlite.zst")


def test_a_restore_racing_a_prune_is_never_broken(world: World) -> None:
    """A prune while a restore reads the artifact keeps its data; a prune between the plan and the
    read makes the restore fail (not found) before any shadow, with dev untouched."""
    dev = world.root / "db/dev/app.db"
    plan = ops.plan_restore(
        world.cfg, ops.RestoreRequest("app", "dev", "staging", artifact="2026-03-02T120000Z-app")
    )
    reports = []

    def prune_meanwhile(engine: Engine, shadow: Shadow) -> None:
        reports.append(prune(world.cfg, "app", "staging"))

    result = ops.restore(plan, before_swap=prune_meanwhile)
    assert result.swapped and labels(dev) == {"staging"}
    assert reports[0].kept["2026-03-02T120000Z-app"] == ["in use by a restore"]
    # and the other way round: planned, then pruned, then run
    make_db(world.root / "db/other/app.db", 1, "x")
    plan = ops.plan_restore(
        world.cfg, ops.RestoreRequest("app", "dev", "staging", artifact="2026-03-02T120000Z-app")
    )
    prune(world.cfg, "app", "staging")
    before = dev.read_bytes()
    with pytest.raises(NotFound, match="removed"):
        ops.restore(plan)
    assert dev.read_bytes() == before
    assert sorted(p.name for p in dev.parent.iterdir()) == ["app.db"]
    assert not list(world.store.list(leases.PREFIX))  # the restore's leases are gone


def test_a_backup_running_during_a_prune_keeps_its_data(world: World, tmp_path: Path) -> None:
    """A data object without a manifest is a backup uploading now, unless it is old."""
    put_bytes(world.store, "app/2026-03-12T000000Z-app.sqlite.zst", b"uploading")
    put_bytes(world.store, "app/2026-01-01T000000Z-app.sqlite.zst", b"interrupted long ago")
    if world.store.url.startswith("s3://"):  # S3 has no way to age an object: the young one only
        report = prune(world.cfg, "app", "staging")
        assert "app/2026-03-12T000000Z-app.sqlite.zst" not in report.orphans
        assert "app/2026-03-12T000000Z-app.sqlite.zst" in world.object_keys()
        return
    old = time.time() - 3 * 86400
    path = tmp_path / "stores/staging/app/2026-01-01T000000Z-app.sqlite.zst"
    os.utime(path, (old, old))
    report = prune(world.cfg, "app", "staging")
    assert report.orphans == ["app/2026-01-01T000000Z-app.sqlite.zst"]
    assert "app/2026-03-12T000000Z-app.sqlite.zst" in world.object_keys()


def test_an_environment_without_a_policy_is_not_pruned(world: World) -> None:
    code, out = world.run("prune", "app", "--env", "dev")
    assert code == 2, out
    assert "no retention policy" in out


def test_the_prune_job_step(world: World) -> None:
    text = world.config.read_text(encoding="utf-8")
    world.config.write_text(
        text + '\n[jobs.app-staging-prune]\nenvironment = "staging"\ndatabase = "app"\nsteps = ["prune"]\n',
        encoding="utf-8",
    )
    code, out = world.run("run", "app-staging-prune", "--dry-run")
    assert code == 0, out
    assert "would prune app in staging" in out
    code, out = world.run("run", "app-staging-prune")
    assert code == 0, out
    assert world.ids() == POLICY_KEEPS


@pytest.mark.parametrize(
    ("environment", "fragment"),
    [("vault", "vault is protected"), ("dev", "needs [environments.dev] retention")],
)
def test_a_prune_step_that_could_only_fail_is_a_configuration_error(
    world: World, environment: str, fragment: str
) -> None:
    """A job's prune step in a protected environment (a job has no --force) or in one without a
    policy failed every run, after its backup; the file is refused when read instead (exit 2)."""
    text = world.config.read_text(encoding="utf-8")
    world.config.write_text(
        text + f'\n[jobs.app-prune]\nenvironment = "{environment}"\ndatabase = "app"\nsteps = ["prune"]\n',
        encoding="utf-8",
    )
    code, out = world.run("run", "app-prune", "--dry-run")
    assert code == 2, out
    assert fragment in out and "jobs.app-prune" in out, out


def test_refusal_leaves_everything(world: World) -> None:
    with pytest.raises(Refused):
        prune(world.cfg, "app", "vault", reporter=NullReporter())
    assert len(world.ids(store_for(world.cfg, "vault"))) == 3


def test_an_artifact_an_after_trigger_still_needs_is_kept(tmp_path: Path) -> None:
    """prod-backup publishes A; a manual backup publishes B; the staging job (after prod-backup)
    has not consumed A yet, so keep_last = 1 keeps A too, until the staging job ran."""
    (tmp_path / "dataferry.toml").write_text(
        """
[environments.production]
store = "stores/production"
retention = { keep_last = 1 }
[environments.staging]
store = "stores/staging"

[databases.app]
engine = "sqlite"
[databases.app.environments]
production = { url = "sqlite:///db/production/app.db" }
staging = { url = "sqlite:///db/staging/app.db" }

[jobs.prod-backup]
environment = "production"
database = "app"
steps = ["backup"]

[jobs.staging-restore]
environment = "staging"
database = "app"
steps = ["restore:production"]
after = "prod-backup"
""",
        encoding="utf-8",
    )
    make_db(tmp_path / "db/production/app.db", 10, "prod")
    make_db(tmp_path / "db/staging/app.db", 1, "staging")

    def run(*args: str) -> str:
        result = CliRunner().invoke(cli, ["--config", str(tmp_path / "dataferry.toml"), *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    run("run", "prod-backup")
    time.sleep(1.1)  # artifact ids have one-second resolution
    run("backup", "app", "--env", "production")
    ids = [m.id for m in ops.list_artifacts(load(tmp_path / "dataferry.toml"), "app", "production")]
    assert len(ids) == 2
    out = run("prune", "app", "--env", "production")
    assert f"keep\t{ids[1]}\tneeded by an 'after' trigger" in out
    run("run", "staging-restore")
    out = run("prune", "app", "--env", "production")
    assert f"removed\t{ids[1]}" in out
    assert [m.id for m in ops.list_artifacts(load(tmp_path / "dataferry.toml"), "app", "production")] == ids[
        :1
    ]
