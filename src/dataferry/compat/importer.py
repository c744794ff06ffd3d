"""``dataferry import``: GOV.UK job files or db-backup Helm values -> a dataferry configuration.

Two sources are understood:

* a directory of ``govuk_env_sync`` job files (``*.cfg``) from one machine, i.e. one environment;
* a ``db-backup`` Helm values file (``cronjobs.<environment>.<job>`` with ``operations``).

Every store gets the ``govuk`` layout, so the imported jobs keep reading and writing exactly the
objects GOV.UK's consumers use. What has no dataferry equivalent is listed, never silently dropped:
unsupported engines, ``s3_sync`` jobs, suspended jobs, pre-dump transformations, missing schedules.
The generated file is validated with dataferry's own loader before it is returned.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from dataferry.compat.jobfile import LegacyJob, read_job_file, validate
from dataferry.compat.legacy import DEFAULT_USER, environment_of_bucket, is_production, store_url
from dataferry.config import parse
from dataferry.errors import ConfigError, FerryError

_DBMS = {"postgres": "postgresql", "postgresql": "postgresql", "mysql": "mysql"}
_UNSUPPORTED_DBMS = ("documentdb", "mongo", "mongodb", "elasticsearch", "files")
_HELM_DEFAULT_RUNTIME = 43200  # activeDeadlineSeconds when maxJobRuntimeSeconds is not set


@dataclass
class _Database:
    engine: str
    path: str
    name: str
    connections: dict[str, dict[str, str]] = field(default_factory=dict)
    exclude_tables: list[str] = field(default_factory=list)
    sanitise: str | None = None


@dataclass
class Imported:
    """The configuration being built, and everything that could not be translated."""

    source: str
    environments: dict[str, str] = field(default_factory=dict)  # name -> store URL
    databases: dict[str, _Database] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    untranslated: list[str] = field(default_factory=list)

    def environment(self, name: str, url: str | None = None) -> str:
        """Declare an environment (its store defaults to GOV.UK's bucket name for it)."""
        self.environments.setdefault(name, url or f"s3://govuk-{name}-database-backups")
        return name

    def database(self, engine: str, host: str, name: str) -> str:
        """Declare a database (GOV.UK's name); a name seen on another host gets the host added."""
        key = name
        existing = self.databases.get(key)
        if existing is not None and (existing.path, existing.engine) != (host, engine):
            key = f"{name}.{host}"
            existing = self.databases.get(key)
        if existing is None:
            self.databases[key] = _Database(engine=engine, path=host, name=name)
        return key

    def note(self, where: str, what: str) -> None:
        """Record something that could not be translated."""
        self.untranslated.append(f"{where}: {what}")


# -- job files -------------------------------------------------------------------------------------


def import_job_files(directory: Path, environment: str | None = None) -> Imported:
    """Translate every ``*.cfg`` in ``directory`` (one machine's ``/etc/govuk_env_sync``)."""
    files = sorted(directory.glob("*.cfg"))
    if not files:
        raise ConfigError(f"no .cfg job files in {directory}")
    out = Imported(source=str(directory))
    jobs: list[LegacyJob] = []
    for path in files:
        job = _read_job(path, out)
        if job is not None:
            jobs.append(job)
    env = environment or _machine_environment(jobs, directory)
    out.environment(env)
    out.note(
        "all job files", "job files carry no schedule (Puppet's cron line has it): add schedule = ... per job"
    )
    for job in jobs:
        _translate_job(job, env, out)
    return out


def _read_job(path: Path, out: Imported) -> LegacyJob | None:
    """A job file as a validated job, or None (noted) when it has no dataferry equivalent."""
    jf = read_job_file(path)
    for warning in jf.warnings:
        out.note(path.name, warning)
    values = jf.values
    if values.get("action") == "s3_sync":
        out.note(
            path.name, "s3_sync copies buckets; run it with 'dataferry legacy -f FILE' (no job equivalent)"
        )
        return None
    if values.get("dbms") in _UNSUPPORTED_DBMS:
        out.note(path.name, f"dbms {values['dbms']} is not supported yet; keep it on govuk_env_sync")
        return None
    try:
        return validate(values, config_file=path, warnings=[])
    except FerryError as exc:
        out.note(path.name, f"not translated: {exc.message}")
        return None


def _machine_environment(jobs: list[LegacyJob], directory: Path) -> str:
    """The environment of the machine the files came from: the one bucket its pushes write to."""
    pushed = {environment_of_bucket(j.url) for j in jobs if j.action == "push"}
    if len(pushed) == 1:
        return pushed.pop()
    raise ConfigError(
        f"cannot tell which environment the job files in {directory} run in",
        hint="pass --env NAME (the environment of the machine they came from)",
    )


def _translate_job(job: LegacyJob, env: str, out: Imported) -> None:
    where = job.title
    bucket_env = out.environment(environment_of_bucket(job.url), store_url(job.url))
    db = out.database(job.dbms, job.path, job.database)
    database = out.databases[db]
    database.connections[env] = _connection(job.dbms, job.database_hostname, job.database)
    database.exclude_tables = sorted(set(database.exclude_tables) | set(job.excluded_tables))
    if job.action == "push":
        steps = ["backup"]
        if bucket_env != env:
            out.note(
                where, f"pushes to {bucket_env}'s bucket; dataferry backs up into the job's own store ({env})"
            )
        if job.pre_dump_transformation_sql_file:
            out.note(
                where,
                f"pre-dump transformation {job.pre_dump_transformation_sql_file}: dataferry sanitises the "
                f"shadow of a restore instead; add it to the sanitisation profile of {db} and a 'sanitise' "
                "step after the restore that feeds this backup (or run this file with 'dataferry legacy')",
            )
    else:
        if bucket_env == env:
            out.note(
                where, f"restores {env} from its own bucket; dataferry jobs restore from another environment"
            )
            return
        steps = [f"restore:{bucket_env}"]
        if job.transformation_sql_file:
            steps.append("sanitise")
            _sanitise(database, job.transformation_sql_file, where, out)
    out.jobs[job.title] = {"environment": env, "database": db, "steps": steps}


def _connection(engine: str, host: str, database: str, user: str = DEFAULT_USER) -> dict[str, str]:
    """A connection without secrets: the password is named by an environment variable per host."""
    return {
        "url": f"{engine}://{user}@{host}/{database}",
        "password_env": re.sub(r"[^A-Z0-9]", "_", host.upper()) + "_PASSWORD",
    }


def _sanitise(database: _Database, script: str, where: str, out: Imported) -> None:
    profile = f"sanitise/{Path(script).stem}.toml"
    if database.sanitise not in (None, profile):
        out.note(where, f"{database.name} has two transformations; only {database.sanitise} is referenced")
        return
    database.sanitise = profile
    out.note(where, f"transformation {script}: write the sanitisation profile {profile} that runs it")


# -- Helm values -----------------------------------------------------------------------------------


def import_helm_values(path: Path, environment: str | None = None) -> Imported:
    """Translate a db-backup ``values.yaml``: every environment, or only ``environment``."""
    values = _load_yaml(path)
    cronjobs = values.get("cronjobs")
    if not isinstance(cronjobs, dict) or not cronjobs:
        raise ConfigError(f"{path}: no 'cronjobs' map; is this the db-backup chart's values file?")
    envs = [environment] if environment else sorted(cronjobs)
    out = Imported(source=str(path))
    suspend_all = bool(values.get("suspendAllCronJobs"))
    for env in envs:
        jobs = cronjobs.get(env)
        if not isinstance(jobs, dict):
            raise ConfigError(
                f"{path}: no cronjobs for environment {env!r}", hint=f"known: {', '.join(cronjobs)}"
            )
        out.environment(env)
        for name, job in sorted(jobs.items()):
            _translate_cronjob(env, str(name), job if isinstance(job, dict) else {}, suspend_all, out)
    return out


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


def _translate_cronjob(env: str, name: str, job: dict[str, Any], suspend_all: bool, out: Imported) -> None:
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
    conn = _connection(engine, host, db_name, str(job.get("dbUser") or DEFAULT_USER))
    steps = _steps(env, ops, out.databases[db], where, out)
    restores = any(s.startswith("restore:") for s in steps or [])
    _env_overrides(job, ops, engine if restores else "", db_name, conn, where, out)
    out.databases[db].connections[env] = conn
    if steps is None:
        return
    spec: dict[str, Any] = {"environment": env, "database": db, "steps": steps}
    if job.get("schedule"):
        spec["schedule"] = str(job["schedule"])
    spec["max_runtime"] = _duration(int(job.get("maxJobRuntimeSeconds") or _HELM_DEFAULT_RUNTIME))
    if job.get("suspend") or suspend_all:
        out.note(
            where, f"suspended in the chart: after importing, run 'dataferry pause {env}-{name} --reason ...'"
        )
    out.jobs[f"{env}-{name}"] = spec


def _steps(env: str, ops: list[Any], database: _Database, where: str, out: Imported) -> list[str] | None:
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
            _sanitise(database, str(op.get("script")), where, out)
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


# -- output ----------------------------------------------------------------------------------------


def render(imported: Imported) -> str:
    """The configuration as TOML, validated by dataferry's own loader."""
    lines = [
        f"# Imported by 'dataferry import' from {imported.source} on {datetime.now(UTC):%Y-%m-%d}.",
        "# Stores use the govuk layout, so GOV.UK's consumers keep finding their dumps.",
        "# Passwords are read from the environment variables named by password_env.",
        "",
    ]
    for name, url in sorted(imported.environments.items()):
        lines += _environment(name, url)
    for name, db in sorted(imported.databases.items()):
        lines += _database(name, db)
    for name, spec in sorted(imported.jobs.items()):
        lines += [f"[jobs.{_key(name)}]", *(f"{k} = {_value(v)}" for k, v in spec.items()), ""]
    text = "\n".join(lines)
    parse(text, Path("imported.toml"))  # a file we cannot load ourselves would be a bug: fail loudly
    return text


def _environment(name: str, url: str) -> list[str]:
    lines = [f"[environments.{_key(name)}]"]
    if is_production(name):
        lines.append("protected = true")
    lines += [f"[environments.{_key(name)}.store]", f"url = {_value(url)}", 'layout = "govuk"']
    if url.startswith("s3://"):
        lines.append('sse = "AES256"')
    return [*lines, ""]


def _database(name: str, db: _Database) -> list[str]:
    lines = [
        f"[databases.{_key(name)}]",
        f"engine = {_value(db.engine)}",
        f"store_path = {_value(db.path)}",
        f"store_name = {_value(db.name)}",
    ]
    if db.exclude_tables:
        lines.append(f"exclude_tables = {_value(db.exclude_tables)}")
    if db.sanitise:
        lines.append(f"sanitise = {_value(db.sanitise)}")
    if db.connections:
        lines.append(f"[databases.{_key(name)}.environments]")
        lines += [f"{_key(env)} = {_value(conn)}" for env, conn in sorted(db.connections.items())]
    return [*lines, ""]


def _key(name: str) -> str:
    return name if re.match(r"^[A-Za-z0-9_-]+$", name) else json.dumps(name)


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML basic strings
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def import_path(path: Path, environment: str | None = None) -> Imported:
    """A directory of job files, or a Helm values file."""
    if path.is_dir():
        return import_job_files(path, environment)
    if path.suffix in (".yaml", ".yml"):
        return import_helm_values(path, environment)
    raise ConfigError(
        f"{path} is neither a directory of .cfg job files nor a Helm values file (.yaml)",
        hint="give /etc/govuk_env_sync (or a copy of it) or charts/db-backup/values.yaml",
    )


__all__ = ["Imported", "import_helm_values", "import_job_files", "import_path", "render"]
