"""What the job state modules share: the ``_dataferry/`` prefix, the clock, who is acting, the
base of the state models, and one store object per environment (``StoreCache``)."""

from __future__ import annotations

import getpass
import os
import socket
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

from dataferry.config import Config
from dataferry.stores import Store

PREFIX = "_dataferry/"


def now_utc() -> datetime:
    """Now, in UTC (microseconds kept: run ids and heartbeats need sub-second order)."""
    return datetime.now(UTC)


def whoami() -> str:
    """``user@host`` for records and holds (who did it, from where)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


class StateModel(BaseModel):
    """Base of the state objects: unknown fields written by newer versions are kept."""

    model_config = ConfigDict(extra="allow")


class StoreCache:
    """One store object per environment for the life of a command (stores hold connections)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._stores: dict[str, Store] = {}

    def get(self, environment: str) -> Store:
        """The store of ``environment``."""
        if environment not in self._stores:
            from dataferry.ops import store_for

            self._stores[environment] = store_for(self.cfg, environment)
        return self._stores[environment]

    def for_job(self, job_name: str) -> Store:
        """The store that keeps ``job_name``'s records, lock and hold: its environment's."""
        return self.get(self.cfg.job(job_name).environment)
