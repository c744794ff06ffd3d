"""What the job and database pages show, read through the library: run records (the data of
``dataferry history``), artifacts (``dataferry list``) and the status model (``dataferry status``).

Nothing here writes. Each page also has a JSON form (``to_json``) for its API endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from dataferry import ops
from dataferry.artifacts import Manifest
from dataferry.config import Config
from dataferry.errors import FerryError
from dataferry.jobs.common import StoreCache
from dataferry.jobs.runs import RunRecord, iter_runs
from dataferry.jobs.status import JobStatus, collect_status
from dataferry.progress import human_bytes
from dataferry.serve.charts import Chart, bar_chart

#: Runs shown on a job page (and drawn in its charts), newest first.
RUNS_SHOWN = 30


@dataclass(frozen=True)
class JobPage:
    """A job: its status, its recent runs and the charts of their durations and sizes."""

    name: str
    environment: str
    database: str
    status: JobStatus | None
    runs: list[RunRecord]
    durations: Chart
    sizes: Chart

    def to_json(self) -> dict[str, Any]:
        """``/api/jobs/<job>``: the job's ``status --json`` entry and its ``history --json`` runs."""
        return {
            "name": self.name,
            "environment": self.environment,
            "database": self.database,
            "status": self.status.to_json() if self.status else None,
            "runs": [r.model_dump(mode="json") for r in self.runs],
        }


def job_page(cfg: Config, job: str, limit: int = RUNS_SHOWN) -> JobPage:
    """The page of ``job`` (``NotFound`` for an unknown one)."""
    jc = cfg.job(job)
    store = StoreCache(cfg).for_job(job)
    runs: list[RunRecord] = []
    for record in iter_runs(store, job):
        runs.append(record)
        if len(runs) >= limit:
            break
    status = collect_status(cfg, jc.environment)
    mine = [j for e in status.environments for d in e.databases for j in d.jobs if j.name == job]
    oldest_first = list(reversed(runs))
    return JobPage(
        name=job,
        environment=jc.environment,
        database=jc.database,
        status=mine[0] if mine else None,
        runs=runs,
        durations=bar_chart(
            "run duration",
            [(r.run_id, r.duration() if r.finished else None, r.status) for r in oldest_first],
            lambda v: f"{v:.1f}s",
        ),
        sizes=bar_chart(
            "artifact size (restored or published)",
            [(r.run_id, _bytes_moved(r), r.status) for r in oldest_first],
            human_bytes,
        ),
    )


def _bytes_moved(record: RunRecord) -> float | None:
    """The largest artifact a run restored or published (None if it moved none)."""
    sizes = [s.bytes for s in record.steps if s.bytes is not None]
    return float(max(sizes)) if sizes else None


@dataclass
class Provenance:
    """Where an artifact came from and who checked it since, from the run records of its database's
    jobs: the run that published it (and what that run had restored), and the runs whose restore or
    verify step read it back against its checksums."""

    published_by: str | None = None
    restored_from: str | None = None
    verified_by: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """As in ``/api/databases/<db>``."""
        return {
            "published_by": self.published_by,
            "restored_from": self.restored_from,
            "verified_by": self.verified_by,
        }


@dataclass(frozen=True)
class EnvironmentArtifacts:
    """The artifacts of a database in one environment's store (or why they could not be read)."""

    environment: str
    manifests: list[Manifest]
    jobs: list[str]
    error: str | None = None
    provenance: dict[str, Provenance] = field(default_factory=dict)


@dataclass(frozen=True)
class DatabasePage:
    """A database: per environment, its artifacts and the jobs that made them (the chain)."""

    name: str
    engine: str
    environments: list[EnvironmentArtifacts]
    chain: list[tuple[str, str, str]]

    def to_json(self) -> dict[str, Any]:
        """``/api/databases/<db>``: per environment the manifests as ``list --json`` prints them."""
        return {
            "name": self.name,
            "engine": self.engine,
            "environments": [
                {
                    "environment": e.environment,
                    "jobs": e.jobs,
                    "error": e.error,
                    "artifacts": [m.model_dump(mode="json") for m in e.manifests],
                    "provenance": {k: p.to_json() for k, p in e.provenance.items()},
                }
                for e in self.environments
            ],
            "chain": [{"job": j, "environment": env, "steps": steps} for j, env, steps in self.chain],
        }


def database_page(cfg: Config, database: str, limit: int = RUNS_SHOWN) -> DatabasePage:
    """The page of ``database`` (``ConfigError`` for an unknown one)."""
    db = cfg.database(database)
    envs = [e for e in cfg.environments if e in db.environments]
    provenance = _provenance(cfg, database, limit)
    out = []
    for env in envs:
        jobs = [n for n, j in cfg.jobs.items() if j.database == database and j.environment == env]
        try:
            manifests = ops.list_artifacts(cfg, database, env)[:limit]
        except FerryError as exc:  # one unreadable store must not hide the others
            out.append(EnvironmentArtifacts(env, [], jobs, error=exc.message))
            continue
        known = {m.id: provenance[(env, m.id)] for m in manifests if (env, m.id) in provenance}
        out.append(EnvironmentArtifacts(env, manifests, jobs, provenance=known))
    chain = [
        (name, j.environment, " -> ".join(j.steps) + (f" (after {j.after})" if j.after else ""))
        for name, j in cfg.jobs.items()
        if j.database == database
    ]
    return DatabasePage(name=database, engine=db.engine, environments=out, chain=chain)


def _provenance(cfg: Config, database: str, limit: int) -> dict[tuple[str, str], Provenance]:
    """``(environment, artifact id)`` -> its provenance, from the last ``limit`` runs of each job of
    ``database`` (artifact ids repeat across environments, so the environment is part of the key)."""
    stores = StoreCache(cfg)
    found: dict[tuple[str, str], Provenance] = {}
    for name, job in cfg.jobs.items():
        if job.database != database:
            continue
        try:
            records = list(islice(iter_runs(stores.for_job(name), name), limit))
        except FerryError:
            continue  # the environment's own section reports its unreadable store
        for r in records:
            if r.status == "succeeded" and r.published_artifact:
                p = found.setdefault((r.environment, r.published_artifact), Provenance())
                p.published_by = f"{name} run {r.run_id}"
                p.restored_from = r.restored_artifact
            for step in r.steps:
                if step.status != "succeeded" or not step.artifact or step.kind not in ("restore", "verify"):
                    continue
                env = step.step.partition(":")[2] if step.kind == "restore" else r.environment
                what = f"{step.kind} by {name} run {r.run_id}"
                found.setdefault((env, step.artifact), Provenance()).verified_by.append(what)
    return found
