#!/usr/bin/python3
"""Hello world across two agent processes (scenario S2), the deploying side.

Deploy starts a char stream (HelloWorldGenerator, served by this process), starts an instance of
StreamPrinterAgent (served by stream_printer_agent.py, another process) and hands it the stream.
Exits once the printer has printed the whole stream.

Run: PERPER_FABRIC_ENDPOINT=127.0.0.1:40400 /usr/bin/python3 my_first_agent.py
"""

import asyncio
import os

import perper

MESSAGE = "Hello world through stream!"
DELAY = float(os.environ.get("HELLO_DELAY", "0.1"))  # seconds between characters


async def hello_world_generator():
    print("Hello world from HelloWorldGenerator!", flush=True)
    for char in MESSAGE:
        await asyncio.sleep(DELAY)
        yield char


async def deploy():
    print("Hello world from Deploy!", flush=True)
    stream = await perper.stream("HelloWorldGenerator")
    printer = await perper.start_agent("StreamPrinterAgent")
    printed = await printer.call("StreamPrinter", stream)
    print(f"StreamPrinter printed {printed} characters", flush=True)
    await printer.destroy()


if __name__ == "__main__":
    perper.run("MyFirstAgent", {
        "Deploy": deploy,
        "HelloWorldGenerator": hello_world_generator,
    }, stop_after_deploy=True)
