"""Calls, instances and the application lifecycle against a real Fabric."""

from __future__ import annotations

import asyncio

import pytest

import perper
from perper.grpc2 import introspection_pb2, introspection_pb2_grpc

from conftest import FabricProcess, run, session


def test_call_on_the_current_instance_returns_values(fabric):
    handlers = {
        "Add": lambda a, b: a + b,
        "Pair": lambda: (1, "two"),
        "Nothing": lambda: None,
        "Count": lambda *args: len(args),
        "Async": None,
    }

    async def slow_double(x):
        await asyncio.sleep(0)
        return x * 2
    handlers["Async"] = slow_double

    async def body():
        async with session(fabric.address, handlers=handlers):
            assert await perper.call("Add", 1, 2) == 3
            assert await perper.call("Add", "a", "b") == "ab"
            assert await perper.call("Pair") == (1, "two")
            assert await perper.call("Nothing") is None
            assert await perper.call("Count", 1, 2.0, "3", None) == 4
            assert await perper.call("Async", 21, result_type=int) == 42
            with pytest.raises(perper.PerperTypeError, match="Int64Value.*str"):
                await perper.call("Add", 1, 2, result_type=str)
    run(body())


def test_handler_exception_fails_the_execution(fabric):
    def boom(text):
        raise ValueError(text)

    async def body():
        async with session(fabric.address, handlers={"Boom": boom}):
            with pytest.raises(perper.ExecutionFailedError) as error:
                await perper.call("Boom", "broken value")
            assert "ValueError: broken value" in error.value.message
    run(body())


def test_a_handler_exception_longer_than_the_fabric_takes_still_fails_the_execution(fabric):
    # The Fabric refuses error texts over 64 KiB; the SDK cuts them so the execution still fails.
    def boom():
        raise ValueError("é" * 100_000)

    async def body():
        async with session(fabric.address, handlers={"Boom": boom}):
            with pytest.raises(perper.ExecutionFailedError) as error:
                await asyncio.wait_for(perper.call("Boom"), 10)
            message = error.value.message
            assert message.startswith("ValueError: éé")
            assert message.endswith(" bytes in all]")
            assert len(message.encode("utf-8")) <= 64 * 1024
    run(body())


def test_bounded_error_text_cuts_at_a_character_boundary():
    from perper.errors import MAX_ERROR_BYTES, bounded_error_text
    assert bounded_error_text("short") == "short"
    text = "€" * 30_000  # 90,000 bytes
    cut = bounded_error_text(text)
    assert len(cut.encode("utf-8")) <= MAX_ERROR_BYTES
    kept, note = cut.split(" …[cut: ")
    assert text.startswith(kept)
    assert note == "90000 bytes in all]"


def test_start_agent_init_call_and_destroy(fabric):
    log: list[str] = []

    async def start(initial):
        log.append(f"start {perper.current_agent().instance}")
        await perper.state().set("count", initial)
        return "started"

    async def init():
        log.append(f"init {perper.current_agent().instance}")

    async def increment():
        return await perper.state().update("count", lambda n: n + 1)

    async def stop():
        log.append(f"stop {perper.current_agent().instance}")

    counter = {"Start": start, "Init": init, "Increment": increment, "Stop": stop}

    async def body():
        async with session(fabric.address, agent="Counter", handlers=counter):
            async with session(fabric.address, agent="Caller"):
                agent = await perper.start_agent("Counter", 10)
                assert agent.agent == "Counter" and agent.instance.startswith("Run-")
                assert agent.start_result == "started"
                assert await agent.call("Increment") == 11
                assert await agent.call("Increment") == 12
                other = await perper.start_agent("Counter", 100)
                assert await other.call("Increment") == 101
                await agent.destroy()
                assert log.count(f"init {agent.instance}") == 1
                assert log.index(f"init {agent.instance}") < log.index(
                    f"start {agent.instance}")
                assert f"stop {agent.instance}" in log
                assert f"stop {other.instance}" not in log
    run(body())


def test_destroying_a_parent_destroys_its_children(fabric):
    stopped: list[str] = []

    async def parent_start():
        child = await perper.start_agent("Child")
        await perper.state().set("child", child)

    async def child_stop():
        stopped.append(perper.current_agent().instance)

    async def body():
        async with session(fabric.address, agent="Parent", handlers={"Start": parent_start}):
            async with session(fabric.address, agent="Child", handlers={"Stop": child_stop}):
                parent = await perper.start_agent("Parent")
                child = await perper.Dictionary(f"{parent.instance}-").get("child")
                assert isinstance(child, perper.Agent) and child.agent == "Child"
                await parent.destroy()
                assert stopped == [child.instance]
    run(body())


def test_deleting_an_execution_cancels_its_handler(fabric):
    started = None
    cancelled = None

    async def block():
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def body():
        nonlocal started, cancelled
        started, cancelled = asyncio.Event(), asyncio.Event()
        async with session(fabric.address, handlers={"Block": block}):
            caller = asyncio.create_task(perper.call("Block"))
            await asyncio.wait_for(started.wait(), 10)
            caller.cancel()  # the Fabric deletes the execution; the handler is told
            await asyncio.wait_for(cancelled.wait(), 10)
            assert caller.cancelled()
    run(body())


def test_concurrency_limits_executions_in_flight(fabric):
    in_flight = 0
    peak = 0
    gate = None

    async def work(i):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await gate.wait()
        in_flight -= 1
        return i

    async def body():
        nonlocal gate
        gate = asyncio.Event()
        async with session(fabric.address, handlers={"Work": work}, concurrency=2):
            calls = [asyncio.create_task(perper.call("Work", i)) for i in range(6)]
            stub = introspection_pb2_grpc.FabricIntrospectionStub(
                perper.get_connection().channel)
            # Every execution exists in the Fabric, and two are being handled.
            request = introspection_pb2.IntrospectionListExecutionsRequest(agent="test",
                                                                           delegate="Work")
            while len((await stub.ListExecutions(request)).executions) < 6 or in_flight < 2:
                await asyncio.sleep(0.005)
            assert in_flight == 2
            gate.set()
            assert sorted(await asyncio.gather(*calls)) == list(range(6))
            assert peak == 2
    run(body())


def test_members_of_a_workgroup_share_the_executions(fabric):
    # Each member takes one execution at a time; two executions that must be in flight together
    # (a barrier) can only finish when both members handle one each.
    arrived = 0
    both = None

    def member(name):
        async def handle():
            nonlocal arrived
            arrived += 1
            if arrived == 2:
                both.set()
            await both.wait()
            return name
        return handle

    async def members():
        nonlocal both, arrived
        both, arrived = asyncio.Event(), 0
        a = perper.Application("Worker", {"Who": member("a")}, endpoint=fabric.address,
                               concurrency=1, workgroup="w")
        b = perper.Application("Worker", {"Who": member("b")}, endpoint=fabric.address,
                               concurrency=1, workgroup="w")
        await a.start()
        await b.start()
        try:
            await a.ready(10)
            await b.ready(10)
            async with session(fabric.address, agent="Caller"):
                worker = perper.Agent("Worker", "w-1")
                results = await asyncio.gather(worker.call("Who"), worker.call("Who"))
                assert sorted(results) == ["a", "b"]
        finally:
            await a.stop()
            await b.stop()
    run(members())


def test_instance_filter_from_environment(fabric, monkeypatch):
    monkeypatch.setenv("X_PERPER_AGENT", "Pinned")
    monkeypatch.setenv("X_PERPER_INSTANCE", "one")

    async def body():
        pinned = perper.Application(handlers={"Who": lambda: "pinned"}, endpoint=fabric.address)
        assert (pinned.agent, pinned.instance) == ("Pinned", "one")
        other = perper.Application("Pinned", {"Who": lambda: "any"}, instance="",
                                   endpoint=fabric.address, concurrency=1)
        await pinned.start()
        try:
            await pinned.ready(10)
            async with session(fabric.address, agent="Caller"):
                # Only `pinned` listens so far, and only to instance "one".
                assert await perper.Agent("Pinned", "one").call("Who") == "pinned"
                await other.start()
                await other.ready(10)
                assert await perper.Agent("Pinned", "two").call("Who") == "any"
        finally:
            await pinned.stop()
            await other.stop()
    run(body())


def test_deploy_runs_once_then_serve_returns(fabric):
    deployed = []

    async def deploy():
        deployed.append(perper.current_agent().instance)
        return await perper.call("Echo", "from deploy")

    async def body():
        application = perper.Application("App", {"Deploy": deploy, "Echo": lambda s: s},
                                         endpoint=fabric.address)
        assert await application.serve(stop_after_deploy=True) == "from deploy"
        assert deployed == ["App-deploy"]
    run(body())


def test_results_the_fabric_refuses_fail_the_execution():
    # A Fabric with a small value limit refuses the result; the caller gets an error, not a hang.
    small = FabricProcess(extra_args=["--max-value-size", "1000"])

    async def body():
        async with session(small.address, handlers={"Big": lambda: "x" * 5000}):
            with pytest.raises(perper.ExecutionFailedError, match="RESOURCE_EXHAUSTED"):
                await perper.call("Big")
    try:
        run(body())
    finally:
        small.stop()
