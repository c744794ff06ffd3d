"""The ``dataferry`` command: thin click commands that build objects and call the library.

Errors: a ``FerryError`` prints ``error: ...`` and ``hint: ...`` and exits with its code (see
``errors.py``); usage errors exit 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from pathlib import Path
from typing import NoReturn, ParamSpec, TypeVar

import click

from dataferry import __version__, ops
from dataferry.config import Config, find_config_path, load, parse_duration
from dataferry.errors import EXIT_CODES, ConfigError, FerryError
from dataferry.progress import Reporter, default_reporter, human_bytes

P = ParamSpec("P")
R = TypeVar("R")


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


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn a ``FerryError`` into a message, a hint and its exit code; never a traceback."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except FerryError as exc:
            click.echo(f"error: {exc.message}", err=True)
            if exc.hint:
                click.echo(f"hint: {exc.hint}", err=True)
            sys.exit(exc.exit_code)

    return wrapper


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


pass_ctx = click.make_pass_decorator(Context)

#: Commands defined in other modules, imported only when used: most runs need one command, and the
#: job, sanitisation and GOV.UK modules (prometheus, YAML, ...) would otherwise slow every start.
LAZY_COMMANDS: dict[str, str] = {
    "run": "dataferry.cli_jobs:run_cmd",
    "pause": "dataferry.cli_jobs:pause",
    "resume": "dataferry.cli_jobs:resume",
    "status": "dataferry.cli_jobs:status",
    "history": "dataferry.cli_jobs:history",
    "scheduler": "dataferry.cli_jobs:scheduler_cmd",
    "unlock": "dataferry.cli_jobs:unlock",
    "sanitise": "dataferry.cli_sanitise:sanitise",
    "legacy": "dataferry.cli_compat:legacy_cmd",
    "import": "dataferry.cli_compat:import_cmd",
}


class LazyGroup(click.Group):
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


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    help="Config file (default: $DATAFERRY_CONFIG, ./dataferry.toml).",
)
@click.option("--json-logs", is_flag=True, help="Log as JSON lines on stderr.")
@click.option("-q", "--quiet", is_flag=True, help="No progress or log output.")
@click.version_option(__version__, prog_name="dataferry")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, json_logs: bool, quiet: bool) -> None:
    """Keep non-production environments supplied with fresh, sanitised copies of production data."""
    ctx.obj = Context(config_path, json_logs, quiet)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@pass_ctx
@handle_errors
def check(c: Context, as_json: bool) -> None:
    """Validate the config, tools, stores and connections; changes nothing."""
    report = ops.check(c.config)
    if as_json:
        rows = [{"what": w, "ok": ok, "detail": d} for w, ok, d in report.findings]
        click.echo(json.dumps({"ok": report.ok, "findings": rows}, indent=2))
    else:
        click.echo(f"config {c.config.path}: ok")
        for what, ok, detail in report.findings:
            click.echo(f"{'ok  ' if ok else 'FAIL'}  {what}: {detail}")
    if not report.ok:
        raise_not_ready()


def raise_not_ready() -> None:
    """Exit with the not-ready code after a failed check."""
    from dataferry.errors import NotReady

    raise NotReady(
        "some checks failed (see FAIL lines above)", hint="fix them and run 'dataferry check' again"
    )


@cli.command()
@click.argument("database")
@click.option("--env", "environment", required=True, help="Environment whose database is dumped.")
@click.option("--sanitise", is_flag=True, help="Sanitise a scratch copy and publish that (source untouched).")
@pass_ctx
@handle_errors
def backup(c: Context, database: str, environment: str, sanitise: bool) -> None:
    """Dump DATABASE in ENV into ENV's store."""
    from dataferry.sanitise import backup_for  # checks live data first where ENV requires_sanitised

    result = backup_for(c.config, database, environment, c.reporter(), sanitise=sanitise)
    m = result.manifest
    click.echo(f"{m.id}\t{human_bytes(m.size)}\t{result.store_url}{m.key}")


@cli.command()
@click.argument("database")
@click.option("--env", "environment", required=True, help="Environment to restore into.")
@click.option("--from", "source", required=True, help="Environment whose store holds the artifact.")
@click.option("--artifact", help="A specific artifact id or key (see 'dataferry list').")
@click.option("--at", "at", help="The newest artifact at or before this time (ISO 8601).")
@click.option("--jobs", "-j", default=1, show_default=True, help="Parallel restore workers.")
@click.option("--force", is_flag=True, help="Allow restoring into a protected environment.")
@click.option("--dry-run", is_flag=True, help="Check everything and show the artifact; change nothing.")
@click.option("--sanitise", is_flag=True, help="Sanitise on the shadow before the swap (implied by ENV).")
@pass_ctx
@handle_errors
def restore(
    c: Context,
    database: str,
    environment: str,
    source: str,
    artifact: str | None,
    at: str | None,
    jobs: int,
    force: bool,
    dry_run: bool,
    sanitise: bool,
) -> None:
    """Restore SRC's latest verified artifact of DATABASE into ENV (shadow, verify, swap)."""
    if artifact and at:
        raise ConfigError("give --artifact or --at, not both")
    req = ops.RestoreRequest(
        database=database,
        environment=environment,
        source=source,
        artifact=artifact,
        at=parse_time(at),
        jobs=jobs,
        force=force,
        dry_run=dry_run,
    )
    from dataferry.sanitise import restore_hook  # pins the artifact; sanitises where ENV requires it

    req, before_swap = restore_hook(c.config, req, c.reporter(), sanitise=sanitise)
    result = ops.restore(c.config, req, reporter=c.reporter(), before_swap=before_swap)
    verb = "would restore" if dry_run else "restored"
    done = ", sanitised" if result.sanitisation else (" (would sanitise)" if before_swap else "")
    click.echo(f"{verb} {result.manifest.id} into {database} ({environment}){done}")


@cli.command("list")
@click.argument("database")
@click.option("--env", "environment", required=True, help="Environment whose store is listed.")
@click.option("--json", "as_json", is_flag=True, help="Print manifests as JSON.")
@pass_ctx
@handle_errors
def list_cmd(c: Context, database: str, environment: str, as_json: bool) -> None:
    """List artifacts of DATABASE in ENV's store, newest first."""
    manifests = ops.list_artifacts(c.config, database, environment)
    if as_json:
        click.echo(json.dumps([m.model_dump(mode="json") for m in manifests], indent=2))
        return
    if not manifests:
        click.echo(f"no artifacts of {database} in {environment}", err=True)
        return
    click.echo("ID\tSIZE\tFINISHED\tSANITISED")
    for m in manifests:
        finished = m.finished_at.strftime("%Y-%m-%d %H:%M:%SZ")
        click.echo(f"{m.id}\t{human_bytes(m.size)}\t{finished}\t{'yes' if m.sanitised else 'no'}")


@cli.command()
@click.argument("database")
@click.option("--env", "environment", required=True, help="Environment whose store holds the artifact.")
@click.option("--artifact", help="Artifact id or key (default: latest).")
@pass_ctx
@handle_errors
def verify(c: Context, database: str, environment: str, artifact: str | None) -> None:
    """Re-read an artifact and check it against its manifest."""
    m = ops.verify(c.config, database, environment, artifact)
    click.echo(f"ok {m.id}: {len(m.objects)} object(s), {human_bytes(m.size)}, sha256 verified")


@cli.command()
@click.argument("database")
@click.option("--env", "environment", required=True, help="Environment whose store is cleaned.")
@click.option("--keep", type=int, help="Also delete all but the newest KEEP artifacts.")
@click.option("--older-than", default="24h", show_default=True, help="Only leftovers older than this.")
@click.option("--dry-run", is_flag=True, help="Show what would be removed; remove nothing.")
@pass_ctx
@handle_errors
def cleanup(
    c: Context, database: str, environment: str, keep: int | None, older_than: str, dry_run: bool
) -> None:
    """Remove orphaned data of interrupted backups, and old artifacts with --keep."""
    report = ops.cleanup(
        c.config,
        database,
        environment,
        older_than=duration_arg(older_than, "--older-than"),
        keep=keep,
        dry_run=dry_run,
    )
    verb = "would remove" if dry_run else "removed"
    for key in report.orphans:
        click.echo(f"{verb} orphaned object {key}")
    for ident in report.expired:
        click.echo(f"{verb} artifact {ident}")
    if report.incomplete_uploads:
        click.echo(f"{verb} {report.incomplete_uploads} incomplete upload(s)")
    click.echo(f"{len(report.orphans)} orphan(s), {len(report.expired)} expired artifact(s)")


def duration_arg(value: str, option: str) -> timedelta:
    """A duration given on the command line (``90m``, ``26h``, ``1d12h``), as the config reads them."""
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None


@cli.command("exit-codes")
def exit_codes() -> None:
    """Print the documented exit codes."""
    for code, meaning in EXIT_CODES.items():
        click.echo(f"{code}\t{meaning}")


@cli.command()
@click.argument("directory", default="dataferry-quickstart", type=click.Path(path_type=Path))
@pass_ctx
@handle_errors
def quickstart(c: Context, directory: Path) -> None:
    """Create a sample chain on SQLite and local stores in DIRECTORY, and run it."""
    from dataferry.quickstart import run_quickstart

    run_quickstart(directory, reporter=c.reporter(), echo=click.echo)


def run(argv: list[str] | None = None) -> int:
    """Run the ``dataferry`` command line with ``argv`` and return its exit code.

    A bug still raises, with its traceback; everything else (errors, usage, ``--help``) ends in
    click's ``SystemExit``, which becomes the code.
    """
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
    exit_now(run(argv))


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
