"""Streams: generator delegates, completion and failure, blank streams, replay, listeners."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

import perper

from conftest import run, session


async def collect(aiterable) -> list:
    return [item async for item in aiterable]


async def count(n):
    for i in range(n):
        yield i


@perper.stream_delegate(persistent=True, packed=True)
async def shuffled(n):
    # Keys 1, 2, 0, 4, 5, 3, ... written out of order; readers get them in key order.
    for i in range(n):
        j = (i // 3) * 3 + (i + 1) % 3
        yield j, f"message {j}"


async def failing():
    yield "first"
    raise RuntimeError("producer broke")


def test_generator_stream_delivers_every_item_then_ends(fabric):
    async def body():
        async with session(fabric.address, handlers={"Count": count}):
            stream = await perper.stream("Count", 5)
            assert stream.stream.startswith("Count-stream-") and stream.stride == 0
            assert await collect(stream) == [0, 1, 2, 3, 4]
            # Called as a delegate (another SDK's way), the result is the stream.
            called = await perper.call("Count", 3)
            assert isinstance(called, perper.Stream)
            assert await collect(called.values(type=int)) == [0, 1, 2]
    run(body())


def test_ephemeral_producer_waits_for_a_live_listener(fabric):
    async def body():
        async with session(fabric.address, handlers={"Count": count}):
            stream = await perper.stream("Count", 20)
            # Reading live loses nothing: the producer starts once the listener exists.
            assert await collect(stream.live()) == list(range(20))
    run(body())


def test_packed_stream_delivers_out_of_order_writes_in_key_order(fabric):
    async def body():
        async with session(fabric.address, handlers={"Shuffled": shuffled}):
            stream = await perper.stream("Shuffled", 12)
            assert stream.stride == 1
            items = await collect(stream.items())
            assert items == [(k, f"message {k}") for k in range(12)]
            # Persistent: replaying from a key gives the rest again.
            assert [k for k, _ in await collect(stream.replay(7).items())] == list(range(7, 12))
    run(body())


def test_generator_failure_fails_the_stream(fabric):
    async def body():
        async with session(fabric.address, handlers={"Failing": failing}):
            stream = await perper.stream("Failing")
            received = []
            with pytest.raises(perper.StreamFailedError, match="producer broke"):
                async for value in stream:
                    received.append(value)
            assert received == ["first"]
    run(body())


def test_blank_stream_written_by_its_holder(fabric):
    async def body():
        async with session(fabric.address):
            stream = await perper.blank_stream(ephemeral=False, stride=1)
            reader = asyncio.create_task(collect(stream.items()))
            for key in (1, 0, 2):
                await stream.write(f"v{key}", key)
            await stream.complete()
            assert await reader == [(0, "v0"), (1, "v1"), (2, "v2")]

            unpacked = await perper.blank_stream()
            reader = asyncio.create_task(collect(unpacked))
            await unpacked.wait_for_listener()
            for value in ("a", "b", None, 3):
                await unpacked.write(value)
            await unpacked.complete("writer gave up")
            with pytest.raises(perper.StreamFailedError, match="writer gave up"):
                await reader
    run(body())


def test_named_listener_resumes_after_its_last_acknowledged_item(fabric):
    async def body():
        async with session(fabric.address):
            stream = await perper.blank_stream(ephemeral=False, stride=1)
            for key in range(10):
                await stream.write(key * 10, key)
            await stream.complete()
            first = []
            async with contextlib.aclosing(stream.items(listener="reader")) as items:
                async for key, value in items:
                    first.append(key)
                    if key == 4:
                        break  # 0..3 acknowledged; 4 was received but not acknowledged
            assert first == [0, 1, 2, 3, 4]
            # Resumes at the last acknowledged item (delivered again: at-least-once).
            second = await collect(stream.items(listener="reader"))
            assert second == [(k, k * 10) for k in range(3, 10)]
            # The last item was acknowledged too (after the Fabric ended the call).
            assert await collect(stream.items(listener="reader")) == [(9, 90)]
            # Another listener name starts from the reference's start key.
            assert len(await collect(stream.items(listener="other"))) == 10
    run(body())


def test_action_stream_runs_without_a_consumer(fabric):
    @perper.stream_delegate(action=True)
    async def ticker():
        await perper.state().set("ticked", True)
        yield 1

    async def body():
        async with session(fabric.address, handlers={"Ticker": ticker}):
            stream = await perper.stream("Ticker")
            state = perper.state()
            while not await state.get("ticked", False):
                await asyncio.sleep(0.01)
            assert await collect(stream) == [1]
    run(body())


def test_streams_passed_to_another_agent(fabric):
    async def total(stream):
        return sum([value async for value in stream])

    async def body():
        async with session(fabric.address, agent="Summer", handlers={"Total": total}):
            async with session(fabric.address, agent="Producer", handlers={"Count": count}):
                stream = await perper.stream("Count", 101)
                summer = perper.Agent("Summer", "s-1")
                assert await summer.call("Total", stream) == 5050
    run(body())


def test_a_refused_write_fails_the_stream(fabric):
    async def duplicate():
        yield 0, "a"
        yield 0, "b"  # the key is used already

    async def body():
        async with session(fabric.address, handlers={"Duplicate": duplicate}):
            stream = await perper.stream("Duplicate")
            received = []
            with pytest.raises(perper.StreamFailedError, match="ALREADY_EXISTS"):
                async for value in stream:
                    received.append(value)
            assert received in ([], ["a"])  # the two writes may share one atomic batch
    run(body())


def test_a_fast_generator_is_written_completely_and_in_order(fabric):
    async def body():
        async with session(fabric.address, handlers={"Count": count}):
            stream = await perper.stream("Count", 2000)
            assert await collect(stream) == list(range(2000))
    run(body())
