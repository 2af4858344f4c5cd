# SPDX-License-Identifier: MIT
"""deploy/kubernetes renders with `kubectl kustomize` (offline: an empty KUBECONFIG, so kubectl
never reaches for a server) into the objects docs/kubernetes.md describes, and the scaler
configuration each overlay ships is one the scaler accepts."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

from conftest import REPO
from perper_k8s_scaler.config import PoolAgent, parse

DEPLOY = REPO / "deploy" / "kubernetes"
BASE_OBJECTS = {
    ("ServiceAccount", "perper-scaler"), ("Role", "perper-scaler"),
    ("RoleBinding", "perper-scaler"), ("Service", "perper-fabric"),
    ("Service", "perper-fabric-pods"), ("StatefulSet", "perper-fabric"),
    ("Deployment", "perper-scaler"), ("ConfigMap", "perper-scaler-config")}
EXAMPLE_OBJECTS = BASE_OBJECTS | {
    ("Namespace", "perper-examples"), ("Job", "my-first-agent"),
    ("Job", "container-usage-sample"), ("Deployment", "container-sample")}


def render(overlay: str, tmp_path) -> dict[tuple[str, str], dict]:
    kubectl = os.environ.get("PERPER_KUBECTL") or shutil.which("kubectl")
    if not kubectl:
        pytest.fail("kubectl not found (set PERPER_KUBECTL)")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("")
    result = subprocess.run([kubectl, "kustomize", str(DEPLOY / overlay)],
                            env=dict(os.environ, KUBECONFIG=str(kubeconfig)),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    objects = {}
    for document in yaml.safe_load_all(result.stdout):
        name = document["metadata"]["name"]
        if document["kind"] == "ConfigMap":  # kustomize appends a hash of the content
            name = name.rsplit("-", 1)[0]
        objects[(document["kind"], name)] = document
    return objects


def scaler_config(objects):
    config_map = objects[("ConfigMap", "perper-scaler-config")]
    scaler = objects[("Deployment", "perper-scaler")]["spec"]["template"]["spec"]
    # The Deployment mounts the generated ConfigMap under its hashed name.
    assert scaler["volumes"] == [{"name": "config", "configMap": {
        "name": config_map["metadata"]["name"]}}]
    return parse(config_map["data"]["scaler.yaml"], "scaler.yaml")


def test_base(tmp_path):
    objects = render("base", tmp_path)
    assert set(objects) == BASE_OBJECTS

    fabric = objects[("StatefulSet", "perper-fabric")]["spec"]
    container = fabric["template"]["spec"]["containers"][0]
    assert container["image"] == "perper-fabric"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {"PERPER_LISTEN": "0.0.0.0:40400", "PERPER_STORAGE": "rocksdb",
                   "PERPER_DATA_DIR": "/data"}
    assert container["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    assert [t["metadata"]["name"] for t in fabric["volumeClaimTemplates"]] == ["data"]
    assert container["readinessProbe"]["grpc"] == {"port": 40400}
    assert container["livenessProbe"]["grpc"] == {"port": 40400}
    service = objects[("Service", "perper-fabric")]["spec"]
    assert [(p["port"], p["targetPort"]) for p in service["ports"]] == [(40400, "grpc")]
    assert service["selector"] == fabric["selector"]["matchLabels"]

    assert objects[("Role", "perper-scaler")]["rules"] == [
        {"apiGroups": [""], "resources": ["pods"],
         "verbs": ["create", "delete", "list", "watch", "get"]},
        {"apiGroups": ["apps"], "resources": ["deployments", "deployments/scale"],
         "verbs": ["get", "patch", "update"]}]
    binding = objects[("RoleBinding", "perper-scaler")]
    assert binding["roleRef"]["name"] == "perper-scaler"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "perper-scaler"}]
    scaler = objects[("Deployment", "perper-scaler")]["spec"]
    assert scaler["replicas"] == 1
    assert scaler["template"]["spec"]["serviceAccountName"] == "perper-scaler"
    config = scaler_config(objects)
    assert config.agents == {} and config.fabric == "perper-fabric:40400"


def test_examples(tmp_path):
    objects = render("examples", tmp_path)
    assert set(objects) == EXAMPLE_OBJECTS
    assert {o["metadata"].get("namespace") for k, o in objects.items()
            if k[0] != "Namespace"} == {"perper-examples"}
    config = scaler_config(objects)
    assert set(config.instance_agents()) == {"StreamPrinterAgent"}
    assert config.external == {"MyFirstAgent", "container-usage-sample"}
    # Every pooled agent type's Deployment is in the overlay, and runs that agent.
    pools = config.pool_agents()
    assert set(pools) == {"container-sample"}
    for agent in pools.values():
        assert isinstance(agent, PoolAgent)
        deployment = objects[("Deployment", agent.deployment)]["spec"]["template"]["spec"]
        env = {e["name"]: e["value"] for e in deployment["containers"][0]["env"]}
        assert env == {"X_PERPER_AGENT": agent.name,
                       "PERPER_FABRIC_ENDPOINT": "perper-fabric:40400"}
    images = {o["spec"]["template"]["spec"]["containers"][0]["image"]
              for (kind, _), o in objects.items() if kind in ("StatefulSet", "Deployment", "Job")}
    assert images == {"localhost/perper-fabric:latest", "localhost/perper-k8s-scaler:latest",
                      "localhost/perper-cpp-examples:latest"}


def test_examples_with_keda(tmp_path):
    objects = render("examples-keda", tmp_path)
    assert set(objects) == EXAMPLE_OBJECTS | {("ScaledObject", "container-sample")}
    scaled = objects[("ScaledObject", "container-sample")]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"] == {"name": "container-sample"}
    assert scaled["spec"]["triggers"] == [{"type": "external", "metadata": {
        "scalerAddress": "perper-fabric:40400", "agent": "container-sample",
        "targetExecutions": "1"}}]
    # KEDA scales it, so the scaler must not.
    config = scaler_config(objects)
    assert config.pool_agents() == {}
    assert "container-sample" in config.external
