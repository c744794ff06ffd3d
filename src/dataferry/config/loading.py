"""Finding, reading and validating a configuration file; every problem reported at once, each
with its file and line, as one ``ConfigError`` (exit 2)."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dataferry.config.models import _SECRET_KEYS, Config
from dataferry.config.references import reference_problems
from dataferry.errors import ConfigError


def find_config_path(explicit: str | None) -> Path:
    """``--config PATH``, else ``$DATAFERRY_CONFIG``, else ``./dataferry.toml``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("DATAFERRY_CONFIG")
    if env:
        return Path(env)
    return Path("dataferry.toml")


def load_config(path: str | Path | None = None) -> Config:
    """Load and validate a configuration file: ``path``, else ``$DATAFERRY_CONFIG``, else
    ``./dataferry.toml`` (the public API's entry point; errors carry the file and line)."""
    return load(find_config_path(str(path) if path is not None else None))


def load(path: Path) -> Config:
    """Read and validate a configuration file; every problem is reported at once."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"configuration file {path} not found",
            hint="pass --config PATH, set DATAFERRY_CONFIG, or run 'dataferry quickstart' for an example",
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"configuration file {path} is not UTF-8 text (byte {exc.start})",
            hint="TOML files are UTF-8: save it as UTF-8, or check that this is the right file",
        ) from None
    return parse(text, path)


def parse(text: str, path: Path) -> Config:
    """Validate TOML text; ``path`` is used for messages and relative paths."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", hint="fix the syntax at the line shown") from None
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        lines: list[str] = []
        errors = exc.errors()
        for err in errors:
            if err["type"] == "references":
                lines += [_describe_at(list(loc), msg, text, path) for loc, msg in err["ctx"]["problems"]]
            else:
                lines.append(_describe(err, text, path))
        if not any(err["type"] == "references" for err in errors):
            # Fields failed, so the model's own reference check never ran: run it on the file's data.
            failed = {tuple(map(str, err["loc"])) for err in errors}
            lines += [
                _describe_at(list(loc), msg, text, path)
                for loc, msg in reference_problems(data)
                if loc not in failed
            ]
        raise ConfigError(
            f"{path}: {len(lines)} problem(s):\n" + "\n".join(f"  - {line}" for line in lines),
            hint="fix the keys listed above; docs/configuration.md describes every key",
        ) from None
    return cfg.model_copy(update={"path": path.resolve()})


def _describe(err: Any, text: str, path: Path) -> str:
    loc = [str(p) for p in err["loc"] if not str(p).startswith("function-")]
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "bool_type":
        msg = f"write true or false (without quotes), not {err['input']!r}"
    if err["type"] == "extra_forbidden":
        msg = "unknown key (misspelt, or not allowed here)"
        if loc and loc[-1].lower() in _SECRET_KEYS:
            msg = (
                "secrets never go in the configuration file: put it in an environment variable and "
                f"set {_SECRET_KEYS[loc[-1].lower()]} to that variable's name"
            )
    return _describe_at(loc, msg, text, path)


def _describe_at(loc: list[str], msg: str, text: str, path: Path) -> str:
    dotted = ".".join(loc) or "(top level)"
    line = _line_of(text, loc)
    where = f"{path.name}:{line}" if line else path.name
    return f"{where}: {dotted}: {msg}"


def _line_of(text: str, loc: list[str]) -> int | None:
    """Best-effort line number of a dotted location: its table header or its key."""
    lines = text.splitlines()
    best: int | None = None
    for depth in range(len(loc), 0, -1):
        header = ".".join(_toml_key(p) for p in loc[:depth])
        for i, line in enumerate(lines, 1):
            stripped = line.strip()
            if stripped in (f"[{header}]", f"[[{header}]]"):
                best = i
                key = loc[depth] if depth < len(loc) else None
                if key is None:
                    return best
                for j in range(i, len(lines)):
                    if lines[j].strip().startswith("["):
                        break
                    if re.match(rf"^\s*\"?{re.escape(key)}\"?\s*=", lines[j]):
                        return j + 1
                return best
    if loc:
        # A misspelt table such as [enviroments.qa] only exists as a prefix of deeper headers.
        prefix = ".".join(_toml_key(p) for p in loc)
        for i, line in enumerate(lines, 1):
            if line.strip().startswith((f"[{prefix}.", f"[[{prefix}.")):
                return i
        for i, line in enumerate(lines, 1):
            if re.match(rf"^\s*\"?{re.escape(loc[-1])}\"?\s*=", line):
                return i
    return best


def _toml_key(part: str) -> str:
    return part if re.match(r"^[A-Za-z0-9_-]+$", part) else f'"{part}"'
