"""A call to an agent no process serves says so, and goes on waiting for one."""

from __future__ import annotations

import asyncio
import logging

import pytest

import perper
import perper.model

from conftest import run


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def count(self, text: str) -> int:
        return sum(text in message for message in self.messages)


@pytest.fixture
def records(monkeypatch):
    """The SDK's log lines, with the unserved check after 0.2 s instead of 5."""
    monkeypatch.setattr(perper.model, "UNSERVED_CHECK_AFTER", 0.2)
    handler = _Records()
    logging.getLogger("perper").addHandler(handler)
    yield handler
    logging.getLogger("perper").removeHandler(handler)


async def _until(condition, timeout: float) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.02)
    await asyncio.wait_for(poll(), timeout)


def test_a_call_nobody_serves_says_so_and_is_answered_once_a_process_serves(fabric, records):
    async def body():
        app = await perper.run_notebook(endpoint=fabric.address)
        try:
            call = asyncio.ensure_future(perper.Agent("Lonely", "lonely-1").call("Plus", 1))
            await _until(lambda: records.count("no process serves agent Lonely") > 0, 10)
            assert not call.done()
            lonely = perper.Application("Lonely", {"Plus": lambda x: x + 1},
                                        endpoint=fabric.address)
            serving = asyncio.ensure_future(lonely.serve())
            try:
                assert await asyncio.wait_for(call, 10) == 2
            finally:
                lonely.request_stop()
                await asyncio.wait_for(serving, 10)
            assert records.count("no process serves agent Lonely") == 1
            # Named as the C++ SDK names it: the waiting agent first.
            assert records.count("[agent=notebook exec=") == 1, records.messages

            # A served agent that takes longer than the check: no warning.
            async def slow(x):
                await asyncio.sleep(0.6)
                return x
            app.register("Slow", slow)
            await app.ready(10)
            assert await perper.call("Slow", 7) == 7
            assert records.count("no process serves agent notebook") == 0
        finally:
            await app.stop()
    run(body(), timeout=40)


def test_starting_an_agent_nobody_serves_says_so_and_starts_once_one_serves(fabric, records):
    # A Deploy's start_agent("Sensor") waits for a process of Sensor to run Start; with none
    # (say a process serving "sensor" instead), the wait is named, not silent.
    async def body():
        app = await perper.run_notebook(endpoint=fabric.address)
        try:
            starting = asyncio.ensure_future(perper.start_agent("Sensor", 5))
            await _until(lambda: records.count("no process serves agent Sensor") > 0, 10)
            assert not starting.done()
            warning = next(m for m in records.messages if "no process serves agent Sensor" in m)
            assert warning.startswith("[agent=notebook exec=Run-"), warning
            assert "waiting for Sensor" in warning, warning
            def serve_sensor():
                sensor = perper.Application("Sensor", {"Start": lambda x: x * 2},
                                            endpoint=fabric.address)
                return sensor, asyncio.ensure_future(sensor.serve())

            async def stop_sensor(sensor, serving):
                sensor.request_stop()
                await asyncio.wait_for(serving, 10)

            sensor, serving = serve_sensor()
            try:
                started = await asyncio.wait_for(starting, 10)
            finally:
                await stop_sensor(sensor, serving)
            assert started.agent == "Sensor" and started.start_result == 10
            assert records.count("no process serves agent Sensor") == 1

            # Destroying it runs its Stop in a process of Sensor: with none, named too.
            destroying = asyncio.ensure_future(started.destroy())
            await _until(lambda: records.count("no process serves agent Sensor") == 2, 10)
            assert not destroying.done()
            sensor, serving = serve_sensor()
            try:
                await asyncio.wait_for(destroying, 10)
            finally:
                await stop_sensor(sensor, serving)
            assert records.count("no process serves agent Sensor") == 2
        finally:
            await app.stop()
    run(body(), timeout=40)
