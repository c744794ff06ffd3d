"""docs/kubernetes.md's Deployment and Service of ``dataferry serve`` are valid Kubernetes objects
(the same schemas the rendered manifests are checked against) and run the command as documented."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

DOC = Path(__file__).resolve().parents[2] / "docs" / "kubernetes.md"
VERSIONS = ("1.29.0", "1.37.0")


def _objects() -> list[dict[str, object]]:
    section = DOC.read_text(encoding="utf-8").split("## The status page", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```yaml\n(.+?)\n```", section, flags=re.S)
    assert block, "docs/kubernetes.md: the status page section has no yaml block"
    return [d for d in yaml.safe_load_all(block.group(1)) if d]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_documented_objects_validate(version: str) -> None:
    objects = _objects()
    assert [o["kind"] for o in objects] == ["Deployment", "Service"]
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_deployment_runs_serve_with_its_probes() -> None:
    deployment = _objects()[0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
    assert container["args"][:2] == ["serve", "--bind"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
