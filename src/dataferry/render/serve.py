"""The status page (``dataferry serve``) on Kubernetes: an opt-in Deployment and Service beside the
CronJobs (``serve.enabled`` in the values), with the same image, ConfigMap, service account and
Secret, but only the stores' credentials (it reads the stores; it never connects to a database).

``serve_values`` is the ``serve`` entry of the values, ``SCHEMA`` its part of values.schema.json,
``TEMPLATE`` the chart's ``templates/serve.yaml``; ``manifests.serve_objects`` builds the same
objects in Python (the tests render both and compare).
"""

from __future__ import annotations

from typing import Any

from dataferry.config import Config

PORT = 8080


def serve_values(cfg: Config) -> dict[str, Any]:
    """Off by default; ``secretEnv`` is the variables of every store's credentials (names only)."""
    names: set[str] = set()
    for env in cfg.environments.values():
        names.update(n for n in (env.store.access_key_id_env, env.store.secret_access_key_env) if n)
    return {
        "enabled": False,
        "port": PORT,
        "tokenSecret": "",
        "tokenSecretKey": "token",
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "secretEnv": sorted(names),
    }


def schema() -> dict[str, Any]:
    """The ``serve`` entry of values.schema.json."""
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "enabled": {"type": "boolean"},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "tokenSecret": {"type": "string"},
            "tokenSecretKey": {"type": "string"},
            "resources": {"type": "object"},
            "secretEnv": {"type": "array", "items": {"type": "string"}},
        },
    }


TEMPLATE = """\
{{- if .Values.serve.enabled }}
{{- $v := .Values }}
{{- $s := .Values.serve }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ printf "%s-serve" .Release.Name | quote }}
  labels:
    {{- include "dataferry.labels" . | nindent 4 }}
    app.kubernetes.io/component: serve
spec:
  replicas: 1
  selector:
    matchLabels:
      {{- include "dataferry.labels" . | nindent 6 }}
      app.kubernetes.io/component: serve
  template:
    metadata:
      labels:
        {{- include "dataferry.labels" . | nindent 8 }}
        app.kubernetes.io/component: serve
      annotations:
        {{- toYaml $v.podAnnotations | nindent 8 }}
    spec:
      restartPolicy: Always
      {{- include "dataferry.podPlacement" $v | nindent 6 }}
      containers:
        - name: dataferry
          image: {{ printf "%s:%s" $v.image.repository $v.image.tag | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy | quote }}
          args:
            - serve
            - --bind
            - {{ printf "0.0.0.0:%v" $s.port | quote }}
          ports:
            - name: http
              containerPort: {{ int $s.port }}
          env:
            {{- include "dataferry.env" (dict "v" $v "secretEnv" $s.secretEnv) | nindent 12 }}
            {{- if $s.tokenSecret }}
            - name: DATAFERRY_SERVE_TOKEN
              valueFrom:
                secretKeyRef:
                  name: {{ $s.tokenSecret | quote }}
                  key: {{ $s.tokenSecretKey | quote }}
            {{- end }}
          resources:
            {{- toYaml (default $v.resources $s.resources) | nindent 12 }}
          readinessProbe:
            httpGet:
              path: /healthz
              port: http
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 30
          {{- include "dataferry.containerFs" . | nindent 10 }}
      volumes:
        {{- include "dataferry.volumes" (dict "v" $v "release" .Release.Name) | nindent 8 }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ printf "%s-serve" .Release.Name | quote }}
  labels:
    {{- include "dataferry.labels" . | nindent 4 }}
    app.kubernetes.io/component: serve
spec:
  selector:
    {{- include "dataferry.labels" . | nindent 4 }}
    app.kubernetes.io/component: serve
  ports:
    - name: http
      port: 80
      targetPort: http
{{- end }}
"""
