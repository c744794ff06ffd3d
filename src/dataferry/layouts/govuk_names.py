"""Names in GOV.UK's buckets, shared by the ``govuk`` and ``govuk-puppet`` layouts.

Both eras name a dump ``<path>/<timestamp>-<db>.gz``; only the timestamp differs:

- Kubernetes era (db-backup): ``2026-01-05T230501Z`` (UTC, no colons);
- Puppet era (``govuk_env_sync.sh``): ``2026-01-05T23:05:01`` (``date +%Y-%m-%dT%H:%M:%S``, local
  time, which was UTC on GOV.UK hosts).

Readers accept both, with or without the ``Z``, and ``_`` for ``T`` (db-backup's ``list`` regex,
``[-0-9:TZ_]+-<db>\\.gz``, allows it). "Newest" is always by the parsed time, never by the name's
byte order: in byte order (``sort``, S3 listings) a colon name sorts after every compact name of the
same hour (``:`` > ``0``-``5``), whatever their times.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from dataferry.config import Config
from dataferry.engines import Engine
from dataferry.errors import ConfigError

TS_FORMAT = "%Y-%m-%dT%H%M%SZ"
LEGACY_TS_FORMAT = "%Y-%m-%dT%H:%M:%S"
MANIFEST_SUFFIX = ".manifest.json"
_TS = r"\d{4}-\d{2}-\d{2}[T_](?:\d{6}Z?|\d{2}:\d{2}:\d{2}Z?)"
_NAME_RE = re.compile(rf"^(?P<ts>{_TS})-(?P<db>.+)\.gz$")
ID_RE = re.compile(rf"^(?P<ts>{_TS})-(?P<db>.+)$")

#: Engine dump format -> how the ``.gz`` object holds it. PostgreSQL's custom format is already
#: compressed (GOV.UK: ``pg_dump -Fc -Z1``), MySQL's SQL is gzip'd (``mysqldump | gzip -1``).
COMPRESSION = {"pg_custom": "none", "sql": "gzip"}

#: pg_dump's own compression level for custom-format dumps in these layouts (GOV.UK: ``-Z1``).
PG_COMPRESSION = 1


@dataclass(frozen=True)
class Naming:
    """Where one database's objects live in a GOV.UK store."""

    path: str
    name: str

    def key(self, basename: str) -> str:
        """The key of ``basename`` in this database's directory."""
        return f"{self.path}/{basename}" if self.path else basename

    def data_key(self, when: datetime, fmt: str = TS_FORMAT) -> str:
        """``<path>/<timestamp>-<name>.gz``: the Kubernetes era's timestamp unless ``fmt`` says otherwise."""
        return self.key(f"{when.astimezone(UTC).strftime(fmt)}-{self.name}.gz")

    @property
    def pointer_key(self) -> str:
        """``<path>/latest-<name>.txt``."""
        return self.key(f"latest-{self.name}.txt")

    def matches(self, db: str) -> bool:
        """Whether ``db`` (from an object name) is this database; ``-`` and ``_`` are interchangeable,
        as in db-backup's ``list`` (``tr _- .``)."""
        return db.replace("-", "_") == self.name.replace("-", "_")


def naming_for(cfg: Config, database: str) -> Naming:
    """The naming of a configured database: ``store_path`` and ``store_name``, else its name."""
    db = cfg.database(database)
    return Naming(path=(db.store_path or database).strip("/"), name=db.store_name or database)


def manifest_key_for(data_key: str) -> str:
    """The manifest beside a dump: ``….gz`` -> ``….manifest.json``."""
    return data_key.removesuffix(".gz") + MANIFEST_SUFFIX


def parse_when(text: str) -> datetime:
    """A time as GOV.UK writes it (``…T030405Z``, ``…T03:04:05``, ``_`` for ``T``) or any ISO 8601; UTC."""
    compact = re.sub(r"^(\d{4}-\d{2}-\d{2})_", r"\1T", text)
    for fmt in (TS_FORMAT, LEGACY_TS_FORMAT, LEGACY_TS_FORMAT + "Z", TS_FORMAT.removesuffix("Z")):
        with contextlib.suppress(ValueError):
            return datetime.strptime(compact, fmt).replace(tzinfo=UTC)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"cannot read time {text!r}",
            hint="use the object's timestamp (2026-01-05T230501Z or 2022-06-30T23:00:05) or its file name",
        ) from None
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)


def parse_name(basename: str) -> tuple[datetime, str] | None:
    """``(time, db)`` of a dump's file name, or None if it is not one."""
    m = _NAME_RE.match(basename)
    return (parse_when(m["ts"]), m["db"]) if m else None


def is_colon_name(basename: str) -> bool:
    """Whether a dump's name has the Puppet era's ``HH:MM:SS`` timestamp."""
    m = _NAME_RE.match(basename)
    return m is not None and ":" in m["ts"]


def compression_for(engine: Engine) -> str:
    """How this engine's dumps are held in a ``.gz`` object; other engines have no GOV.UK layout."""
    try:
        return COMPRESSION[engine.dump_format]
    except KeyError:
        raise ConfigError(
            f"the GOV.UK layouts hold PostgreSQL (custom format) and MySQL dumps; {engine.name} "
            f"dumps ({engine.dump_format}) have no GOV.UK form",
            hint='use layout = "dataferry" for this environment\'s store',
        ) from None
