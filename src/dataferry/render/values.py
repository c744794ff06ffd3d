"""From a configuration to the values of the Kubernetes rendering: one entry per job and per
environment's scheduler tick, the files of the ConfigMap, and the defaults a team changes.

The values are the one input of both renderers (``manifests.build`` in Python for ``-o DIR``, the
Helm chart's templates for ``--helm DIR``), so the two cannot drift: the tests render the chart
with Helm's own engine and compare. Secrets appear only as the *names* of environment variables,
which the pods take from a named Secret (``secretKeyRef``); no value is ever read here.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from dataferry._version import __version__
from dataferry.config import Config, JobConfig
from dataferry.errors import ConfigError
from dataferry.jobs.triggers import STARTING_DEADLINE
from dataferry.render.serve import serve_values
from dataferry.sanitise.profile import load as load_profile

#: Where the ConfigMap is mounted, and the config file in it (paths in the file resolve against it).
CONFIG_DIR = "/etc/dataferry"
CONFIG_FILE = "dataferry.toml"
#: The writable spool volume: TMPDIR and HOME of the pods (the root filesystem is read-only).
SPOOL_DIR = "/var/spool/dataferry"
#: A run stops itself at ``max_runtime``; Kubernetes kills the pod this much later.
DEADLINE_MARGIN_S = 600
#: activeDeadlineSeconds of a job without ``max_runtime``: a day, so a hung run cannot block the next.
DEFAULT_DEADLINE_S = 86400
#: The schedule of a CronJob kept only as a template for one-off runs (it is also suspended).
TEMPLATE_SCHEDULE = "0 0 1 1 *"
UID = 10001


@dataclass(frozen=True)
class RenderOptions:
    """What ``dataferry render kubernetes`` is asked for (the defaults of the values)."""

    environment: str | None = None
    image: str = f"dataferry:{__version__}"
    secret_name: str = "dataferry"
    service_account: str = "dataferry"
    role_arn: str | None = None
    spool_size: str = "10Gi"
    spool_claim: str | None = None
    tick_schedule: str = "*/5 * * * *"
    prometheus_rule: bool = False
    values_file: Path | None = None


def resource_name(prefix: str, name: str, limit: int = 52) -> str:
    """A DNS-1123 name for ``name`` (CronJob names: at most 52 characters). A name that had to be
    changed or shortened gets a hash of the original, so two jobs never share a resource."""
    clean = re.sub(r"[^a-z0-9-]+", "-", f"{prefix}-{name}".lower()).strip("-")
    if clean == f"{prefix}-{name}" and len(clean) <= limit:
        return clean
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{clean[: limit - 9].rstrip('-')}-{digest}"


def label_value(value: str) -> str:
    """``value`` as a label value (63 characters of ``[A-Za-z0-9_.-]``, alphanumeric at both ends);
    the exact name is kept in an annotation."""
    clean = re.sub(r"^[^A-Za-z0-9]+", "", re.sub(r"[^A-Za-z0-9_.-]+", "-", value))
    return re.sub(r"[^A-Za-z0-9]+$", "", clean[:63])


def config_files(cfg: Config) -> dict[str, str]:
    """``{ConfigMap key: path under the config directory}``: the config file, every sanitisation
    profile and every script a profile names. They must live under the config file's directory,
    because the pods see that directory as the ConfigMap mount."""
    if cfg.path is None:
        raise ConfigError("render needs a configuration loaded from a file")
    root = cfg.path.parent
    paths = [CONFIG_FILE]
    for name, db in sorted(cfg.databases.items()):
        if db.sanitise is None:
            continue
        profile_path = cfg.resolve_path(db.sanitise)
        profile = load_profile(profile_path)
        for path in (profile_path, *profile.script_paths()):
            paths.append(_inside(root, path, f"databases.{name}.sanitise"))
    files: dict[str, str] = {}
    for rel in dict.fromkeys(paths):
        key = CONFIG_FILE if rel == CONFIG_FILE else rel.replace("/", "--")
        if key in files:  # a/b.toml and a--b.toml: ConfigMap keys cannot have a '/'
            raise ConfigError(
                f"{rel} and {files[key]} would be the same ConfigMap key {key!r}", hint="rename one of them"
            )
        files[key] = rel
    return files


def _inside(root: Path, path: Path, where: str) -> str:
    try:
        rel = path.resolve().relative_to(root.resolve())
    except ValueError:
        raise ConfigError(
            f"{where}: {path} is outside the configuration's directory {root}",
            hint="move it under that directory (the pods see only it, as a ConfigMap) and use a relative path",
        ) from None
    return str(PurePosixPath(*rel.parts))


def read_files(cfg: Config, files: dict[str, str]) -> dict[str, str]:
    """The text of each ConfigMap file (the config file itself is the one ``cfg`` was loaded from)."""
    assert cfg.path is not None
    out: dict[str, str] = {}
    for key, rel in files.items():
        path = cfg.path if rel == CONFIG_FILE else cfg.path.parent / rel
        out[key] = path.read_text(encoding="utf-8")
    return out


def secret_names(cfg: Config, job_name: str) -> set[str]:
    """The environment variables a run of ``job_name`` reads secrets from (names, never values)."""
    job = cfg.jobs[job_name]
    db = cfg.databases[job.database]
    names: set[str] = set()
    conn = db.environments.get(job.environment)
    if conn is not None and conn.password_env:
        names.add(conn.password_env)
    if db.scratch is not None and db.scratch.password_env:
        names.add(db.scratch.password_env)
    envs = {job.environment, *(s.partition(":")[2] for s in job.steps if s.startswith("restore:"))}
    if cfg.settings.state_environment:
        envs.add(cfg.settings.state_environment)
    if job.after is not None:  # the trigger reads the upstream job's runs in its store
        envs.add(cfg.jobs[job.after].environment)
    for env in envs:
        store = cfg.environments[env].store
        names.update(n for n in (store.access_key_id_env, store.secret_access_key_env) if n)
    if db.sanitise is not None:
        salt = load_profile(cfg.resolve_path(db.sanitise)).salt_env
        if salt:
            names.add(salt)
    if _publishes_sanitised(cfg, job):
        names |= _signing_key(cfg, job_name)
    return names


def _publishes_sanitised(cfg: Config, job: JobConfig) -> bool:
    """The job publishes an artifact marked sanitised, so its pod needs the manifest signing key."""
    backs_up = any(s.split(":", 1)[0] == "backup" for s in job.steps)
    sanitises = "sanitise" in job.steps or "backup:sanitised" in job.steps
    return backs_up and (sanitises or cfg.environments[job.environment].requires_sanitised)


def _signing_key(cfg: Config, job_name: str) -> set[str]:
    """The signing key's variable; a key file cannot be rendered (it would have to be a Secret)."""
    if cfg.settings.signing_key_env:
        return {cfg.settings.signing_key_env}
    if cfg.settings.signing_key_file:
        raise ConfigError(
            f"job {job_name} publishes sanitised artifacts, signed with the key file "
            f"{cfg.settings.signing_key_file}, which a pod does not have",
            hint=(
                'on Kubernetes, replace it with signing_key_env = "DATAFERRY_SIGNING_KEY" in [settings] '
                "and put the key in the Secret: kubectl create secret generic dataferry "
                f"--from-file=DATAFERRY_SIGNING_KEY={cfg.resolve_path(cfg.settings.signing_key_file)} "
                "(with its other keys; docs/kubernetes.md)"
            ),
        )
    return set()


def deadline_seconds(job: JobConfig) -> int:
    """activeDeadlineSeconds: ``max_runtime`` plus time for the run to stop itself cleanly."""
    if job.max_runtime is None:
        return DEFAULT_DEADLINE_S
    return int(job.max_runtime.total_seconds()) + DEADLINE_MARGIN_S


def _ids(kind: str, job: str | None, environment: str, database: str | None) -> dict[str, Any]:
    labels = {"app.kubernetes.io/component": kind, "dataferry.io/environment": label_value(environment)}
    annotations = {"dataferry.io/environment": environment}
    if job is not None and database is not None:
        labels |= {"dataferry.io/job": label_value(job), "dataferry.io/database": label_value(database)}
        annotations |= {"dataferry.io/job": job, "dataferry.io/database": database}
    return {"labels": labels, "annotations": annotations}


def job_values(cfg: Config, name: str) -> dict[str, Any]:
    """The values of one job's CronJob. A job triggered only by ``after`` gets a suspended
    CronJob: never fired by Kubernetes (the environment's scheduler tick starts it), but there
    for one-off runs with ``kubectl create job --from=cronjob/...``. A scheduled job's pod runs
    ``dataferry run JOB --trigger schedule``, so its run is recorded as the schedule's and handles
    that fire time for every scheduler sharing the store."""
    job = cfg.jobs[name]
    ids = _ids("job", name, job.environment, job.database)
    ids["annotations"]["dataferry.io/trigger"] = (
        f"schedule {job.schedule}" if job.schedule else f"after {job.after}" if job.after else "manual"
    )
    return {
        "name": resource_name("dataferry", name),
        "job": name,
        "args": ["run", name, "--trigger", "schedule"] if job.schedule else ["run", name],
        "schedule": job.schedule or TEMPLATE_SCHEDULE,
        "timeZone": job.timezone,
        "suspend": job.schedule is None,
        "activeDeadlineSeconds": deadline_seconds(job),
        "secretEnv": sorted(secret_names(cfg, name)),
        **ids,
    }


def tick_values(cfg: Config, environment: str, after_jobs: list[str]) -> dict[str, Any]:
    """The values of an environment's scheduler tick: ``dataferry scheduler --once --only-after
    --env ENV``, which starts the ``after`` jobs whose upstream published and exits."""
    secrets = set().union(*(secret_names(cfg, j) for j in after_jobs))
    return {
        "name": resource_name("dataferry-scheduler", environment),
        "environment": environment,
        "activeDeadlineSeconds": sum(deadline_seconds(cfg.jobs[j]) for j in after_jobs),
        "secretEnv": sorted(secrets),
        **_ids("scheduler", None, environment, None),
    }


def alert_environments(cfg: Config, jobs: list[str]) -> dict[str, list[str]]:
    """Environments whose live data (restored into) and whose artifacts (backed up) get an age alert."""
    live = {cfg.jobs[j].environment for j in jobs if any(s.startswith("restore:") for s in cfg.jobs[j].steps)}
    artifact = {cfg.jobs[j].environment for j in jobs if "backup" in cfg.jobs[j].steps}
    return {"live": sorted(live), "artifact": sorted(artifact)}


def split_image(image: str) -> tuple[str, str]:
    """``registry/name:tag`` -> (``registry/name``, ``tag``); without a tag, ``latest``."""
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repository, _, tag = image.rpartition(":")
        return repository, tag
    return image, "latest"


def build_values(cfg: Config, options: RenderOptions) -> dict[str, Any]:
    """Everything the renderers need, as the chart's ``values.yaml``."""
    if options.environment is not None:
        cfg.environment(options.environment)  # a clear error for an unknown name
    jobs = [n for n, j in cfg.jobs.items() if options.environment in (None, j.environment)]
    ticks: dict[str, Any] = {}
    for env in sorted({cfg.jobs[j].environment for j in jobs}):
        after_jobs = [j for j in jobs if cfg.jobs[j].environment == env and cfg.jobs[j].after]
        if after_jobs:
            ticks[env] = tick_values(cfg, env, after_jobs)
    repository, tag = split_image(options.image)
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
        "secretName": options.secret_name,
        "serviceAccount": {
            "create": True,
            "name": options.service_account,
            "annotations": {"eks.amazonaws.com/role-arn": options.role_arn} if options.role_arn else {},
        },
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "nodeSelector": {},
        "tolerations": [],
        "extraEnv": [],
        "podAnnotations": {},
        "spool": {"sizeLimit": options.spool_size, "existingClaim": options.spool_claim or ""},
        "startingDeadlineSeconds": int(STARTING_DEADLINE.total_seconds()),  # as dataferry's scheduler
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "suspendAll": False,
        "scheduler": {"schedule": options.tick_schedule},
        "prometheusRule": {
            "enabled": options.prometheus_rule,
            "labels": {},
            "stepRunningHours": 4,
            "liveMaxAgeHours": 26,
            "artifactMaxAgeHours": 25,
            "heldForHours": 72,
            "environments": alert_environments(cfg, jobs),
        },
        "configFiles": config_files(cfg),
        "jobs": {name: job_values(cfg, name) for name in sorted(jobs)},
        "schedulers": ticks,
        "serve": serve_values(cfg),
    }


def notes(cfg: Config, options: RenderOptions) -> list[str]:
    """What will not work as it stands on a cluster (printed by the command, never fatal)."""
    out = []
    for name, env in sorted(cfg.environments.items()):
        if options.environment in (None, name) and not env.store.url.startswith("s3://"):
            out.append(
                f"environment {name}'s store {env.store.url} is a local directory: pods on other nodes "
                "do not share it, so locks, holds and runs are not shared; use an s3:// store"
            )
    if not cfg.settings.pushgateway_url:
        out.append(
            "settings.pushgateway_url is not set: a pod ends before Prometheus could scrape it, so "
            "metrics (and the PrometheusRule's alerts) need a Pushgateway"
        )
    if cfg.settings.spool_dir:
        out.append(
            f"settings.spool_dir = {cfg.settings.spool_dir!r}: in a pod only {SPOOL_DIR} is writable; "
            "leave spool_dir unset (TMPDIR is the spool volume) or set it to that path"
        )
    return out
