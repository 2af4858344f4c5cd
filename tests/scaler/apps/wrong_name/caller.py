"""Deploy starts an instance of Sensor and calls it (see ../wrong_name.yaml)."""

import perper
import perper.model

# Say so after half a second of waiting instead of five.
perper.model.UNSERVED_CHECK_AFTER = 0.5


async def deploy():
    sensor = await perper.start_agent("Sensor")
    print(await sensor.call("Read"), flush=True)


if __name__ == "__main__":
    perper.run("Caller", {"Deploy": deploy}, stop_after_deploy=True)
