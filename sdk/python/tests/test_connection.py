"""The connection: configuration, and waiting for a Fabric that restarts."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

import perper
from perper import values
from perper._stubs import states_pb2
from perper.connection import Backoff, FabricConnection, endpoints_from_env

from conftest import FabricProcess, kill, run, session, start_restart_agent


def test_backoff_grows_by_half_up_to_two_seconds_within_twenty_percent():
    # The back-off every SDK shares (STYLE.md): 50 ms growing x1.5 up to 2 s, each delay within
    # 20 % either side; reset starts again from 50 ms.
    backoff = Backoff()
    expected = 0.05
    for attempt in range(30):
        delay = backoff.next_delay()
        assert expected * 0.8 - 1e-9 <= delay <= expected * 1.2 + 1e-9, (attempt, delay)
        expected = min(expected * 1.5, 2.0)
    assert expected == 2.0
    backoff.reset()
    assert 0.04 - 1e-9 <= backoff.next_delay() <= 0.06 + 1e-9


def test_endpoint_from_environment(monkeypatch):
    monkeypatch.setenv("PERPER_FABRIC_ENDPOINT", "http://127.0.0.1:1234")
    assert endpoints_from_env() == ["127.0.0.1:1234"]
    monkeypatch.delenv("PERPER_FABRIC_ENDPOINT")
    assert endpoints_from_env() == ["127.0.0.1:40400"]


def test_endpoint_lists_from_environment(monkeypatch):
    monkeypatch.setenv("PERPER_FABRIC_ENDPOINT", "a:1,b:2,http://c:3")
    assert endpoints_from_env() == ["a:1", "b:2", "c:3"]
    monkeypatch.setenv("PERPER_FABRIC_ENDPOINT", " http://a:1/ ,  b:2\t")
    assert endpoints_from_env() == ["a:1", "b:2"]
    for value in ("a:1,,b:2", "a:1,", " , b:2", "http://"):
        monkeypatch.setenv("PERPER_FABRIC_ENDPOINT", value)
        with pytest.raises(ValueError) as error:
            endpoints_from_env()
        assert str(error.value) == f"PERPER_FABRIC_ENDPOINT '{value}' has an empty address"
    monkeypatch.setenv("PERPER_FABRIC_ENDPOINT", "a:1,https://b:2")
    with pytest.raises(ValueError) as error:
        endpoints_from_env()
    assert str(error.value) == ("PERPER_FABRIC_ENDPOINT 'a:1,https://b:2': https://b:2: "
                                "TLS is not supported yet")
    with pytest.raises(ValueError) as error:
        FabricConnection("a:1, ,b:2")
    assert str(error.value) == "endpoint 'a:1, ,b:2' has an empty address"


def test_the_start_address_is_pid_modulo_count_unless_pinned(monkeypatch):
    monkeypatch.delenv("PERPER_FABRIC_ENDPOINT_INDEX", raising=False)
    connection = FabricConnection("a:1,b:2,c:3")
    assert connection.endpoint == ["a:1", "b:2", "c:3"][os.getpid() % 3]
    assert FabricConnection("a:1").endpoint == "a:1"
    monkeypatch.setenv("PERPER_FABRIC_ENDPOINT_INDEX", "4")
    assert FabricConnection("a:1,b:2,c:3").endpoint == "b:2"
    assert FabricConnection("a:1,b:2,c:3", start_index=2).endpoint == "c:3"
    monkeypatch.setenv("PERPER_FABRIC_ENDPOINT_INDEX", "x")
    with pytest.raises(ValueError):
        FabricConnection("a:1,b:2")


def test_moving_goes_round_robin_once_per_failed_address():
    connection = FabricConnection("a:1,b:2,c:3", start_index=2)
    connection.moved_from("c:3")
    assert connection.endpoint == "a:1"
    connection.moved_from("c:3")  # a second call that failed on c: already moved away
    assert connection.endpoint == "a:1"
    connection.moved_from("a:1")
    assert connection.endpoint == "b:2"


def free_address() -> str:
    """A loopback address with nothing listening on it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def test_a_client_whose_start_address_is_dead_reaches_the_next(fabric, monkeypatch):
    monkeypatch.setenv("PERPER_FABRIC_ENDPOINT_INDEX", "0")
    dead = free_address()

    async def body():
        async with session(f"{dead},{fabric.address}", handlers={"Echo": lambda x: x}):
            assert await perper.call("Echo", 1) == 1
            await perper.state().set("reached", True)
            assert await perper.state().get("reached") is True
            assert perper.get_connection().endpoint == fabric.address
    run(body(), timeout=30)


def test_an_agent_moves_to_the_next_fabric_when_its_fabric_is_killed():
    a, b = FabricProcess(), FabricProcess()
    agent = None
    try:
        agent = start_restart_agent("mover", f"{a.address},{b.address}",
                                    PERPER_FABRIC_ENDPOINT_INDEX="0")

        async def on(address: str) -> str:
            async with session(address):
                return await perper.Agent("Mover", "mover-1").call("Where")

        assert run(on(a.address), timeout=30) == a.address
        a.kill()
        # Created on B after A died: served by the agent, which has moved to B.
        assert run(on(b.address), timeout=30) == b.address
        agent.kill()
        agent.wait()
        # One line names the old and the new address.
        assert f"W sdk: [agent=Mover] Fabric {a.address} unavailable; moving to {b.address}" in \
            agent.stderr.read().decode()
    finally:
        kill(agent)
        a.stop()
        b.stop()


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


def test_snapshot_reads_move_past_a_dead_start_address(fabric):
    dead = free_address()

    async def body():
        async with session(fabric.address):
            dictionary = perper.dictionary("moved")
            await dictionary.set("a", 1)
            await dictionary.set("b", 2)
            connection = FabricConnection(f"{dead},{fabric.address}", start_index=0)
            try:
                request = states_pb2.StatesDictionaryListItemsRequest(
                    dictionary=dictionary.to_message())
                items = [(values.unpack(item.key), values.unpack(item.value)) async for item in
                         connection.snapshot(connection.dictionaries.ListItems, request)]
            finally:
                await connection.close()
            assert items == [("a", 1), ("b", 2)]
            assert connection.endpoint == fabric.address
    run(body(), timeout=30)
