"""One reservation call (ListenAndReserve) per process for every delegate of its agent, as in
the C++ SDK: `concurrency` counts the executions at once in the process, an execution of a
delegate without a handler fails, and a call the Fabric refuses ends the process with exit code 1.
All against a real Fabric."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys

import pytest

import perper
from perper.grpc2 import introspection_pb2

from conftest import python_env, run, session
from test_logging import PREFIX


async def _until(check, timeout: float = 10) -> None:
    """Waits until the coroutine function `check` returns true."""
    async def poll() -> None:
        while not await check():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), timeout)


async def _listeners(agent: str) -> tuple[int, int]:
    """The Fabric's count of open (Listen, ListenAndReserve) calls for `agent`."""
    connection = perper.get_connection()
    answer = await connection.retry(
        connection.introspection.ListAgentListeners,
        introspection_pb2.IntrospectionListAgentListenersRequest(agent=agent))
    for summary in answer.agents:
        if summary.agent == agent:
            return summary.listen_calls, summary.reservation_calls
    return 0, 0


async def _pending(agent: str) -> int:
    connection = perper.get_connection()
    answer = await connection.retry(
        connection.introspection.ListExecutions,
        introspection_pb2.IntrospectionListExecutionsRequest(agent=agent))
    return len(answer.executions)


def test_a_process_opens_one_reservation_call_for_all_its_delegates(fabric):
    async def count(n):
        for i in range(n):
            yield i

    handlers = {"Double": lambda x: 2 * x, "Name": lambda: "three", "Count": count}

    async def body():
        async with session(fabric.address, agent="Three", handlers=handlers):
            # Three delegates (one a stream delegate), Start and Stop: one call in all.
            assert await _listeners("Three") == (0, 1)
            # Each execution reaches the handler of its delegate.
            assert await perper.call("Double", 21) == 42
            assert await perper.call("Name") == "three"
            assert [item async for item in await perper.stream("Count", 3)] == [0, 1, 2]
            assert await _listeners("Three") == (0, 1)

        async def closed() -> bool:
            return await _listeners("Three") == (0, 0)
        async with session(fabric.address, agent="Observer"):
            await _until(closed)
    run(body())


class _Held:
    """Handlers that wait until released, counting how many run at once. Make it in the loop."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.released = asyncio.Event()

    def handler(self, name: str):
        async def hold(i):
            self.running += 1
            self.peak = max(self.peak, self.running)
            try:
                await self.released.wait()
            finally:
                self.running -= 1
            return f"{name}{i}"
        return hold


def test_concurrency_counts_the_executions_of_every_delegate_together(fabric):
    async def all_waiting() -> bool:
        return await _pending("Busy") == 6

    async def body():
        held = _Held()

        async def two_running() -> bool:
            return held.running == 2
        async with session(fabric.address, agent="Caller"):
            # Six executions of three delegates wait before the process starts, so that the
            # Fabric delivers what the credits allow before the call's start_of_stream.
            busy = perper.Agent("Busy", "busy-1")
            calls = [asyncio.ensure_future(busy.call(name, i))
                     for name in ("A", "B", "C") for i in range(2)]
            await _until(all_waiting)
            application = perper.Application(
                "Busy", {name: held.handler(name) for name in ("A", "B", "C")},
                endpoint=fabric.address, concurrency=2)
            await application.start()
            try:
                await application.ready(10)
                assert len(application._running) == 2  # delivered: two of the six
                await _until(two_running)
                held.released.set()
                assert sorted(await asyncio.wait_for(asyncio.gather(*calls), 10)) == [
                    "A0", "A1", "B0", "B1", "C0", "C1"]
                assert held.peak == 2
            finally:
                await application.stop()
    run(body())


def test_an_execution_of_a_delegate_without_a_handler_fails_until_one_is_registered(fabric):
    async def body():
        async with session(fabric.address, agent="Partial",
                           handlers={"Known": lambda: "known"}) as application:
            assert await perper.call("Known") == "known"
            with pytest.raises(perper.ExecutionFailedError) as error:
                await asyncio.wait_for(perper.call("Later", 1), 10)
            assert error.value.message == "agent Partial has no delegate Later"
            # Start and Stop without handlers complete with no result.
            started = await asyncio.wait_for(perper.start_agent("Partial"), 10)
            assert started.start_result is None
            await asyncio.wait_for(started.destroy(), 10)
            # A handler registered while serving takes the next execution.
            application.register("Later", lambda x: x + 1)
            assert await asyncio.wait_for(perper.call("Later", 1), 10) == 2
            assert await _listeners("Partial") == (0, 1)
    run(body())


# A workgroup over the Fabric's ID limit (1024 bytes): the Fabric refuses the call with
# INVALID_ARGUMENT, whatever is retried.
REFUSED_AGENT = """
import perper

perper.run("Refused", {"Work": lambda: 1}, workgroup="w" * 2000)
"""


def test_a_refused_reservation_call_ends_the_process_with_exit_code_1(fabric):
    agent = subprocess.run([sys.executable, "-c", REFUSED_AGENT], capture_output=True, text=True,
                           timeout=60, env=python_env(fabric.address))
    assert agent.returncode == 1, agent.stderr
    assert "Traceback" not in agent.stderr
    assert re.fullmatch(PREFIX + re.escape("E sdk: [agent=Refused] listen call ended: 3 workgroup "
                                           "is 2000 bytes, over the limit of 1024 bytes") + " .*",
                        agent.stderr.splitlines()[-1]), agent.stderr
    assert "reconnecting" not in agent.stderr


def test_serve_raises_when_the_reservation_call_is_refused(fabric):
    async def body():
        application = perper.Application("Refused", {"Work": lambda: 1}, workgroup="w" * 2000,
                                          endpoint=fabric.address)
        with pytest.raises(perper.ReservationRefusedError) as error:
            await application.serve()
        assert (error.value.agent, error.value.code) == ("Refused", "INVALID_ARGUMENT")
        assert "workgroup is 2000 bytes" in str(error.value)
        # ready() says the same to a notebook that only started.
        notebook = await perper.connect("Refused", endpoint=fabric.address, workgroup="w" * 2000)
        try:
            with pytest.raises(perper.ReservationRefusedError):
                await notebook.ready(10)
        finally:
            await notebook.stop()
    run(body())
