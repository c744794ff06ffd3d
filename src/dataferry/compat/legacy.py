"""Run a GOV.UK job (``govuk_env_sync.sh -f FILE.cfg``) with dataferry's behaviour.

The job's values become an in-memory dataferry configuration whose store has the ``govuk-puppet``
layout (the Puppet-era script's own names, no pointer, manifests out of its sight; it still reads what
db-backup and the ``govuk`` layout wrote), or with ``--layout govuk`` db-backup's,
and the job runs through the same operations as ``dataferry backup`` and ``restore``:

* ``push``: dump, upload, manifest (and in the ``govuk`` layout the pointer) last. A MySQL pre-dump
  transformation (``-F``) runs on a scratch copy, never on the live source database as the original
  did.
* ``pull``: choose the dump (``-t``, else the pointer, else the newest trusted), check it, restore it
  into a shadow, run the post-restore transformation (``-s``) on the shadow, then swap. Any failure
  leaves the live database as it was (the original dropped it first).
* ``s3_sync``: copy new and changed objects from one bucket to another, server-side with their
  properties, metadata and ``bucket-owner-full-control`` (or the job file's ``acl``), with ``delete``
  removing objects the source no longer has.

Credentials never come from the job file or the command line: the user is ``$DB_USER`` (default
``aws_db_admin``, as in GOV.UK's scripts) and the password ``$DB_PASSWORD`` (or the variable named
by ``--password-env``); without one the client tools' own files apply (``~/.pgpass``, and for
MySQL the user and password of ``~/.my.cnf``).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from dataferry import ops
from dataferry.artifacts import Manifest, Sanitisation
from dataferry.compat.jobfile import LegacyJob, check_files
from dataferry.config import (
    NAME_RE,
    Config,
    ConnectionConfig,
    DatabaseConfig,
    EnvironmentConfig,
    StoreConfig,
    database_ref,
)
from dataferry.engines import Engine, RunsSql, Shadow, get_engine
from dataferry.engines.mysql.optionfiles import client_defaults
from dataferry.errors import ConfigError, EngineError, FerryError, NotReady, SanitisationFailed
from dataferry.progress import NullReporter, Reporter
from dataferry.stores import Store, open_store
from dataferry.stores.s3copy import DEFAULT_ACL, check_acl, copy_object

DEFAULT_USER = "aws_db_admin"
DEFAULT_PASSWORD_ENV = "DB_PASSWORD"
LAYOUTS = ("govuk", "govuk-puppet")
_FACTS_FILE = Path("/etc/facter/facts.d/aws_environment.txt")
_BUCKET_ENV_RE = re.compile(r"^govuk-(?P<env>[a-z0-9-]+?)-database-backups$")


@dataclass
class LegacyOptions:
    """dataferry's own options for a legacy run (the job file cannot express these)."""

    environment: str | None = None
    password_env: str = DEFAULT_PASSWORD_ENV
    #: The bucket's layout: ``govuk-puppet`` (the script's own names alone, so that its pulls
    #: elsewhere still find dataferry's dumps; the default, as job files are the script's) or
    #: ``govuk`` (db-backup's names and pointer).
    layout: str = "govuk-puppet"
    force: bool = False
    dry_run: bool = False


@dataclass
class Plan:
    """What a legacy job becomes: a configuration and the names to use in it."""

    config: Config
    database: str
    target: str
    source: str | None = None
    notes: list[str] = field(default_factory=list)


# -- configuration ---------------------------------------------------------------------------------


def store_url(url: str) -> str:
    """``-u``: a bucket name (``s3://`` is implied), or any store URL (``file:///dir`` on a laptop)."""
    if not url or url.startswith("-"):
        raise ConfigError(f"bad bucket {url!r} (-u)")
    return url if "://" in url else f"s3://{url}"


def environment_of_bucket(url: str) -> str:
    """``govuk-staging-database-backups`` -> ``staging``; other buckets keep a cleaned-up name."""
    bucket = store_url(url).split("://", 1)[1].strip("/").split("/", 1)[0] or "store"
    m = _BUCKET_ENV_RE.match(bucket)
    name = m["env"] if m else bucket
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name).strip("-.") or "store"


def local_environment(opts: LegacyOptions, environ: Mapping[str, str]) -> str:
    """This machine's environment: ``--env``, ``$GOVUK_ENVIRONMENT``, the Puppet fact, else ``legacy``."""
    name = opts.environment or environ.get("GOVUK_ENVIRONMENT") or _fact_environment() or "legacy"
    if not re.match(NAME_RE, name):
        raise ConfigError(f"environment name {name!r} uses letters, digits, '.', '_' and '-' only")
    return name


def _fact_environment() -> str | None:
    """``aws_environment=staging`` from the Puppet-era facter file, when this is such a machine."""
    try:
        text = _FACTS_FILE.read_text(encoding="utf-8")
    except OSError:
        return None
    m = re.search(r"^aws_environment=(\S+)", text, flags=re.M)
    return m.group(1) if m else None


def is_production(environment: str) -> bool:
    """GOV.UK's own rule (db-backup's restore guard): an environment whose name contains ``prod``."""
    return "prod" in environment.lower()


def connection(job: LegacyJob, opts: LegacyOptions, environ: Mapping[str, str]) -> ConnectionConfig:
    """The database connection: ``-H`` host (``host:port`` allowed), ``$DB_USER``, ``$DB_PASSWORD``."""
    host = job.database_hostname
    if "@" in host or "/" in host:
        raise ConfigError(
            f"-H must be a host name (optionally host:port), not {_redact_host(host)!r}",
            hint="credentials never go on the command line: export DB_USER and DB_PASSWORD instead",
        )
    # MySQL without $DB_USER: the user of ~/.my.cnf, as the Puppet-era script's clients used it
    option_user = client_defaults().get("user") if job.dbms == "mysql" else None
    user = environ.get("DB_USER") or option_user or DEFAULT_USER
    password_env = opts.password_env if environ.get(opts.password_env) is not None else None
    url = f"{job.dbms}://{quote(user, safe='')}@{host}/{quote(job.database, safe='')}"
    return ConnectionConfig(url=url, password_env=password_env)


def _redact_host(host: str) -> str:
    """Drop anything before ``@`` so a pasted ``user:password@host`` is never echoed."""
    return "***@" + host.rsplit("@", 1)[1] if "@" in host else host


def plan(job: LegacyJob, opts: LegacyOptions, environ: Mapping[str, str] | None = None) -> Plan:
    """The in-memory configuration that runs ``job`` (push or pull)."""
    environ = os.environ if environ is None else environ
    if not re.match(NAME_RE, job.database):
        raise ConfigError(f"database name {job.database!r} uses letters, digits, '.', '_' and '-' only")
    target = local_environment(opts, environ)
    if opts.layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {opts.layout!r} (--layout)", hint=f"use {' or '.join(LAYOUTS)}")
    store = StoreConfig.model_validate(
        {"url": store_url(job.url), "layout": opts.layout, **_s3_defaults(job.url)}
    )
    environments = {target: EnvironmentConfig(store=store, protected=is_production(target))}
    source = None
    if job.action == "pull":
        source = environment_of_bucket(job.url)
        if source == target:
            source = f"{source}-bucket"  # e.g. integration restoring from its own bucket
        environments[source] = EnvironmentConfig(store=store)
    db = DatabaseConfig(
        engine=job.dbms,  # validated by jobfile: postgresql or mysql
        environments={target: connection(job, opts, environ)},
        exclude_tables=list(job.excluded_tables),
        store_path=job.path,
        store_name=job.database,
    )
    cfg = Config(environments=environments, databases={job.database: db})
    return Plan(config=cfg, database=job.database, target=target, source=source, notes=_notes(job))


def _s3_defaults(url: str) -> dict[str, str]:
    """GOV.UK uploaded with ``--sse AES256``; a local directory has no such option."""
    return {"sse": "AES256"} if store_url(url).startswith("s3://") else {}


def _notes(job: LegacyJob) -> list[str]:
    """What the operator should look at: values of the job that were ignored, and why."""
    return list(job.warnings)


# -- running ---------------------------------------------------------------------------------------


def run(
    job: LegacyJob,
    opts: LegacyOptions,
    *,
    reporter: Reporter | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Run one legacy job; returns a one-line summary. Failures raise ``FerryError``."""
    reporter = reporter or NullReporter()
    try:
        check_files(job)
        if job.action == "s3_sync":
            return s3_sync(job, dry_run=opts.dry_run, reporter=reporter)
        p = plan(job, opts, environ)
        for note in p.notes:
            reporter.warn(note)
        if job.temppath:  # every job file has one: say it once, quietly
            reporter.info(f"temppath {job.temppath} is not used: dataferry streams without temporary files")
        if job.action == "push":
            return _push(job, p, opts, reporter)
        return _pull(job, p, opts, reporter, os.environ if environ is None else environ)
    except FerryError as exc:
        if exc.hint and "dataferry check" in exc.hint:  # it needs a configuration file; a job file has none
            exc.hint = "run the same command with --dry-run to see every check"
        raise


def _push(job: LegacyJob, p: Plan, opts: LegacyOptions, reporter: Reporter) -> str:
    if opts.dry_run:
        engine = get_engine(job.dbms)
        ref = database_ref(p.config, p.database, p.target)
        ops.require_ready(engine.check(ref), ref)
        return f"would push {p.database} to {ops.store_for(p.config, p.target).url}{job.path}/"
    transform = None
    extra: dict[str, object] | None = None
    if job.pre_dump_transformation_sql_file:
        # The original ran the script on the live source database (Whitehall in staging) before
        # dumping it. The published dump is the same; the live database is no longer changed.
        script = Path(job.pre_dump_transformation_sql_file)
        raw = script.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        reporter.info(
            f"pre-dump transformation {script.name} (sha256 {digest[:12]}) runs on a copy of {p.database}"
        )
        transform = _sql_step(raw.decode("utf-8"), f"pre-dump transformation {script.name}")
        extra = {
            "pre_dump_transformation": {
                "script": script.name,
                "sha256": digest,
                "what": "GOV.UK's pre-dump transformation (-F): run on a copy of the database, which was "
                "then dumped; a script, not a dataferry sanitisation profile: no checks or scan ran, so "
                "the artifact is not marked sanitised",
            }
        }
    result = ops.backup(p.config, p.database, p.target, reporter=reporter, transform=transform, extra=extra)
    return f"pushed {result.store_url}{_named(result.manifest)}"


def _pull(
    job: LegacyJob, p: Plan, opts: LegacyOptions, reporter: Reporter, environ: Mapping[str, str]
) -> str:
    assert p.source is not None
    before_swap = None
    if job.transformation_sql_file:
        before_swap = transformation(Path(job.transformation_sql_file), reporter)
    req = ops.RestoreRequest(
        database=p.database,
        environment=p.target,
        source=p.source,
        artifact=job.timestamp or None,
        force=opts.force or bool(environ.get("REALLY_RESTORE_ONTO_PRODUCTION")),
        dry_run=opts.dry_run,
    )
    result = ops.restore(
        ops.plan_restore(p.config, req, reporter), reporter=reporter, before_swap=before_swap
    )
    verb = "would pull" if opts.dry_run else "pulled"
    return f"{verb} {_named(result.manifest)} into {p.database} ({p.target})"


def _named(manifest: Manifest) -> str:
    """What a message names: the dump GOV.UK's layouts write, or the manifest of one of many objects."""
    return manifest.key if manifest.by_objects else manifest.objects[0].key


def transformation(path: Path, reporter: Reporter | None = None) -> ops.BeforeSwap:
    """The post-restore transformation (``-s``) as a step on the shadow, before the swap.

    The original appended it to the restore (PostgreSQL) or ran it on the live database afterwards
    (MySQL), without stopping on errors. Here the first failing statement fails the run and nothing
    is swapped in. Its start and end are logged with the script's sha256.
    """
    reporter = reporter or NullReporter()
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()[:12]
    step = _sql_step(raw.decode("utf-8"), f"transformation {path.name}")

    def run_on_shadow(engine: Engine, shadow: Shadow) -> Sanitisation | None:
        reporter.info(f"transformation {path.name} (sha256 {digest}) runs on the shadow {shadow.name}")
        step(engine, shadow)
        reporter.info(f"transformation {path.name} done; the shadow is swapped in next")
        return None

    return run_on_shadow


def _sql_step(sql: str, what: str) -> ops.Transform:
    """Run ``sql`` on a shadow; the first failing statement fails the run, nothing is published."""

    def run(engine: Engine, shadow: Shadow) -> None:
        if not isinstance(engine, RunsSql):
            raise NotReady(f"the {engine.name} engine cannot run SQL scripts")
        try:
            engine.run_sql(shadow, sql)
        except EngineError as exc:
            raise SanitisationFailed(
                f"{what} failed: {exc.message}",
                hint="nothing was swapped in or published; fix the script (or the schema it expects) and re-run",
            ) from None

    return run


# -- s3_sync ---------------------------------------------------------------------------------------


@dataclass
class SyncResult:
    """What an ``s3_sync`` copied and deleted."""

    copied: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: int = 0


def s3_sync(job: LegacyJob, *, dry_run: bool = False, reporter: Reporter | None = None) -> str:
    """``aws s3 sync --acl bucket-owner-full-control [--delete] s3://src s3://dst``: copy new or
    changed objects server-side, with their properties and metadata, and the job's ``acl``."""
    reporter = reporter or NullReporter()
    acl = check_acl(job.acl or DEFAULT_ACL)
    src = open_store(store_url(job.source_bucket))
    dst = open_store(store_url(job.destination_bucket))
    result = sync_stores(src, dst, delete=job.delete, dry_run=dry_run, reporter=reporter, acl=acl)
    verb = "would sync" if dry_run else "synced"
    return (
        f"{verb} {src.url} -> {dst.url}: {len(result.copied)} copied, "
        f"{len(result.deleted)} deleted, {result.unchanged} unchanged"
    )


def sync_stores(
    src: Store, dst: Store, *, delete: bool, dry_run: bool, reporter: Reporter, acl: str = DEFAULT_ACL
) -> SyncResult:
    """Copy objects missing from ``dst`` or differing in size or newer in ``src`` (``copy_object``:
    server-side between buckets, keeping properties and metadata, with ``acl``); optionally delete."""
    result = SyncResult()
    have = {o.key: o for o in dst.list("")}
    wanted: set[str] = set()
    for obj in src.list(""):
        wanted.add(obj.key)
        old = have.get(obj.key)
        newer = (
            obj.modified is not None
            and old is not None
            and old.modified is not None
            and obj.modified > old.modified
        )
        if old is not None and old.size == obj.size and not newer:
            result.unchanged += 1
            continue
        result.copied.append(obj.key)
        if not dry_run:
            reporter.info(f"copy {src.url}{obj.key} -> {dst.url}{obj.key}")
            copy_object(src, dst, obj.key, acl=acl)
    if delete:
        for key in sorted(set(have) - wanted):
            result.deleted.append(key)
            if not dry_run:
                reporter.info(f"delete {dst.url}{key}")
                dst.delete(key)
    return result
