#!/usr/bin/python3
"""The pipeline's Deploy (agent "Pipeline"): Readings -> Average, then prints the result.

Deploy starts one instance of each agent (the scaler starts a process for each), starts the
Readings stream and hands it to Average, whose call returns once the stream is consumed. Neither
call depends on the processes staying up: the Fabric keeps both executions and hands each to the
agent's next process when one dies, so Deploy just waits. The process exits when Deploy returns,
which ends `perper up`.

Under `perper up`, Deploy is recorded in the Fabric: if this process dies (and `perper up` with
it), the next `perper up` on the same Fabric runs Deploy again, and since the IDs it makes are
derived from its execution, it finds the same instances, call and stream and waits for them.
"""

import perper


async def deploy():
    readings = await perper.start_agent("Readings")
    average = await perper.start_agent("Average")
    # The Average instance keeps its {count, total} in its dictionary "{instance}-".
    print(f"Average instance: {average.instance}", flush=True)
    stream = await readings.call("Readings")
    count, mean = await average.call("Average", stream)
    print(f"{count} readings, average {mean}", flush=True)


if __name__ == "__main__":
    perper.run("Pipeline", {"Deploy": deploy}, stop_after_deploy=True)
