# SPDX-License-Identifier: MIT
"""A stand-in Kubernetes API server for the scaler's tests (no real one can run on the test
machines): plain HTTP serving only the endpoints the scaler uses, with the real object shapes
(Pod, PodList, Scale, Status) and the real answers (201 on create, 409 AlreadyExists, 404
NotFound, 401 without the bearer token, label selectors on lists).

    GET    /api/v1/namespaces/{ns}/pods?labelSelector=...
    POST   /api/v1/namespaces/{ns}/pods
    DELETE /api/v1/namespaces/{ns}/pods/{name}
    GET    /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale
    PATCH  /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale   (merge patches)

Objects live in memory. Thread safety: requests are served on their own threads; every access
to the objects holds `condition`, which is notified on each request, so a test waits on a
condition with `wait_for` instead of sleeping.
"""

from __future__ import annotations

import copy
import datetime
import http.server
import json
import re
import threading
import uuid
from typing import Any, Callable
from urllib.parse import parse_qs, urlparse

TOKEN = "perper-test-token"
_PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?$")
_SCALE = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments/([^/]+)/scale$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "details": details, "code": code}


def _matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality (`k=v`, `k==v`, `k!=v`) and existence (`k`, `!k`) requirements, ANDed."""
    for requirement in filter(None, (r.strip() for r in selector.split(","))):
        if "!=" in requirement:
            key, value = requirement.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in requirement:
            key, value = re.split("==?", requirement, maxsplit=1)
            if labels.get(key) != value:
                return False
        elif requirement.startswith("!"):
            if requirement[1:] in labels:
                return False
        elif requirement not in labels:
            return False
    return True


class FakeApiServer:
    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.deployments: dict[tuple[str, str], dict[str, Any]] = {}
        # (method, path) of every request, in order.
        self.requests: list[tuple[str, str]] = []
        # (namespace, deployment, replicas) of every accepted scale patch, in order.
        self.scale_patches: list[tuple[str, str, int]] = []
        self._version = 1
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server._serve(self, "GET")

            def do_POST(self) -> None:
                server._serve(self, "POST")

            def do_DELETE(self) -> None:
                server._serve(self, "DELETE")

            def do_PATCH(self) -> None:
                server._serve(self, "PATCH")

            def log_message(self, *args: Any) -> None:
                pass

        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()

    def kubeconfig(self, namespace: str) -> str:
        """A kubeconfig (YAML) pointing at this server with its token, in `namespace`."""
        return (f"apiVersion: v1\nkind: Config\n"
                f"clusters: [{{name: stand-in, cluster: {{server: '{self.url}'}}}}]\n"
                f"users: [{{name: stand-in, user: {{token: {TOKEN}}}}}]\n"
                f"contexts: [{{name: stand-in, context: {{cluster: stand-in, user: stand-in, "
                f"namespace: {namespace}}}}}]\n"
                f"current-context: stand-in\n")

    # Test-side access.

    def add_pod(self, namespace: str, pod: dict[str, Any]) -> None:
        with self.condition:
            self._store_pod(namespace, copy.deepcopy(pod))

    def add_deployment(self, namespace: str, name: str, replicas: int) -> None:
        with self.condition:
            self.deployments[(namespace, name)] = {
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()),
                             "resourceVersion": self._next_version(),
                             "creationTimestamp": _now()},
                "spec": {"replicas": replicas,
                         "selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}},
                                      "spec": {"containers": [{"name": "agent",
                                                               "image": "agent"}]}}},
                "status": {"replicas": replicas}}

    def pods_in(self, namespace: str) -> dict[str, dict[str, Any]]:
        with self.condition:
            return {name: copy.deepcopy(pod) for (ns, name), pod in self.pods.items()
                    if ns == namespace}

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
        """Waits until `predicate()` (called with the lock held) is true; returns its value."""
        with self.condition:
            result = self.condition.wait_for(predicate, timeout)
            if not result:
                raise TimeoutError(f"stand-in API server: condition not met in {timeout}s; "
                                   f"requests: {self.requests[-10:]}; pods: {sorted(self.pods)}")
            return result

    # Serving.

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def _store_pod(self, namespace: str, pod: dict[str, Any]) -> dict[str, Any]:
        metadata = pod.setdefault("metadata", {})
        metadata.update(namespace=namespace, uid=str(uuid.uuid4()),
                        resourceVersion=self._next_version(), creationTimestamp=_now())
        pod.update(apiVersion="v1", kind="Pod")
        pod.setdefault("status", {"phase": "Pending"})
        self.pods[(namespace, metadata["name"])] = pod
        return pod

    def _serve(self, request: http.server.BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        with self.condition:
            self.requests.append((method, url.path))
            if request.headers.get("Authorization") != f"Bearer {TOKEN}":
                code, answer = 401, _status(401, "Unauthorized", "Unauthorized")
            else:
                code, answer = self._answer(method, url.path, parse_qs(url.query),
                                            request.headers.get("Content-Type", ""), body)
            self.condition.notify_all()
        data = json.dumps(answer).encode()
        request.send_response(code)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def _answer(self, method: str, path: str, query: dict[str, list[str]], content_type: str,
                body: bytes) -> tuple[int, dict[str, Any]]:
        if match := _PODS.match(path):
            namespace, name = match.groups()
            if method == "GET" and name is None:
                selector = query.get("labelSelector", [""])[0]
                items = [copy.deepcopy(pod) for (ns, _), pod in sorted(self.pods.items())
                         if ns == namespace and _matches(selector,
                                                         pod["metadata"].get("labels", {}))]
                for item in items:  # list items carry no kind of their own
                    item.pop("kind", None)
                    item.pop("apiVersion", None)
                return 200, {"kind": "PodList", "apiVersion": "v1",
                             "metadata": {"resourceVersion": str(self._version)},
                             "items": items}
            if method == "POST" and name is None:
                return self._create_pod(namespace, json.loads(body))
            if method == "DELETE" and name is not None:
                pod = self.pods.pop((namespace, name), None)
                if pod is None:
                    return 404, _status(404, "NotFound", f'pods "{name}" not found',
                                        name=name, kind="pods")
                return 200, pod
        if match := _SCALE.match(path):
            namespace, name = match.groups()
            deployment = self.deployments.get((namespace, name))
            if deployment is None:
                return 404, _status(404, "NotFound",
                                    f'deployments.apps "{name}" not found', name=name,
                                    group="apps", kind="deployments")
            if method == "PATCH":
                if content_type not in ("application/merge-patch+json",
                                        "application/strategic-merge-patch+json"):
                    return 415, _status(415, "UnsupportedMediaType",
                                        f"the body of the request was in an unknown format "
                                        f"- accepted media types include merge patches, "
                                        f"got {content_type}")
                patch = json.loads(body)
                replicas = patch.get("spec", {}).get("replicas")
                if not isinstance(replicas, int) or replicas < 0:
                    return 422, _status(422, "Invalid", f"invalid replicas {replicas!r}")
                deployment["spec"]["replicas"] = replicas
                deployment["metadata"]["resourceVersion"] = self._next_version()
                self.scale_patches.append((namespace, name, replicas))
            if method in ("GET", "PATCH"):
                return 200, self._scale(deployment)
        return 404, _status(404, "NotFound", f"the server could not find the requested "
                                             f"resource ({method} {path})")

    def _create_pod(self, namespace: str, pod: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        metadata = pod.get("metadata") or {}
        name = metadata.get("name")
        containers = (pod.get("spec") or {}).get("containers") or []
        problems = []
        if not name:
            problems.append("metadata.name: Required value")
        for key, value in (metadata.get("labels") or {}).items():
            if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
                problems.append(f"metadata.labels: Invalid value: {value!r}")
        if not containers or any(not c.get("name") or not c.get("image") for c in containers):
            problems.append("spec.containers: Required value")
        if problems:
            return 422, _status(422, "Invalid", f'Pod "{name}" is invalid: '
                                + ", ".join(problems), name=name, kind="Pod")
        if (namespace, name) in self.pods:
            return 409, _status(409, "AlreadyExists", f'pods "{name}" already exists',
                                name=name, kind="pods")
        return 201, copy.deepcopy(self._store_pod(namespace, pod))

    @staticmethod
    def _scale(deployment: dict[str, Any]) -> dict[str, Any]:
        metadata = deployment["metadata"]
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": metadata["name"], "namespace": metadata["namespace"],
                             "uid": metadata["uid"],
                             "resourceVersion": metadata["resourceVersion"],
                             "creationTimestamp": metadata["creationTimestamp"]},
                "spec": {"replicas": deployment["spec"]["replicas"]},
                "status": {"replicas": deployment["status"]["replicas"],
                           "selector": f"app={metadata['name']}"}}
