"""What every ``dataferry`` command shares: the per-invocation ``Context``, argument parsers, and
the one place a ``FerryError`` becomes ``error: ...``/``hint: ...`` on stderr and its exit code
(``ErrorsToExitCodes``, the class of the ``dataferry`` group; commands simply raise).
"""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any, NoReturn

import click

from dataferry.config import Config, find_config_path, load, parse_duration
from dataferry.config.times import parse_time as parse_time
from dataferry.config.times import time_or_duration as time_or_duration
from dataferry.errors import ConfigError, FerryError, Interrupted
from dataferry.progress import LogReporter, Reporter, default_reporter

#: ``--jobs`` of ``restore`` and ``pull``: auto unless given (``dataferry.ops.parallelism``).
JOBS_HELP = (
    "Parallel restore workers. auto: the usable CPUs, bounded by the connections the server "
    "allows; one stream where a parallel restore would spool a single-archive PostgreSQL dump, "
    "or has no room to spool."
)


class Context:
    """Per-invocation state: where the config is, and how to report."""

    def __init__(self, config_path: str | None = None, json_logs: bool = False, quiet: bool = False) -> None:
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


def _set_global(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """Record a global option given on the line (a default changes nothing, so the option given
    before the subcommand stays when it is not repeated after it)."""
    if value is not None and value is not False and param.name is not None:
        setattr(ctx.ensure_object(Context), param.name, value)


def global_options() -> list[click.Option]:
    """The options every command takes, before or after its name (``dataferry list app --config
    x.toml`` as well as ``dataferry --config x.toml list app``): one definition, new instances for
    each command, each recording into the invocation's ``Context``."""
    common: dict[str, Any] = {"expose_value": False, "callback": _set_global}
    return [
        click.Option(
            ["--config", "config_path"],
            metavar="PATH",
            help="Config file (default: $DATAFERRY_CONFIG, ./dataferry.toml).",
            **common,
        ),
        click.Option(
            ["--json-logs", "json_logs"], is_flag=True, help="Log as JSON lines on stderr.", **common
        ),
        click.Option(["-q", "--quiet", "quiet"], is_flag=True, help="No progress or log output.", **common),
    ]


def add_global_options(command: click.Command) -> None:
    """Give ``command`` the global options it does not have yet."""
    have = {opt for p in command.params for opt in getattr(p, "opts", [])}
    command.params += [o for o in global_options() if not have & set(o.opts)]


def exit_for(exc: FerryError) -> NoReturn:
    """Print ``exc``'s message and hint on stderr and exit with its code; never a traceback.
    With ``--json-logs`` that is one JSON line (message, notes, hint, exit code) like every other."""
    if _json_logs():
        LogReporter(sys.stderr, as_json=True).failed(exc)
    else:
        for line in exc.report_lines():
            click.echo(line, err=True)
    sys.exit(exc.exit_code)


def say(message: str, level: str = "note", *, bare: bool = False) -> None:
    """A line for the operator on stderr beside a command's output: ``note: ...`` (just the
    message when ``bare``), a JSON line at ``level`` with ``--json-logs``."""
    if _json_logs():
        LogReporter(sys.stderr, as_json=True).emit(level, message)
    else:
        click.echo(message if bare else f"{level}: {message}", err=True)


def _json_logs() -> bool:
    ctx = click.get_current_context(silent=True)
    found = ctx.find_object(Context) if ctx is not None else None
    return found is not None and found.json_logs


class ErrorsToExitCodes(click.Group):
    """A group whose commands' ``FerryError``s end in ``exit_for``: the CLI's one error mapping.
    Its commands take the global options too (``global_options``), except those that pass their
    arguments through unparsed (``legacy``: they are GOV.UK's script's flags)."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        """Register ``cmd`` with the global options added."""
        if not cmd.context_settings.get("ignore_unknown_options"):
            add_global_options(cmd)
        super().add_command(cmd, name)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the group and its command; a ``FerryError`` from either exits with its code."""
        try:
            return super().invoke(ctx)
        except FerryError as exc:
            exit_for(exc)
        except KeyboardInterrupt as exc:
            # Ctrl-C (or SIGTERM, see ``stop_on_sigterm``): cleanup ran on the way here; say what
            # happened in the error's own words instead of click's bare "Aborted!".
            exit_for(
                Interrupted(
                    f"interrupted ({exc or 'Ctrl-C'}) before the command finished",
                    hint="nothing was changed unless the command printed its result (a restore swaps and "
                    "a backup publishes only at its very end); run the command again",
                )
            )
        except click.ClickException as exc:
            if not _json_logs():
                raise
            LogReporter(sys.stderr, as_json=True).error(exc.format_message(), exit_code=exc.exit_code)
            sys.exit(exc.exit_code)


def duration_arg(value: str, option: str) -> timedelta:
    """A duration given on the command line (``90m``, ``26h``, ``1d12h``), as the config reads them."""
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None
