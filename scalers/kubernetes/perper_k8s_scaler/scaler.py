# SPDX-License-Identifier: MIT
"""The scaler's loops, on one asyncio event loop:

- the Registry watcher: a FabricExecutions.Listen on agent `Registry`. The executions before
  start_of_stream are one snapshot of the live instances; later ones add an instance, and
  `deleted` ones remove it. When the call fails it reconnects with back-off, and the next
  snapshot replaces the old one (instances destroyed meanwhile are dropped).
- the reconciler: applies the watcher's events to the pods one at a time. A snapshot, and every
  `resync_seconds` (sooner after a failed call), it lists the pods it manages and deletes those
  of instances that are not live, and of agent types not configured per instance, and creates
  the missing ones: pods left by instances that vanished while the scaler was down go at start.
- one pool loop per pooled agent type: every `pool_interval_seconds` it counts the agent's
  unfinished executions (FabricIntrospection.ListExecutions) and sets its Deployment's replicas
  to ceil(pending / executions_per_replica), within [min, max]: up at once, down after the lower
  target held for `idle_seconds`.

Kubernetes calls block, so they run in threads (asyncio.to_thread). Thread safety: a Scaler
belongs to its event loop; use it from that loop only.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any, Optional

import grpc

from perper.connection import Backoff, FabricConnection, is_retryable
from perper._stubs import executions_pb2, introspection_pb2, model_pb2

from perper_k8s_scaler.config import Config, PoolAgent
from perper_k8s_scaler.kube import (AGENT_LABEL, INSTANCE_ANNOTATION, INSTANCE_LABEL, Kube,
                                    describe, pod_manifest, pod_name)

log = logging.getLogger("perper.k8s")
REGISTRY = "Registry"
# After a failed Kubernetes call, the next full reconcile comes this soon (seconds).
RETRY_SECONDS = 2.0


class Scaler:
    def __init__(self, config: Config, kube: Kube, connection: FabricConnection,
                 pod_fabric_endpoint: str) -> None:
        self._config = config
        self._kube = kube
        self._connection = connection
        self._pod_fabric_endpoint = pod_fabric_endpoint
        self._templates = config.instance_agents()
        self._events: asyncio.Queue = asyncio.Queue()
        # Live instances (ID → agent type), known once the first snapshot arrived.
        self._instances: dict[str, str] = {}
        self._synced = False
        self._retry_soon = False
        self._warned_types: set[str] = set()

    async def run(self) -> None:
        """Runs until cancelled."""
        tasks = [asyncio.create_task(self._watch_registry(), name="registry"),
                 asyncio.create_task(self._reconcile_loop(), name="reconcile")]
        for agent in self._config.pool_agents().values():
            tasks.append(asyncio.create_task(self._pool_loop(agent), name=f"pool {agent.name}"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # The Registry watcher.

    async def _watch_registry(self) -> None:
        request = executions_pb2.ExecutionsListenRequest(
            instance_filter=model_pb2.PerperInstance(agent=REGISTRY))
        backoff = Backoff(0.1, 5.0)
        warned = False
        while True:
            endpoint = self._connection.endpoint
            call = self._connection.executions.Listen(request, wait_for_ready=True)
            initial: dict[str, str] = {}
            live = False
            try:
                async for message in call:
                    if message.start_of_stream:
                        live = True
                        self._events.put_nowait(("snapshot", initial))
                        log.info("watching Registry at %s (%d live instances)",
                                 self._connection.endpoint, len(initial))
                        backoff.reset()
                        warned = False
                        continue
                    instance = message.execution.execution
                    agent = message.instance.instance  # a Registry record's agent type
                    if message.deleted:
                        if live:
                            self._events.put_nowait(("remove", instance, agent))
                        else:
                            initial.pop(instance, None)
                    elif live:
                        self._events.put_nowait(("add", instance, agent))
                    else:
                        initial[instance] = agent
                error = "the call ended"
            except grpc.aio.AioRpcError as e:
                error = f"{e.code().name}: {e.details()}"
                if is_retryable(e):  # with several Fabric addresses, try the next one
                    self._connection.moved_from(endpoint)
            finally:
                call.cancel()
            if not warned:
                log.warning("watching Registry at %s failed (%s); reconnecting", endpoint,
                            error)
                warned = True
            await backoff.wait()

    # The reconciler.

    async def _reconcile_loop(self) -> None:
        while True:
            timeout = RETRY_SECONDS if self._retry_soon else self._config.resync_seconds
            try:
                event = await asyncio.wait_for(self._events.get(), timeout)
            except asyncio.TimeoutError:
                event = ("resync",)
            kind = event[0]
            if kind == "snapshot":
                self._instances = dict(event[1])
                self._synced = True
                for instance, agent in self._instances.items():
                    self._check_type(agent, instance)
                await self._reconcile()
            elif kind == "add":
                _, instance, agent = event
                self._instances[instance] = agent
                self._check_type(agent, instance)
                if agent in self._templates:
                    await self._create(agent, instance)
            elif kind == "remove":
                _, instance, agent = event
                agent = self._instances.pop(instance, agent)
                if agent in self._templates:
                    await self._delete(pod_name(agent, instance), agent, instance,
                                       "instance destroyed")
            elif self._synced:
                await self._reconcile()

    def _check_type(self, agent: str, instance: str) -> None:
        if agent in self._config.agents or agent in self._config.external \
                or agent in self._warned_types:
            return
        self._warned_types.add(agent)
        log.warning("[agent=%s instance=%s] agent type not in the configuration: no pod is "
                    "started for its instances", agent, instance)

    async def _reconcile(self) -> None:
        """Makes the managed pods match the live instances, from a full listing."""
        self._retry_soon = False
        try:
            pods = await asyncio.to_thread(self._kube.list_pods)
        except Exception as e:  # the API server's answer, or no answer
            log.error("listing pods in namespace %s failed (%s); retrying",
                      self._kube.namespace, describe(e))
            self._retry_soon = True
            return
        wanted = {pod_name(agent, instance): (agent, instance)
                  for instance, agent in self._instances.items() if agent in self._templates}
        present = set()
        for pod in pods:
            name = pod.metadata.name
            labels = pod.metadata.labels or {}
            annotations = pod.metadata.annotations or {}
            agent = labels.get(AGENT_LABEL, "")
            instance = annotations.get(INSTANCE_ANNOTATION) or labels.get(INSTANCE_LABEL, "")
            if pod.metadata.deletion_timestamp is not None:
                if name in wanted:
                    self._retry_soon = True  # recreate it once it is gone
                present.add(name)
                continue
            if name not in wanted:
                await self._delete(name, agent, instance, "no such live instance")
            elif pod.status is not None and pod.status.phase in ("Succeeded", "Failed"):
                # A pod that ended (restartPolicy Never or OnFailure): start it anew.
                if await self._delete(name, agent, instance, f"pod {pod.status.phase}"):
                    self._retry_soon = True
                present.add(name)
            else:
                present.add(name)
        for name, (agent, instance) in wanted.items():
            if name not in present:
                await self._create(agent, instance)

    async def _create(self, agent: str, instance: str) -> None:
        body = pod_manifest(self._templates[agent], instance, self._pod_fabric_endpoint)
        name = body["metadata"]["name"]
        try:
            if await asyncio.to_thread(self._kube.create_pod, body):
                log.info("[agent=%s instance=%s] pod %s created", agent, instance, name)
            else:
                log.debug("[agent=%s instance=%s] pod %s exists", agent, instance, name)
        except Exception as e:
            log.error("[agent=%s instance=%s] creating pod %s failed (%s); retrying", agent,
                      instance, name, describe(e))
            self._retry_soon = True

    async def _delete(self, name: str, agent: str, instance: str, why: str) -> bool:
        try:
            if await asyncio.to_thread(self._kube.delete_pod, name):
                log.info("[agent=%s instance=%s] pod %s deleted (%s)", agent, instance, name,
                         why)
                return True
            return False
        except Exception as e:
            log.error("[agent=%s instance=%s] deleting pod %s failed (%s); retrying", agent,
                      instance, name, describe(e))
            self._retry_soon = True
            return False

    # Pooled agents.

    async def _pool_loop(self, agent: PoolAgent) -> None:
        loop = asyncio.get_running_loop()
        request = introspection_pb2.IntrospectionListExecutionsRequest(
            agent=agent.name, limit=min(agent.max * agent.executions_per_replica + 1, 100000))
        below_since: Optional[float] = None
        failure: Optional[str] = None  # the last failure logged, so it is logged once

        def report(text: str) -> None:
            nonlocal failure
            if text != failure:
                log.error("[agent=%s deployment=%s] %s", agent.name, agent.deployment, text)
                failure = text

        while True:
            try:
                response = await self._connection.introspection.ListExecutions(request,
                                                                              timeout=5)
                pending = len(response.executions)
                target = min(max(math.ceil(pending / agent.executions_per_replica), agent.min),
                             agent.max)
                current = await asyncio.to_thread(self._kube.read_replicas, agent.deployment)
                now = loop.time()
                if target >= current:
                    below_since = None
                elif below_since is None:
                    below_since = now
                if target > current or (target < current
                                        and now - below_since >= agent.idle_seconds):
                    await asyncio.to_thread(self._kube.set_replicas, agent.deployment, target)
                    log.info("[agent=%s deployment=%s] scaled from %d to %d replicas "
                             "(%d pending executions)", agent.name, agent.deployment, current,
                             target, pending)
                    below_since = None
                failure = None
            except grpc.aio.AioRpcError as e:
                report(f"counting executions failed ({e.code().name}: {e.details()})")
            except Exception as e:  # the API server's answer, or no answer
                report(f"scaling the Deployment failed ({describe(e)})")
            await asyncio.sleep(self._config.pool_interval_seconds)  # the polling period
