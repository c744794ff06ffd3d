"""The status page in the Kubernetes rendering: off by default; with ``serve.enabled`` the Helm
chart (rendered by Helm's own engine) and ``render kubernetes -o -f`` give the same valid
Deployment and Service, with only the stores' credentials and, when named, the write token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from click.testing import CliRunner

from dataferry.cli import cli
from dataferry.config import load
from dataferry.render import manifests, render_kubernetes

from .test_render_kubernetes import TEAM_VALUES, by_id, deep_merge, helm_render, project, validate

__all__ = ["project"]  # the fixture, shared with test_render_kubernetes

SERVE: dict[str, Any] = {"serve": {"enabled": True, "tokenSecret": "ferry-serve", "port": 9000}}


def test_the_status_page_is_not_rendered_unless_enabled(project: Path) -> None:
    rendering = render_kubernetes(load(project))
    assert rendering.values["serve"]["enabled"] is False
    assert not [o for o in rendering.objects if o["kind"] in ("Deployment", "Service")]


@pytest.mark.parametrize("team", [False, True], ids=["serve-only", "with-team-values"])
def test_the_chart_and_the_manifests_give_the_same_status_page(
    project: Path, tmp_path: Path, team: bool
) -> None:
    chart = tmp_path / "chart"
    result = CliRunner().invoke(cli, ["--config", str(project), "render", "kubernetes", "--helm", str(chart)])
    assert result.exit_code == 0, result.output
    assert not helm.lint(str(chart))["errors"]
    override = deep_merge(TEAM_VALUES, SERVE) if team else SERVE
    from_helm = helm_render(chart, override)
    values = deep_merge(yaml.safe_load((chart / "values.yaml").read_text()), override)
    assert by_id(from_helm) == by_id(manifests.build(values, render_kubernetes(load(project)).files))
    validate(from_helm)

    objects = by_id(from_helm)
    deployment = objects[("Deployment", "dataferry-serve")]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"] == ["serve", "--bind", "0.0.0.0:9000"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    secrets = {e["name"] for e in container["env"] if "valueFrom" in e}
    # The stores' credentials and the token; no database password, no sanitisation salt.
    expected = {"PROD_S3_KEY_ID", "PROD_S3_SECRET", "DATAFERRY_SERVE_TOKEN"}
    assert secrets == (expected | {"HOOK_TOKEN"} if team else expected)
    token = next(e for e in container["env"] if e["name"] == "DATAFERRY_SERVE_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "ferry-serve", "key": "token"}
    assert pod["restartPolicy"] == "Always"
    service = objects[("Service", "dataferry-serve")]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_the_plain_manifests_take_serve_from_a_values_file(project: Path, tmp_path: Path) -> None:
    values = tmp_path / "serve.yaml"
    values.write_text(yaml.safe_dump({"serve": {"enabled": True}}))
    out = tmp_path / "plain"
    result = CliRunner().invoke(
        cli, ["--config", str(project), "render", "kubernetes", "-o", str(out), "-f", str(values)]
    )
    assert result.exit_code == 0, result.output
    plain = by_id([yaml.safe_load(p.read_text()) for p in out.glob("*.yaml")])
    container = plain[("Deployment", "dataferry-serve")]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["serve", "--bind", "0.0.0.0:8080"]
    assert "DATAFERRY_SERVE_TOKEN" not in {e["name"] for e in container["env"]}  # read-only by default
    validate(list(plain.values()))


def test_helm_refuses_an_unknown_serve_value(project: Path, tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    assert (
        CliRunner()
        .invoke(cli, ["--config", str(project), "render", "kubernetes", "--helm", str(chart)])
        .exit_code
        == 0
    )
    with pytest.raises(helm.HelmValuesError, match="tokenn"):
        helm_render(chart, {"serve": {"tokenn": "x"}})
