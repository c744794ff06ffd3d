"""Render the configuration for a platform: ``dataferry render kubernetes`` (docs/kubernetes.md).

``values`` turns a ``Config`` into the values of the rendering (one entry per job and per
environment's scheduler tick, the ConfigMap's files, the defaults); ``manifests`` builds the
objects from them (plain manifests), ``chart`` writes the Helm chart whose templates give the same
objects, ``alerts`` the optional PrometheusRule. Secrets are only ever named, never read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dataferry.config import Config
from dataferry.errors import ConfigError
from dataferry.render import chart, manifests, overrides
from dataferry.render.values import RenderOptions, build_values, notes, read_files

__all__ = ["RenderOptions", "Rendering", "dump_all", "render_kubernetes", "write_tree"]

#: A directory written by ``render`` lists its files here, so a re-render replaces exactly them.
MARKER = ".dataferry-render"


@dataclass
class Rendering:
    """What ``render kubernetes`` produced: the values, the ConfigMap's files, the objects."""

    values: dict[str, Any]
    files: dict[str, str]
    objects: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    def manifest_files(self) -> dict[str, str]:
        """One YAML file per object, named ``<kind>-<name>.yaml``."""
        return {f"{o['kind'].lower()}-{o['metadata']['name']}.yaml": dump_all([o]) for o in self.objects}

    def chart_files(self) -> dict[str, str]:
        """The Helm chart's files."""
        return chart.chart_files(self.values, self.files)

    def secret_keys(self) -> list[str]:
        """The keys the Secret named ``secretName`` must hold (the variables' names)."""
        entries = [*self.values["jobs"].values(), *self.values["schedulers"].values()]
        return sorted({name for e in entries for name in e["secretEnv"]})


def render_kubernetes(cfg: Config, options: RenderOptions | None = None) -> Rendering:
    """The Kubernetes objects (and chart) for ``cfg``; a job-less selection is a ``ConfigError``."""
    options = options or RenderOptions()
    values = build_values(cfg, options)
    if not values["jobs"]:
        where = f" of environment {options.environment}" if options.environment else ""
        raise ConfigError(
            f"there are no jobs{where} to render", hint="add [jobs.NAME] sections to the config"
        )
    if options.values_file is not None:
        values = overrides.merge(values, overrides.load(options.values_file, values))
    files = read_files(cfg, values["configFiles"])
    try:
        objects = manifests.build(values, files)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"values file {options.values_file}: a value has the wrong shape ({type(exc).__name__}: {exc})",
            hint="compare it with the chart's values.yaml ('dataferry render kubernetes --helm DIR')",
        ) from None
    return Rendering(values, files, objects, notes(cfg, options))


class _Dumper(yaml.SafeDumper):
    """Multi-line text (the config file, profiles, scripts) as readable ``|`` blocks; no anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        """Shared label maps are written out each time, as people read and write manifests."""
        return True


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def dump_all(objects: list[dict[str, Any]]) -> str:
    """A YAML stream of ``objects``, each starting with ``---``."""
    return "".join("---\n" + yaml.dump(o, Dumper=_Dumper, sort_keys=False, width=1000) for o in objects)


def write_tree(directory: Path, files: dict[str, str]) -> None:
    """Write ``files`` under ``directory``: refused if it holds files ``render`` did not write;
    the files of a previous render are replaced (one that is no longer rendered is removed)."""
    marker = directory / MARKER
    if directory.exists() and any(directory.iterdir()) and not marker.exists():
        raise ConfigError(
            f"{directory} is not empty and was not written by 'dataferry render'",
            hint="choose a new or empty directory (a directory render wrote is replaced on the next render)",
        )
    if marker.exists():
        root = directory.resolve()
        for rel in marker.read_text(encoding="utf-8").splitlines():
            old = (directory / rel).resolve()
            if old.is_relative_to(root) and old != root:  # never outside, whatever the marker says
                old.unlink(missing_ok=True)
    for rel, text in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    marker.write_text("".join(f"{rel}\n" for rel in sorted(files)), encoding="utf-8")
