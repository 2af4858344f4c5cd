# SPDX-License-Identifier: MIT
"""The scaler's configuration file (YAML), checked whole before anything starts.

    namespace: shop                  # optional (default: the pod's own namespace)
    fabric: perper-fabric:40400      # optional (default: PERPER_FABRIC_ENDPOINT, else this)
    pod_fabric_endpoint: ...         # optional: PERPER_FABRIC_ENDPOINT of the pods (= fabric)
    resync_seconds: 30               # full reconcile from a pod listing this often
    pool_interval_seconds: 1         # how often pooled agents' pending work is counted
    agents:
      Cart:                          # mode: instance (the default): one pod per live instance
        image: perper-python-agent
        command: [python3, /app/cart.py]      # optional (default: the image's entrypoint)
        args: [--verbose]                     # optional
        env: {SHOP_CURRENCY: EUR}
        resources: {requests: {cpu: 100m}, limits: {memory: 256Mi}}
        image_pull_policy: IfNotPresent       # optional
        restart_policy: Always                # optional: Always (default), OnFailure, Never
      Pricing:
        mode: pool                   # replicas of a Deployment, from the pending executions
        deployment: pricing
        min: 0
        max: 4
        executions_per_replica: 8
        idle_seconds: 30
      Billing:
        mode: external               # scaled by someone else (KEDA): the scaler leaves it alone

Errors raise ConfigError with the file and the offending key, e.g.
`scaler.yaml: agents.Cart.mode: expected instance, pool or external, got 'fast'`.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Optional

import yaml

DEFAULT_FABRIC = "perper-fabric:40400"
# A Kubernetes label value: at most 63 characters, alphanumerics at both ends, - _ . inside.
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_RESERVED_ENV = ("X_PERPER_AGENT", "X_PERPER_INSTANCE", "PERPER_FABRIC_ENDPOINT")


_EXPECTED = {dict: "a mapping", list: "a list", str: "a string", int: "an integer",
             float: "a number"}


class ConfigError(ValueError):
    pass


@dataclasses.dataclass
class InstanceAgent:
    """A per-instance agent type: a pod from this template for each live instance."""
    name: str
    image: str
    command: Optional[list[str]] = None
    args: Optional[list[str]] = None
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    resources: dict[str, Any] = dataclasses.field(default_factory=dict)
    image_pull_policy: Optional[str] = None
    restart_policy: str = "Always"


@dataclasses.dataclass
class PoolAgent:
    """A pooled agent type: the replicas of `deployment` follow its unfinished executions."""
    name: str
    deployment: str
    min: int = 0
    max: int = 1
    executions_per_replica: int = 1
    idle_seconds: float = 30.0


@dataclasses.dataclass
class Config:
    agents: dict[str, Any]
    namespace: Optional[str] = None
    fabric: Optional[str] = None
    pod_fabric_endpoint: Optional[str] = None
    resync_seconds: float = 30.0
    pool_interval_seconds: float = 1.0
    # Agent types scaled by someone else (mode: external, e.g. KEDA).
    external: set[str] = dataclasses.field(default_factory=set)

    def instance_agents(self) -> dict[str, InstanceAgent]:
        return {k: v for k, v in self.agents.items() if isinstance(v, InstanceAgent)}

    def pool_agents(self) -> dict[str, PoolAgent]:
        return {k: v for k, v in self.agents.items() if isinstance(v, PoolAgent)}


class _Reader:
    """Reads one mapping, reporting errors with the file and the key path."""

    def __init__(self, source: str, path: str, mapping: Any) -> None:
        self.source = source
        self.path = path
        if not isinstance(mapping, dict):
            self.fail(path, f"expected a mapping, got {_kind(mapping)}")
        self.mapping = mapping
        self.used: set[str] = set()

    def fail(self, key: str, message: str) -> None:
        raise ConfigError(f"{self.source}: {key}: {message}")

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, kind: type, default: Any = None) -> Any:
        self.used.add(name)
        if name not in self.mapping or self.mapping[name] is None:
            return default
        value = self.mapping[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(self.key(name), f"expected {_EXPECTED[kind]}, got {_kind(value)}")
        return value

    def strings(self, name: str) -> Optional[list[str]]:
        value = self.get(name, list)
        if value is None:
            return None
        if not value or not all(isinstance(v, str) for v in value):
            self.fail(self.key(name), "expected a non-empty list of strings")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.mapping) - self.used)
        if unknown:
            self.fail(self.key(str(unknown[0])), "unknown key")


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def parse(text: str, source: str) -> Config:
    """Parses and checks the configuration `text` read from `source` (named in errors)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {e}") from None
    top = _Reader(source, "", document if document is not None else {})
    config = Config(agents={})
    config.namespace = top.get("namespace", str)
    if config.namespace is not None and not _DNS_LABEL.match(config.namespace):
        top.fail("namespace", f"'{config.namespace}' is not a valid namespace name")
    config.fabric = top.get("fabric", str)
    config.pod_fabric_endpoint = top.get("pod_fabric_endpoint", str)
    config.resync_seconds = top.get("resync_seconds", float, 30.0)
    config.pool_interval_seconds = top.get("pool_interval_seconds", float, 1.0)
    for name in ("resync_seconds", "pool_interval_seconds"):
        if getattr(config, name) <= 0:
            top.fail(name, "must be greater than 0")
    # Empty is allowed (the base manifests start so): the scaler then only logs instances.
    agents = top.get("agents", dict, {})
    top.finish()
    for agent, body in agents.items():
        key = f"agents.{agent}"
        if not isinstance(agent, str) or not _LABEL_VALUE.match(agent):
            top.fail(key, "an agent type must be a valid label value (at most 63 characters: "
                     "letters, digits, '-', '_', '.', starting and ending alphanumeric)")
        reader = _Reader(source, key, body if body is not None else {})
        mode = reader.get("mode", str, "instance")
        if mode == "instance":
            config.agents[agent] = _instance_agent(agent, reader)
        elif mode == "pool":
            config.agents[agent] = _pool_agent(agent, reader)
        elif mode == "external":
            config.external.add(agent)
        else:
            reader.fail(reader.key("mode"), f"expected instance, pool or external, got '{mode}'")
        reader.finish()
    return config


def _instance_agent(agent: str, reader: _Reader) -> InstanceAgent:
    image = reader.get("image", str)
    if not image:
        reader.fail(reader.key("image"), "missing: a per-instance agent needs an image")
    env = reader.get("env", dict, {})
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            reader.fail(reader.key(f"env.{name}"), "not a valid environment variable name")
        if name in _RESERVED_ENV:
            reader.fail(reader.key(f"env.{name}"), "set by the scaler; remove it")
        if not isinstance(value, (str, int, float, bool)):
            reader.fail(reader.key(f"env.{name}"), f"expected a scalar, got {_kind(value)}")
    restart_policy = reader.get("restart_policy", str, "Always")
    if restart_policy not in ("Always", "OnFailure", "Never"):
        reader.fail(reader.key("restart_policy"),
                    f"expected Always, OnFailure or Never, got '{restart_policy}'")
    return InstanceAgent(
        name=agent, image=image, command=reader.strings("command"),
        args=reader.strings("args"),
        env={k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in env.items()},
        resources=reader.get("resources", dict, {}),
        image_pull_policy=reader.get("image_pull_policy", str), restart_policy=restart_policy)


def _pool_agent(agent: str, reader: _Reader) -> PoolAgent:
    deployment = reader.get("deployment", str)
    if not deployment:
        reader.fail(reader.key("deployment"), "missing: a pooled agent needs a Deployment name")
    minimum = reader.get("min", int, 0)
    maximum = reader.get("max", int, max(1, minimum))
    per_replica = reader.get("executions_per_replica", int, 1)
    idle = reader.get("idle_seconds", float, 30.0)
    if minimum < 0:
        reader.fail(reader.key("min"), "must be 0 or more")
    if maximum < minimum:
        reader.fail(reader.key("max"), f"{maximum} is less than min ({minimum})")
    if per_replica < 1:
        reader.fail(reader.key("executions_per_replica"), "must be 1 or more")
    if idle < 0:
        reader.fail(reader.key("idle_seconds"), "must be 0 or more")
    return PoolAgent(name=agent, deployment=deployment, min=minimum, max=maximum,
                     executions_per_replica=per_replica, idle_seconds=idle)


def load(path: str) -> Config:
    """Reads and checks the file at `path`; ConfigError names the file when it cannot."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from None
    return parse(text, path)
