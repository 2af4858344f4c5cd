#!/usr/bin/python3
"""Hello world across two agent processes (scenario S2), the printing side.

Serves StreamPrinterAgent: StreamPrinter(stream) prints every character of a stream of strings
on one line and returns how many it printed. Runs until SIGINT or SIGTERM.

Run: PERPER_FABRIC_ENDPOINT=127.0.0.1:40400 /usr/bin/python3 stream_printer_agent.py
"""

import perper


async def stream_printer(stream: perper.Stream) -> int:
    print("Hello world from StreamPrinterAgent's StreamPrinter!", flush=True)
    count = 0
    async for char in stream.values(type=str):
        print(char, end="", flush=True)
        count += 1
    print(flush=True)
    return count


if __name__ == "__main__":
    perper.run("StreamPrinterAgent", {"StreamPrinter": stream_printer})
