"""``pull``: a developer's one command, no configuration file: the newest sanitised artifact of a
database in a store, restored into a local database through the shadow and the swap.

``dataferry pull s3://bucket/prefix/DB --into postgresql://localhost/app`` builds the configuration
a restore needs in memory: the store as an environment that *requires sanitised artifacts* (so
``rules.refuse_unsanitised_source`` refuses anything else, exit 9, whoever asks), the target as an
unprotected environment, the engine from the target URL's scheme. Then it is an ordinary
``plan_restore``/``restore``: every check first, the checksum verified while streaming, the swap last.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from dataferry.artifacts import Manifest
from dataferry.config import Config
from dataferry.errors import ConfigError, NotFound, NotReady, Refused
from dataferry.layouts import layout_for
from dataferry.ops.restore_flow import RestorePlan, RestoreRequest, plan_restore
from dataferry.ops.rules import engine_for, refuse_unsanitised_source
from dataferry.progress import NullReporter, Reporter

#: The names the in-memory configuration gives the store and the developer's database.
SOURCE = "pulled-store"
TARGET = "local"

_ENGINES = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
}


@dataclass(frozen=True)
class PullRequest:
    """What to pull where. ``source`` is ``<store URL>/<database>``; S3 credentials come from
    boto3's chain (environment, ``profile``, shared config, instance or pod role)."""

    source: str
    into: str
    artifact: str | None = None
    at: datetime | None = None
    jobs: int | None = None  # None: auto, as for a restore
    dry_run: bool = False
    password_env: str | None = None
    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    identity_env: str | None = None
    identity_file: str | None = None
    #: public keys whose signatures on sanitised manifests are trusted (``--trust-key``)
    trusted_keys: tuple[str, ...] = ()


def split_source(source: str) -> tuple[str, str]:
    """``s3://bucket/prefix/DB`` -> (``s3://bucket/prefix``, ``DB``); a local path works the same."""
    base, _, database = source.rstrip("/").rpartition("/")
    if not database or not base or base.endswith(":/") or base.endswith(":"):
        raise ConfigError(
            f"cannot tell the store and the database apart in {source!r}",
            hint="give the store URL and the database name: s3://bucket/prefix/DATABASE",
        )
    return base, database


def pull_config(req: PullRequest) -> tuple[Config, str]:
    """The in-memory configuration of a pull, and the database's name."""
    store_url, database = split_source(req.source)
    scheme = urlsplit(req.into).scheme.lower()
    engine = _ENGINES.get(scheme)
    if engine is None:
        raise ConfigError(
            f"--into: unknown database URL scheme {scheme!r}",  # the URL itself may hold a password
            hint="use postgresql://user@host/db, mysql://user@host/db or sqlite:///path/to/file.db",
        )
    store: dict[str, Any] = {"url": store_url}
    for key in ("profile", "region", "endpoint_url"):
        if getattr(req, key):
            store[key] = getattr(req, key)
    if not req.trusted_keys:
        raise ConfigError(
            "pull takes only sanitised artifacts signed by a key you trust, and no key was given",
            hint="add --trust-key ed25519:... (the key in trusted_keys of the environment you pull from; "
            "its operators get it with 'dataferry keygen --show'), or set $DATAFERRY_TRUST_KEYS",
        )
    source_env: dict[str, Any] = {
        "store": store,
        "requires_sanitised": True,
        "trusted_keys": list(req.trusted_keys),
    }
    if req.identity_env or req.identity_file:
        source_env["encryption"] = {"identity_env": req.identity_env, "identity_file": req.identity_file}
    connection: dict[str, Any] = {"url": req.into}
    if req.password_env:
        connection["password_env"] = req.password_env
    data = {
        "environments": {SOURCE: source_env, TARGET: {"store": store}},
        "databases": {database: {"engine": engine, "environments": {TARGET: connection}}},
    }
    try:
        return Config.model_validate(data), database
    except ValidationError as exc:
        problems = "; ".join(
            f"{_option(e['loc'])}: {str(e['msg']).removeprefix('Value error, ')}" for e in exc.errors()
        )
        # Not the --into URL itself: a password written in it must not be echoed.
        raise ConfigError(f"cannot pull {req.source}: {problems}") from None


def _option(loc: tuple[int | str, ...]) -> str:
    """The command-line option a problem of the in-memory configuration comes from."""
    if "databases" in loc:
        return "--into"
    if "encryption" in loc:
        return "--identity-env/--identity-file"
    return "--trust-key" if "trusted_keys" in loc else "STORE_URL"


def newest_sanitised(cfg: Config, database: str, at: datetime | None, reporter: Reporter) -> Manifest:
    """The newest sanitised artifact (at or before ``at``); ``NotFound`` if there is no artifact,
    ``Refused`` (exit 9) if none of them is sanitised."""
    layout = layout_for(cfg, SOURCE, database)
    listed = layout.list_manifests(engine_for(cfg, database))
    manifests = [m for m in listed if at is None or m.created_at <= at]
    where = f"{layout.store.url}{layout.prefix()}"
    if not manifests:
        when = f" at or before {at.isoformat()}" if at else ""
        hint = (
            f"the oldest there is {min(listed, key=lambda m: m.created_at).id}"
            if listed
            else "check the URL and the database name: the store of an environment whose jobs back "
            "the database up (one that only restores it has none)"
        )
        raise NotFound(f"no artifacts of {database}{when} in {where}", hint=hint)
    refusals: list[Refused] = []
    for skipped, manifest in enumerate(manifests):
        if not manifest.is_publishable_sanitised():
            continue
        try:
            refuse_unsanitised_source(cfg, SOURCE, manifest)  # signed by a trusted key
        except Refused as exc:
            refusals.append(exc)
            continue
        if skipped:
            reporter.warn(
                f"skipped {skipped} newer artifact(s) that are not sanitised and signed by a trusted key; "
                f"pulling {manifest.id}"
            )
        return manifest
    if refusals:
        raise refusals[0]
    raise Refused(
        f"none of the {len(manifests)} artifacts of {database} in {where} is sanitised; pull takes only "
        "sanitised artifacts",
        hint="pull from the store of an environment that publishes sanitised data (integration, staging)",
    )


def plan_pull(req: PullRequest, reporter: Reporter | None = None) -> RestorePlan:
    """Every check of the pull, nothing changed: the artifact (explicit, or the newest sanitised
    one), then ``plan_restore`` with its rules (an unsanitised artifact is refused there too)."""
    reporter = reporter or NullReporter()
    if req.artifact and req.at:
        raise ConfigError("give --artifact or --at, not both")
    cfg, database = pull_config(req)
    artifact = req.artifact or newest_sanitised(cfg, database, req.at, reporter).id
    restore_req = RestoreRequest(
        database=database,
        environment=TARGET,
        source=SOURCE,
        artifact=artifact,
        jobs=req.jobs,
        dry_run=req.dry_run,
    )
    try:
        return plan_restore(cfg, restore_req, reporter)
    except NotReady as exc:
        # 'dataferry check', the usual hint, needs a configuration file, which pull has none of.
        raise NotReady(exc.message, hint=_NOT_READY_HINT) from None


_NOT_READY_HINT = (
    "fix the database given with --into: a SQLite file's directory must exist and be writable; a "
    "server must be reachable, with its password in the variable named by --password-env; the "
    "engine's client tools must be installed"
)
