"""The Kubernetes objects, built from the values (``values.build_values``): the ServiceAccount, the
ConfigMap, one CronJob per job, one scheduler tick per environment with ``after`` jobs, and the
optional PrometheusRule.

This is the reference for the Helm chart's templates (``chart.TEMPLATES``): rendered with the same
values, Helm must produce these very objects, which the tests check with Helm's own engine.
"""

from __future__ import annotations

from typing import Any

from dataferry.private import SIZE_LIMIT_ENV
from dataferry.render.alerts import prometheus_rule
from dataferry.render.values import CONFIG_DIR, CONFIG_FILE, SPOOL_DIR, UID

Manifest = dict[str, Any]
RELEASE = "dataferry"


def common_labels(release: str = RELEASE) -> dict[str, str]:
    """Labels on every object."""
    return {"app.kubernetes.io/name": "dataferry", "app.kubernetes.io/instance": release}


def build(values: dict[str, Any], files: dict[str, str], release: str = RELEASE) -> list[Manifest]:
    """Every object, in a stable order; ``files`` is the ConfigMap's text by key."""
    out: list[Manifest] = []
    if values["serviceAccount"]["create"]:
        out.append(service_account(values, release))
    out.append(config_map(values, release, files))
    for job in values["jobs"].values():
        out.append(cron_job(values, release, job, job["args"], job["schedule"], job["suspend"]))
    for tick in values["schedulers"].values():
        args = ["scheduler", "--once", "--only-after", "--env", tick["environment"]]
        out.append(cron_job(values, release, tick, args, values["scheduler"]["schedule"], False))
    if values["prometheusRule"]["enabled"]:
        out.append(prometheus_rule(values, release, common_labels(release)))
    return out + serve_objects(values, release)


def service_account(values: dict[str, Any], release: str) -> Manifest:
    """The pods' service account; its annotations carry IRSA's role (no keys needed then)."""
    sa = values["serviceAccount"]
    meta: dict[str, Any] = {"name": sa["name"], "labels": common_labels(release)}
    if sa["annotations"]:
        meta["annotations"] = dict(sa["annotations"])
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}


def config_map_name(release: str) -> str:
    """The ConfigMap of the config file, the sanitisation profiles and their scripts."""
    return f"{release}-config"


def config_map(values: dict[str, Any], release: str, files: dict[str, str]) -> Manifest:
    """The ConfigMap: ``files`` is the text of each of ``values["configFiles"]`` by key
    (``values.read_files``); the chart reads them from its ``files/`` directory instead."""
    data = {key: files[key] for key in values["configFiles"]}
    labels = common_labels(release) | {"app.kubernetes.io/component": "config"}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": config_map_name(release), "labels": labels},
        "data": dict(sorted(data.items())),
    }


def _env(values: dict[str, Any], entry: dict[str, Any]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "DATAFERRY_CONFIG", "value": f"{CONFIG_DIR}/{CONFIG_FILE}"},
        {"name": "TMPDIR", "value": SPOOL_DIR},
        {"name": "HOME", "value": SPOOL_DIR},
    ]
    if not values["spool"]["existingClaim"]:  # what a restore may spool: the emptyDir's limit
        env.append({"name": SIZE_LIMIT_ENV, "value": values["spool"]["sizeLimit"]})
    for name in entry["secretEnv"]:
        ref = {"name": values["secretName"], "key": name}
        env.append({"name": name, "valueFrom": {"secretKeyRef": ref}})
    return env + list(values["extraEnv"])


def _volumes(values: dict[str, Any], release: str) -> list[dict[str, Any]]:
    items = [{"key": key, "path": path} for key, path in sorted(values["configFiles"].items())]
    spool: dict[str, Any]
    if values["spool"]["existingClaim"]:
        spool = {"name": "spool", "persistentVolumeClaim": {"claimName": values["spool"]["existingClaim"]}}
    else:
        spool = {"name": "spool", "emptyDir": {"sizeLimit": values["spool"]["sizeLimit"]}}
    return [{"name": "config", "configMap": {"name": config_map_name(release), "items": items}}, spool]


def pod_spec(values: dict[str, Any], release: str, entry: dict[str, Any], args: list[str]) -> dict[str, Any]:
    """The pod: non-root, read-only root filesystem, the config read-only, the spool writable."""
    container = {
        "name": "dataferry",
        "image": f"{values['image']['repository']}:{values['image']['tag']}",
        "imagePullPolicy": values["image"]["pullPolicy"],
        "args": args,
        "env": _env(values, entry),
        "resources": entry.get("resources") or values["resources"],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "spool", "mountPath": SPOOL_DIR},
        ],
    }
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": values["serviceAccount"]["name"],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": _volumes(values, release),
    }
    if values["nodeSelector"]:
        spec["nodeSelector"] = dict(values["nodeSelector"])
    if values["tolerations"]:
        spec["tolerations"] = list(values["tolerations"])
    return spec


def cron_job(
    values: dict[str, Any],
    release: str,
    entry: dict[str, Any],
    args: list[str],
    schedule: str,
    suspend: bool,
) -> Manifest:
    """A CronJob that runs ``dataferry ARGS`` once per fire; never two at once (Forbid), no
    Kubernetes retries (``backoffLimit: 0``: the job's own ``retries`` decide), a node drain
    does not count as a failure (the run is interrupted, its trigger stays due)."""
    labels = common_labels(release) | entry["labels"]
    pod_annotations = (
        {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
        | entry["annotations"]
        | values["podAnnotations"]
    )
    job_spec = {
        "backoffLimit": 0,
        "activeDeadlineSeconds": entry["activeDeadlineSeconds"],
        "podFailurePolicy": {
            "rules": [
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
            ]
        },
        "template": {
            "metadata": {"labels": labels, "annotations": pod_annotations},
            "spec": pod_spec(values, release, entry, args),
        },
    }
    spec: dict[str, Any] = {
        "schedule": schedule,
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": values["startingDeadlineSeconds"],
        "successfulJobsHistoryLimit": values["successfulJobsHistoryLimit"],
        "failedJobsHistoryLimit": values["failedJobsHistoryLimit"],
        "suspend": bool(suspend or values["suspendAll"]),
        "jobTemplate": {
            "metadata": {"labels": labels, "annotations": entry["annotations"]},
            "spec": job_spec,
        },
    }
    if "timeZone" in entry:
        spec["timeZone"] = entry["timeZone"]
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": entry["name"], "labels": labels, "annotations": entry["annotations"]},
        "spec": spec,
    }


def serve_objects(values: dict[str, Any], release: str) -> list[Manifest]:
    """The status page's Deployment and Service when ``serve.enabled`` (``render/serve.py``): the
    jobs' pod with ``dataferry serve`` as its command, a port, probes on ``/healthz``, and the write
    token from its own Secret only when ``serve.tokenSecret`` names one."""
    s = values["serve"]
    if not s["enabled"]:
        return []
    labels = common_labels(release) | {"app.kubernetes.io/component": "serve"}
    entry = {"secretEnv": s["secretEnv"], "resources": s["resources"]}
    pod = pod_spec(values, release, entry, ["serve", "--bind", f"0.0.0.0:{s['port']}"])
    pod["restartPolicy"] = "Always"
    container = pod["containers"][0]
    if s["tokenSecret"]:
        ref = {"name": s["tokenSecret"], "key": s["tokenSecretKey"]}
        container["env"].append({"name": "DATAFERRY_SERVE_TOKEN", "valueFrom": {"secretKeyRef": ref}})
    container["ports"] = [{"name": "http", "containerPort": s["port"]}]
    probe = {"httpGet": {"path": "/healthz", "port": "http"}}
    container["readinessProbe"] = probe
    container["livenessProbe"] = probe | {"periodSeconds": 30}
    name = f"{release}-serve"
    template = {"metadata": {"labels": labels, "annotations": dict(values["podAnnotations"])}, "spec": pod}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": template},
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }
    return [deployment, service]
