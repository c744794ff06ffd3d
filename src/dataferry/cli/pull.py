"""``dataferry pull``: a developer's one command, no configuration file (``ops.pull``)."""

from __future__ import annotations

import click

from dataferry.cli._common import JOBS_HELP, Context, pass_ctx, time_or_duration


@click.command()
@click.argument("source", metavar="STORE_URL/DATABASE")
@click.option(
    "--into", "into", required=True, metavar="URL", help="postgresql://, mysql:// or sqlite:/// database."
)
@click.option("--artifact", help="A specific artifact id or key (it must be sanitised).")
@click.option(
    "--at",
    "at",
    help="The newest sanitised artifact at or before this time (ISO 8601, or a duration ago such as 3d).",
)
@click.option("--jobs", "-j", type=int, default=None, show_default="auto", help=JOBS_HELP)
@click.option("--password-env", metavar="VAR", help="Environment variable holding the database password.")
@click.option("--profile", help="AWS shared-config profile (default: boto3's credential chain).")
@click.option("--region", help="S3 region.")
@click.option("--endpoint-url", metavar="URL", help="S3-compatible endpoint (MinIO, Ceph, ...).")
@click.option("--identity-env", metavar="VAR", help="Environment variable holding the age identity.")
@click.option("--identity-file", metavar="PATH", help="age identity file, for encrypted artifacts.")
@click.option(
    "--trust-key",
    "trust_keys",
    multiple=True,
    metavar="KEY",
    envvar="DATAFERRY_TRUST_KEYS",
    help="Public key (ed25519:...) whose signed sanitised artifacts to accept; repeatable, or "
    "$DATAFERRY_TRUST_KEYS (space-separated).",
)
@click.option("--dry-run", is_flag=True, help="Check everything and show the artifact; change nothing.")
@pass_ctx
def pull(
    c: Context,
    source: str,
    into: str,
    artifact: str | None,
    at: str | None,
    jobs: int | None,
    password_env: str | None,
    profile: str | None,
    region: str | None,
    endpoint_url: str | None,
    identity_env: str | None,
    identity_file: str | None,
    trust_keys: tuple[str, ...],
    dry_run: bool,
) -> None:
    """Restore the newest sanitised artifact of DATABASE in STORE_URL into the database at --into
    (shadow, verify, swap); unsanitised artifacts are refused. No configuration file is read."""
    from dataferry.ops import restore
    from dataferry.ops.pull import PullRequest, plan_pull

    req = PullRequest(
        source=source,
        into=into,
        artifact=artifact,
        at=time_or_duration(at, sign=-1),
        jobs=jobs,
        dry_run=dry_run,
        password_env=password_env,
        profile=profile,
        region=region,
        endpoint_url=endpoint_url,
        identity_env=identity_env,
        identity_file=identity_file,
        trusted_keys=trust_keys,
    )
    reporter = c.reporter()
    plan = plan_pull(req, reporter)
    result = restore(plan, reporter=reporter)
    verb = "would pull" if dry_run else "pulled"
    jobs_said = f", {plan.jobs_detail}" if dry_run else ""  # a real pull logs it
    click.echo(f"{verb} {result.manifest.id} (sanitised) into {into}{jobs_said}")
