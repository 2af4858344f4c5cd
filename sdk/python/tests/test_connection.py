"""The connection: configuration, and waiting for a Fabric that restarts."""

from __future__ import annotations

import asyncio

import perper
from perper.connection import endpoint_from_env

from conftest import FabricProcess, run, session


def test_endpoint_from_environment(monkeypatch):
    monkeypatch.setenv("PERPER_FABRIC_ENDPOINT", "http://127.0.0.1:1234")
    assert endpoint_from_env() == "127.0.0.1:1234"
    monkeypatch.delenv("PERPER_FABRIC_ENDPOINT")
    assert endpoint_from_env() == "127.0.0.1:40400"


def test_calls_and_listeners_carry_on_after_the_fabric_crashes_and_restarts(fabric):
    async def body():
        nonlocal fabric
        async with session(fabric.address, handlers={"Echo": lambda x: x}):
            assert await perper.call("Echo", 1) == 1
            address = fabric.address
            fabric.kill()
            fabric.stop()
            # Issued while the Fabric is down: waits, then goes through once it is back.
            pending = asyncio.create_task(perper.call("Echo", 2))
            fabric = await asyncio.to_thread(FabricProcess, address)
            assert await asyncio.wait_for(pending, 15) == 2
            # The handler's listen call reconnected by itself.
            assert await perper.call("Echo", 3) == 3
            await perper.state().set("after", True)
            assert await perper.state().get("after") is True
    try:
        run(body(), timeout=30)
    finally:
        fabric.stop()


def test_stream_enumeration_carries_on_after_the_fabric_crashes(tmp_path):
    data_dir = str(tmp_path / "data")
    fabric = FabricProcess(data_dir=data_dir)

    async def body():
        nonlocal fabric
        async with session(fabric.address):
            stream = await perper.blank_stream(ephemeral=False, stride=1)
            for key in range(5):
                await stream.write(key, key)
            items = stream.items(listener="survivor")
            received = [await items.__anext__() for _ in range(3)]
            address = fabric.address
            fabric.kill()
            fabric.stop()
            fabric = await asyncio.to_thread(FabricProcess, address, data_dir)
            for key in range(5, 10):
                await stream.write(key, key)
            await stream.complete()
            received += [item async for item in items]
            assert received == [(k, k) for k in range(10)]
    try:
        run(body(), timeout=30)
    finally:
        fabric.stop()
