"""Stable IDs: what an execution makes is derived from its ID, so a re-run finds the same calls,
instances and streams; and the recorded Deploy (X_PERPER_RECORD_DEPLOY=1)."""

from __future__ import annotations

import asyncio
import hashlib
import re

import pytest

import perper
import perper.model
from perper import _ambient
from perper.grpc2 import executions_pb2, introspection_pb2, model_pb2

from conftest import kill, run, session, start_restart_agent
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def derived(execution: str, n: int, prefix: str) -> str:
    """The n-th ID of `execution`, computed independently of the SDK."""
    h = hashlib.sha256(f"{execution}\n{n}".encode()).digest()[:16].hex()
    return f"{prefix}-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def ids_of_a_run(execution: str) -> list[str]:
    """The IDs one run of `execution` makes (in a context like the one the SDK gives it)."""
    context = _ambient.Context(connection=None, agent=perper.Agent("A", "a"),
                               execution=execution, ids=_ambient.DerivedIds(execution))
    token = _ambient.current_context.set(context)
    try:
        return [_ambient.new_id(prefix) for prefix in ("Run", "", "Count-stream", "stream")]
    finally:
        _ambient.current_context.reset(token)


def test_an_execution_makes_the_same_ids_each_run_and_others_make_other_ones():
    first = ids_of_a_run("Work-1")
    assert first == [derived("Work-1", n, prefix)
                     for n, prefix in enumerate(("Run", "", "Count-stream", "stream"), 1)]
    assert first[0] == "Run-" + hashlib.sha256(b"Work-1\n1").hexdigest()[:8] + first[0][12:]
    assert ids_of_a_run("Work-1") == first
    other = ids_of_a_run("Work-2")
    assert not set(other) & set(first)


def test_outside_an_execution_ids_are_random():
    a, b = _ambient.new_id("Run"), _ambient.new_id("Run")
    assert a != b and re.fullmatch("Run-" + UUID, a)


def test_what_a_handler_makes_is_derived_from_its_execution(fabric):
    async def make():
        dictionary = perper.dictionary()
        stream = await perper.blank_stream()
        child = await perper.start_agent("test")
        return perper.current_execution(), dictionary.dictionary, stream.stream, child.instance

    async def body():
        async with session(fabric.address, handlers={"Make": make}):
            first = await perper.call("Make")
            second = await perper.call("Make")
            for execution, *made in (first, second):
                assert made == [derived(execution, 1, ""), derived(execution, 2, "stream"),
                                derived(execution, 3, "Run")]
            assert first[0] != second[0] and not set(first[1:]) & set(second[1:])
    run(body())


def test_a_re_run_gets_its_calls_stored_results_without_running_the_callees_again(fabric):
    callee_runs = 0

    async def count():
        nonlocal callee_runs
        callee_runs += 1
        return callee_runs

    async def body():
        async with session(fabric.address, agent="Callee", handlers={"Count": count}):
            log = perper.dictionary("rerun-log")
            first = start_restart_agent("rerun", fabric.address)
            second = None
            try:
                pending = asyncio.create_task(perper.Agent("Rerun", "rerun-1").call("Outer"))
                while await log.get("outer-runs") != 1:  # the first run holds after its call
                    await asyncio.sleep(0.01)
                kill(first)
                # Gets the execution again and runs it again.
                second = start_restart_agent("rerun", fabric.address)
                made, result = await asyncio.wait_for(pending, 20)
            finally:
                kill(first, second)
            assert callee_runs == 1 and result == 1
            assert await log.get("outer-runs") == 2
            # The same dictionary and the same call, in both runs.
            assert await log.get("run-1") == await log.get("run-2") == [made, 1]
    run(body(), timeout=40)


async def finished_calls(connection: perper.FabricConnection, delegate: str) -> list[str]:
    """The finished executions of `delegate` the Fabric holds, in creation order."""
    listing = await connection.introspection.ListExecutions(
        introspection_pb2.IntrospectionListExecutionsRequest(delegate=delegate,
                                                             include_finished=True))
    return [s.execution.execution for s in sorted(listing.executions, key=lambda s: s.sequence)
            if s.finished]


async def until_finished_calls_are(connection: perper.FabricConnection, delegate: str,
                                   expected: list[str], timeout: float = 10.0) -> None:
    """Waits until the finished executions of `delegate` are `expected` (kept calls are deleted
    in the background); fails after `timeout` seconds showing what is there."""
    held: list[str] = []

    async def poll() -> None:
        nonlocal held
        while (held := await finished_calls(connection, delegate)) != expected:
            await asyncio.sleep(0.01)
    try:
        await asyncio.wait_for(poll(), timeout)
    except asyncio.TimeoutError:
        pytest.fail(f"finished {delegate} calls: {held}, expected {expected}")


@pytest.mark.parametrize("fails", [False, True], ids=["results", "error"])
def test_the_calls_an_execution_kept_go_when_it_completes(fabric, fails):
    async def caller():
        results = [await perper.call("Double", n) for n in range(3)]
        if fails:
            raise ValueError(perper.current_execution())
        return perper.current_execution(), results

    async def body():
        async with session(fabric.address, handlers={"Caller": caller,
                                                     "Double": lambda n: 2 * n}):
            if fails:
                with pytest.raises(perper.ExecutionFailedError) as error:
                    await perper.call("Caller")
                execution = re.search(r"Caller-" + UUID, str(error.value)).group(0)
            else:
                execution, results = await perper.call("Caller")
                assert results == [0, 2, 4]
            # Gone once Caller completed (they are kept while it runs: see the next test).
            await until_finished_calls_are(perper.get_connection(), "Double", [])
            for n in (1, 2, 3):  # an unknown execution answers deleted=true
                response = await perper.get_connection().executions.GetResult(
                    executions_pb2.ExecutionsGetResultRequest(execution=model_pb2.PerperExecution(
                        execution=derived(execution, n, "Double"))), timeout=5)
                assert response.deleted
    run(body())


def test_a_running_execution_keeps_only_its_most_recent_calls(fabric, monkeypatch):
    bound = 3
    monkeypatch.setattr(perper.model, "MAX_KEPT_CALLS", bound)

    async def body():
        made, release = asyncio.Event(), asyncio.Event()

        async def caller():
            results = [await perper.call("Double", n) for n in range(bound + 5)]
            made.set()
            await release.wait()
            return perper.current_execution(), results

        async with session(fabric.address, handlers={"Caller": caller,
                                                     "Double": lambda n: 2 * n}):
            connection = perper.get_connection()
            pending = asyncio.create_task(perper.call("Caller"))
            await asyncio.wait_for(made.wait(), 10)
            # While Caller runs: its last `bound` calls, the older ones deleted.
            (running,) = [s.execution.execution for s in (await connection.introspection.
                          ListExecutions(introspection_pb2.IntrospectionListExecutionsRequest(
                              delegate="Caller"))).executions]
            await until_finished_calls_are(connection, "Double", [
                derived(running, n, "Double") for n in range(6, bound + 6)])
            release.set()
            execution, results = await pending
            assert execution == running and results == [2 * n for n in range(bound + 5)]
            await until_finished_calls_are(connection, "Double", [])
    run(body())


def test_a_recorded_deploy_s_calls_go_when_it_completes(fabric, monkeypatch):
    monkeypatch.setenv("X_PERPER_RECORD_DEPLOY", "1")

    async def body():
        runs: list[str] = []
        application = perper.Application("Recorded", deploy_handlers(runs),
                                          endpoint=fabric.address)
        assert (await application.serve(stop_after_deploy=True))[1] == "deployed"
        connection = perper.FabricConnection(fabric.address)
        try:
            await until_finished_calls_are(connection, "Deploy", ["Recorded-deploy-deploy"])
            await until_finished_calls_are(connection, "Echo", [])
        finally:
            await connection.close()
    run(body())


def deploy_handlers(runs: list):
    async def deploy():
        runs.append(perper.current_execution())
        return perper.dictionary().dictionary, await perper.call("Echo", "deployed")
    return {"Deploy": deploy, "Echo": lambda text: text}


async def deploy_twice(address: str, agent: str, runs: list) -> list:
    """Runs an agent process's Deploy twice (two Applications, one after the other)."""
    results = []
    for _ in range(2):
        application = perper.Application(agent, deploy_handlers(runs), endpoint=address)
        results.append(await application.serve(stop_after_deploy=True))
    return results


def test_a_recorded_deploy_runs_once_per_fabric(fabric, monkeypatch, capsys):
    monkeypatch.setenv("X_PERPER_RECORD_DEPLOY", "1")
    runs: list[str] = []
    first, second = run(deploy_twice(fabric.address, "Recorded", runs))
    execution = "Recorded-deploy-deploy"
    assert runs == [execution]
    assert first == second == (derived(execution, 1, ""), "deployed")
    assert [line.split(" ", 1)[1] for line in capsys.readouterr().err.splitlines()
            if "already ran" in line] == [
        f"I sdk: [agent=Recorded] Deploy already ran on this Fabric (execution {execution}); "
        "`perper up --reset` runs it anew"]


def test_a_recorded_deploy_that_did_not_finish_runs_again(fabric, monkeypatch):
    monkeypatch.setenv("X_PERPER_RECORD_DEPLOY", "1")
    runs: list[str] = []

    async def body():
        application = perper.Application("Recorded", deploy_handlers(runs),
                                          endpoint=fabric.address)
        # The record a deploy process killed in the middle of Deploy leaves behind.
        await application.connection.executions.Create(executions_pb2.ExecutionsCreateRequest(
            execution=model_pb2.PerperExecution(execution="Recorded-deploy-deploy"),
            instance=model_pb2.PerperInstance(instance="Recorded-deploy", agent="perper.Deploy"),
            delegate="Deploy"))
        return await application.serve(stop_after_deploy=True)

    assert run(body())[1] == "deployed"
    assert runs == ["Recorded-deploy-deploy"]


def test_a_recorded_deploy_that_failed_fails_again_without_running(fabric, monkeypatch):
    monkeypatch.setenv("X_PERPER_RECORD_DEPLOY", "1")
    runs = []

    def deploy():
        runs.append(1)
        raise ValueError("bad configuration")

    async def body():
        for expected in (ValueError, perper.ExecutionFailedError):
            application = perper.Application("Failing", {"Deploy": deploy},
                                             endpoint=fabric.address)
            with pytest.raises(expected, match="bad configuration"):
                await application.serve(stop_after_deploy=True)
    run(body())
    assert runs == [1]


def test_without_the_variable_deploy_runs_every_time_with_random_ids(fabric, monkeypatch):
    monkeypatch.delenv("X_PERPER_RECORD_DEPLOY", raising=False)
    runs: list[str] = []
    first, second = run(deploy_twice(fabric.address, "Unrecorded", runs))
    assert len(runs) == 2
    assert first[1] == second[1] == "deployed"
    assert first[0] != second[0]
