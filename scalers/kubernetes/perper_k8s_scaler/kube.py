# SPDX-License-Identifier: MIT
"""What the scaler asks of Kubernetes, on the official Python client: pods of instances
(list, create, delete) and the scale of pooled agents' Deployments (read, patch).

Thread safety: a Kube may be used from several threads (the client's connection pool is
thread-safe); its calls block, so the scaler runs them with asyncio.to_thread.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Optional

from kubernetes import client, config as kube_config

from perper_k8s_scaler.config import InstanceAgent

AGENT_LABEL = "perper.io/agent"
INSTANCE_LABEL = "perper.io/instance"
# The real instance ID (a label value cannot hold every ID; an annotation can).
INSTANCE_ANNOTATION = "perper.io/instance-id"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "perper-k8s-scaler"
POD_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY},{AGENT_LABEL},{INSTANCE_LABEL}"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# Every request gives up after this many seconds (connect, read), so a hung API server
# cannot hold the scaler, or its shutdown, forever.
REQUEST_TIMEOUT = (5, 20)


def instance_hash(instance: str) -> str:
    """The instance label: the hex SHA-1 of the instance ID (40 characters, within a label
    value's 63, so it is not truncated)."""
    return hashlib.sha1(instance.encode()).hexdigest()


def pod_name(agent: str, instance: str) -> str:
    """The pod of an instance: `<agent, lowercased, DNS-safe, at most 22 characters>-<hash>`,
    63 characters at most (a pod's name is its hostname). The same every time, so a repeated
    create is refused (AlreadyExists) rather than made twice."""
    prefix = re.sub(r"[^a-z0-9-]+", "-", agent.lower()).strip("-")[:22].strip("-") or "agent"
    return f"{prefix}-{instance_hash(instance)}"


def pod_manifest(template: InstanceAgent, instance: str, fabric_endpoint: str) -> dict[str, Any]:
    """The Pod the scaler creates for `instance` of the agent type `template` describes."""
    env = [{"name": "X_PERPER_AGENT", "value": template.name},
           {"name": "X_PERPER_INSTANCE", "value": instance},
           {"name": "PERPER_FABRIC_ENDPOINT", "value": fabric_endpoint}]
    env += [{"name": k, "value": v} for k, v in sorted(template.env.items())]
    container: dict[str, Any] = {"name": "agent", "image": template.image, "env": env}
    if template.command:
        container["command"] = template.command
    if template.args:
        container["args"] = template.args
    if template.resources:
        container["resources"] = template.resources
    if template.image_pull_policy:
        container["imagePullPolicy"] = template.image_pull_policy
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(template.name, instance),
            "labels": {AGENT_LABEL: template.name, INSTANCE_LABEL: instance_hash(instance),
                       MANAGED_BY_LABEL: MANAGED_BY},
            "annotations": {INSTANCE_ANNOTATION: instance},
        },
        "spec": {"restartPolicy": template.restart_policy, "containers": [container]},
    }


def load_client_configuration(kubeconfig: Optional[str]) -> None:
    """Configures the client: `kubeconfig` (or KUBECONFIG) when given, else the pod's
    service account when running in a cluster, else ~/.kube/config."""
    explicit = kubeconfig or os.environ.get("KUBECONFIG")
    if not explicit and os.environ.get("KUBERNETES_SERVICE_HOST"):
        kube_config.load_incluster_config()
    else:
        kube_config.load_kube_config(config_file=explicit)


def default_namespace(kubeconfig: Optional[str]) -> str:
    """The pod's own namespace in a cluster, else the kubeconfig context's, else default."""
    if SERVICE_ACCOUNT_NAMESPACE.exists():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    try:
        _, context = kube_config.list_kube_config_contexts(config_file=kubeconfig)
        return context.get("context", {}).get("namespace") or "default"
    except Exception:  # no kubeconfig: in a cluster without the file, or a bare machine
        return "default"


class Kube:
    """The calls the scaler makes, in one namespace."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.core = client.CoreV1Api()
        self.apps = client.AppsV1Api()

    def list_pods(self) -> list[client.V1Pod]:
        """Every pod this scaler manages in the namespace."""
        return self.core.list_namespaced_pod(
            self.namespace, label_selector=POD_SELECTOR,
            _request_timeout=REQUEST_TIMEOUT).items

    def create_pod(self, body: dict[str, Any]) -> bool:
        """Creates the pod; False when a pod of that name exists already."""
        return _unless_status(409, self.core.create_namespaced_pod, self.namespace, body)

    def delete_pod(self, name: str) -> bool:
        """Deletes the pod; False when it was gone already."""
        return _unless_status(404, self.core.delete_namespaced_pod, name, self.namespace)

    def read_replicas(self, deployment: str) -> int:
        scale = self.apps.read_namespaced_deployment_scale(
            deployment, self.namespace, _request_timeout=REQUEST_TIMEOUT)
        return scale.spec.replicas or 0

    def set_replicas(self, deployment: str, replicas: int) -> None:
        self.apps.patch_namespaced_deployment_scale(
            deployment, self.namespace, {"spec": {"replicas": replicas}},
            _request_timeout=REQUEST_TIMEOUT)


def _unless_status(status: int, method: Any, *args: Any) -> bool:
    """Calls `method`; True when it succeeded, False when the API server answered `status`."""
    try:
        method(*args, _request_timeout=REQUEST_TIMEOUT)
        return True
    except client.ApiException as e:
        if e.status == status:
            return False
        raise


def describe(error: BaseException) -> str:
    """A short text for a failed API call: the HTTP status and the API server's message."""
    if isinstance(error, client.ApiException):
        message = error.reason
        try:
            message = json.loads(error.body).get("message") or message
        except (TypeError, ValueError, AttributeError):
            pass
        return f"HTTP {error.status}: {message}"
    return f"{type(error).__name__}: {error}"
