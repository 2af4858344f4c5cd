"""Agent processes for the restart tests (test_stable_ids.py, test_steps.py): each is killed
with SIGKILL at some point and started again, and the tests check what the Fabric holds then.

Usage: restart_agents.py ROLE   (with PERPER_FABRIC_ENDPOINT set)
- rerun: serves agent "Rerun", delegate "Outer": makes a dictionary ID, calls Callee.Count,
  logs both in the dictionary "rerun-log"; its first run then hangs until it is killed.
- producer: serves agent "Producer", stream delegate "Numbers" (persistent, action): the resume
  recipe (auto keys from progress.written_count); its first run holds after half the items.
- mover: serves agent "Mover", delegate "Where": returns the Fabric address its connection uses
  (the connection tests give it several addresses and kill the first).
- consumer: the exactly-once step loop over the stream named in $STREAM (listener "average"),
  then exits 0.
"""

from __future__ import annotations

import asyncio
import os
import sys

import perper


async def outer():
    made = perper.dictionary().dictionary
    result = await perper.Agent("Callee", "callee-1").call("Count")
    log = perper.dictionary("rerun-log")
    runs = await log.update("outer-runs", lambda n: n + 1, 0)
    await log.set(f"run-{runs}", [made, result])
    if runs == 1:
        await asyncio.Event().wait()  # held until the process is killed
    return made, result


@perper.stream_delegate(persistent=True, action=True)
async def numbers(n):
    progress = await perper.stream_progress()
    runs = await perper.state().update("producer-runs", lambda r: r + 1, 0)
    for i in range(progress.written_count, n):
        if runs == 1 and i == n // 2:
            await asyncio.Event().wait()  # held until the process is killed
        yield i


async def consume() -> None:
    application = await perper.connect("Consumer")
    try:
        stream = perper.Stream(os.environ["STREAM"], 0)
        # The loop of docs/sdk-python.md, "Exactly-once consumers".
        state = perper.state()
        async for key, reading in stream.items(listener="average"):
            total = await state.get("total", 0)
            count = await state.get("count", 0)
            await stream.step("average", key, state.changes().set("total", total + reading)
                                                           .set("count", count + 1))
    finally:
        await application.stop()


def where() -> str:
    return perper.get_connection().endpoint


def main() -> None:
    role = sys.argv[1]
    if role == "rerun":
        perper.run("Rerun", {"Outer": outer})
    elif role == "producer":
        perper.run("Producer", {"Numbers": numbers})
    elif role == "mover":
        perper.run("Mover", {"Where": where})
    elif role == "consumer":
        asyncio.run(consume())
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main()
