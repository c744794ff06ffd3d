"""``dataferry import`` of the db-backup Helm chart's ``values.yaml``: each CronJob
(``cronjobs.<environment>.<job>`` with ``operations``) becomes a job.

The chart ran each environment's CronJobs in that environment's cluster, where a short DB host
resolved through the DNS search domain ``<env>.govuk-internal.digital`` and ``DB_PASSWORD`` came
from that cluster's secret map (host -> password). Imported together, the environments therefore get
their own host (``<host>.<env>.govuk-internal.digital``) and password variable
(``<ENV>_<HOST>_PASSWORD``); one environment imported alone keeps the short names. The chart's
runtime settings are carried where dataferry has them (``max_runtime``, ``retries``, the
Pushgateway) and otherwise reported one per line (``Imported.settings``).

What belongs to the pods rather than to dataferry (the service account and its IRSA annotations,
resources, history limits, the starting deadline, suspended CronJobs) goes into one values file per
environment, ``kubernetes/<env>-values.yaml``, for ``dataferry render kubernetes --env ENV -f FILE``,
so the rendered CronJobs match the chart's. A ``transform`` script becomes a sanitisation profile
that runs it; the script is copied from the chart's ``scripts/`` directory beside the values file.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from dataferry.compat.imported import (
    Imported,
    ImportedDatabase,
    connection,
    password_variable,
    script_profile,
)
from dataferry.compat.legacy import DEFAULT_USER, environment_of_bucket, store_url
from dataferry.errors import ConfigError

_DBMS = {"postgres": "postgresql", "postgresql": "postgresql", "mysql": "mysql"}
_HELM_DEFAULT_RUNTIME = 43200  # activeDeadlineSeconds when maxJobRuntimeSeconds is not set
#: Fixed in the chart's CronJob template, carried into each environment's values file.
_HELM_CRONJOB = {
    "startingDeadlineSeconds": 28800,
    "successfulJobsHistoryLimit": 2,
    "failedJobsHistoryLimit": 2,
}


def import_helm_values(path: Path, environment: str | None = None) -> Imported:
    """Translate a db-backup ``values.yaml``: every environment, or only ``environment``."""
    values = _load_yaml(path)
    cronjobs = values.get("cronjobs")
    if not isinstance(cronjobs, dict) or not cronjobs:
        raise ConfigError(f"{path}: no 'cronjobs' map; is this the db-backup chart's values file?")
    envs = [environment] if environment else sorted(cronjobs)
    out = Imported(source=str(path))
    suspend_all = bool(values.get("suspendAllCronJobs"))
    qualify = len(envs) > 1  # several clusters' jobs in one configuration
    scripts = path.parent / "scripts"  # charts/db-backup/scripts beside charts/db-backup/values.yaml
    _chart_settings(values, envs, out)
    for env in envs:
        jobs = cronjobs.get(env)
        if not isinstance(jobs, dict):
            raise ConfigError(
                f"{path}: no cronjobs for environment {env!r}", hint=f"known: {', '.join(cronjobs)}"
            )
        out.environment(env)
        pods: dict[str, dict[str, Any]] = {}
        for name, job in sorted(jobs.items()):
            spec = job if isinstance(job, dict) else {}
            _translate_cronjob(env, str(name), spec, suspend_all, out, qualify=qualify, scripts=scripts)
            if f"{env}-{name}" in out.jobs:
                pods[f"{env}-{name}"] = _pod_values(values, spec)
        out.files[f"kubernetes/{env}-values.yaml"] = _kubernetes_values(path, env, values, pods)
    return out


def _pod_values(values: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """What one CronJob of the chart changes in its pods: resources (the job's over the chart's,
    as the chart merges them) and ``suspend``."""
    out: dict[str, Any] = {}
    if isinstance(job.get("resources"), dict):
        out["resources"] = _merged(values.get("resources") or {}, job["resources"])
    if job.get("suspend"):
        out["suspend"] = True
    return out


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)  # nothing shared, so the YAML has no anchors
    for key, value in override.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merged(out[key], value) if both else value
    return out


def _kubernetes_values(path: Path, env: str, values: dict[str, Any], pods: dict[str, Any]) -> str:
    """The values file for ``render kubernetes --env ENV -f FILE``: the chart's pod settings, so the
    rendered CronJobs run as the chart's did (service account, resources, limits, suspended jobs)."""
    data: dict[str, Any] = {}
    account = values.get("serviceAccount")
    if isinstance(account, dict) and account.get("name"):
        data["serviceAccount"] = {
            "create": bool(account.get("create", True)),
            "name": str(account["name"]),
            "annotations": {str(k): str(v) for k, v in (account.get("annotations") or {}).items()},
        }
    if isinstance(values.get("resources"), dict):
        data["resources"] = values["resources"]
    data |= _HELM_CRONJOB
    if values.get("suspendAllCronJobs"):
        data["suspendAll"] = True
    jobs = {name: pod for name, pod in sorted(pods.items()) if pod}
    if jobs:
        data["jobs"] = jobs
    header = (
        f"# Generated by 'dataferry import' from {path}: the db-backup chart's pod settings for {env}.\n"
        f"# dataferry render kubernetes --env {env} -f kubernetes/{env}-values.yaml -o DIR  (or --helm DIR)\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False, width=100)


def _host_and_password(env: str, host: str, qualify: bool) -> tuple[str, str]:
    """The DB host and password variable of ``host`` in ``env`` (see the module's docstring)."""
    if not qualify:
        return host, password_variable(host)
    return f"{host}.{env}.govuk-internal.digital", password_variable(f"{env}_{host}")


def _chart_settings(values: dict[str, Any], envs: list[str], out: Imported) -> None:
    """The chart-wide runtime settings: carried into ``[settings]`` or reported one per line."""
    pushgateway = next(
        (
            str(e.get("value"))
            for e in values.get("extraEnv") or []
            if e.get("name") == "PROMETHEUS_PUSHGATEWAY_URL"
        ),
        None,
    )
    if pushgateway:
        out.config_settings["pushgateway_url"] = pushgateway
        out.settings.append(
            f"PROMETHEUS_PUSHGATEWAY_URL {pushgateway}: carried as [settings] pushgateway_url"
        )
    else:
        out.settings.append(
            "PROMETHEUS_PUSHGATEWAY_URL (the chart reads it from the configmap govuk-apps-env): set "
            "[settings] pushgateway_url to it, so runs push the same metrics"
        )
    # fixed in the chart's CronJob template, so never in the values file
    pods = "kubernetes/<env>-values.yaml"
    for key, what in (
        (
            "concurrencyPolicy",
            "Forbid: carried: rendered CronJobs forbid it, and a job's lock in its store never lets it "
            "run twice at once",
        ),
        (
            "startingDeadlineSeconds",
            f"28800: carried: in {pods} (and the scheduler lets a schedule it missed by more than 8h go)",
        ),
        ("successfulJobsHistoryLimit", f"2 (and failedJobsHistoryLimit 2): carried in {pods}"),
        ("backoffLimit", "0: carried: a job's retries default to 0 (and retry only transient failures)"),
        ("activeDeadlineSeconds", "maxJobRuntimeSeconds or 43200: carried as each job's max_runtime"),
    ):
        out.settings.append(f"{key} {what}")
    if values.get("resources"):
        out.settings.append(
            f"resources {_flat(values['resources'])}: carried in {pods} for 'render kubernetes'; elsewhere "
            "give them to the host that runs 'dataferry scheduler --env ENV'"
        )
    account = values.get("serviceAccount")
    if isinstance(account, dict) and account:
        out.settings.append(
            f"serviceAccount {_flat(account)}: carried in {pods}: the pods run with this service "
            "account; its IAM role (IRSA) gives dataferry its S3 access through boto3's usual chain"
        )
    for key in ("podSecurityContext", "securityContext", "arch", "imageRef", "toolbox", "externalSecrets"):
        if values.get(key):
            out.settings.append(f"{key} {_flat(values[key])}: a setting of the pod, not of dataferry")
    if len(envs) > 1:
        out.settings.append(
            "render each environment for its own cluster, as the CronJobs were: 'dataferry render "
            f"kubernetes --env ENV -f kubernetes/ENV-values.yaml' (or run one 'dataferry scheduler --env "
            f"ENV' per environment): {', '.join(envs)}"
        )


def _flat(value: Any, prefix: str = "") -> str:
    """A nested chart value on one line: ``limits.cpu=2000m limits.memory=512Mi``."""
    if isinstance(value, dict):
        return " ".join(_flat(item, f"{prefix}{key}.") for key, item in value.items()) or f"{prefix}{{}}"
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return f"{prefix[:-1]}={text}" if prefix else text


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path} not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a YAML map at the top level")
    return data


def _translate_cronjob(
    env: str,
    name: str,
    job: dict[str, Any],
    suspend_all: bool,
    out: Imported,
    *,
    qualify: bool,
    scripts: Path,
) -> None:
    where = f"{env}/{name}"
    host = str(job.get("host") or name)
    dbms = str(job.get("dbms") or host.rsplit("-", 1)[-1])
    if dbms not in _DBMS:
        out.note(where, f"dbms {dbms} is not supported yet; keep this CronJob in the chart")
        return
    engine = _DBMS[dbms]
    ops = job.get("operations") or []
    db_name = str(job.get("db") or "")
    if not db_name or any(isinstance(op, dict) and op.get("db", db_name) != db_name for op in ops):
        out.note(where, "operations on several databases in one CronJob are not translated")
        return
    db = out.database(engine, host, db_name)
    db_host, password_env = _host_and_password(env, host, qualify)
    conn = connection(engine, db_host, db_name, str(job.get("dbUser") or DEFAULT_USER), password_env)
    steps = _steps(env, ops, out.databases[db], where, out, scripts)
    restores = any(s.startswith("restore:") for s in steps or [])
    _env_overrides(job, ops, engine if restores else "", db_name, conn, where, out)
    out.databases[db].connections[env] = conn
    if steps is None:
        return
    spec: dict[str, Any] = {"environment": env, "database": db, "steps": steps}
    if job.get("schedule"):
        spec["schedule"] = str(job["schedule"])
    spec["max_runtime"] = _duration(int(job.get("maxJobRuntimeSeconds") or _HELM_DEFAULT_RUNTIME))
    if job.get("resources"):
        out.settings.append(
            f"{where}: resources {_flat(job['resources'])}: carried in kubernetes/{env}-values.yaml "
            f"(jobs.{env}-{name}.resources)"
        )
    if job.get("suspend") or suspend_all:
        out.note(
            where,
            f"suspended in the chart: its rendered CronJob is suspended (kubernetes/{env}-values.yaml); "
            f"elsewhere run 'dataferry pause {env}-{name} --reason ...' after importing",
        )
    out.jobs[f"{env}-{name}"] = spec


def _steps(
    env: str, ops: list[Any], database: ImportedDatabase, where: str, out: Imported, scripts: Path
) -> list[str] | None:
    steps: list[str] = []
    for op in ops:
        kind = str(op.get("op")) if isinstance(op, dict) else str(op)
        bucket = str(op.get("bucket") or "") if isinstance(op, dict) else ""
        source = out.environment(environment_of_bucket(bucket), store_url(bucket)) if bucket else env
        if kind == "restore":
            if source == env:
                out.note(
                    where,
                    f"restores {env} from its own bucket; dataferry jobs restore from another environment",
                )
                return None
            steps.append(f"restore:{source}")
        elif kind == "transform":
            if not steps or not steps[-1].startswith("restore:"):
                out.note(where, "a transform that does not directly follow a restore is not translated")
                return None
            steps.append("sanitise")
            _transform(database, str(op.get("script")), where, out, scripts)
        elif kind == "backup":
            if source != env:
                out.note(where, f"backs up into {source}'s bucket; dataferry backs up into {env}'s store")
            steps.append("backup")
        else:
            out.note(where, f"operation {kind!r} is not translated")
            return None
    return steps or None


def _env_overrides(
    job: dict[str, Any],
    ops: list[Any],
    engine: str,
    db_name: str,
    conn: dict[str, str],
    where: str,
    out: Imported,
) -> None:
    """``DB_OWNER`` becomes the owner of a restored PostgreSQL database (default: db-backup's rule);
    other variables are noted."""
    env_items = list(job.get("extraEnv") or [])
    for op in ops:
        if isinstance(op, dict):
            env_items += list(op.get("extraEnv") or [])
    owner = default_db_owner(db_name) if engine == "postgresql" else None
    for item in env_items:
        name, value = str(item.get("name")), str(item.get("value", ""))
        if name == "DB_OWNER":
            owner = value
        else:
            out.note(where, f"environment variable {name} is not translated")
    if owner and engine == "postgresql":
        conn["owner"] = owner


def default_db_owner(database: str) -> str:
    """db-backup's default owner: strip ``_production`` and a ``draft[_-]`` prefix, ``-`` -> ``_``."""
    return re.sub(r"^draft[_-]", "", database.removesuffix("_production")).replace("-", "_")


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _transform(database: ImportedDatabase, script: str, where: str, out: Imported, scripts: Path) -> None:
    """A ``transform`` operation: a profile named after the chart's script runs it, on the restore's
    shadow before the swap (the chart ran it on the live database after). The script is copied
    from the chart's ``scripts/`` directory to ``sanitise/<script>`` beside the configuration."""
    name = Path(script).name
    profile = f"sanitise/{Path(name).stem}.toml"
    if database.sanitise not in (None, profile):
        out.note(where, f"{database.name} has two transformations; only {database.sanitise} is referenced")
        return
    database.sanitise = profile
    out.profiles[profile] = script_profile(where, name, "the db-backup chart's transform operation")
    source = scripts / name
    if source.is_file():
        out.files[f"sanitise/{name}"] = source.read_text(encoding="utf-8")
        out.note(where, f"transformation {script}: runs as the sanitisation profile {profile}")
    else:
        out.note(
            where,
            f"transformation {script}: runs as the sanitisation profile {profile}; copy the chart's "
            f"scripts/{name} to sanitise/{name} beside the configuration (not found at {source})",
        )
