"""The protocol extensions that save messages: several stream items per listen response, and
execution completions riding on the ListenAndReserve call (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import perper
from perper._stats import COUNTERS

from conftest import FabricProcess, run, session

ITEMS = 3000


async def collect(aiterable) -> list:
    return [item async for item in aiterable]


async def wait_until(condition, timeout: float = 10.0) -> None:
    """Waits until condition() is true (polling the event loop), failing after `timeout`."""
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)
    await asyncio.wait_for(poll(), timeout)


class HeldHandler:
    """A handler that counts its runs, sets `started`, and answers x + 1 once `release` is set.
    Create it inside the test's event loop."""

    def __init__(self) -> None:
        self.runs = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, x):
        self.runs += 1
        self.started.set()
        await self.release.wait()
        return x + 1


async def fill(stream: perper.Stream, keys: range) -> None:
    """Writes "v{key}" under each key, many writes at a time."""
    for start in range(keys.start, keys.stop, 500):
        await asyncio.gather(*(stream.write(f"v{key}", key)
                               for key in range(start, min(start + 500, keys.stop))))


def test_readers_receive_several_items_per_message_in_key_order(fabric):
    async def body():
        async with session(fabric.address):
            stream = await perper.blank_stream(ephemeral=False, stride=1)
            await fill(stream, range(ITEMS))
            await stream.complete()
            expected = [(key, f"v{key}") for key in range(ITEMS)]

            COUNTERS.reset()
            assert await collect(stream.items()) == expected  # ListenItems
            assert COUNTERS.listen_items == ITEMS
            # Several items per response message (the Fabric caps a message at 256 items).
            assert ITEMS // 256 <= COUNTERS.listen_responses <= ITEMS // 4

            COUNTERS.reset()
            got = await collect(stream.items(listener="batched"))  # ListenItemsAndMove
            assert got == expected
            assert COUNTERS.listen_responses <= ITEMS // 4

            # A named listener that stops in the middle of a message resumes at the last item
            # the consumer took, not at the end of that message.
            first = []
            async with contextlib.aclosing(stream.items(listener="partial")) as items:
                async for key, value in items:
                    first.append(key)
                    if key == 1000:
                        break  # 0..999 taken; 1000 received but not taken
            assert first == list(range(1001))
            assert await collect(stream.items(listener="partial")) == expected[999:]
    run(body())


def test_a_live_reader_gets_a_fast_producer_in_order(fabric):
    async def count(n):
        for i in range(n):
            yield i

    async def body():
        async with session(fabric.address, handlers={"Count": count}):
            COUNTERS.reset()
            stream = await perper.stream("Count", ITEMS)
            assert await collect(stream) == list(range(ITEMS))
            assert COUNTERS.listen_items == ITEMS
            assert COUNTERS.listen_responses < ITEMS
    run(body())


def test_a_batched_reader_resumes_after_the_last_item_taken_when_the_fabric_crashes(tmp_path):
    data_dir = str(tmp_path / "data")
    fabric = FabricProcess(data_dir=data_dir)

    async def body():
        nonlocal fabric
        async with session(fabric.address):
            stream = await perper.blank_stream(ephemeral=False, stride=1)
            await fill(stream, range(1000))
            named = stream.items(listener="survivor")
            anonymous = stream.items()
            # Both stop in the middle of a response message.
            received = [await named.__anext__() for _ in range(300)]
            received_anonymous = [await anonymous.__anext__() for _ in range(300)]
            address = fabric.address
            fabric.kill()
            fabric.stop()
            fabric = await asyncio.to_thread(FabricProcess, address, data_dir)
            await fill(stream, range(1000, 1200))
            await stream.complete()
            received += await collect(named)
            received_anonymous += await collect(anonymous)
            expected = [(key, f"v{key}") for key in range(1200)]
            assert received == expected
            assert received_anonymous == expected
    try:
        run(body(), timeout=30)
    finally:
        fabric.stop()


def test_completions_ride_on_the_reservation_call(fabric):
    started = 0
    release = None
    all_started = None

    async def hold(x):
        nonlocal started
        started += 1
        if started == 50:
            all_started.set()
        await release.wait()
        return x * 2

    def fail(text):
        raise ValueError(text)

    async def body():
        nonlocal release, all_started
        release, all_started = asyncio.Event(), asyncio.Event()
        async with session(fabric.address, handlers={"Hold": hold, "Echo": lambda x: x,
                                                     "Fail": fail}):
            COUNTERS.reset()
            assert [await perper.call("Echo", i) for i in range(20)] == list(range(20))
            try:
                await perper.call("Fail", "broken")
                raise AssertionError("the call did not fail")
            except perper.ExecutionFailedError as e:
                assert "ValueError: broken" in e.message
            assert COUNTERS.unary_completes == 0
            assert COUNTERS.reservation_completions == 21

            # Fifty handlers that return together: their completions share a few messages.
            COUNTERS.reset()
            calls = asyncio.gather(*(perper.call("Hold", i) for i in range(50)))
            await asyncio.wait_for(all_started.wait(), 10)
            release.set()
            assert await calls == [i * 2 for i in range(50)]
            assert COUNTERS.unary_completes == 0
            assert COUNTERS.reservation_completions == 50
            assert COUNTERS.reservation_messages <= 10
    run(body())


def test_a_result_ready_while_disconnected_goes_with_the_unary_complete(tmp_path):
    data_dir = str(tmp_path / "data")
    fabric = FabricProcess(data_dir=data_dir)

    async def body():
        nonlocal fabric
        hold = HeldHandler()
        async with session(fabric.address, handlers={"Hold": hold}) as application:
            pending = asyncio.create_task(perper.call("Hold", 41))
            await asyncio.wait_for(hold.started.wait(), 10)
            address = fabric.address
            COUNTERS.reset()
            fabric.kill()
            fabric.stop()
            await wait_until(lambda: application._call is None)
            hold.release.set()  # returns while there is no reservation call
            await wait_until(lambda: COUNTERS.unary_completes == 1)
            fabric = await asyncio.to_thread(FabricProcess, address, data_dir)
            assert await asyncio.wait_for(pending, 15) == 42
            assert hold.runs == 1
    try:
        run(body(), timeout=30)
    finally:
        fabric.stop()


def test_a_completion_the_fabric_did_not_read_is_sent_again(tmp_path):
    data_dir = str(tmp_path / "data")
    fabric = FabricProcess(data_dir=data_dir)

    async def body():
        nonlocal fabric
        hold = HeldHandler()
        async with session(fabric.address, handlers={"Hold": hold}):
            pending = asyncio.create_task(perper.call("Hold", 1))
            await asyncio.wait_for(hold.started.wait(), 10)
            address = fabric.address
            COUNTERS.reset()
            # A stopped Fabric reads nothing: the completion is written but never applied.
            os.kill(fabric.process.pid, signal.SIGSTOP)
            hold.release.set()
            await wait_until(lambda: COUNTERS.reservation_completions == 1)
            assert COUNTERS.unary_completes == 0
            fabric.kill()
            fabric.stop()
            # The reservation call ended: its unconfirmed completion goes with the unary
            # Complete, so the handler does not run again when the execution is redelivered.
            fabric = await asyncio.to_thread(FabricProcess, address, data_dir)
            assert await asyncio.wait_for(pending, 15) == 2
            await wait_until(lambda: COUNTERS.unary_completes == 1)
            assert hold.runs == 1
    try:
        run(body(), timeout=30)
    finally:
        fabric.stop()
