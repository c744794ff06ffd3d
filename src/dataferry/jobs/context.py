"""What the steps of one run share (``RunContext``), passed from the runner to each step."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dataferry.artifacts import Manifest, Sanitisation
from dataferry.config import Config, JobConfig
from dataferry.jobs.common import StoreCache
from dataferry.jobs.locks import JobLock
from dataferry.jobs.runs import RunRecord, write_run
from dataferry.jobs.stop import StopGuard
from dataferry.metrics import Metrics
from dataferry.ops import RestoreResult
from dataferry.progress import Reporter


@dataclass
class RunContext:
    """What the steps of one run share."""

    cfg: Config
    name: str
    job: JobConfig
    record: RunRecord
    stores: StoreCache
    reporter: Reporter
    metrics: Metrics
    guard: StopGuard
    lock: JobLock | None = None
    pinned: str | None = None
    sanitisation: Sanitisation | None = None
    ran_sanitise: bool = False
    restored: RestoreResult | None = None
    published: Manifest | None = None
    data_as_of: datetime | None = None
    #: the artifact an earlier run restored, when ``--from-step`` skipped this run's restore
    earlier_restored: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def save(self) -> None:
        """Write the run record to the job's store."""
        write_run(self.stores.for_job(self.name), self.record)
