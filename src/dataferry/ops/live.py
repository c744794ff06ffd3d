"""What is live in a database: the artifact the last restore swapped in, and when its data was
taken from its origin (production). ``_dataferry/live/<database>.json`` in the store of the
environment restored into, written by ``ops.restore`` right after every swap, whoever called it (the
CLI, a job, the GOV.UK drop-in, a Python caller), so ``status`` and the "staging too old" alert
(``dataferry_data_timestamp_seconds{kind="live"}``, also set here) stay true after a manual restore
or a run that swapped and then failed."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, ValidationError

from dataferry.artifacts import Manifest
from dataferry.config import Config
from dataferry.errors import FerryError, NotFound
from dataferry.layouts import store_for
from dataferry.metrics import Metrics
from dataferry.progress import NullReporter, Reporter
from dataferry.stores import Store, put_bytes, read_bytes


class LiveRecord(BaseModel):
    """The artifact now live in one database of one environment."""

    model_config = ConfigDict(extra="allow")

    database: str
    environment: str
    artifact: str
    source: str
    data_as_of: datetime
    restored_at: datetime
    restored_by: str
    via: str = "restore"


def live_key(database: str) -> str:
    """Key of a database's live record in its environment's store."""
    return f"_dataferry/live/{database}.json"


def data_as_of(manifest: Manifest) -> datetime:
    """When the data in an artifact was taken from its origin: carried through re-backups
    (``data_as_of`` in the manifest), else when the artifact was made."""
    origin = manifest.extra.get("data_as_of") if isinstance(manifest.extra, dict) else None
    if isinstance(origin, str):
        with contextlib.suppress(ValueError):
            when = datetime.fromisoformat(origin)
            return when if when.tzinfo else when.replace(tzinfo=UTC)
    return manifest.created_at


def record_live(
    cfg: Config,
    *,
    database: str,
    environment: str,
    source: str,
    manifest: Manifest,
    via: str = "restore",
    reporter: Reporter | None = None,
) -> LiveRecord | None:
    """Write what a swap just made live. The swap already happened, so a store that refuses the
    write does not fail the restore: it is a warning, and ``status`` falls back to run records."""
    record = LiveRecord(
        database=database,
        environment=environment,
        artifact=manifest.id,
        source=source,
        data_as_of=data_as_of(manifest),
        restored_at=datetime.now(UTC),
        restored_by=_whoami(),
        via=via,
    )
    # The "staging data too old" alert reads this metric: a restore by hand moves it too.
    Metrics.from_config(cfg, reporter).freshness(environment, database, live=record.data_as_of, artifact=None)
    try:
        store = store_for(cfg, environment)
        put_bytes(store, live_key(database), record.model_dump_json(indent=2).encode())
    except FerryError as exc:
        (reporter or NullReporter()).warn(
            f"restored, but cannot record what is live in {database} ({environment}): {exc.message}; "
            "'dataferry status' may show the previous artifact"
        )
        return None
    return record


def read_live(store: Store, database: str) -> LiveRecord | None:
    """The live record of ``database`` in this store; None if there is none or it is unreadable
    (status then falls back to run records)."""
    try:
        raw = read_bytes(store, live_key(database))
    except NotFound:
        return None
    try:
        return LiveRecord.model_validate(json.loads(raw))
    except (ValueError, ValidationError):
        return None


def _whoami() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"
