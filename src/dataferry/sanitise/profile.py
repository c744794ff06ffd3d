"""The sanitisation profile: a TOML file per database with scripts, rules, coverage and checks.

The profile is referenced from the configuration (``[databases.X] sanitise = "path.toml"``, relative to
the configuration file); its scripts are relative to the profile. Loading validates everything that can
be validated without a database and raises ``ConfigError`` (exit 2) listing every problem with its line.
The profile's hash covers the file and every script it names, and is recorded in each manifest.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from dataferry.config import _describe
from dataferry.errors import ConfigError

#: Rules whose output derives from the secret salt.
KEYED = ("fake_email", "fake_name", "fake_phone", "fake_address", "hash")
RuleKind = Literal[
    "null",
    "constant",
    "fake_email",
    "fake_name",
    "fake_phone",
    "fake_address",
    "hash",
    "redact",
    "substitute",
]
FakeKind = Literal["fake_email", "fake_name", "fake_phone", "fake_address", "hash"]
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DOMAIN_RE = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnRule(_Model):
    """How one column is masked; a bare string in the file (``address = "fake_email"``) is ``rule``."""

    rule: RuleKind
    value: str | int | float | bool | None = Field(None, description="the value of a constant rule")
    source: str | None = Field(None, description="substitute: the column whose value is replaced in this one")
    fake: FakeKind | None = Field(None, description="substitute: the pseudonym put in its place")
    length: int | None = Field(None, ge=1, le=64, description="hash: hex digits kept (default 64)")
    where: str | None = Field(None, description="SQL condition: mask only the rows it selects")

    @model_validator(mode="after")
    def _options_fit_rule(self) -> ColumnRule:
        if self.rule == "constant" and self.value is None:
            raise ValueError("a constant rule needs value = ... (use rule = 'null' for NULL)")
        if self.rule != "constant" and self.value is not None:
            raise ValueError(f"value is only for constant rules, not {self.rule}")
        if self.rule == "substitute" and (self.source is None or self.fake is None):
            raise ValueError(
                "a substitute rule needs source = '<column>' and fake = 'fake_email' (or another)"
            )
        if self.rule != "substitute" and (self.source is not None or self.fake is not None):
            raise ValueError("source and fake are only for substitute rules")
        if self.length is not None and self.rule != "hash":
            raise ValueError("length is only for hash rules")
        return self

    @property
    def keyed(self) -> bool:
        """True when the output derives from the salt."""
        return self.rule in KEYED or (self.rule == "substitute" and self.fake in KEYED)

    def describe(self) -> str:
        """A short human description (never contains the salt or a value from the data)."""
        text = str(self.rule)
        if self.rule == "substitute":
            text = f"substitute {self.fake}({self.source})"
        if self.rule == "hash" and self.length:
            text += f"({self.length})"
        return text + (f" where {self.where}" if self.where else "")


class TableRules(_Model):
    """The classification of one table's columns: kept, masked by a rule, or dropped (emptied)."""

    keep: list[str] = Field(default_factory=list, description="columns copied as they are")
    mask: dict[str, ColumnRule] = Field(default_factory=dict, description="column -> rule")
    drop: list[str] = Field(default_factory=list, description="columns emptied (set to NULL)")

    @field_validator("mask", mode="before")
    @classmethod
    def _bare_rule(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: {"rule": r} if isinstance(r, str) else r for k, r in v.items()}
        return v

    @model_validator(mode="after")
    def _classified_once(self) -> TableRules:
        seen: dict[str, str] = {}
        for kind, names in (("keep", self.keep), ("mask", list(self.mask)), ("drop", self.drop)):
            for name in names:
                if name in seen:
                    raise ValueError(f"column {name!r} is classified twice ({seen[name]} and {kind})")
                seen[name] = kind
        for column, rule in self.mask.items():
            if rule.source is not None and rule.source in self.mask:
                src = self.mask[rule.source]
                if src.where != rule.where:
                    raise ValueError(
                        f"{column}: its source {rule.source!r} is masked under a different 'where'; "
                        "give both the same condition so the substitution sees the original value"
                    )
        return self

    def rules(self) -> dict[str, ColumnRule]:
        """Every masking rule of the table, drops included (as ``null``)."""
        out = dict(self.mask)
        out.update({c: ColumnRule(rule="null") for c in self.drop})
        return out

    def classified(self) -> set[str]:
        """Every column the table names."""
        return set(self.keep) | set(self.mask) | set(self.drop)


class RowRule(_Model):
    """Rows removed from one table, applied in file order (children before parents)."""

    table: str
    delete_where: str | None = Field(None, description="SQL condition of the rows deleted")
    keep_newer_than_days: int | None = Field(None, ge=0, description="delete rows older than this")
    column: str | None = Field(None, description="the timestamp column for keep_newer_than_days")
    truncate: StrictBool = Field(False, description="delete every row (the table's columns count as dropped)")

    @model_validator(mode="after")
    def _one_kind(self) -> RowRule:
        kinds = [self.delete_where is not None, self.keep_newer_than_days is not None, self.truncate]
        if sum(kinds) != 1:
            raise ValueError("give exactly one of delete_where, keep_newer_than_days or truncate = true")
        if (self.keep_newer_than_days is None) != (self.column is None):
            raise ValueError("keep_newer_than_days and column go together")
        return self

    def describe(self) -> str:
        """A short human description."""
        if self.truncate:
            return f"rows {self.table}: truncate"
        if self.keep_newer_than_days is not None:
            return f"rows {self.table}: keep only {self.column} newer than {self.keep_newer_than_days} days"
        return f"rows {self.table}: delete where {self.delete_where}"


class SqlCheck(_Model):
    """A query that must return no rows for the sanitised database to be published."""

    name: str = Field(min_length=1)
    sql: str = Field(min_length=1, description="a SELECT; only its row count is read, never its rows")

    @field_validator("sql")
    @classmethod
    def _one_select(cls, v: str) -> str:
        body = v.strip().rstrip(";").strip()
        if ";" in body:
            raise ValueError("a check is one query (no ';' inside)")
        return body


class Scan(_Model):
    """The built-in scan of every text column for personal data left behind."""

    enabled: StrictBool = True
    emails: StrictBool = Field(True, description="find email addresses outside allowed_email_domains")
    allowed_email_domains: list[str] = Field(
        default_factory=lambda: ["example.com", "example.org", "example.net"],
        description="domains (and their subdomains) whose addresses are not personal",
    )
    phones: StrictBool = Field(True, description="find phone numbers (outside Ofcom's drama range)")
    patterns: dict[str, str] = Field(
        default_factory=dict, description="more detectors: name -> regular expression (case-insensitive)"
    )
    skip: list[str] = Field(default_factory=list, description="'table' or 'table.column' left out")

    @field_validator("allowed_email_domains")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        bad = [d for d in v if not _DOMAIN_RE.match(d)]
        if bad:
            raise ValueError(f"not domain names: {bad}")
        return [d.lower() for d in v]

    @field_validator("patterns")
    @classmethod
    def _patterns(cls, v: dict[str, str]) -> dict[str, str]:
        for name, pattern in v.items():
            if name in ("email", "phone") or not re.match(r"^[a-z][a-z0-9_]*$", name):
                raise ValueError(
                    f"pattern name {name!r}: use lower-case letters, digits and '_' (not email/phone)"
                )
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {name!r} is not a regular expression: {exc}") from None
        return v


class Profile(_Model):
    """A database's sanitisation profile, validated; ``path`` and ``sha256`` are filled by ``load``."""

    description: str = ""
    salt_env: str | None = Field(None, description="environment variable holding the pseudonym salt")
    strict: StrictBool = Field(False, description="every column of every table must be classified")
    expect_rows: StrictBool = Field(
        False, description="a script statement that changes no rows fails the run (else a warning)"
    )
    fake_email_domain: str = Field("example.com", description="domain of fake_email addresses")
    scripts: list[str] = Field(default_factory=list, description="SQL files run first, in order")
    rows: list[RowRule] = Field(default_factory=list)
    tables: dict[str, TableRules] = Field(default_factory=dict)
    checks: list[SqlCheck] = Field(default_factory=list)
    scan: Scan = Field(default_factory=Scan)
    large_objects: Literal["keep", "drop"] = Field(
        "keep",
        description="PostgreSQL large objects after the rules: keep those still referenced (and scan "
        "them) or drop every one; orphans are always dropped",
    )
    path: Path = Field(Path("."), exclude=True)
    sha256: str = Field("", exclude=True)

    @field_validator("salt_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_RE.match(v):
            raise ValueError(f"{v!r} is not an environment variable name (the salt itself never goes here)")
        return v

    @field_validator("fake_email_domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        if not _DOMAIN_RE.match(v):
            raise ValueError(f"{v!r} is not a domain name")
        return v.lower()

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        keyed = [f"{t}.{c}" for t, rules in self.tables.items() for c, r in rules.mask.items() if r.keyed]
        if keyed and not self.salt_env:
            raise ValueError(f"rules {keyed[:3]} need a salt: set salt_env to an environment variable name")
        names = [c.name for c in self.checks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"check names must be unique: {dupes}")
        for table, rules in self.tables.items():
            for column, rule in rules.mask.items():
                if rule.source is not None and rule.source not in rules.classified():
                    raise ValueError(
                        f"tables.{table}.mask.{column}: source {rule.source!r} is not a column of {table}"
                    )
        return self

    @property
    def name(self) -> str:
        """The file name, as recorded in manifests."""
        return self.path.name

    def allowed_domains(self) -> list[str]:
        """Allowed email domains, always including the domain of our own fakes."""
        domains = list(self.scan.allowed_email_domains)
        if self.fake_email_domain not in domains:
            domains.append(self.fake_email_domain)
        return domains

    def truncated(self) -> set[str]:
        """Tables whose rows are all removed."""
        return {r.table for r in self.rows if r.truncate}

    def script_paths(self) -> list[Path]:
        """Scripts, resolved relative to the profile file."""
        return [p if p.is_absolute() else self.path.parent / p for p in map(Path, self.scripts)]


def load(path: Path) -> Profile:
    """Read and validate a profile; every problem is reported at once with its line."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"sanitisation profile {path} not found",
            hint="fix [databases.NAME] sanitise in the configuration (relative to the configuration file)",
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read sanitisation profile {path}: {exc.strerror}") from None
    text = raw.decode("utf-8", "replace")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", hint="fix the syntax at the line shown") from None
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(err, text, path) for err in exc.errors()]
        raise ConfigError(
            f"{path}: {len(lines)} problem(s):\n" + "\n".join(f"  - {line}" for line in lines),
            hint="docs/sanitisation.md describes every key of a profile",
        ) from None
    profile = profile.model_copy(update={"path": path.resolve()})
    return profile.model_copy(update={"sha256": _hash(raw, profile)})


def _hash(raw: bytes, profile: Profile) -> str:
    """sha256 over the profile and every script (name and bytes), so any change shows in manifests."""
    h = hashlib.sha256(raw)
    for script in profile.script_paths():
        try:
            body = script.read_bytes()
        except OSError:
            raise ConfigError(
                f"{profile.path}: script {script} cannot be read",
                hint="scripts are relative to the profile file",
            ) from None
        h.update(b"\0" + script.name.encode() + b"\0" + body)
    return h.hexdigest()


def read_script(path: Path) -> str:
    """A script's text (already checked readable by ``load``)."""
    return path.read_text(encoding="utf-8")
