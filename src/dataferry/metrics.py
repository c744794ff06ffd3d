"""Prometheus metrics of jobs: to node_exporter's textfile collector and/or a Pushgateway.

Two families of names:

* GOV.UK's current names and labels, so existing alerts and dashboards keep working (one series per
  database and operation; labels ``database_engine``, ``database_instance``, ``database_db_name``,
  ``operation`` and, for the timestamp, ``state``):

  - ``db_backup_job_state``: 0 failed, 1 started, 2 succeeded
  - ``db_backup_job_status_timestamp_seconds{state=started|succeeded|failed}``
  - ``db_backup_job_duration_seconds``: on terminal states
  - ``db_backup_job_file_size_bytes``: bytes of the artifact restored or published

  Operations are named as GOV.UK named them: ``backup``, ``restore``, ``transform`` (sanitise),
  plus ``hook`` and ``verify``; a second step of the same kind in one job gets ``-<step number>``.

* dataferry's own, per job (label ``job_name``, since ``job`` is Prometheus's) and per environment
  and database: ``dataferry_job_state``, ``dataferry_job_last_run_timestamp_seconds{status}``,
  ``dataferry_job_duration_seconds``, ``dataferry_job_held`` (set by every run attempt and at once
  by ``pause`` and ``resume``), and freshness:
  ``dataferry_data_timestamp_seconds{environment,database,kind}`` where ``kind="live"`` is when the
  data now live in that environment was taken from its origin (production) and
  ``kind="artifact"`` is when the newest artifact in that environment's store was finished.
  Alert on ``time() - dataferry_data_timestamp_seconds > ...``.

Textfile: one file per job step, per job and per environment and database, each replaced
atomically, so concurrent jobs never clobber each other. Terminal timestamps of earlier runs are
carried over from the previous file, so "last success" survives a failed run. A metrics failure is
logged as a warning and never fails the run it describes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import push_to_gateway, pushadd_to_gateway, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from dataferry.config import Config
from dataferry.progress import NullReporter, Reporter

#: dataferry step kind -> GOV.UK ``operation`` label
OPERATIONS = {
    "backup": "backup",
    "restore": "restore",
    "sanitise": "transform",
    "hook": "hook",
    "verify": "verify",
}
#: ``db_backup_job_state`` values
STEP_STATES = {"failed": 0, "started": 1, "succeeded": 2}
#: ``dataferry_job_state`` values
JOB_STATES = {"failed": 0, "abandoned": 0, "interrupted": 0, "running": 1, "succeeded": 2, "skipped": 3}

GOVUK_PUSH_JOB = "db-backup"
DATAFERRY_PUSH_JOB = "dataferry"

HELP = {
    "db_backup_job_state": "State of the last run of a job step: 0 failed, 1 started, 2 succeeded.",
    "db_backup_job_status_timestamp_seconds": "When a job step last reached each state.",
    "db_backup_job_duration_seconds": "Seconds the last finished run of a job step took.",
    "db_backup_job_file_size_bytes": "Bytes of the artifact the step restored or published.",
    "dataferry_job_state": "Last run of a job: 0 failed, 1 running, 2 succeeded, 3 skipped (held).",
    "dataferry_job_last_run_timestamp_seconds": "When a run of the job last ended with each status.",
    "dataferry_job_duration_seconds": "Seconds the last finished run of the job took.",
    "dataferry_job_held": "1 while the job is held (paused) by a hold on it, its environment or everything.",
    "dataferry_data_timestamp_seconds": "Origin time of the live data (kind=live) or finish time of the "
    "newest artifact (kind=artifact) of a database in an environment.",
}


@dataclass(frozen=True)
class Sample:
    """One gauge sample: name, labels, value."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass
class SampleSet:
    """Samples to expose together (one textfile, one push)."""

    samples: list[Sample] = field(default_factory=list)

    def add(self, name: str, value: float, **labels: str) -> None:
        """Add a sample."""
        self.samples.append(Sample(name, tuple(sorted(labels.items())), float(value)))

    def names(self) -> set[str]:
        """Metric names present."""
        return {s.name for s in self.samples}


class _Collector(Collector):
    def __init__(self, samples: Iterable[Sample]) -> None:
        self.samples = list(samples)

    def collect(self) -> Iterator[Metric]:
        by_name: dict[str, list[Sample]] = {}
        for s in self.samples:
            by_name.setdefault(s.name, []).append(s)
        for name in sorted(by_name):
            group = by_name[name]
            label_names = [k for k, _ in group[0].labels]
            family = GaugeMetricFamily(name, HELP.get(name, name), labels=label_names)
            for s in group:
                family.add_metric([v for _, v in s.labels], s.value)
            yield family


def registry_of(samples: Iterable[Sample]) -> CollectorRegistry:
    """A registry exposing exactly ``samples``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(samples))
    return registry


@dataclass(frozen=True)
class StepLabels:
    """GOV.UK's labels of one job step."""

    database_engine: str
    database_instance: str
    database_db_name: str
    operation: str

    def as_dict(self) -> dict[str, str]:
        """Label names to values."""
        return {
            "database_engine": self.database_engine,
            "database_instance": self.database_instance,
            "database_db_name": self.database_db_name,
            "operation": self.operation,
        }


def step_labels(cfg: Config, job_name: str, index: int) -> StepLabels:
    """GOV.UK's labels for step ``index`` (1-based) of ``job_name``; no secret is read for them."""
    job = cfg.job(job_name)
    kind = job.steps[index - 1].split(":", 1)[0]
    operation = OPERATIONS.get(kind, kind)
    same_kind = [i for i, s in enumerate(job.steps, 1) if s.split(":", 1)[0] == kind]
    if same_kind and same_kind[0] != index:
        operation = f"{operation}-{index}"
    db = cfg.database(job.database)
    conn = db.environments.get(job.environment)
    instance, db_name = job.environment, job.database
    if conn is not None:
        parts = urlsplit(conn.url)
        if parts.hostname:
            instance = parts.hostname + (f":{parts.port}" if parts.port else "")
            db_name = parts.path.strip("/") or job.database
        else:  # SQLite: the file is the instance; it differs per environment
            instance = str(cfg.resolve_path(conn.url.split("://", 1)[1].lstrip("/") or job.database))
    return StepLabels(db.engine, instance, db_name, operation)


def _ts(when: datetime | None) -> float:
    return when.timestamp() if when else 0.0


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


class Metrics:
    """Writes metrics where the configuration says; does nothing when neither place is set."""

    def __init__(
        self,
        textfile_dir: Path | None = None,
        pushgateway_url: str | None = None,
        reporter: Reporter | None = None,
    ) -> None:
        self.textfile_dir = textfile_dir
        self.pushgateway_url = pushgateway_url
        self.reporter = reporter or NullReporter()

    @classmethod
    def from_config(cls, cfg: Config, reporter: Reporter | None = None) -> Metrics:
        """From ``settings.metrics_textfile_dir`` and ``settings.pushgateway_url``."""
        s = cfg.settings
        textfile = cfg.resolve_path(s.metrics_textfile_dir) if s.metrics_textfile_dir else None
        return cls(textfile, s.pushgateway_url, reporter)

    @property
    def enabled(self) -> bool:
        """True when metrics go somewhere."""
        return self.textfile_dir is not None or bool(self.pushgateway_url)

    # -- what the runner calls --------------------------------------------------------------------

    def step(
        self,
        labels: StepLabels,
        file_stem: str,
        state: str,
        *,
        started_at: datetime | None,
        finished_at: datetime | None = None,
        size: int | None = None,
    ) -> None:
        """A step started (``state="started"``) or ended (``succeeded``/``failed``)."""
        if not self.enabled:
            return
        lab = labels.as_dict()
        out = SampleSet()
        out.add("db_backup_job_state", STEP_STATES[state], **lab)
        stamps = {"started": _ts(started_at)}
        if state != "started":
            stamps[state] = _ts(finished_at)
        if started_at and finished_at:
            out.add("db_backup_job_duration_seconds", (finished_at - started_at).total_seconds(), **lab)
        if size is not None:
            out.add("db_backup_job_file_size_bytes", size, **lab)
        for st, value in stamps.items():
            out.add("db_backup_job_status_timestamp_seconds", value, **lab, state=st)
        path = self._path(f"dataferry-step-{file_stem}")
        carried = self._carry(
            path,
            {
                "db_backup_job_status_timestamp_seconds",
                "db_backup_job_duration_seconds",
                "db_backup_job_file_size_bytes",
            },
        )
        self._textfile(path, carried + out.samples)
        self._push_step(labels, out, stamps)

    def job(
        self,
        job_name: str,
        environment: str,
        database: str,
        status: str,
        *,
        ended_at: datetime | None,
        duration: float | None,
        held: bool,
    ) -> None:
        """A run of ``job_name`` started (``status="running"``) or ended with ``status``."""
        if not self.enabled:
            return
        lab = {"job_name": job_name, "environment": environment, "database": database}
        out = SampleSet()
        out.add("dataferry_job_state", JOB_STATES[status], **lab)
        out.add("dataferry_job_held", 1 if held else 0, **lab)
        if status != "running":
            out.add("dataferry_job_last_run_timestamp_seconds", _ts(ended_at), **lab, status=status)
            if duration is not None:
                out.add("dataferry_job_duration_seconds", duration, **lab)
        path = self._path(f"dataferry-job-{job_name}")
        carried = self._carry(
            path, {"dataferry_job_last_run_timestamp_seconds", "dataferry_job_duration_seconds"}
        )
        self._textfile(path, carried + out.samples)
        self._push(DATAFERRY_PUSH_JOB, {"job_name": job_name}, out)

    def held(self, job_name: str, environment: str, database: str, held: bool) -> None:
        """A hold on ``job_name`` (or its environment, or everything) was added or lifted: only
        ``dataferry_job_held`` changes; the job's other metrics are kept."""
        if not self.enabled:
            return
        lab = {"job_name": job_name, "environment": environment, "database": database}
        out = SampleSet()
        out.add("dataferry_job_held", 1 if held else 0, **lab)
        path = self._path(f"dataferry-job-{job_name}")
        kept = {
            "dataferry_job_state",
            "dataferry_job_last_run_timestamp_seconds",
            "dataferry_job_duration_seconds",
        }
        self._textfile(path, self._carry(path, kept) + out.samples)
        self._push(DATAFERRY_PUSH_JOB, {"job_name": job_name}, out, replace=False)

    def freshness(
        self, environment: str, database: str, *, live: datetime | None, artifact: datetime | None
    ) -> None:
        """Origin time of the live data and finish time of the newest artifact (either may be unknown)."""
        if not self.enabled:
            return
        lab = {"environment": environment, "database": database}
        out = SampleSet()
        if live is not None:
            out.add("dataferry_data_timestamp_seconds", _ts(live), **lab, kind="live")
        if artifact is not None:
            out.add("dataferry_data_timestamp_seconds", _ts(artifact), **lab, kind="artifact")
        path = self._path(f"dataferry-data-{environment}-{database}")
        carried = self._carry(path, {"dataferry_data_timestamp_seconds"})
        self._textfile(path, carried + out.samples)
        if out.samples:
            self._push(DATAFERRY_PUSH_JOB, {"environment": environment, "database": database}, out)

    # -- where they go ------------------------------------------------------------------------------

    def _path(self, stem: str) -> Path | None:
        return self.textfile_dir / f"{_safe(stem)}.prom" if self.textfile_dir else None

    def _carry(self, path: Path | None, names: set[str]) -> list[Sample]:
        """Samples named ``names`` in the previous file; samples of this update replace them."""
        if path is None or not path.exists():
            return []
        try:
            families = list(text_string_to_metric_families(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return []  # an unreadable old file is simply replaced
        return [
            Sample(s.name, tuple(sorted(s.labels.items())), s.value)
            for family in families
            for s in family.samples
            if s.name in names
        ]

    def _textfile(self, path: Path | None, samples: list[Sample]) -> None:
        if path is None:
            return
        unique = {(s.name, s.labels): s for s in samples}  # later samples (this update) win
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_to_textfile(str(path), registry_of(unique.values()))
        except OSError as exc:
            self.reporter.warn(f"cannot write metrics to {path}: {exc.strerror or exc}")

    def _push_step(self, labels: StepLabels, out: SampleSet, stamps: dict[str, float]) -> None:
        """GOV.UK's grouping: the timestamp per state in its own group, the rest without state."""
        if not self.pushgateway_url:
            return
        key = labels.as_dict()
        rest = SampleSet([s for s in out.samples if s.name != "db_backup_job_status_timestamp_seconds"])
        self._push(GOVUK_PUSH_JOB, key, rest)
        for st in stamps:
            group = SampleSet(
                [
                    s
                    for s in out.samples
                    if s.name == "db_backup_job_status_timestamp_seconds" and ("state", st) in s.labels
                ]
            )
            self._push(GOVUK_PUSH_JOB, {**key, "state": st}, group)

    def _push(self, job: str, grouping_key: dict[str, str], out: SampleSet, *, replace: bool = True) -> None:
        """Push ``out`` to the group; ``replace=False`` keeps the group's other metrics (POST)."""
        if not self.pushgateway_url or not out.samples:
            return
        # Labels that are part of the grouping key are set by the Pushgateway, not repeated.
        samples = [
            Sample(s.name, tuple((k, v) for k, v in s.labels if k not in grouping_key), s.value)
            for s in out.samples
        ]
        push = push_to_gateway if replace else pushadd_to_gateway
        try:
            push(
                self.pushgateway_url,
                job=job,
                registry=registry_of(samples),
                grouping_key=grouping_key,
                timeout=10,
            )
        except OSError as exc:
            self.reporter.warn(f"cannot push metrics to {self.pushgateway_url}: {exc}")
