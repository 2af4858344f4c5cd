#!/usr/bin/python3
"""A restart-safe pipeline: a producer that resumes where its stream stands, and a consumer that
accounts for each reading exactly once (docs/sdk-python.md, "Restart-safe producers" and
"Exactly-once consumers").

Deploy starts the stream of readings 1.0 ... 100.0 and an Averager instance that consumes it with
atomic steps, and returns {"readings": count, "average": mean} (a dict travels as a Struct).
Either process can be killed and started again at any point: the producer goes on after the
items it wrote, the consumer after the last item it stepped, and a re-run of Deploy finds the
same stream and instance (derived IDs). With X_PERPER_RECORD_DEPLOY=1 (what `perper up` sets),
running this a second time against the same Fabric does not deploy again: it prints the recorded
result.

Run: PERPER_FABRIC_ENDPOINT=127.0.0.1:40400 /usr/bin/python3 average_pipeline.py
"""

import perper

READINGS = 100


@perper.stream_delegate(persistent=True)
async def readings(n):
    progress = await perper.stream_progress()
    for i in range(progress.written_count, n):  # 0 unless this is a re-run
        yield float(i + 1)


async def average(stream):
    state = perper.state()
    async for key, reading in stream.items(listener="average"):
        total = await state.get("total", 0)
        count = await state.get("count", 0)
        await stream.step("average", key, state.changes().set("total", total + reading)
                                                       .set("count", count + 1))
    count = await state.get("count")
    return {"readings": count, "average": await state.get("total") / count}


async def deploy():
    stream = await perper.stream("Readings", READINGS)
    averager = await perper.start_agent("AveragePipeline")
    return await averager.call("Average", stream)


result = perper.run("AveragePipeline", {"Deploy": deploy, "Readings": readings,
                                        "Average": average}, stop_after_deploy=True)
print(f"Average of {result['readings']} readings: {result['average']}")
