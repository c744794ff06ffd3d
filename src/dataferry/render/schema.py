"""The chart's ``values.schema.json``: Helm checks a team's values against it on ``template``,
``install`` and ``upgrade``, so a misspelt key or a value of the wrong type is an error naming it,
not a chart that renders something else. The jobs and ticks are the rendered ones only."""

from __future__ import annotations

import json
from typing import Any

from dataferry.render import serve

_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_INT = {"type": "integer", "minimum": 0}
_NUM = {"type": "number", "exclusiveMinimum": 0}
_MAP = {"type": "object"}
_STR_MAP = {"type": "object", "additionalProperties": _STR}
_LIST = {"type": "array"}


def _obj(properties: dict[str, Any], required: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        out["required"] = sorted(properties)
    return out


def _entry(kind: str) -> dict[str, Any]:
    """A job's or a tick's entry: what a team may override, and the rendered rest."""
    props: dict[str, Any] = {
        "name": _STR,
        "activeDeadlineSeconds": _INT,
        "secretEnv": {"type": "array", "items": _STR},
        "labels": _STR_MAP,
        "annotations": _STR_MAP,
        "resources": _MAP,
        "environment": _STR,
    }
    if kind == "job":
        props |= {
            "job": _STR,
            "args": {"type": "array", "items": _STR},
            "schedule": _STR,
            "timeZone": _STR,
            "suspend": _BOOL,
        }
    return _obj(props)


def values_schema(values: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of ``values`` (``values.build_values``)."""
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "dataferry chart values",
        **_obj(
            {
                "image": _obj({"repository": _STR, "tag": _STR, "pullPolicy": _STR}),
                "secretName": _STR,
                "serviceAccount": _obj({"create": _BOOL, "name": _STR, "annotations": _STR_MAP}),
                "resources": _MAP,
                "nodeSelector": _STR_MAP,
                "tolerations": _LIST,
                "extraEnv": {"type": "array", "items": {"type": "object", "required": ["name"]}},
                "podAnnotations": _STR_MAP,
                "spool": _obj({"sizeLimit": _STR, "existingClaim": _STR}),
                "startingDeadlineSeconds": _INT,
                "successfulJobsHistoryLimit": _INT,
                "failedJobsHistoryLimit": _INT,
                "suspendAll": _BOOL,
                "scheduler": _obj({"schedule": _STR}),
                "prometheusRule": _obj(
                    {
                        "enabled": _BOOL,
                        "labels": _STR_MAP,
                        "stepRunningHours": _NUM,
                        "liveMaxAgeHours": _NUM,
                        "artifactMaxAgeHours": _NUM,
                        "heldForHours": _NUM,
                        "environments": _MAP,
                    }
                ),
                "configFiles": _STR_MAP,
                "jobs": _obj({name: _entry("job") for name in values["jobs"]}),
                "schedulers": _obj({name: _entry("tick") for name in values["schedulers"]}),
                "serve": serve.schema(),
            }
        ),
    }


def schema_text(values: dict[str, Any]) -> str:
    """``values.schema.json``'s text."""
    return json.dumps(values_schema(values), indent=2, sort_keys=False) + "\n"
