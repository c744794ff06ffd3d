"""``dataferry render kubernetes``: the configuration as Kubernetes manifests or a Helm chart
(docs/kubernetes.md). Loaded by ``dataferry.cli`` when the command runs."""

from __future__ import annotations

from pathlib import Path

import click

from dataferry.cli._common import Context, pass_ctx
from dataferry.errors import ConfigError
from dataferry.render import RenderOptions, dump_all, render_kubernetes, write_tree


@click.group("render")
def render() -> None:
    """Render the configuration for a platform (Kubernetes)."""


@render.command("kubernetes")
@click.option("--env", "environment", help="Only the jobs of this environment.")
@click.option(
    "-o", "--output", type=click.Path(file_okay=False, path_type=Path), help="Write manifests here."
)
@click.option("--helm", type=click.Path(file_okay=False, path_type=Path), help="Write a Helm chart here.")
@click.option("--image", default=RenderOptions.image, show_default=True, help="The dataferry image.")
@click.option(
    "--secret", default=RenderOptions.secret_name, show_default=True, help="Secret with the *_env variables."
)
@click.option("--service-account", default=RenderOptions.service_account, show_default=True)
@click.option("--role-arn", help="IRSA: the IAM role of the service account (then no keys are needed).")
@click.option(
    "--spool-size", default=RenderOptions.spool_size, show_default=True, help="emptyDir size limit."
)
@click.option("--spool-claim", help="A PersistentVolumeClaim for the spool instead of an emptyDir.")
@click.option(
    "--tick-schedule",
    default=RenderOptions.tick_schedule,
    show_default=True,
    help="How often each environment's scheduler tick starts 'after' jobs.",
)
@click.option(
    "--prometheus-rule", is_flag=True, help="Also render a PrometheusRule with the runbook's alerts."
)
@click.option(
    "-f",
    "--values",
    "values_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A values file (the chart's keys) merged over the generated values, as helm -f does.",
)
@pass_ctx
def kubernetes(
    c: Context,
    environment: str | None,
    output: Path | None,
    helm: Path | None,
    image: str,
    secret: str,
    service_account: str,
    role_arn: str | None,
    spool_size: str,
    spool_claim: str | None,
    tick_schedule: str,
    prometheus_rule: bool,
    values_file: Path | None,
) -> None:
    """CronJobs for the jobs of the config (stdout, -o DIR, or a Helm chart with --helm DIR)."""
    if output is not None and helm is not None:
        raise ConfigError("give -o DIR or --helm DIR, not both")
    options = RenderOptions(
        environment=environment,
        image=image,
        secret_name=secret,
        service_account=service_account,
        role_arn=role_arn,
        spool_size=spool_size,
        spool_claim=spool_claim,
        tick_schedule=tick_schedule,
        prometheus_rule=prometheus_rule,
        values_file=values_file,
    )
    rendering = render_kubernetes(c.config, options)
    for note in rendering.notes:
        click.echo(f"note: {note}", err=True)
    if output is None and helm is None:
        click.echo(dump_all(rendering.objects), nl=False)
    else:
        target = output or helm
        assert target is not None
        write_tree(target, rendering.manifest_files() if output else rendering.chart_files())
        click.echo(f"wrote {'manifests' if output else 'a Helm chart'} to {target}", err=True)
    keys = ", ".join(rendering.secret_keys()) or "none"
    click.echo(f"note: Secret {rendering.values['secretName']!r} must hold the keys: {keys}", err=True)
