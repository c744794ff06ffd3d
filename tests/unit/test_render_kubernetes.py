"""``dataferry render kubernetes``: every rendered object validates against the Kubernetes schemas of
two versions (``kubernetes-validate``, strict: unknown fields fail too); the Helm chart, rendered by
Helm's own template engine (``helm-python-sdk`` binds Helm's Go SDK; no ``helm`` binary here) with
default and with a team's values, gives exactly the objects the Python renderer builds from the same
values; no secret value ever reaches a rendered file; the alerts are the runbook's."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from dataferry.cli import cli
from dataferry.config import load
from dataferry.errors import ConfigError
from dataferry.metrics import HELP
from dataferry.render import RenderOptions, manifests, render_kubernetes
from dataferry.render.alerts import METRICS
from dataferry.render.values import label_value, resource_name

ROOT = Path(__file__).resolve().parents[2]
#: Kubernetes versions validated: the three minor versions upstream supports (end of 2026) and an
#: older one managed clusters still run (timeZone is GA since 1.27, podFailurePolicy on since 1.26).
VERSIONS = ("1.29.0", "1.35.0", "1.36.0", "1.37.0")

CONFIG = """\
[settings]
pushgateway_url = "http://pushgateway.monitoring:9091"
signing_key_env = "DATAFERRY_SIGNING_KEY"

[environments.production]
store = { url = "s3://example-production-backups/db", access_key_id_env = "PROD_S3_KEY_ID", secret_access_key_env = "PROD_S3_SECRET" }
protected = true

[environments.staging]
store = "s3://example-staging-backups/db"
requires_sanitised = true
trusted_keys = ["ed25519:0FXIPxKJVJNm9UlUfk2LQY5IvxMJwgjhO0vJDzTzr50="]

[databases.email-alert-api]
engine = "postgresql"
sanitise = "email-alert-api/sanitise.toml"
[databases.email-alert-api.environments]
production = { url = "postgresql://backup@eaa-db/email_alert_api", password_env = "PROD_PG_PASSWORD" }
staging = { url = "postgresql://backup@eaa-db.staging/email_alert_api", password_env = "STAGING_PG_PASSWORD" }

[databases.whitehall]
engine = "mysql"
sanitise = "whitehall/sanitise.toml"
[databases.whitehall.environments]
production = { url = "mysql://backup@whitehall-db/whitehall_production", password_env = "PROD_MYSQL_PASSWORD" }
staging = { url = "mysql://backup@whitehall-db.staging/whitehall_production", password_env = "STAGING_MYSQL_PASSWORD" }

[jobs.email-alert-api-production]
environment = "production"
database = "email-alert-api"
steps = ["backup"]
schedule = "0 23 * * *"
timezone = "Europe/London"
max_runtime = "2h"

[jobs.email-alert-api-staging]
environment = "staging"
database = "email-alert-api"
steps = ["restore:production", "sanitise", "backup"]
after = "email-alert-api-production"
max_runtime = "4h"

[jobs.Whitehall_Production]
environment = "production"
database = "whitehall"
steps = ["backup"]
schedule = "30 1 * * 1-5"

[jobs.whitehall-staging]
environment = "staging"
database = "whitehall"
steps = ["restore:production", "sanitise"]
after = "Whitehall_Production"
"""

SECRET_VARS = (
    "PROD_S3_KEY_ID",
    "PROD_S3_SECRET",
    "PROD_PG_PASSWORD",
    "STAGING_PG_PASSWORD",
    "PROD_MYSQL_PASSWORD",
    "STAGING_MYSQL_PASSWORD",
    "EMAIL_ALERT_API_SANITISE_SALT",
    "WHITEHALL_SANITISE_SALT",
    "DATAFERRY_SIGNING_KEY",
)

#: What a team changes in its own values file.
TEAM_VALUES: dict[str, Any] = {
    "image": {"repository": "registry.example.org/platform/dataferry", "tag": "1.2.3"},
    "secretName": "ferry-secrets",
    "serviceAccount": {
        "name": "ferry",
        "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/ferry"},
    },
    "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
    "nodeSelector": {"kubernetes.io/arch": "arm64"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "backups", "effect": "NoSchedule"}],
    "extraEnv": [
        {"name": "GOGC", "value": "30"},
        {"name": "HOOK_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hooks", "key": "token"}}},
    ],
    "podAnnotations": {"example.org/team": "data"},
    "spool": {"existingClaim": "dataferry-spool"},
    "suspendAll": True,
    "scheduler": {"schedule": "*/2 * * * *"},
    "prometheusRule": {"enabled": True, "liveMaxAgeHours": 30, "labels": {"release": "kube-prometheus"}},
    "jobs": {
        "email-alert-api-production": {
            "schedule": "15 2 * * 1-5",
            "timeZone": "UTC",
            "resources": {"limits": {"memory": "4Gi"}},
        }
    },
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A config with PostgreSQL and MySQL databases, S3 stores, profiles (one with a script)."""
    for name in ("email-alert-api", "whitehall"):
        shutil.copytree(ROOT / "examples" / name, tmp_path / name)
    config = tmp_path / "dataferry.toml"
    config.write_text(CONFIG, encoding="utf-8")
    return config


def by_id(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of a values file over the chart's: maps merge, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def helm_render(chart: Path, values: dict[str, Any]) -> list[dict[str, Any]]:
    """The chart rendered by Helm's engine, as objects."""
    with helm.Chart.load(str(chart)) as loaded:
        rendered = loaded.render(values, name="dataferry", namespace="dataferry")
    docs = [d for text in rendered.values() for d in yaml.safe_load_all(text)]
    return [d for d in docs if d]


def validate(objects: list[dict[str, Any]]) -> None:
    """Every object against each version's schema; the PrometheusRule is a CRD (no schema there)."""
    for obj in objects:
        if obj["kind"] == "PrometheusRule":
            continue
        for version in VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_plain_manifests_validate_against_two_kubernetes_versions(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "manifests"
    result = CliRunner().invoke(cli, ["--config", str(project), "render", "kubernetes", "-o", str(out)])
    assert result.exit_code == 0, result.output
    objects = [yaml.safe_load(p.read_text()) for p in sorted(out.glob("*.yaml"))]
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["ConfigMap", *["CronJob"] * 5, "ServiceAccount"]  # 4 jobs, the tick of staging
    validate(objects)


def test_a_broken_manifest_fails_validation(project: Path) -> None:
    """The validation can fail: a field the schema does not know is refused in strict mode."""
    cron = next(o for o in render_kubernetes(load(project)).objects if o["kind"] == "CronJob")
    cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["argz"] = ["run"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(cron, VERSIONS[0], strict=True)


def test_cron_jobs_carry_the_jobs_policy(project: Path) -> None:
    objects = by_id(render_kubernetes(load(project)).objects)
    prod = objects[("CronJob", "dataferry-email-alert-api-production")]
    assert prod["spec"]["schedule"] == "0 23 * * *"
    assert prod["spec"]["timeZone"] == "Europe/London"
    assert prod["spec"]["concurrencyPolicy"] == "Forbid"
    assert prod["spec"]["suspend"] is False
    job = prod["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0
    assert job["activeDeadlineSeconds"] == 2 * 3600 + 600  # max_runtime, then time to stop cleanly
    pod = job["template"]["spec"]
    container = pod["containers"][0]
    # recorded as the schedule's run, so no scheduler sharing the store starts that fire again
    assert container["args"] == ["run", "email-alert-api-production", "--trigger", "schedule"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "spool", "emptyDir": {"sizeLimit": "10Gi"}} in pod["volumes"]
    assert job["template"]["metadata"]["annotations"]["dataferry.io/job"] == "email-alert-api-production"
    assert job["template"]["metadata"]["labels"]["dataferry.io/environment"] == "production"
    # an 'after' job: never fired by Kubernetes, kept for one-off runs; the tick starts it
    staging = objects[("CronJob", "dataferry-email-alert-api-staging")]
    assert staging["spec"]["suspend"] is True
    staging_pod = staging["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert staging_pod["containers"][0]["args"] == ["run", "email-alert-api-staging"]  # manual re-runs
    tick = objects[("CronJob", "dataferry-scheduler-staging")]
    tick_pod = tick["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert tick_pod["containers"][0]["args"] == ["scheduler", "--once", "--only-after", "--env", "staging"]
    assert tick["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] == (4 * 3600 + 600) + 86400
    # the config, both profiles and the profile's script are in the ConfigMap and mounted in place
    items = {i["path"] for v in pod["volumes"] if "configMap" in v for i in v["configMap"]["items"]}
    assert items == {
        "dataferry.toml",
        "email-alert-api/sanitise.toml",
        "whitehall/sanitise.toml",
        "whitehall/sql/remove-access-limited.sql",
    }


def test_env_selects_one_environment(project: Path) -> None:
    objects = by_id(render_kubernetes(load(project), RenderOptions(environment="staging")).objects)
    crons = sorted(name for kind, name in objects if kind == "CronJob")
    assert crons == [
        "dataferry-email-alert-api-staging",
        "dataferry-scheduler-staging",
        "dataferry-whitehall-staging",
    ]


def test_names_that_are_not_dns_names_become_unique_ones() -> None:
    name = resource_name("dataferry", "Whitehall_Production")
    assert re.fullmatch(r"dataferry-whitehall-production-[0-9a-f]{8}", name)
    assert resource_name("dataferry", "whitehall.production") != resource_name(
        "dataferry", "whitehall-production"
    )
    assert len(resource_name("dataferry", "x" * 80)) <= 52
    assert label_value("-a_b." + "c" * 80) == "a_b." + "c" * 59


@pytest.mark.parametrize("team", [False, True], ids=["default-values", "team-values"])
def test_the_helm_chart_renders_the_same_objects(project: Path, tmp_path: Path, team: bool) -> None:
    cfg = load(project)
    rendering = render_kubernetes(cfg)
    chart = tmp_path / "chart"
    result = CliRunner().invoke(cli, ["--config", str(project), "render", "kubernetes", "--helm", str(chart)])
    assert result.exit_code == 0, result.output
    assert not helm.lint(str(chart))["errors"]
    override = TEAM_VALUES if team else {}
    from_helm = helm_render(chart, override)
    values = deep_merge(yaml.safe_load((chart / "values.yaml").read_text()), override)
    expected = manifests.build(values, rendering.files)
    assert by_id(from_helm) == by_id(expected)
    validate(from_helm)
    if team:
        prod = by_id(from_helm)[("CronJob", "dataferry-email-alert-api-production")]
        pod = prod["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert prod["spec"]["schedule"] == "15 2 * * 1-5"
        assert prod["spec"]["suspend"] is True
        assert pod["containers"][0]["image"] == "registry.example.org/platform/dataferry:1.2.3"
        assert pod["containers"][0]["resources"] == {"limits": {"memory": "4Gi"}}
        assert pod["nodeSelector"] == {"kubernetes.io/arch": "arm64"}
        assert {"name": "spool", "persistentVolumeClaim": {"claimName": "dataferry-spool"}} in pod["volumes"]
        sa = by_id(from_helm)[("ServiceAccount", "ferry")]
        assert sa["metadata"]["annotations"] == {
            "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/ferry"
        }


def test_no_secret_value_is_ever_rendered(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sentinels = {name: f"SENTINEL-{i}-d0n0tl34k" for i, name in enumerate(SECRET_VARS)}
    for name, value in sentinels.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    base = ["--config", str(project), "render", "kubernetes", "--prometheus-rule"]
    texts = [runner.invoke(cli, base).output]
    for flag in ("-o", "--helm"):
        out = tmp_path / flag.strip("-")
        result = runner.invoke(cli, [*base, flag, str(out)])
        assert result.exit_code == 0, result.output
        texts += [result.output, *(p.read_text() for p in out.rglob("*") if p.is_file())]
    text = "\n".join(texts)
    assert all(value not in text for value in sentinels.values())
    assert "SENTINEL" not in text
    # ... while every secret is there by name, as a reference to the Secret
    keys = set(render_kubernetes(load(project)).secret_keys())
    assert keys == set(SECRET_VARS)
    assert "secretKeyRef" in texts[0]


def test_alerts_are_the_runbooks(project: Path) -> None:
    objects = render_kubernetes(load(project), RenderOptions(prometheus_rule=True)).objects
    rule = by_id(objects)[("PrometheusRule", "dataferry")]
    exprs = [r["expr"] for r in rule["spec"]["groups"][0]["rules"]]
    runbook = (ROOT / "docs" / "runbook.md").read_text(encoding="utf-8")
    block = runbook.split("Alerts worth having (PromQL):", 1)[1].split("```")[1]
    documented = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert set(documented) <= set(exprs)  # the runbook's examples are production and staging's
    assert all(metric in HELP for metric in METRICS)
    for expr in exprs:
        assert set(re.findall(r"[a-z_]+(?=\{| ==| >)", expr)) - {"time"} <= set(METRICS)


def test_bad_requests_are_clear_errors(project: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["--config", str(project), "render", "kubernetes"]
    both = runner.invoke(cli, [*base, "-o", str(tmp_path / "a"), "--helm", str(tmp_path / "b")])
    assert both.exit_code == 2 and "not both" in both.output
    unknown = runner.invoke(cli, [*base, "--env", "nowhere"])
    assert unknown.exit_code == 2 and "no environment 'nowhere'" in unknown.output
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.yaml").write_text("keep me")
    refused = runner.invoke(cli, [*base, "-o", str(full)])
    assert refused.exit_code == 2 and "not written by 'dataferry render'" in refused.output
    assert (full / "mine.yaml").read_text() == "keep me"


def test_a_profile_outside_the_config_directory_is_refused(project: Path, tmp_path: Path) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    shutil.copytree(ROOT / "examples" / "whitehall", outside)
    text = project.read_text().replace('"whitehall/sanitise.toml"', f'"{outside}/sanitise.toml"')
    project.write_text(text)
    with pytest.raises(ConfigError, match="outside the configuration's directory"):
        render_kubernetes(load(project))
    shutil.rmtree(outside)


def test_a_second_render_replaces_the_first(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    runner = CliRunner()
    assert (
        runner.invoke(cli, ["--config", str(project), "render", "kubernetes", "-o", str(out)]).exit_code == 0
    )
    project.write_text(project.read_text().split("[jobs.Whitehall_Production]")[0])
    assert (
        runner.invoke(cli, ["--config", str(project), "render", "kubernetes", "-o", str(out)]).exit_code == 0
    )
    assert not any("whitehall" in p.name for p in out.glob("*.yaml"))


def test_a_values_file_gives_the_plain_manifests_the_charts_knobs(project: Path, tmp_path: Path) -> None:
    team = tmp_path / "team.yaml"
    team.write_text(yaml.safe_dump(TEAM_VALUES))
    runner = CliRunner()
    base = ["--config", str(project), "render", "kubernetes"]
    chart, out = tmp_path / "chart", tmp_path / "plain"
    assert runner.invoke(cli, [*base, "--helm", str(chart)]).exit_code == 0
    result = runner.invoke(cli, [*base, "-o", str(out), "-f", str(team)])
    assert result.exit_code == 0, result.output
    assert "Secret 'ferry-secrets' must hold" in result.output
    plain = [yaml.safe_load(p.read_text()) for p in out.glob("*.yaml")]
    assert by_id(plain) == by_id(helm_render(chart, TEAM_VALUES))  # helm install -f team.yaml
    validate(plain)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ("imagee: {tag: x}\n", "unknown key 'imagee'"),
        ("jobs: {nope: {schedule: '1 * * * *'}}\n", "jobs: no 'nope' rendered"),
        ("image: registry/dataferry:1\n", "image: must be a mapping"),
        ("- a list\n", "a values file is a mapping"),
        ("jobs: {whitehall-staging: {secretEnv: 3}}\n", "a value has the wrong shape"),
    ],
)
def test_a_bad_values_file_is_a_clear_error(project: Path, tmp_path: Path, values: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(values)
    result = CliRunner().invoke(cli, ["--config", str(project), "render", "kubernetes", "-f", str(path)])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_the_scheduler_refuses_an_unknown_environment(project: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", str(project), "scheduler", "--once", "--env", "nowhere"])
    assert result.exit_code == 2 and "no environment 'nowhere'" in result.output


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"imagee": {"tag": "x"}}, "'imagee' not allowed"),
        ({"resources": "big"}, "/resources"),
        ({"jobs": {"nope": {"schedule": "1 * * * *"}}}, "'nope' not allowed"),
        (
            {"jobs": {"email-alert-api-production": {"schedule": 5}}},
            "/jobs/email-alert-api-production/schedule",
        ),
    ],
)
def test_helm_refuses_values_the_chart_does_not_know(
    project: Path, tmp_path: Path, values: dict[str, Any], where: str
) -> None:
    """values.schema.json: Helm itself names the bad key on template, install and upgrade."""
    chart = tmp_path / "chart"
    render = ["--config", str(project), "render", "kubernetes", "--helm", str(chart)]
    assert CliRunner().invoke(cli, render).exit_code == 0
    with pytest.raises(helm.HelmValuesError, match=re.escape(where)):
        helm_render(chart, values)


def test_a_signing_key_file_is_refused_not_rendered(project: Path) -> None:
    """A job that publishes sanitised artifacts signs them; its pod can only get the key from the
    Secret (a key file beside the config would have to be in the ConfigMap, which holds no secret)."""
    text = project.read_text(encoding="utf-8")
    project.write_text(
        text.replace('signing_key_env = "DATAFERRY_SIGNING_KEY"', 'signing_key_file = "signing.key"'),
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["--config", str(project), "render", "kubernetes"])
    assert result.exit_code == 2, result.output
    assert "signing_key_env" in result.output and "BEGIN" not in result.output
    # the hint is the recipe docs/kubernetes.md gives: the variable, and the key file into the Secret
    key_file = project.parent / "signing.key"
    assert 'signing_key_env = "DATAFERRY_SIGNING_KEY"' in result.output
    assert f"--from-file=DATAFERRY_SIGNING_KEY={key_file}" in result.output
    doc = (Path(__file__).parents[2] / "docs" / "kubernetes.md").read_text(encoding="utf-8")
    assert "--from-file=DATAFERRY_SIGNING_KEY=" in doc and "### The manifest signing key" in doc
