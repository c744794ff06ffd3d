"""The ``dataferry`` command: thin click commands that parse, call the library and render.

Errors: a ``FerryError`` prints ``error: ...`` and ``hint: ...`` and exits with its code (see
``errors.py``), in one place for every command (``_common.ErrorsToExitCodes``); usage errors exit 2.
Anything else is a bug and keeps its traceback.

Modules: ``_common`` (shared plumbing), ``core`` (check, backup, restore, list, verify, cleanup,
quickstart), and, imported only when their command runs, ``jobs`` (run, pause, resume, scheduler,
unlock), ``status`` (status, history), ``sanitise``, ``compat`` (legacy, import) and ``render``
(render kubernetes).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import signal
import sys
import threading
from typing import NoReturn

import click

from dataferry import heap, stopping
from dataferry._version import __version__
from dataferry.cli import core
from dataferry.cli._common import (
    Context,
    ErrorsToExitCodes,
    duration_arg,
    exit_for,
    global_options,
    parse_time,
    pass_ctx,
)
from dataferry.errors import EXIT_CODES

__all__ = [
    "LAZY_COMMANDS",
    "Context",
    "LazyGroup",
    "cli",
    "duration_arg",
    "exit_code",
    "exit_for",
    "exit_now",
    "main",
    "parse_time",
    "pass_ctx",
    "run",
]

#: Commands defined in other modules, imported only when used: most runs need one command, and the
#: job, sanitisation and GOV.UK modules (prometheus, YAML, ...) would otherwise slow every start.
LAZY_COMMANDS: dict[str, str] = {
    "run": "dataferry.cli.jobs:run_cmd",
    "pause": "dataferry.cli.jobs:pause",
    "resume": "dataferry.cli.jobs:resume",
    "status": "dataferry.cli.status:status",
    "history": "dataferry.cli.status:history",
    "scheduler": "dataferry.cli.jobs:scheduler_cmd",
    "unlock": "dataferry.cli.jobs:unlock",
    "sanitise": "dataferry.cli.sanitise:sanitise",
    "keygen": "dataferry.cli.sanitise:keygen",
    "legacy": "dataferry.cli.compat:legacy_cmd",
    "import": "dataferry.cli.compat:import_cmd",
    "render": "dataferry.cli.render:render",
    "serve": "dataferry.cli.serve:serve",
    "pull": "dataferry.cli.pull:pull",
    "prune": "dataferry.cli.prune:prune",
}


class LazyGroup(ErrorsToExitCodes):
    """A group whose commands in ``LAZY_COMMANDS`` are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command, loaded or not."""
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import a lazy command the first time it is asked for."""
        target = LAZY_COMMANDS.get(cmd_name)
        if target is not None and cmd_name not in self.commands:
            module, _, attr = target.partition(":")
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    params=global_options(),
)
@click.version_option(__version__, prog_name="dataferry")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Keep non-production environments supplied with fresh, sanitised copies of production data."""
    ctx.ensure_object(Context)  # the global options given before the command are already in it


for _command in core.COMMANDS:
    cli.add_command(_command)


@cli.command("exit-codes")
def exit_codes() -> None:
    """Print the documented exit codes."""
    for code, meaning in EXIT_CODES.items():
        click.echo(f"{code}\t{meaning}")


def run(argv: list[str] | None = None) -> int:
    """Run the ``dataferry`` command line with ``argv`` and return its exit code.

    A bug still raises, with its traceback; everything else (errors, usage, ``--help``) ends in
    click's ``SystemExit``, which becomes the code.
    """
    heap.release_large_buffers()  # before any data flows: freed buffers go back to the system
    try:
        cli.main(args=argv, prog_name="dataferry")
    except SystemExit as exc:
        return exit_code(exc)
    return 0


def exit_code(exc: SystemExit) -> int:
    """The code a ``SystemExit`` means, as the interpreter reads it (a message means 1)."""
    if exc.code is None or isinstance(exc.code, int):
        return exc.code or 0
    print(exc.code, file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point of the ``dataferry`` command (and of ``python -m dataferry``)."""
    stop_on_sigterm()
    exit_now(run(argv))


def stop_on_sigterm() -> None:
    """SIGTERM stops a command the way Ctrl-C (SIGINT) does: ``KeyboardInterrupt`` where it is, so a
    restore drops its shadow, releases its lock and removes its spool and option files, and the
    command ends with a message and a non-zero exit. Without this, SIGTERM (what ``kill``,
    systemd and Kubernetes send) ended the process on the spot and left all of that behind.
    ``dataferry run`` replaces it with the job runner's own handler while a job runs."""

    def interrupt(signum: int, frame: object) -> None:
        raise stopping.raising(KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}"))

    def ctrl_c(signum: int, frame: object) -> None:
        raise stopping.raising(KeyboardInterrupt())  # as Python's own handler, but recorded

    signal.signal(signal.SIGTERM, interrupt)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, ctrl_c)


def exit_now(code: int) -> NoReturn:
    """Exit with ``code`` without tearing the interpreter down, when that is safe.

    Tearing down every module and object after the command finished took 40-50 ms of a backup
    (measured), time a nightly job waits for and that does nothing for a process about to end.
    What exit must still do is done first: ``atexit`` handlers (temp-file finalizers, logging)
    and flushing stdout and stderr. Another non-daemon thread still running would be waited for
    by a normal exit, so then this exits normally.
    """
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or broken pipe: nothing left to flush to
            stream.flush()
    os._exit(code)
