"""The agent "sensor", where the manifest names it Sensor (see ../wrong_name.yaml)."""

import perper


async def read():
    return 42


if __name__ == "__main__":
    perper.run("sensor", {"Read": read})
