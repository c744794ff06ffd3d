"""``dataferry import``: GOV.UK job files or db-backup Helm values -> a dataferry configuration.

Two sources are understood:

* a directory of ``govuk_env_sync`` job files (``*.cfg``) from one machine, i.e. one environment;
* a ``db-backup`` Helm values file (``cronjobs.<environment>.<job>`` with ``operations``).

Stores get the layout GOV.UK's readers of those buckets need: ``govuk-puppet`` for job files (the
Puppet-era script, which fails on a directory holding a pointer or a manifest, still pulls from
them while a migration runs both tools), ``govuk`` (db-backup's names and pointer) for Helm values. What has no dataferry equivalent is listed, never silently dropped:
unsupported engines, ``s3_sync`` jobs, suspended jobs, missing schedules. A transformation script
becomes a generated sanitisation profile that runs it; a push's pre-dump transformation becomes a
``backup:sanitised`` step, so an imported job never publishes less sanitised data than the original.
The generated file is validated with dataferry's own loader before it is returned.
"""

from __future__ import annotations

from pathlib import Path

from dataferry.compat.helm_import import default_db_owner, import_helm_values
from dataferry.compat.imported import Imported, ImportedDatabase, connection, render, script_profile
from dataferry.compat.jobfile import LegacyJob, read_job_file, validate
from dataferry.compat.legacy import environment_of_bucket, store_url
from dataferry.errors import ConfigError, FerryError

_UNSUPPORTED_DBMS = ("documentdb", "mongo", "mongodb", "elasticsearch", "files")


# -- job files -------------------------------------------------------------------------------------


def import_job_files(directory: Path, environment: str | None = None) -> Imported:
    """Translate every ``*.cfg`` in ``directory`` (one machine's ``/etc/govuk_env_sync``)."""
    files = sorted(directory.glob("*.cfg"))
    if not files:
        raise ConfigError(f"no .cfg job files in {directory}")
    out = Imported(source=str(directory), layout="govuk-puppet")
    jobs: list[LegacyJob] = []
    for path in files:
        job = _read_job(path, out)
        if job is not None:
            jobs.append(job)
    env = environment or _machine_environment(jobs, directory)
    pushed = {store_url(j.url) for j in jobs if j.action == "push"}
    # the machine's store is the one its pushes write to (a file:// directory stays local)
    out.environment(env, pushed.pop() if len(pushed) == 1 else None)
    out.note(
        "all job files", "job files carry no schedule (Puppet's cron line has it): add schedule = ... per job"
    )
    # Pushes with a pre-dump transformation first: their script must be their database's profile.
    for job in sorted(jobs, key=lambda j: not (j.action == "push" and j.pre_dump_transformation_sql_file)):
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


def _bucket_environment(job: LegacyJob, env: str, out: Imported) -> str:
    """The environment whose store ``job`` reads or writes: the machine's own, or another's."""
    url = store_url(job.url)
    if out.environments.get(env) == url:
        return env
    return out.environment(environment_of_bucket(job.url), url)


def _translate_job(job: LegacyJob, env: str, out: Imported) -> None:
    where = job.title
    bucket_env = _bucket_environment(job, env, out)
    db = out.database(job.dbms, job.path, job.database)
    database = out.databases[db]
    database.connections[env] = connection(job.dbms, job.database_hostname, job.database)
    database.exclude_tables = sorted(set(database.exclude_tables) | set(job.excluded_tables))
    if job.action == "push":
        steps = ["backup"]
        if bucket_env != env:
            out.note(
                where, f"pushes to {bucket_env}'s bucket; dataferry backs up into the job's own store ({env})"
            )
        if job.pre_dump_transformation_sql_file:
            _sanitised_push(job, db, env, out)
            steps = ["backup:sanitised"]
    else:
        if bucket_env == env:
            out.note(
                where, f"restores {env} from its own bucket; dataferry jobs restore from another environment"
            )
            return
        steps = [f"restore:{bucket_env}"]
        if job.transformation_sql_file:
            steps.append("sanitise")
            _sanitise(
                database, job.transformation_sql_file, where, out, "GOV.UK's post-restore transformation"
            )
    out.jobs[job.title] = {"environment": env, "database": db, "steps": steps}


def _sanitised_push(job: LegacyJob, db: str, env: str, out: Imported) -> None:
    """A push with a pre-dump transformation publishes only a sanitised copy: its script becomes
    the database's profile, run in a scratch database on the same server (``backup:sanitised``).
    The import refuses (exit 2) what it cannot translate that way, never publishing less."""
    script = job.pre_dump_transformation_sql_file
    database = out.databases[db]
    if not _sanitise(database, script, job.title, out, "GOV.UK's pre-dump transformation"):
        raise ConfigError(
            f"{job.title}: pre-dump transformation {script} cannot become the sanitisation profile of "
            f"{db}, which already runs {database.sanitise}; the backup would publish data this script "
            "did not sanitise",
            hint="import the job files of one machine at a time, or run this job file with "
            "'dataferry legacy -f FILE' until the two scripts are merged into one profile",
        )
    conn = database.connections[env]
    database.scratch = connection(
        job.dbms, job.database_hostname, f"{job.database}_dfscratch", password_env=conn["password_env"]
    )
    out.note(
        job.title,
        f"pre-dump transformation {Path(script).name}: step backup:sanitised copies {job.database} into "
        f"the scratch database {job.database}_dfscratch on the same server, runs the script there "
        f"(profile {database.sanitise}) with the personal-data scan, and publishes only that copy",
    )


def _sanitise(database: ImportedDatabase, script: str, where: str, out: Imported, why: str) -> bool:
    """Give ``database`` a profile that runs ``script``; False when it already has another one."""
    profile = f"sanitise/{Path(script).stem}.toml"
    if database.sanitise not in (None, profile):
        out.note(where, f"{database.name} has two transformations; only {database.sanitise} is referenced")
        return False
    database.sanitise = profile
    out.profiles[profile] = script_profile(where, script, why)
    out.note(where, f"transformation {script}: runs as the sanitisation profile {profile}")
    return True


def write_profiles(imported: Imported, directory: Path, *, force: bool) -> list[str]:
    """Write the generated profiles (and the other generated files) relative to ``directory`` (the
    configuration's); an existing file is kept unless ``force``. Returns one line per file saying
    what happened."""
    lines = []
    for name, text in sorted((imported.profiles | imported.files).items()):
        path = directory / name
        if path.exists() and not force:
            lines.append(f"kept {path} (exists; --force overwrites it)")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        lines.append(f"wrote {path}")
    return lines


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


__all__ = [
    "Imported",
    "default_db_owner",
    "import_helm_values",
    "import_job_files",
    "import_path",
    "render",
    "write_profiles",
]
