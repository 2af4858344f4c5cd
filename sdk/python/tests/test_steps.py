"""Restart-safe pipelines: a producer's progress (Stream.progress, perper.stream_progress) and a
consumer's atomic step (Stream.step), with processes killed with SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import random

import perper
from perper.grpc2 import introspection_pb2

from conftest import kill, run, session, start_restart_agent


async def listener_position(stream: perper.Stream, listener: str):
    """The position of a named listener as the Fabric reports it (None: no such listener)."""
    response = await perper.get_connection().introspection.ListStreams(
        introspection_pb2.IntrospectionListStreamsRequest(stream_prefix=stream.stream))
    for summary in response.streams:
        if summary.stream == stream.stream:
            for entry in summary.listeners:
                if entry.name == listener:
                    return entry.position
    return None


def test_progress_tells_the_last_key_and_the_items_ever_written(fabric):
    async def body():
        async with session(fabric.address):
            stream = await perper.blank_stream(ephemeral=False)
            assert await stream.progress() == perper.StreamProgress(None, 0, False)
            for value in "abc":
                await stream.write(value)
            progress = await stream.progress()
            await stream.complete()
            keys = [key async for key, _ in stream.replay(0).items()]
            assert progress == perper.StreamProgress(keys[-1], 3, False)
            assert await stream.progress() == perper.StreamProgress(keys[-1], 3, True)
            packed = await perper.blank_stream(ephemeral=False, stride=1)
            await packed.write("x", 7)
            await packed.write("x", 7)  # an identical rewrite (a replay) does not count
            await packed.write("y", 2)
            assert await packed.progress() == perper.StreamProgress(7, 2, False)
    run(body())


def test_a_producer_run_again_resumes_after_what_it_wrote(fabric):
    async def body():
        async with session(fabric.address):
            first = start_restart_agent("producer", fabric.address)
            second = None
            try:
                stream = await perper.Agent("Producer", "p-1").call("Numbers", 200)
                # The first run holds after 100 items; kill it there.
                while (await stream.progress()).written_count < 100:
                    await asyncio.sleep(0.01)
                kill(first)
                # Gets the producer's execution again and runs it again.
                second = start_restart_agent("producer", fabric.address)
                items = [item async for item in stream.replay(0)]
            finally:
                kill(first, second)
            assert items == list(range(200))
            assert await perper.Dictionary("p-1-").get("producer-runs") == 2
            progress = await stream.progress()
            assert progress.written_count == 200 and progress.completed
    run(body(), timeout=40)


def test_a_step_applies_its_changes_and_moves_the_listener_together(fabric):
    async def body():
        async with session(fabric.address):
            stream = await perper.blank_stream(ephemeral=False, stride=1)
            state = perper.dictionary()
            result = await stream.step("sum", 0, state.changes().set("total", 5).set("n", 1))
            assert result == perper.StepResult(True, False, False, 0)
            assert await state.get("total") == 5 and await state.get("n") == 1
            assert await listener_position(stream, "sum") == 0

            # Taken already: nothing applies.
            again = await stream.step("sum", 0, state.changes().set("total", 99))
            assert again == perper.StepResult(False, True, False, 0)
            assert await state.get("total") == 5

            # A failed compare: nothing applies, the listener stays.
            refused = await stream.step("sum", 1, state.changes().set("n", 2)
                                        .compare_and_set("total", 4, 9))
            assert refused == perper.StepResult(False, False, False, 0)
            assert await state.get("n") == 1
            assert await listener_position(stream, "sum") == 0

            # A fence against a second consumer.
            fenced = await stream.step("sum", 1, state.changes().remove("n"),
                                       expected_position=7)
            assert fenced.position_mismatch and not fenced.applied
            done = await stream.step("sum", 3, state.changes().remove("n")
                                     .compare_and_set("total", 5, 6), expected_position=0)
            assert done == perper.StepResult(True, False, False, 3)
            assert await state.get("n") is None and await state.get("total") == 6

            # No changes: only the move.
            assert (await stream.step("sum", 4)).applied
            assert await listener_position(stream, "sum") == 4
    run(body())


def test_the_sdks_own_acknowledgements_never_move_a_listener_below_a_step(fabric):
    async def body():
        async with session(fabric.address):
            stream = await perper.blank_stream(ephemeral=False, stride=1)
            for key in range(10):
                await stream.write(key, key)
            await stream.complete()
            state = perper.dictionary()
            # Stops right after stepping item 4: item 3 is acknowledged but item 4 is not (it
            # was never asked past), so closing the enumeration stores the acknowledgement of
            # 3 - which must not undo the step to 4.
            async with contextlib.aclosing(stream.items(listener="l")) as items:
                async for key, value in items:
                    # The first item too: the listener starts as having processed nothing.
                    assert (await stream.step("l", key, state.changes().set("last", value))
                            ).applied
                    if key == 4:
                        break
            assert await listener_position(stream, "l") == 4
            # Resuming delivers item 4 again; its step is already taken.
            async with contextlib.aclosing(stream.items(listener="l")) as items:
                key, value = await items.__anext__()
                assert key == 4
                assert (await stream.step("l", key, state.changes().set("last", -1))).already_taken
                async for key, value in items:
                    await stream.step("l", key, state.changes().set("last", value))
            assert await state.get("last") == 9
            assert await listener_position(stream, "l") == 9
    run(body())


def test_a_consumer_killed_anywhere_counts_every_item_exactly_once(fabric):
    items = 600
    kills = 5
    rng = random.Random()

    async def body():
        async with session(fabric.address):
            stream = await perper.blank_stream(ephemeral=False, stride=1)
            for start in range(0, items, 100):
                await asyncio.gather(*(stream.write(key + 1, key)
                                       for key in range(start, start + 100)))
            await stream.complete()
            state = perper.Dictionary("Consumer-Main-")
            killed_at = []
            for _ in range(kills):
                consumer = start_restart_agent("consumer", fabric.address, STREAM=stream.stream)
                try:
                    # Kill it once it has gone a random distance further.
                    target = await state.get("count", 0) + rng.randrange(1, items // kills)
                    while (await state.get("count", 0)) < target and consumer.poll() is None:
                        await asyncio.sleep(0.002)
                    killed_at.append(await state.get("count", 0))
                finally:
                    kill(consumer)
            last = start_restart_agent("consumer", fabric.address, STREAM=stream.stream)
            try:
                _, errors = await asyncio.to_thread(last.communicate, timeout=60)
            finally:
                kill(last)
            assert last.returncode == 0, errors.decode(errors="replace")
            assert await state.get("count") == items, killed_at
            assert await state.get("total") == items * (items + 1) // 2, killed_at
            assert await listener_position(stream, "average") == items - 1
    run(body(), timeout=120)
