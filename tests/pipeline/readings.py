#!/usr/bin/python3
"""Readings: a stream of 1,000 sensor readings, restart-safe (agent "Readings").

The stream delegate Readings yields reading i = i % 50 for i in 0..999 (their average is 24.5).
When the process is killed, the scaler starts it again and the Fabric hands the producer
execution to the new process, which runs this generator again from the top.

Keys are explicit (the reading's index) rather than assigned by the Fabric: a write the Fabric
stored just before it went away (its answer lost) is sent again when it is back, and under an
explicit key that is a replay of the same item, where an auto key would add it a second time.
stream_progress() only spares the re-run the writes the Fabric already has.

READINGS_DELAY_MS paces the readings, so that a test's kills land while the stream is written.
"""

import asyncio
import os

import perper

COUNT = 1000
DELAY = float(os.environ.get("READINGS_DELAY_MS", "0")) / 1000


async def readings():
    progress = await perper.stream_progress()
    first = 0 if progress.last_key is None else progress.last_key + 1
    if first > 0:
        print(f"resuming at reading {first}", flush=True)
    for i in range(first, COUNT):
        if DELAY:
            await asyncio.sleep(DELAY)
        yield i, i % 50


if __name__ == "__main__":
    perper.run("Readings", {"Readings": readings})
