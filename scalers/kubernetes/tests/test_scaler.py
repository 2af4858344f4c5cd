# SPDX-License-Identifier: MIT
"""The Kubernetes scaler against a real perper-fabric and the stand-in API server: pods follow
the instances (made through FabricInstances, with the Python SDK), stale pods go at start, and
pooled agents' Deployments are scaled from their pending executions."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time

import perper
from perper._stubs import executions_pb2, model_pb2

from conftest import NAMESPACE, sdk_fixtures

RESOURCES = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}


def instance_config(**extra):
    return {"resync_seconds": 30, **extra, "agents": {
        "Cart": {"image": "perper-python-agent", "command": ["python3", "/app/cart.py"],
                 "env": {"SHOP_CURRENCY": "EUR"}, "resources": RESOURCES,
                 "image_pull_policy": "IfNotPresent"},
        "Billing": {"mode": "external"}}}


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def expected_pod(instance: str, fabric_address: str) -> dict:
    """The pod the scaler must create for instance `instance` of Cart (the parts it sets)."""
    return {
        "metadata": {
            "name": f"cart-{sha1(instance)}",
            "labels": {"perper.io/agent": "Cart", "perper.io/instance": sha1(instance),
                       "app.kubernetes.io/managed-by": "perper-k8s-scaler"},
            "annotations": {"perper.io/instance-id": instance}},
        "spec": {"restartPolicy": "Always", "containers": [{
            "name": "agent", "image": "perper-python-agent", "imagePullPolicy": "IfNotPresent",
            "command": ["python3", "/app/cart.py"], "resources": RESOURCES,
            "env": [{"name": "X_PERPER_AGENT", "value": "Cart"},
                    {"name": "X_PERPER_INSTANCE", "value": instance},
                    {"name": "PERPER_FABRIC_ENDPOINT", "value": fabric_address},
                    {"name": "SHOP_CURRENCY", "value": "EUR"}]}]}}


def set_by_scaler(pod: dict) -> dict:
    """`pod` without what the API server adds (uid, timestamps, status, ...)."""
    metadata = pod["metadata"]
    return {"metadata": {key: metadata[key] for key in ("name", "labels", "annotations")},
            "spec": pod["spec"]}


async def wait(api, predicate, timeout: float = 15.0):
    """Waits on the stand-in server's condition without blocking the event loop (the SDK
    session serving Start and Stop runs on it)."""
    return await asyncio.to_thread(api.wait_for, predicate, timeout)


async def create_registry_record(address: str, instance: str, agent: str) -> None:
    """An instance as the Fabric stores it (what CreateAndStart does first), for agent types
    no process serves."""
    connection = perper.FabricConnection(address)
    try:
        await connection.executions.Create(executions_pb2.ExecutionsCreateRequest(
            execution=model_pb2.PerperExecution(execution=instance),
            instance=model_pb2.PerperInstance(instance=agent, agent="Registry"),
            delegate="Run"))
    finally:
        await connection.close()


def test_a_pod_per_live_instance(fabric, api, start_scaler):
    scaler = start_scaler(fabric.address, api, instance_config())
    scaler.wait_for_line("watching Registry")

    async def body():
        # Types without a pod template: an external one, and one the config does not name.
        await create_registry_record(fabric.address, "billing-1", "Billing")
        await create_registry_record(fabric.address, "ghost-1", "Ghost")
        async with sdk_fixtures.session(fabric.address, "Cart"):
            cart = await perper.start_agent("Cart")
            name = f"cart-{sha1(cart.instance)}"
            await wait(api, lambda: (NAMESPACE, name) in api.pods)
            pods = api.pods_in(NAMESPACE)
            assert list(pods) == [name]
            assert set_by_scaler(pods[name]) == expected_pod(cart.instance, fabric.address)

            await cart.destroy()
            await wait(api, lambda: (NAMESPACE, name) not in api.pods)
            assert api.pods_in(NAMESPACE) == {}
            return cart.instance

    instance = sdk_fixtures.run(body())
    scaler.wait_for_line(f"[agent=Cart instance={instance}] pod cart-{sha1(instance)} deleted "
                         "(instance destroyed)")
    scaler.wait_for_line("[agent=Ghost instance=ghost-1] agent type not in the configuration")
    assert not any("agent=Billing" in line for line in scaler.lines)
    assert [r for r in api.requests if r[0] == "POST"] == \
        [("POST", f"/api/v1/namespaces/{NAMESPACE}/pods")]
    assert scaler.stop() == 0
    assert scaler.lines[-1].endswith("k8s-scaler: stopped")


def test_start_up_reconcile_removes_pods_of_vanished_instances(fabric, api, start_scaler):
    # A pod left by an instance this Fabric never had, and a pod the scaler does not manage.
    api.add_pod(NAMESPACE, {"metadata": {"name": "cart-stale", "labels": {
        "perper.io/agent": "Cart", "perper.io/instance": sha1("Run-gone"),
        "app.kubernetes.io/managed-by": "perper-k8s-scaler"},
        "annotations": {"perper.io/instance-id": "Run-gone"}},
        "spec": {"containers": [{"name": "agent", "image": "perper-python-agent"}]}})
    api.add_pod(NAMESPACE, {"metadata": {"name": "unrelated", "labels": {"app": "web"}},
                            "spec": {"containers": [{"name": "web", "image": "nginx"}]}})

    async def body():
        async with sdk_fixtures.session(fabric.address, "Cart"):
            first = start_scaler(fabric.address, api, instance_config())
            await wait(api, lambda: (NAMESPACE, "cart-stale") not in api.pods)
            kept = await perper.start_agent("Cart")
            doomed = await perper.start_agent("Cart")
            await wait(api, lambda: {(NAMESPACE, f"cart-{sha1(a.instance)}")
                                     for a in (kept, doomed)} <= set(api.pods))
            stale_line = await asyncio.to_thread(first.wait_for_line, "cart-stale")
            assert await asyncio.to_thread(first.stop) == 0

            # While no scaler runs: one instance goes, another comes.
            await doomed.destroy()
            late = await perper.start_agent("Cart")
            posts_before = sum(1 for r in api.requests if r[0] == "POST")

            second = start_scaler(fabric.address, api, instance_config())
            wanted = {f"cart-{sha1(a.instance)}" for a in (kept, late)} | {"unrelated"}
            await wait(api, lambda: set(name for _, name in api.pods) == wanted)
            deleted = await asyncio.to_thread(
                second.wait_for_line, f"pod cart-{sha1(doomed.instance)} deleted")
            assert f"[agent=Cart instance={doomed.instance}]" in deleted
            assert deleted.endswith("(no such live instance)")
            # Only the missing pod was created; the surviving one was left as it was.
            assert sum(1 for r in api.requests if r[0] == "POST") == posts_before + 1
            return stale_line

    stale_line = sdk_fixtures.run(body(), timeout=60)
    assert stale_line.endswith(
        "[agent=Cart instance=Run-gone] pod cart-stale deleted (no such live instance)")


def test_resync_recreates_pods_deleted_or_ended(fabric, api, start_scaler):
    scaler = start_scaler(fabric.address, api, instance_config(resync_seconds=0.2))

    async def body():
        async with sdk_fixtures.session(fabric.address, "Cart"):
            cart = await perper.start_agent("Cart")
            key = (NAMESPACE, f"cart-{sha1(cart.instance)}")
            await wait(api, lambda: key in api.pods)
            first_uid = api.pods_in(NAMESPACE)[key[1]]["metadata"]["uid"]
            with api.condition:  # evicted, or deleted by hand
                del api.pods[key]
            await wait(api, lambda: key in api.pods)
            second_uid = api.pods_in(NAMESPACE)[key[1]]["metadata"]["uid"]
            assert second_uid != first_uid
            with api.condition:  # its container exited, and restartPolicy did not restart it
                api.pods[key]["status"]["phase"] = "Failed"
            await wait(api, lambda: key in api.pods
                       and api.pods[key]["metadata"]["uid"] != second_uid)
            assert api.pods_in(NAMESPACE)[key[1]]["status"]["phase"] == "Pending"

    sdk_fixtures.run(body())
    assert scaler.stop() == 0


def pool_config():
    return {"pool_interval_seconds": 0.05, "agents": {
        "Pricing": {"mode": "pool", "deployment": "pricing", "min": 1, "max": 3,
                    "executions_per_replica": 2, "idle_seconds": 0.5},
        "Ledger": {"mode": "pool", "deployment": "ledger", "max": 2}}}


def test_pooled_agent_deployment_follows_pending_executions(fabric, api, start_scaler):
    api.add_deployment(NAMESPACE, "pricing", 0)
    scaler = start_scaler(fabric.address, api, pool_config())
    patches = lambda: [replicas for _, name, replicas in api.scale_patches  # noqa: E731
                       if name == "pricing"]
    # Up to min at once.
    api.wait_for(lambda: patches() == [1])

    async def body():
        connection = perper.FabricConnection(fabric.address)
        executions = [f"price-{i}" for i in range(7)]
        try:
            for execution in executions:
                await connection.executions.Create(executions_pb2.ExecutionsCreateRequest(
                    execution=model_pb2.PerperExecution(execution=execution),
                    instance=model_pb2.PerperInstance(instance="Pricing-1", agent="Pricing"),
                    delegate="Quote"))
            # ceil(7 / 2) = 4, held to max 3.
            await wait(api, lambda: patches() == [1, 3])

            async def delete(names):
                for name in names:
                    await connection.executions.Delete(executions_pb2.ExecutionsDeleteRequest(
                        execution=model_pb2.PerperExecution(execution=name)))
            # 3 pending: 2 replicas, but only after idle_seconds below 3.
            below_since = time.monotonic()
            await delete(executions[:4])
            await wait(api, lambda: patches() == [1, 3, 2])
            assert time.monotonic() - below_since >= 0.5
            await delete(executions[4:])
            await wait(api, lambda: patches() == [1, 3, 2, 1])
        finally:
            await connection.close()

    sdk_fixtures.run(body())
    assert api.deployments[(NAMESPACE, "pricing")]["spec"]["replicas"] == 1
    scaler.wait_for_line("[agent=Pricing deployment=pricing] scaled from 3 to 2 replicas "
                         "(3 pending executions)")
    # A Deployment that does not exist is reported, once, by name.
    missing = [line for line in scaler.lines if "deployment=ledger" in line]
    assert len(missing) == 1
    assert missing[0].endswith('[agent=Ledger deployment=ledger] scaling the Deployment failed '
                               '(HTTP 404: deployments.apps "ledger" not found)')
    assert scaler.stop() == 0


def test_a_restarted_fabric_is_watched_again(fabric, api, start_scaler):
    """The watch reconnects to a Fabric that restarted, and its snapshot replaces the old one:
    an instance the new (empty, memory) Fabric does not have loses its pod."""
    scaler = start_scaler(fabric.address, api, instance_config())
    sdk_fixtures.run(create_registry_record(fabric.address, "Run-before", "Cart"))
    key = (NAMESPACE, f"cart-{sha1('Run-before')}")
    api.wait_for(lambda: key in api.pods)

    fabric.kill()
    restarted = sdk_fixtures.FabricProcess(listen=fabric.address)
    try:
        sdk_fixtures.run(create_registry_record(restarted.address, "Run-after", "Cart"))
        api.wait_for(lambda: key not in api.pods
                     and (NAMESPACE, f"cart-{sha1('Run-after')}") in api.pods)
        # One outage, one warning, however many attempts it took.
        warnings = [line for line in scaler.lines if "failed" in line]
        assert len(warnings) == 1
        assert f"watching Registry at {fabric.address} failed (UNAVAILABLE" in warnings[0]
        assert scaler.stop() == 0
    finally:
        restarted.stop()


def test_an_unreachable_fabric_address_is_passed_over(fabric, api, start_scaler):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    scaler = start_scaler(fabric.address, api, instance_config(fabric=f"{dead},{fabric.address}"))
    sdk_fixtures.run(create_registry_record(fabric.address, "Run-1", "Cart"))
    api.wait_for(lambda: (NAMESPACE, f"cart-{sha1('Run-1')}") in api.pods)
    scaler.wait_for_line(f"watching Registry at {fabric.address} (")
    assert scaler.stop() == 0
