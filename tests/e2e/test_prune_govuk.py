"""``prune`` in GOV.UK's layouts, on local and S3 (moto) stores: dumps GOV.UK's own scripts wrote
(no manifests) at chosen timestamps; the policy is applied by the dumps' times, the pointer's dump
is kept whatever the policy says (so ``latest-<name>.txt`` never names a deleted object), and
nothing is taken for an orphan."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from dataferry.config import Config, load
from dataferry.layouts import store_for
from dataferry.ops.prune import prune
from dataferry.stores import Store, exists, put_bytes, read_bytes
from servers import S3Server

TIMES = ["2026-03-10T18:00:00", "2026-03-10T06:00:00", "2026-03-09T12:00:00", "2026-03-07T12:00:00",
         "2026-03-02T12:00:00", "2026-02-15T12:00:00"]  # fmt: skip
KEPT_BY_POLICY = TIMES[:4]  # keep_last = 2, keep_daily = 3

CONFIG = """\
[environments.staging]
store = {store}
retention = {{ keep_last = 2, keep_daily = 3 }}

[databases.app]
engine = "postgresql"
store_path = "app-postgres"
[databases.app.environments]
staging = {{ url = "postgresql://backup@db.invalid/app" }}
"""


def compact(text: str) -> str:
    return datetime.fromisoformat(text).strftime("%Y-%m-%dT%H%M%SZ")


@pytest.fixture(params=["local", "s3"])
def store_line(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "local":
        yield '{{ url = "stores/staging", layout = "{layout}" }}'
        return
    s3: S3Server = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    yield (
        f'{{{{ url = "s3://{bucket}/staging", endpoint_url = "{s3.endpoint_url}", '
        f'region = "{s3.region}", layout = "{{layout}}" }}}}'
    )


def setup(tmp_path: Path, store_line: str, layout: str) -> tuple[Config, Store]:
    (tmp_path / "dataferry.toml").write_text(
        CONFIG.format(store=store_line.format(layout=layout)), encoding="utf-8"
    )
    cfg = load(tmp_path / "dataferry.toml")
    return cfg, store_for(cfg, "staging")


def dumps(store: Store) -> list[str]:
    return sorted((o.key for o in store.list("app-postgres/") if o.key.endswith(".gz")), reverse=True)


def test_govuk_keeps_the_pointers_dump(tmp_path: Path, store_line: str) -> None:
    cfg, store = setup(tmp_path, store_line, "govuk")
    for text in TIMES:
        put_bytes(store, f"app-postgres/{compact(text)}-app.gz", b"PGDMP dump")
    pointer_dump = f"app-postgres/{compact(TIMES[4])}-app.gz"  # older than the policy keeps
    put_bytes(store, "app-postgres/latest-app.txt", pointer_dump.encode())

    report = prune(cfg, "app", "staging")

    assert dumps(store) == [f"app-postgres/{compact(t)}-app.gz" for t in [*KEPT_BY_POLICY, TIMES[4]]]
    assert report.removed == [f"{compact(TIMES[5])}-app"]
    target = read_bytes(store, "app-postgres/latest-app.txt").decode()
    assert exists(store, target)
    assert "the pointer names it" in report.kept[f"{compact(TIMES[4])}-app"]
    assert report.orphans == [] and "cannot tell orphans" in report.notes[0]


def test_govuk_puppet_colon_names(tmp_path: Path, store_line: str) -> None:
    cfg, store = setup(tmp_path, store_line, "govuk-puppet")
    for text in TIMES:
        put_bytes(store, f"app-postgres/{text}-app.gz", b"PGDMP dump")

    report = prune(cfg, "app", "staging", dry_run=True)
    assert len(dumps(store)) == 6 and len(report.removed) == 2
    prune(cfg, "app", "staging")

    assert dumps(store) == [f"app-postgres/{t}-app.gz" for t in KEPT_BY_POLICY]
