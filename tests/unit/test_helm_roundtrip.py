"""Issue 16 item 3: a GOV.UK migration is import, review, render, apply. ``dataferry import`` of the
db-backup chart's values, then ``dataferry render kubernetes --env ENV -f kubernetes/ENV-values.yaml``
per cluster, gives CronJobs equivalent to the chart's own: the same databases, schedules, directions
(backup, restore, transform), buckets, service accounts, suspended jobs and memory.

What the chart would produce is derived here from the values file alone, following the chart's
template (``cronjobs.<env>.<key>``: one CronJob per key in the cluster of ``<env>``; each operation
an initContainer with ``DB_DATABASE = op.db or job.db``, ``BUCKET = op.bucket`` or the environment's
own ``s3://govuk-<env>-database-backups``; ``suspend = job.suspend or suspendAllCronJobs``), never
from the importer. What the rendering does is read from the rendered objects only: each CronJob's
``run JOB`` args, the job's steps, stores and databases in the ConfigMap's ``dataferry.toml``, and
the scripts of the profiles in the ConfigMap.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from click.testing import CliRunner
from tests.unit.test_render_kubernetes import by_id, helm_render, validate

from dataferry.cli import cli

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "govuk"

#: CronJobs the importer reports it cannot translate (and says so on stderr).
UNTRANSLATED = {
    ("production", "shared-documentdb"): "dbms documentdb is not supported yet",
    ("integration", "signon-mysql-restore"): "restores integration from its own bucket",
}


class Op(NamedTuple):
    """One operation of one CronJob, as both sides can state it."""

    environment: str
    host: str
    database: str
    direction: str  # backup, restore, transform
    bucket: str | None  # None for a transform (it reads no bucket)
    script: str | None  # the transform's script
    schedule: str
    service_account: str
    suspended: bool


def chart_ops(values: dict[str, Any], env: str) -> set[Op]:
    """What the db-backup chart, installed in ``env``'s cluster with ``values``, would run (less
    the CronJobs in ``UNTRANSLATED``)."""
    out = set()
    for key, job in values["cronjobs"][env].items():
        if (env, key) in UNTRANSLATED:
            continue
        for op in job["operations"]:
            direction = op["op"]
            bucket = op.get("bucket") or f"s3://govuk-{env}-database-backups"
            out.add(
                Op(
                    environment=env,
                    host=job.get("host") or key,
                    database=op.get("db") or job.get("db"),
                    direction=direction,
                    bucket=None if direction == "transform" else bucket,
                    script=op.get("script"),
                    schedule=job["schedule"],
                    service_account=values["serviceAccount"]["name"],
                    suspended=bool(job.get("suspend") or values.get("suspendAllCronJobs")),
                )
            )
    return out


def rendered_ops(objects: list[dict[str, Any]], env: str) -> set[Op]:
    """What the rendered CronJobs run, from the objects alone (the ConfigMap holds the config)."""
    config_map = next(o for o in objects if o["kind"] == "ConfigMap")
    cfg = tomllib.loads(config_map["data"]["dataferry.toml"])
    out = set()
    for cron in (o for o in objects if o["kind"] == "CronJob"):
        pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        args = pod["containers"][0]["args"]
        assert args[0] == "run", args  # no scheduler tick: the chart's jobs have no 'after'
        job = cfg["jobs"][args[1]]
        db = cfg["databases"][job["database"]]
        for step in job["steps"]:
            kind, _, source = step.partition(":")
            bucket, script = None, None
            if kind == "restore":
                direction, bucket = "restore", cfg["environments"][source]["store"]["url"]
            elif kind == "backup":
                direction, bucket = "backup", cfg["environments"][job["environment"]]["store"]["url"]
            else:
                assert kind == "sanitise", step
                direction = "transform"
                key = db["sanitise"].replace("/", "--")
                (script,) = tomllib.loads(config_map["data"][key])["scripts"]
                script_key = f"{Path(db['sanitise']).parent}/{script}".replace("/", "--")
                assert script_key in config_map["data"]  # the script itself is mounted too
            out.add(
                Op(
                    environment=job["environment"],
                    host=db["store_path"],
                    database=db["store_name"],
                    direction=direction,
                    bucket=bucket,
                    script=script,
                    schedule=cron["spec"]["schedule"],
                    service_account=pod["serviceAccountName"],
                    suspended=cron["spec"]["suspend"],
                )
            )
    return out


def test_imported_helm_values_render_back_to_the_charts_cron_jobs(tmp_path: Path) -> None:
    chart = tmp_path / "chart"  # the chart's directory: values.yaml and scripts/
    shutil.copytree(FIXTURES / "scripts", chart / "scripts")
    shutil.copy(FIXTURES / "db-backup-values.yaml", chart / "values.yaml")
    values = yaml.safe_load((chart / "values.yaml").read_text(encoding="utf-8"))
    config = tmp_path / "migration" / "dataferry.toml"
    config.parent.mkdir()
    runner = CliRunner()

    imported = runner.invoke(cli, ["import", str(chart / "values.yaml"), "-o", str(config)])
    assert imported.exit_code == 0, imported.output
    for (env, key), why in UNTRANSLATED.items():
        assert key in values["cronjobs"][env]
        assert f"not translated: {env}/{key}: {why}" in imported.stderr

    for env in values["cronjobs"]:
        out = tmp_path / "manifests" / env
        values_file = config.parent / "kubernetes" / f"{env}-values.yaml"
        render = ["--config", str(config), "render", "kubernetes", "--env", env, "-f", str(values_file)]
        result = runner.invoke(cli, [*render, "-o", str(out)])
        assert result.exit_code == 0, result.output
        objects = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted(out.glob("*.yaml"))]
        validate(objects)
        # the chart rendered by Helm with the same values file ('helm install -f') gives the same
        chart_dir = tmp_path / "charts" / env
        helm = runner.invoke(
            cli, ["--config", str(config), "render", "kubernetes", "--env", env, "--helm", str(chart_dir)]
        )
        assert helm.exit_code == 0, helm.output
        team = yaml.safe_load(values_file.read_text(encoding="utf-8"))
        assert by_id(helm_render(chart_dir, team)) == by_id(objects)

        assert rendered_ops(objects, env) == chart_ops(values, env)

        # the chart's CronJob settings: history limits, starting deadline, memory per job
        for cron in (o for o in objects if o["kind"] == "CronJob"):
            assert cron["spec"]["successfulJobsHistoryLimit"] == 2
            assert cron["spec"]["failedJobsHistoryLimit"] == 2
            assert cron["spec"]["startingDeadlineSeconds"] == 28800
            assert cron["spec"]["concurrencyPolicy"] == "Forbid"
            host = cron["metadata"]["annotations"]["dataferry.io/job"].removeprefix(f"{env}-")
            resources = values["cronjobs"][env][host].get("resources", {})
            limit = resources.get("limits", {}).get("memory", values["resources"]["limits"]["memory"])
            container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
            assert container["resources"]["limits"]["memory"] == limit
        account = next(o for o in objects if o["kind"] == "ServiceAccount")
        assert account["metadata"]["name"] == values["serviceAccount"]["name"]
        assert account["metadata"]["annotations"] == values["serviceAccount"]["annotations"]


def test_a_transform_script_missing_beside_the_values_is_named(tmp_path: Path) -> None:
    """Without the chart's scripts/ directory, the profile is still generated and the note says
    which script to copy where; render then refuses with a clear error, not a traceback."""
    values = tmp_path / "values.yaml"
    shutil.copy(FIXTURES / "db-backup-values.yaml", values)
    config = tmp_path / "migration" / "dataferry.toml"
    config.parent.mkdir()
    runner = CliRunner()
    imported = runner.invoke(cli, ["import", str(values), "--env", "staging", "-o", str(config)])
    assert imported.exit_code == 0, imported.output
    assert "copy the chart's scripts/publishing-api.sql to sanitise/publishing-api.sql" in imported.stderr
    render = runner.invoke(cli, ["--config", str(config), "render", "kubernetes", "--env", "staging"])
    assert render.exit_code == 2
    assert ".sql cannot be read" in render.stderr and "Traceback" not in render.output
