"""A call to an agent no process serves says so, and goes on waiting for one."""

from __future__ import annotations

import asyncio
import logging

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


async def _until(condition, timeout: float) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.02)
    await asyncio.wait_for(poll(), timeout)


def test_a_call_nobody_serves_says_so_and_is_answered_once_a_process_serves(fabric, monkeypatch):
    monkeypatch.setattr(perper.model, "UNSERVED_CHECK_AFTER", 0.2)
    records = _Records()
    logging.getLogger("perper").addHandler(records)

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
            logging.getLogger("perper").removeHandler(records)
    run(body(), timeout=40)
