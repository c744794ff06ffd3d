"""The commands on one database and its artifacts: check, backup, restore, list, verify, cleanup,
and quickstart (a sample chain). Registered on the ``dataferry`` group by ``dataferry.cli``."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from pathlib import Path

import click

from dataferry import ops
from dataferry.artifacts import Damaged
from dataferry.cli._common import JOBS_HELP, Context, duration_arg, pass_ctx, say, time_or_duration
from dataferry.errors import ConfigError
from dataferry.progress import human_bytes


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@pass_ctx
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


@click.command()
@click.argument("database")
@click.option("--env", "environment", required=True, help="Environment whose database is dumped.")
@click.option("--sanitise", is_flag=True, help="Sanitise a scratch copy and publish that (source untouched).")
@pass_ctx
def backup(c: Context, database: str, environment: str, sanitise: bool) -> None:
    """Dump DATABASE in ENV into ENV's store."""
    # ops checks the live data first where ENV requires sanitised data
    result = ops.backup(c.config, database, environment, sanitise=sanitise, reporter=c.reporter())
    m = result.manifest
    click.echo(f"{m.id}\t{human_bytes(m.size)}\t{result.store_url}{m.key}")


@click.command()
@click.argument("database")
@click.option("--env", "environment", required=True, help="Environment to restore into.")
@click.option("--from", "source", required=True, help="Environment whose store holds the artifact.")
@click.option("--artifact", help="A specific artifact id or key (see 'dataferry list').")
@click.option(
    "--at", "at", help="The newest artifact at or before this time: ISO 8601, or a duration ago such as 3d."
)
@click.option("--jobs", "-j", type=int, default=None, show_default="auto", help=JOBS_HELP)
@click.option("--force", is_flag=True, help="Allow restoring into a protected environment.")
@click.option("--dry-run", is_flag=True, help="Check everything and show the artifact; change nothing.")
@click.option("--sanitise", is_flag=True, help="Sanitise on the shadow before the swap (implied by ENV).")
@pass_ctx
def restore(
    c: Context,
    database: str,
    environment: str,
    source: str,
    artifact: str | None,
    at: str | None,
    jobs: int | None,
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
        at=time_or_duration(at, sign=-1),
        jobs=jobs,
        force=force,
        dry_run=dry_run,
        sanitise=sanitise,
    )
    plan = ops.plan_restore(c.config, req, c.reporter())  # sanitises where ENV requires it
    result = ops.restore(plan, reporter=c.reporter())
    verb = "would restore" if dry_run else "restored"
    done = ", sanitised" if result.sanitisation else (" (would sanitise)" if plan.sanitiser else "")
    jobs_said = f", {plan.jobs_detail}" if dry_run else ""  # a real restore logs it
    click.echo(f"{verb} {result.manifest.id} into {database} ({environment}){done}{jobs_said}")


@click.command("list")
@click.argument("database")
@click.option("--env", "environment", required=True, help="Environment whose store is listed.")
@click.option("--json", "as_json", is_flag=True, help="Print manifests as JSON.")
@pass_ctx
def list_cmd(c: Context, database: str, environment: str, as_json: bool) -> None:
    """List artifacts of DATABASE in ENV's store, newest first."""
    damaged: list[Damaged] = []
    manifests = ops.list_artifacts(c.config, database, environment, damaged.append)
    for d in damaged:  # skipped by listing and by restore; reported so they can be removed
        click.echo(f"warning: artifact {d.id} has a damaged manifest and was skipped: {d.reason}", err=True)
    if damaged:
        click.echo(f"hint: 'dataferry cleanup {database} --env {environment}' removes them", err=True)
    if as_json:
        click.echo(json.dumps([m.model_dump(mode="json") for m in manifests], indent=2))
        return
    if not manifests and not damaged:
        say(f"no artifacts of {database} in {environment}", "info", bare=True)
        return
    click.echo("ID\tSIZE\tFINISHED\tSANITISED")
    for m in manifests:
        finished = m.finished_at.strftime("%Y-%m-%d %H:%M:%SZ")
        click.echo(f"{m.id}\t{human_bytes(m.size)}\t{finished}\t{'yes' if m.sanitised else 'no'}")
    for d in damaged:
        click.echo(f"{d.id}\t-\t-\tDAMAGED (skipped)")


@click.command()
@click.argument("database")
@click.option("--env", "environment", required=True, help="Environment whose store holds the artifact.")
@click.option("--artifact", help="Artifact id or key (default: latest).")
@pass_ctx
def verify(c: Context, database: str, environment: str, artifact: str | None) -> None:
    """Re-read an artifact and check it against its manifest."""
    m = ops.verify(c.config, database, environment, artifact, reporter=c.reporter())
    click.echo(f"ok {m.id}: {len(m.objects)} object(s), {human_bytes(m.size)}, sha256 verified")


@click.command()
@click.argument("database")
@click.option("--env", "environment", required=True, help="Environment whose store is cleaned.")
@click.option("--keep", type=int, help="Also delete all but the newest KEEP artifacts.")
@click.option("--older-than", default="24h", show_default=True, help="Only leftovers older than this.")
@click.option("--dry-run", is_flag=True, help="Show what would be removed; remove nothing.")
@pass_ctx
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
    for ident in report.damaged:
        click.echo(f"{verb} artifact {ident} (its manifest is damaged)")
    for key in report.incomplete_uploads:
        click.echo(f"{verb} incomplete upload {key}")
    for loader in report.orphaned_loaders:
        click.echo(
            f"{'would kill' if dry_run else 'killed'} {loader} (left running by a run that was killed)"
        )
    for path in report.private_leftovers:
        click.echo(f"{verb} {path} (left on this machine by a run that was killed)")
    click.echo(f"{len(report.orphans)} orphan(s), {len(report.expired)} expired artifact(s)")


@click.command()
@click.argument("directory", default="dataferry-quickstart", type=click.Path(path_type=Path))
@pass_ctx
def quickstart(c: Context, directory: Path) -> None:
    """Create a sample chain on SQLite and local stores in DIRECTORY, and run it."""
    from dataferry.quickstart import run_quickstart

    run_quickstart(directory, reporter=c.reporter(), echo=click.echo, program=_program())


def _program() -> str:
    """This command as the operator can type it again: ``dataferry`` when that is the program on
    PATH, else the path it was run by (``.venv/bin/dataferry`` after the README's install), or
    ``python -m dataferry``."""
    argv0 = sys.argv[0]
    if Path(argv0).name == "__main__.py":
        return f"{shlex.quote(sys.executable)} -m dataferry"
    if os.sep not in argv0:
        return argv0 if Path(argv0).name.startswith("dataferry") else "dataferry"
    on_path = shutil.which("dataferry")
    if on_path and Path(on_path).resolve() == Path(argv0).resolve():
        return "dataferry"
    return shlex.quote(argv0)


COMMANDS: list[click.Command] = [check, backup, restore, list_cmd, verify, cleanup, quickstart]
