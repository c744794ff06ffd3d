"""``/metrics``: the state in the stores as Prometheus gauges, with the names the jobs themselves
write (``dataferry.metrics``), so one alert rule works on either source."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from dataferry.config import Config
from dataferry.jobs.status import ArtifactBrief, Status
from dataferry.metrics import JOB_STATES, SampleSet, registry_of


def status_samples(cfg: Config, status: Status) -> CollectorRegistry:
    """Freshness per environment and database; state, duration and holds per job."""
    out = SampleSet()
    for env in status.environments:
        for db in env.databases:
            lab = {"environment": env.name, "database": db.name}
            if db.live_data is not None:
                out.add(
                    "dataferry_data_timestamp_seconds",
                    db.live_data.data_as_of.timestamp(),
                    **lab,
                    kind="live",
                )
            if isinstance(db.newest_artifact, ArtifactBrief):
                out.add(
                    "dataferry_data_timestamp_seconds",
                    db.newest_artifact.finished_at.timestamp(),
                    **lab,
                    kind="artifact",
                )
            for job in db.jobs:
                out.add("dataferry_job_held", 1.0 if job.holds else 0.0, job_name=job.name)
                last = job.last_run
                if job.running is not None and not job.running.expired:
                    out.add("dataferry_job_state", JOB_STATES["running"], job_name=job.name)
                elif last is not None and last.status in JOB_STATES:
                    out.add("dataferry_job_state", JOB_STATES[last.status], job_name=job.name)
                if last is not None and last.duration_seconds is not None:
                    out.add("dataferry_job_duration_seconds", last.duration_seconds, job_name=job.name)
    return registry_of(out.samples)
