"""A team's values file (``render kubernetes -f FILE``), merged over the generated values as Helm
merges a ``-f`` file over a chart's: maps merge key by key, anything else replaces. So the plain
manifests get the same knobs as the chart (image, resources, node selector, tolerations, ...)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from dataferry.errors import ConfigError


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base`` (neither is changed)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load(path: Path, values: dict[str, Any]) -> dict[str, Any]:
    """The values file at ``path``, checked against the generated ``values``: a mapping, known
    top-level keys, known jobs, and a map where the generated value is a map."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read values file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a values file is a mapping (key: value), like the chart's values.yaml")
    problems = [f"unknown key {key!r}" for key in data if key not in values]
    problems += [
        f"{key}: must be a mapping, like the generated one"
        for key, value in data.items()
        if key in values and isinstance(values[key], dict) and not isinstance(value, dict)
    ]
    for section in ("jobs", "schedulers"):
        entries = data.get(section)
        if isinstance(entries, dict):
            problems += [
                f"{section}: no {name!r} rendered" for name in entries if name not in values[section]
            ]
    if problems:
        raise ConfigError(
            f"{path}: {'; '.join(problems)}",
            hint="the keys are those of the chart's values.yaml ('dataferry render kubernetes --helm DIR' writes it)",
        )
    return data
