"""``dataferry sanitise DB --env ENV (--dry-run | --check)``.

Sanitising itself never happens in place on a live database: it runs on a restore's shadow before the
swap (``restore --sanitise``, or any restore into an environment that requires sanitised data) or on a
scratch copy (``backup --sanitise``). This command shows what a profile would do, or checks a database
that should already be sanitised.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from dataferry.cli._common import Context, pass_ctx
from dataferry.errors import ConfigError, SanitisationFailed
from dataferry.sanitise import DryRun, check_live, plan_live


@click.command("sanitise")
@click.argument("database")
@click.option("--env", "environment", required=True, help="Environment whose live database is read.")
@click.option("--dry-run", is_flag=True, help="Show what each rule and check would touch (counts).")
@click.option("--check", "check_only", is_flag=True, help="Run only the checks; exit 8 if any fails.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_ctx
def sanitise(
    c: Context, database: str, environment: str, dry_run: bool, check_only: bool, as_json: bool
) -> None:
    """Show what DATABASE's sanitisation profile would touch in ENV, or check ENV's data; read-only."""
    if dry_run == check_only:
        raise ConfigError(
            "give --dry-run or --check",
            hint=f"to sanitise, restore with --sanitise (on the shadow, before the swap) or run "
            f"'dataferry backup {database} --env ENV --sanitise' (on a scratch copy)",
        )
    if check_only:
        result = check_live(c.config, database, environment, c.reporter())
        if as_json:
            click.echo(result.model_dump_json(indent=2))
        else:
            click.echo(
                f"ok {database} in {environment}: {len(result.checks)} check(s) passed ({result.profile})"
            )
        return
    plan = plan_live(c.config, database, environment, c.reporter())
    click.echo(
        json.dumps(asdict(plan), indent=2) if as_json else "\n".join(describe(plan, database, environment))
    )
    if not plan.ok:
        raise SanitisationFailed(
            f"the profile does not fit the schema of {database} in {environment} (see coverage above)",
            hint=f"classify new columns and remove vanished ones in {plan.profile}",
        )


def describe(plan: DryRun, database: str, environment: str) -> list[str]:
    """The dry run as lines for a terminal: rules with counts, then checks as they stand now."""
    lines = [f"profile {plan.profile} (sha256 {plan.profile_sha256[:12]}) on {database} in {environment}"]
    if plan.ok:
        lines.append("coverage: ok")
    for name in plan.coverage_unclassified:
        lines.append(f"coverage: UNCLASSIFIED {name}")
    for name in plan.coverage_vanished:
        lines.append(f"coverage: VANISHED {name}")
    lines.append("would run, in order:")
    for i, step in enumerate(plan.steps, 1):
        if not step.counts:
            lines.append(f"  {i}. {step.description} (not counted)")
        for label, count in step.counts:
            lines.append(f"  {i}. {label}: {count} row(s)")
    lines.append("checks, on the data as it is now (before sanitising):")
    for r in plan.checks:
        lines.append("  " + _check_line(r))
    return lines


def _check_line(r: dict[str, object]) -> str:
    status = "ok" if r["passed"] else "would fail"
    if r["check"] == "sql":
        return f"check {r['name']!r}: {r['rows']} row(s), {status}"
    if r["check"] == "scan":
        found = r["findings"]
        assert isinstance(found, list)
        where = ", ".join(f"{f['table']}.{f['column']} {f['count']}" for f in found) or "nothing found"
        return f"scan {r['name']} in {r['columns_scanned']} column(s): {where}"
    return f"{r['check']} {r['name']}: {status} {r.get('detail') or ''}".rstrip()


@click.command("keygen")
@click.option(
    "--out", "out", type=click.Path(dir_okay=False), help="Write a new private key here (mode 600)."
)
@click.option(
    "--show",
    "show",
    type=click.Path(dir_okay=False, exists=True),
    help="Print the public key of this private key.",
)
def keygen(out: str | None, show: str | None) -> None:
    """Make the key pair that signs sanitised manifests, or show a private key's public key.

    The private key goes to the machine that sanitises (settings.signing_key_file or
    signing_key_env); the printed public key goes into trusted_keys of every environment that
    requires sanitised data. The private key is never printed.
    """
    from pathlib import Path

    from dataferry import signing

    if (out is None) == (show is None):
        raise ConfigError("give --out FILE (a new key pair) or --show FILE (the public key of a private key)")
    if out is not None:
        pem, public, fingerprint = signing.generate()
        signing.write_private_key(Path(out), pem)
        click.echo(f"private key written to {out} (mode 600): keep it on the machine that sanitises")
    else:
        signer = signing.signer_from_file(Path(str(show)))
        public, fingerprint = signing.public_text(signer.key.public_key()), signer.fingerprint
    click.echo(f"fingerprint: {fingerprint}")
    click.echo(f'trusted_keys = ["{public}"]')
