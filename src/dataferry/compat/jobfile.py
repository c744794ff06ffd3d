"""GOV.UK job files and the flags of ``govuk_env_sync.sh``.

A job file (``/etc/govuk_env_sync/<title>.cfg``) is a shell-sourceable list of ``key="value"``
lines. The original script ``source``s it; dataferry reads it instead: quoting and comments are
understood, but nothing is executed and no variable is expanded (a ``$`` or a backtick outside
single quotes is refused with its line number). Unknown keys are reported and ignored; a key that
looks like a secret is reported without its value.

Flags follow the script's ``getopts "f:a:D:S:T:d:H:u:p:s:F:t:e:h"`` (``-e`` added: the original
forgot it) and are applied in order, so ``-f FILE`` overrides the flags before it and is
overridden by the flags after it, exactly like the original.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dataferry.compat.shellword import shell_word as shell_word  # importable here, as before
from dataferry.errors import ConfigError

#: Keys a job file may set (``govuk_env_sync_job.conf.erb`` and ``govuk_env_s3_sync_job.conf.erb``).
KNOWN_KEYS = (
    "action",
    "dbms",
    "storagebackend",
    "temppath",
    "database",
    "database_hostname",
    "url",
    "path",
    "transformation_sql_file",
    "pre_dump_transformation_sql_file",
    "excluded_tables",
    "timestamp",
    "source_bucket",
    "destination_bucket",
    "delete",
    "acl",
)

#: Flag letter -> job-file key. ``-f`` (source a file) and ``-h`` (usage) are handled apart.
FLAG_KEYS = {
    "a": "action",
    "D": "dbms",
    "S": "storagebackend",
    "T": "temppath",
    "d": "database",
    "H": "database_hostname",
    "u": "url",
    "p": "path",
    "s": "transformation_sql_file",
    "F": "pre_dump_transformation_sql_file",
    "t": "timestamp",
    "e": "excluded_tables",
}
_ARG_FLAGS = set(FLAG_KEYS) | {"f"}
#: dataferry's own long options: flags, and options that take a value.
LONG_FLAGS = ("--force", "--dry-run", "--help")
LONG_OPTIONS = ("--env", "--password-env", "--layout")

ACTIONS = ("push", "pull", "s3_sync")
SUPPORTED_DBMS = ("postgresql", "mysql")
LEGACY_DBMS = ("mongo", "documentdb", "postgresql", "mysql", "elasticsearch", "files")

USAGE = (
    "usage: dataferry legacy [-f FILE.cfg] [-a push|pull|s3_sync] [-D postgresql|mysql] [-S s3] "
    "[-T TEMPPATH] [-d DATABASE] [-H DB_HOST] [-u BUCKET] [-p PATH] [-s POST_RESTORE.sql] "
    "[-F PRE_DUMP.sql] [-t TIMESTAMP|FILE] [-e TABLE,TABLE] [--env NAME] [--password-env VAR] [--layout govuk|govuk-puppet] "
    "[--force] [--dry-run]"
)

_KEY_RE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_SECRET_HINTS = ("pass", "secret", "token", "credential", "pwd")


@dataclass
class JobFile:
    """The values a job file sets, in file order, and what was ignored in it."""

    path: Path
    values: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class LegacyJob:
    """One ``govuk_env_sync.sh`` invocation after its flags and job file were applied."""

    action: str
    dbms: str = ""
    storagebackend: str = ""
    temppath: str = ""
    database: str = ""
    database_hostname: str = ""
    url: str = ""
    path: str = ""
    transformation_sql_file: str = ""
    pre_dump_transformation_sql_file: str = ""
    timestamp: str = ""
    excluded_tables: tuple[str, ...] = ()
    source_bucket: str = ""
    destination_bucket: str = ""
    delete: bool = False
    acl: str = ""  # s3_sync: a canned ACL for the copies; empty: bucket-owner-full-control
    config_file: Path | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        """The task title: the job file's name without ``.cfg``, else action and database."""
        if self.config_file is not None:
            return self.config_file.name.removesuffix(".cfg")
        return f"{self.action}_{self.database or 'adhoc'}"


# -- job files -------------------------------------------------------------------------------------


def read_job_file(path: Path) -> JobFile:
    """Parse a job file without executing it; a syntax problem is a ``ConfigError`` with its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"job file {path} not found", hint="give the path of a govuk_env_sync .cfg file"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read job file {path}: {exc.strerror}") from None
    return parse_job_file(text, path)


def parse_job_file(text: str, path: Path) -> JobFile:
    """Parse job-file text; ``path`` is used in messages only."""
    job = JobFile(path=path)
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _KEY_RE.match(line)
        if not m:
            raise ConfigError(
                f'{path.name}:{lineno}: not a key="value" line',
                hint='job files hold only key="value" lines and comments; dataferry does not run shell code',
            )
        key, rest = m.group(1), m.group(2)
        if key not in KNOWN_KEYS:
            job.warnings.append(_unknown_key(path, lineno, key))
            continue
        job.values[key] = shell_word(rest, where=f"{path.name}:{lineno}")
    return job


def _unknown_key(path: Path, lineno: int, key: str) -> str:
    """The warning for an unknown key; a secret's value is never repeated."""
    if any(h in key.lower() for h in _SECRET_HINTS):
        return (
            f"{path.name}:{lineno}: {key} looks like a secret; dataferry never reads secrets from job "
            "files and ignored it (its value is not shown). Set DB_PASSWORD in the environment "
            "instead, and remove it from the file"
        )
    return f"{path.name}:{lineno}: {key} is not a govuk_env_sync setting; ignored"


# -- flags -----------------------------------------------------------------------------------------


def getopts(argv: Sequence[str]) -> list[tuple[str, str]]:
    """Split ``argv`` like bash's getopts: ``-x VALUE``, ``-xVALUE`` and grouped ``-h``.

    Returns ``(letter, value)`` pairs in order; dataferry's own long options come back as
    ``("--force", "")`` or ``("--env", NAME)``. Unknown flags, missing values and stray arguments are
    ``ConfigError`` (the original printed its usage and exited 0, which hid typos in cron lines).
    """
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        i = _long_option(argv, i, pairs) if arg.startswith("--") else _short_options(argv, i, pairs)
    if i < len(argv):
        raise ConfigError(f"unexpected argument {argv[i]!r}", hint=USAGE)
    return pairs


def _short_options(argv: Sequence[str], i: int, pairs: list[tuple[str, str]]) -> int:
    """One ``-x VALUE``, ``-xVALUE`` or ``-h`` group; returns the index after it."""
    arg = argv[i]
    for j in range(1, len(arg)):
        letter = arg[j]
        if letter == "h":
            pairs.append(("h", ""))
            continue
        if letter not in _ARG_FLAGS:
            raise ConfigError(f"unknown option -{letter}", hint=USAGE)
        value = arg[j + 1 :]
        if not value:
            i += 1
            if i >= len(argv):
                raise ConfigError(f"option -{letter} requires a value", hint=USAGE)
            value = argv[i]
        pairs.append((letter, value))
        break
    return i + 1


def _long_option(argv: Sequence[str], i: int, pairs: list[tuple[str, str]]) -> int:
    """dataferry's own options (``--force``, ``--env NAME`` ...); returns the index after them."""
    name, eq, value = argv[i].partition("=")
    if name in LONG_FLAGS:
        if eq:
            raise ConfigError(f"option {name} takes no value", hint=USAGE)
        pairs.append((name, ""))
        return i + 1
    if name not in LONG_OPTIONS:
        raise ConfigError(f"unknown option {name}", hint=USAGE)
    if not eq:
        i += 1
        if i >= len(argv):
            raise ConfigError(f"option {name} requires a value", hint=USAGE)
        value = argv[i]
    pairs.append((name, value))
    return i + 1


def wants_help(pairs: Sequence[tuple[str, str]]) -> bool:
    """True when ``-h`` or ``--help`` was given (the original printed its usage and stopped)."""
    return any(letter in ("h", "--help") for letter, _ in pairs)


def long_options(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """dataferry's own ``--`` options from ``getopts`` pairs (the last one of a name wins)."""
    return {name: value for name, value in pairs if name.startswith("--")}


def resolve(pairs: Sequence[tuple[str, str]]) -> LegacyJob:
    """Apply flags and job files in order, then validate like the original script did."""
    values: dict[str, str] = {}
    warnings: list[str] = []
    config_file: Path | None = None
    for letter, value in pairs:
        if letter == "f":
            config_file = Path(value)
            jf = read_job_file(config_file)
            values.update(jf.values)
            warnings += jf.warnings
        elif letter in FLAG_KEYS:
            values[FLAG_KEYS[letter]] = value
    return validate(values, config_file=config_file, warnings=warnings)


def validate(values: dict[str, str], *, config_file: Path | None, warnings: list[str]) -> LegacyJob:
    """Check required values per action (as the script's ``: "${x?}"`` lines did) and build the job."""
    action = values.get("action", "")
    if not action:
        raise ConfigError("no action: give -a push, -a pull or -a s3_sync (or set action= in the job file)")
    if action not in ACTIONS:
        raise ConfigError(f"unknown action {action!r}", hint="use push, pull or s3_sync")
    job = LegacyJob(
        action=action,
        dbms=values.get("dbms", ""),
        storagebackend=values.get("storagebackend", ""),
        temppath=values.get("temppath", ""),
        database=values.get("database", ""),
        database_hostname=values.get("database_hostname", ""),
        url=values.get("url", ""),
        path=values.get("path", ""),
        transformation_sql_file=values.get("transformation_sql_file", ""),
        pre_dump_transformation_sql_file=values.get("pre_dump_transformation_sql_file", ""),
        timestamp=values.get("timestamp", ""),
        excluded_tables=_tables(values.get("excluded_tables", "")),
        source_bucket=values.get("source_bucket", ""),
        destination_bucket=values.get("destination_bucket", ""),
        delete=_bool(values.get("delete", "false"), "delete"),
        acl=values.get("acl", ""),
        config_file=config_file,
        warnings=list(warnings),
    )
    if action == "s3_sync":
        _require(values, ("source_bucket", "destination_bucket"), action)
        return job
    _require(values, ("dbms", "storagebackend", "database", "url", "path"), action)
    _check_engine(job)
    if not job.database_hostname:
        raise ConfigError(f"{job.dbms} needs a database host: give -H HOST (database_hostname=)")
    _check_scripts(job)
    return job


def _require(values: dict[str, str], keys: Sequence[str], action: str) -> None:
    missing = [k for k in keys if not values.get(k)]
    if missing:
        flags = {v: k for k, v in FLAG_KEYS.items()}
        named = ", ".join(f"{k} (-{flags[k]})" if k in flags else k for k in missing)
        raise ConfigError(f"action {action} needs {named}", hint=USAGE)


def _check_engine(job: LegacyJob) -> None:
    """postgresql and mysql over s3 are supported; the script's other engines are named as such."""
    if job.dbms not in LEGACY_DBMS:
        raise ConfigError(f"unknown dbms {job.dbms!r}", hint=f"govuk_env_sync knew {', '.join(LEGACY_DBMS)}")
    if job.dbms not in SUPPORTED_DBMS:
        raise ConfigError(
            f"dbms {job.dbms!r} is not supported yet by dataferry legacy",
            hint="supported: postgresql and mysql; keep running this job with govuk_env_sync.sh for now",
        )
    if job.storagebackend != "s3":
        raise ConfigError(
            f"storage backend {job.storagebackend!r} is not supported yet",
            hint="dataferry legacy supports -S s3 (any S3 endpoint, or -u file:///dir for a local directory)",
        )


def _check_scripts(job: LegacyJob) -> None:
    """Values that the action does not use are reported and dropped, as the original ignored them."""
    if job.pre_dump_transformation_sql_file and job.dbms != "mysql":
        raise ConfigError("a pre-dump transformation (-F) is for mysql only, as in govuk_env_sync")
    if job.pre_dump_transformation_sql_file and job.action != "push":
        job.warnings.append("-F (pre-dump transformation) applies to push only; ignored for pull")
        job.pre_dump_transformation_sql_file = ""
    if job.transformation_sql_file and job.action != "pull":
        job.warnings.append("-s (post-restore transformation) applies to pull only; ignored for push")
        job.transformation_sql_file = ""
    if job.timestamp and job.action != "pull":
        job.warnings.append("-t (timestamp to restore) applies to pull only; ignored for push")
        job.timestamp = ""


def check_files(job: LegacyJob) -> None:
    """Transformation files must exist before anything runs (checked at run time, not on import)."""
    for script in (job.transformation_sql_file, job.pre_dump_transformation_sql_file):
        if script and not Path(script).is_file():
            raise ConfigError(f"transformation file {script} not found", hint="check the path (-s / -F)")


def _tables(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _bool(text: str, key: str) -> bool:
    """``delete`` was executed as a command by the script: only ``true`` and ``false`` ever worked."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise ConfigError(f"{key} must be true or false, not {text!r}")
