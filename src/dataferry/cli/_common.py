"""What every ``dataferry`` command shares: the per-invocation ``Context``, argument parsers, and
the one place a ``FerryError`` becomes ``error: ...``/``hint: ...`` on stderr and its exit code
(``ErrorsToExitCodes``, the class of the ``dataferry`` group; commands simply raise).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import click

from dataferry.config import Config, find_config_path, load, parse_duration
from dataferry.errors import ConfigError, FerryError
from dataferry.progress import Reporter, default_reporter


class Context:
    """Per-invocation state: where the config is, and how to report."""

    def __init__(self, config_path: str | None, json_logs: bool, quiet: bool) -> None:
        self.config_path = config_path
        self.json_logs = json_logs
        self.quiet = quiet
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        """The configuration, loaded and validated on first use."""
        if self._config is None:
            self._config = load(find_config_path(self.config_path))
        return self._config

    def reporter(self) -> Reporter:
        """Progress bars on a terminal, log lines otherwise."""
        return default_reporter(json_logs=self.json_logs, quiet=self.quiet)


pass_ctx = click.make_pass_decorator(Context)


def exit_for(exc: FerryError) -> NoReturn:
    """Print ``exc``'s message and hint on stderr and exit with its code; never a traceback."""
    for line in exc.report_lines():
        click.echo(line, err=True)
    sys.exit(exc.exit_code)


class ErrorsToExitCodes(click.Group):
    """A group whose commands' ``FerryError``s end in ``exit_for``: the CLI's one error mapping."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the group and its command; a ``FerryError`` from either exits with its code."""
        try:
            return super().invoke(ctx)
        except FerryError as exc:
            exit_for(exc)


def parse_time(value: str | None) -> datetime | None:
    """An ISO 8601 time; naive times are UTC."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"cannot read time {value!r}", hint="use ISO 8601, e.g. 2026-11-20T01:30:00Z"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def time_or_duration(value: str | None, *, sign: int, now: datetime | None = None) -> datetime | None:
    """A time option given as ISO 8601 or as a duration such as ``3d`` counted from now: ahead of it
    (``sign=1``, ``pause --until 3d``) or back from it (``sign=-1``, ``restore --at 3d``), so every
    time option reads the same forms."""
    if value is None:
        return None
    # Whole seconds: the time is printed back in messages and records, where microseconds are noise.
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    try:
        return now + sign * parse_duration(value)
    except ValueError:
        pass
    try:
        return parse_time(value)
    except ConfigError as exc:
        raise ConfigError(exc.message, hint="use ISO 8601 (2026-11-20T01:30:00Z) or a duration such as 3d") from None


def duration_arg(value: str, option: str) -> timedelta:
    """A duration given on the command line (``90m``, ``26h``, ``1d12h``), as the config reads them."""
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None
