"""The configuration's pydantic models: environments, stores, databases, jobs, settings, and the
rules that span them (jobs naming known environments, ``after`` chains without cycles).

Secrets are never written in the file: connections name an environment variable (``password_env``)
and the value is read only when a connection is made (``config.refs``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from dataferry.config.policies import EncryptionConfig, RetentionConfig
from dataferry.config.references import reference_problems
from dataferry.config.trust import check_public_key, trust_problems
from dataferry.config.urls import check_url
from dataferry.errors import ConfigError, NotFound

#: Keys people write by mistake for secrets, and the key that names an env var instead.
_SECRET_KEYS = {
    "password": "password_env",
    "passwd": "password_env",
    "pwd": "password_env",
    "access_key_id": "access_key_id_env",
    "secret_access_key": "secret_access_key_env",
    "identity": "identity_env",
}

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s)")
_DURATION_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str | timedelta) -> timedelta:
    """``"26h"``, ``"7d"``, ``"90m"``, ``"30s"`` or combinations such as ``"1d12h"``. A timedelta
    (a configuration value, already parsed) is returned as it is."""
    if isinstance(text, timedelta):
        return text
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION_RE.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"{text!r} is not a duration: use a number and a unit d, h, m or s (e.g. 26h)")
    return timedelta(seconds=sum(float(n) * _DURATION_UNITS[u] for n, u in parts))


def _duration(value: object) -> object:
    """A duration string of the file, parsed once into a timedelta."""
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, timedelta):
        return value
    raise ValueError(
        f"{value!r} is not a duration: write a duration such as 26h, in quotes "
        "(a number and a unit d, h, m or s)"
    )


#: A duration in the file (``"26h"``, ``"1d12h"``), a ``timedelta`` once loaded.
Duration = Annotated[timedelta, BeforeValidator(_duration)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class S3Options(_Model):
    """How to reach and write an S3 bucket: the keys of a store's table besides ``url`` and ``layout``
    (ignored by local stores). Handed to ``stores.open_store`` as one typed value."""

    endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, Ceph, moto...)")
    region: str | None = Field(None, description="S3 region")
    profile: str | None = Field(None, description="AWS shared-config profile")
    access_key_id_env: str | None = Field(None, description="env var holding the access key id")
    secret_access_key_env: str | None = Field(None, description="env var holding the secret key")
    sse: str | None = Field(None, description="server-side encryption: AES256 or aws:kms")
    sse_kms_key_id: str | None = Field(None, description="KMS key for sse = aws:kms")
    part_size_mib: int = Field(8, ge=5, le=5120, description="multipart part size (stores/s3parts.py)")
    concurrency: int = Field(3, ge=1, le=64, description="parts uploaded at once")

    @classmethod
    def from_mapping(cls, options: Mapping[str, object]) -> S3Options:
        """Options given as a plain mapping (Python callers, tests); a bad one is a ``ConfigError``.
        A part size under S3's minimum is raised to it, as the store always did for such callers."""
        unknown = set(options) - set(cls.model_fields)
        if unknown:
            raise ConfigError(f"unknown S3 store option(s): {', '.join(sorted(unknown))}")
        values = dict(options)
        part = values.get("part_size_mib")
        if isinstance(part, int):
            values["part_size_mib"] = max(part, 5)
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"bad S3 store option(s): {problems}") from None


class StoreConfig(S3Options):
    """Where an environment's artifacts live, with S3 options when it is a bucket."""

    url: str = Field(description="s3://bucket/prefix, file:///path or a directory path")
    layout: Literal["dataferry", "govuk", "govuk-puppet"] = Field(
        "dataferry",
        description="key layout: dataferry's; GOV.UK's <path>/<ts>-<db>.gz + latest-<db>.txt (govuk); or the "
        "Puppet era's <path>/<YYYY-MM-DDTHH:MM:SS>-<db>.gz alone (govuk-puppet)",
    )

    def options(self) -> S3Options:
        """The S3 options of this store, for ``open_store``."""
        return S3Options.model_validate(self.model_dump(include=set(S3Options.model_fields)))


class EnvironmentConfig(_Model):
    """An environment: its store and its safety flags."""

    store: StoreConfig
    protected: StrictBool = Field(False, description="never a restore target unless --force")
    requires_sanitised: StrictBool = Field(
        False,
        description="store accepts only sanitised, check-passed artifacts; restores from it refuse others",
    )
    trusted_keys: list[Annotated[str, AfterValidator(check_public_key)]] = Field(
        default_factory=list,
        description="public keys (ed25519:...) whose signed sanitised artifacts this environment trusts",
    )
    encryption: EncryptionConfig | None = Field(None, description="client-side age encryption of artifacts")
    retention: RetentionConfig | None = Field(None, description="which artifacts 'dataferry prune' keeps")

    @field_validator("store", mode="before")
    @classmethod
    def _store_from_string(cls, v: Any) -> Any:
        return {"url": v} if isinstance(v, str) else v


class ConnectionConfig(_Model):
    """How to reach one database in one environment. No passwords here: name an env var."""

    url: str = Field(
        description="postgresql://user@host:port/db, mysql://user@host:port/db or sqlite:///path"
    )
    password_env: str | None = Field(None, description="environment variable holding the password")
    owner: str | None = Field(None, description="PostgreSQL: owner of the restored database")

    @field_validator("url")
    @classmethod
    def _no_password_in_url(cls, v: str) -> str:
        return check_url(v)


class DatabaseConfig(_Model):
    """A logical database, its engine and its connection in each environment."""

    engine: str = Field(description="an engine of the registry: postgresql, mysql or sqlite")
    environments: dict[str, ConnectionConfig] = Field(default_factory=dict)
    sanitise: str | None = Field(None, description="path of the sanitisation profile (TOML)")
    scratch: ConnectionConfig | None = Field(
        None, description="sanitising server: where 'backup --sanitise' sanitises a scratch copy"
    )
    exclude_tables: list[str] = Field(default_factory=list, description="tables left out of backups")
    compression_level: int | None = Field(None, ge=1, le=22, description="zstd level for this database")
    artifact_format: Literal["per-table", "single"] = Field(
        "per-table",
        description="layout dataferry, PostgreSQL: one object per table's data (restored in parallel "
        "straight from the store) or a single pg_dump custom-format archive (what pg_restore reads "
        "as it is; a parallel restore spools it)",
    )
    restore_jobs: int | None = Field(
        None, ge=1, description="parallel restore workers for this database (default: settings.restore_jobs)"
    )
    store_path: str | None = Field(
        None,
        description="layouts govuk, govuk-puppet: directory of this database's objects (GOV.UK's DB host)",
    )
    store_name: str | None = Field(
        None,
        description="layouts govuk, govuk-puppet: database name in object names (<ts>-<name>.gz, latest-<name>.txt)",
    )

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, v: str) -> str:
        from dataferry.engines.registry import engine_names  # imported late: loading it loads engines

        names = engine_names()
        if v not in names:
            raise ValueError(f"engine {v!r} is not supported yet: use one of {', '.join(names)}")
        return v


class JobConfig(_Model):
    """A job: ordered steps for one database in one environment, and what triggers it."""

    environment: str
    database: str
    steps: list[str] = Field(min_length=1)
    schedule: str | None = None
    timezone: str = "UTC"
    after: str | None = None
    max_age: Duration | None = Field(None, description="refuse source artifacts older than this (e.g. 26h)")
    max_runtime: Duration | None = Field(None, description="fail a run that takes longer (e.g. 12h)")
    retries: int = Field(0, ge=0, le=10, description="retries for transient failures only")
    retry_delay: Duration = Field(
        timedelta(seconds=30), description="wait before the first retry; doubles on each retry"
    )
    hook_env: list[str] = Field(
        default_factory=list,
        description="environment variables passed to this job's hooks (by default they get only "
        "DATAFERRY_* and what tools need to run, never a credential)",
    )

    @field_validator("steps")
    @classmethod
    def _known_steps(cls, steps: list[str]) -> list[str]:
        for i, step in enumerate(steps):
            kind = step.split(":", 1)[0]
            if kind not in ("restore", "sanitise", "backup", "hook", "verify", "prune"):
                raise ValueError(
                    f"unknown step {step!r}: use restore:<env>, sanitise, backup, backup:sanitised, "
                    "verify, prune, hook:<cmd>"
                )
            if kind in ("restore", "hook") and not step.partition(":")[2]:
                raise ValueError(f"step {step!r} needs a value after the colon")
            # 'backup:sanitised' is 'backup --sanitise': a sanitised copy through the scratch database.
            if kind == "backup" and step not in ("backup", "backup:sanitised"):
                raise ValueError(f"unknown step {step!r}: use backup or backup:sanitised")
            # Sanitisation runs on the restore's shadow before the swap, so it cannot stand alone.
            if kind == "sanitise" and (i == 0 or not steps[i - 1].startswith("restore:")):
                raise ValueError("a 'sanitise' step must directly follow a 'restore:<env>' step")
        return steps

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        from croniter import croniter

        if v is not None and not croniter.is_valid(v):
            raise ValueError(f"{v!r} is not a cron expression (e.g. '36 1 * * 1-5')")
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name such as Europe/London)") from None
        return v


class Settings(_Model):
    """Defaults for every database and job."""

    compression_level: int = Field(3, ge=1, le=22, description="zstd level for backups")
    spool_dir: str | None = Field(
        None, description="directory for parallel-restore spooling (default: system temp)"
    )
    restore_jobs: int | None = Field(
        None,
        ge=1,
        description="parallel restore workers (default: auto, the usable CPUs bounded by the server)",
    )
    state_environment: str | None = Field(None, description="environment whose store keeps global holds")
    lock_ttl: Duration = Field(
        timedelta(minutes=10), description="a job lock not refreshed for this long is taken over"
    )
    max_parallel_jobs: int = Field(2, ge=1, le=64, description="jobs the scheduler runs at once")
    metrics_textfile_dir: str | None = Field(
        None, description="directory of node_exporter's textfile collector for Prometheus metrics"
    )
    pushgateway_url: str | None = Field(None, description="Prometheus Pushgateway to push metrics to")
    signing_key_env: str | None = Field(None, description="env var holding the manifest signing key")
    signing_key_file: str | None = Field(None, description="file (mode 600) of the manifest signing key")

    @field_validator("lock_ttl")
    @classmethod
    def _ttl(cls, v: timedelta) -> timedelta:
        if v.total_seconds() < 1:
            raise ValueError("lock_ttl must be at least 1s")
        return v


class Config(_Model):
    """The whole configuration file."""

    settings: Settings = Field(default_factory=Settings)
    environments: dict[str, EnvironmentConfig] = Field(default_factory=dict)
    databases: dict[str, DatabaseConfig] = Field(default_factory=dict)
    jobs: dict[str, JobConfig] = Field(default_factory=dict)
    path: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _references(self) -> Config:
        # Each problem keeps its own location, so ``parse`` can point at its line.
        problems = reference_problems(
            self.model_dump(include={"settings", "environments", "databases", "jobs"})
        )
        problems += trust_problems(self)
        if problems:
            summary = "; ".join(f"{'.'.join(loc)}: {msg}" for loc, msg in problems)
            raise PydanticCustomError("references", "{summary}", {"summary": summary, "problems": problems})
        return self

    # -- lookups used by the library and the CLI -------------------------------------------------

    def environment(self, name: str) -> EnvironmentConfig:
        """The named environment or a ``ConfigError`` listing the known ones."""
        try:
            return self.environments[name]
        except KeyError:
            raise ConfigError(
                f"no environment {name!r} in the configuration",
                hint=f"known environments: {', '.join(sorted(self.environments)) or 'none'}",
            ) from None

    def database(self, name: str) -> DatabaseConfig:
        """The named database or ``NotFound`` (exit 4, as the exit-code table says) listing the
        known ones."""
        try:
            return self.databases[name]
        except KeyError:
            raise NotFound(
                f"no database {name!r} in the configuration",
                hint=f"known databases: {', '.join(sorted(self.databases)) or 'none'}",
            ) from None

    def job(self, name: str) -> JobConfig:
        """The named job, or ``NotFound``."""
        try:
            return self.jobs[name]
        except KeyError:
            raise NotFound(
                f"no job {name!r} in the configuration",
                hint=f"known jobs: {', '.join(sorted(self.jobs)) or 'none'}",
            ) from None

    def spool_path(self) -> Path | None:
        """``settings.spool_dir`` resolved against the file's directory (None: the system temp dir)."""
        return self.resolve_path(self.settings.spool_dir) if self.settings.spool_dir else None

    def resolve_path(self, value: str) -> Path:
        """Paths in the file are relative to the file's directory."""
        p = Path(value).expanduser()
        if not p.is_absolute() and self.path is not None:
            p = self.path.parent / p
        return p
