"""The optional PrometheusRule (prometheus-operator's CRD): the alerts of ``docs/runbook.md`` on the
metrics dataferry pushes (a pod is gone before Prometheus could scrape it, so set
``settings.pushgateway_url``): a step failed, a step taking long, data or backups too old, a job
held too long."""

from __future__ import annotations

from typing import Any

#: Metric names the rules use (``tests`` check that ``dataferry.metrics`` exports each).
METRICS = (
    "db_backup_job_state",
    "db_backup_job_status_timestamp_seconds",
    "dataferry_data_timestamp_seconds",
    "dataferry_job_held",
)


def rules(settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The alerting rules, from ``values.prometheusRule``."""
    out: list[dict[str, Any]] = [
        _rule("DataferryStepFailed", "db_backup_job_state == 0", "a dataferry step failed", "5m"),
        _rule(
            "DataferryStepTakingLong",
            'db_backup_job_state == 1 and time() - db_backup_job_status_timestamp_seconds{state="started"}'
            f" > {settings['stepRunningHours']}*3600",
            "a dataferry step has been running for long",
        ),
    ]
    for env in settings["environments"]["live"]:
        out.append(
            _rule(
                "DataferryDataTooOld",
                f'time() - dataferry_data_timestamp_seconds{{environment="{env}",kind="live"}}'
                f" > {settings['liveMaxAgeHours']}*3600",
                f"the data live in {env} is older than {settings['liveMaxAgeHours']}h",
            )
        )
    for env in settings["environments"]["artifact"]:
        out.append(
            _rule(
                "DataferryBackupTooOld",
                f'time() - dataferry_data_timestamp_seconds{{environment="{env}",kind="artifact"}}'
                f" > {settings['artifactMaxAgeHours']}*3600",
                f"the newest backup in {env}'s store is older than {settings['artifactMaxAgeHours']}h",
            )
        )
    out.append(
        _rule(
            "DataferryHeldTooLong",
            "dataferry_job_held == 1",
            f"a dataferry job has been held for {settings['heldForHours']}h",
            f"{settings['heldForHours']}h",
        )
    )
    return out


def _rule(name: str, expr: str, summary: str, for_: str = "0m") -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": "warning"},
        "annotations": {"summary": summary, "runbook": "docs/runbook.md"},
    }


def prometheus_rule(values: dict[str, Any], name: str, labels: dict[str, str]) -> dict[str, Any]:
    """The PrometheusRule object."""
    settings = values["prometheusRule"]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": name, "labels": labels | dict(settings["labels"])},
        "spec": {"groups": [{"name": "dataferry", "rules": rules(settings)}]},
    }
