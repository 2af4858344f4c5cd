#!/usr/bin/python3
"""The basic sample (scenario S1) in one agent process.

- Streams: a packed, persistent generator of 28 keyed items written out of order; a processor
  reading it in key order and emitting batches of 10 (and the final partial batch); an action
  consumer printing each batch.
- A cycle: Node1 and Node2 consume each other's streams until Node1 has received 11.
- Calls: random numbers, several results, a parameter count, a void call, an async call.

The program exits once Deploy is done: every finite stream completes.
Run: PERPER_FABRIC_ENDPOINT=127.0.0.1:40400 /usr/bin/python3 basic_sample.py
"""

import asyncio
import random

import perper

BATCH = 10


@perper.stream_delegate(persistent=True, packed=True)
async def generator(count: int):
    for i in range(count):
        key = (i // 3) * 3 + (i + 1) % 3  # 1, 2, 0, 4, 5, 3, ...
        if key >= count:
            key = i
        print(f"Generating message {key}", flush=True)
        yield key, f"message {key}"


async def processor(messages: perper.Stream, batch_size: int):
    batch = []
    async for message in messages:
        print(f"Processing {message}", flush=True)
        batch.append(message)
        if len(batch) == batch_size:
            yield ",".join(batch)
            batch = []
    if batch:
        yield ",".join(batch)


@perper.stream_delegate(action=True)
async def consumer(batches: perper.Stream):
    async for batch in batches:
        print(f"Received batch of {len(batch.split(','))} messages.", flush=True)
        print(batch, flush=True)
    return
    yield  # an action stream that produces nothing


async def node1(other: perper.Stream):
    yield 1
    async for n in other:
        print(f"Node 1 received {n}.", flush=True)
        if n >= 11:
            return
        yield n - 1


@perper.stream_delegate(action=True)
async def node2(other: perper.Stream):
    async for n in other:
        print(f"Node 2 received {n}.", flush=True)
        yield n + 2


def get_random_number(low: int, high: int) -> int:
    return random.randint(low, high - 1)


def get_two_random_numbers(low: int, high: int):
    return random.randint(low, high - 1), random.randint(low, high - 1)


def count_params(first, *rest) -> int:
    return 1 + len(rest)


def do_something(message: str) -> None:
    print(f"DoSomething called: {message}", flush=True)


async def do_something_async(message: str) -> None:
    await asyncio.sleep(0.01)
    print(f"DoSomethingAsync called: {message}", flush=True)


async def deploy():
    # Streams.
    messages = await perper.stream("Generator", 28)
    batches = await perper.stream("Processor", messages.replay(0), BATCH)
    consumed = await perper.stream("Consumer", batches)

    # The cycle: Node1's stream is declared first so Node2 can be given it.
    declared = await perper.declare_stream("Node1")
    node2_stream = await perper.stream("Node2", declared.stream)
    await declared.start(node2_stream)

    # Calls.
    print(f"Random number: {await perper.call('GetRandomNumber', 1, 100)}", flush=True)
    print(f"Random number: {await perper.call('GetRandomNumber', 1, 100)}", flush=True)
    a, b = await perper.call("GetTwoRandomNumbers", 1, 100)
    print(f"Random numbers: {a} + {b}", flush=True)
    print(f"Params: {await perper.call('CountParams', 1, 'a', 'b', 'c')}", flush=True)
    await perper.call("DoSomething", "123")
    await perper.call("DoSomethingAsync", "456")

    # Wait for the finite streams to complete.
    async for _ in consumed:
        pass
    async for _ in node2_stream:
        pass
    print("Basic sample done.", flush=True)


if __name__ == "__main__":
    perper.run("basic-sample", {
        "Deploy": deploy,
        "Generator": generator,
        "Processor": processor,
        "Consumer": consumer,
        "Node1": node1,
        "Node2": node2,
        "GetRandomNumber": get_random_number,
        "GetTwoRandomNumbers": get_two_random_numbers,
        "CountParams": count_params,
        "DoSomething": do_something,
        "DoSomethingAsync": do_something_async,
    }, stop_after_deploy=True)
