"""``dataferry prune``: apply an environment's retention policy (``ops.prune``)."""

from __future__ import annotations

import json

import click

from dataferry.cli._common import Context, pass_ctx


@click.command()
@click.argument("database")
@click.option("--env", "environment", required=True, help="Environment whose store is pruned.")
@click.option("--dry-run", is_flag=True, help="Show what would be removed; remove nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--force", is_flag=True, help="Allow pruning a protected environment.")
@pass_ctx
def prune(c: Context, database: str, environment: str, dry_run: bool, as_json: bool, force: bool) -> None:
    """Remove DATABASE's artifacts in ENV's store that ENV's retention policy does not keep.

    Never the newest or latest artifact, one a restore is reading, one an 'after' trigger still
    needs, or anything in a protected environment without --force (--dry-run needs none).
    Manifests go before data."""
    from dataferry.jobs.pins import after_pins
    from dataferry.ops.prune import prune as run_prune

    cfg = c.config
    pins = after_pins(cfg, environment, database)
    report = run_prune(
        cfg, database, environment, dry_run=dry_run, force=force, pinned=pins, reporter=c.reporter()
    )
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
        return
    verb = "would remove" if dry_run else "removed"
    for ident, reasons in sorted(report.kept.items(), reverse=True):
        click.echo(f"keep\t{ident}\t{', '.join(reasons)}")
    for ident in report.removed:
        click.echo(f"{verb}\t{ident}")
    for key in report.orphans:
        click.echo(f"{verb} orphan\t{key}")
    for key in report.left_for_later:
        click.echo(f"left\t{key}\t(a restore is reading it; a later prune removes it)")
    for note in report.notes:
        click.echo(f"note\t{note}")
