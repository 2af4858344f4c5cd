#!/usr/bin/python3
"""The Python side of the .NET interoperation tests (sdk/dotnet/tests/Perper.Tests/InteropTests.cs):
the agent PyPeer reads and returns every type of the value table, calls the .NET agent
DotnetPeer (instance "dotnet") with every type, produces streams and consumes one of .NET's."""

import perper
from google.protobuf import timestamp_pb2

SENT = (True, -(1 << 40), 0.25, "from Python ✓", b"\x00\xff", None,
        perper.Stream("s-from-python", 4, 2), perper.Agent("PyPeer", "py"),
        timestamp_pb2.Timestamp(seconds=1700000000, nanos=5))


async def echo_all(*values):
    return values


async def call_dotnet():
    echoed = await perper.Agent("DotnetPeer", "dotnet").call("Echo", *SENT)
    if tuple(echoed) != SENT:
        return f"the values came back different: {echoed!r}"
    if [type(v) for v in echoed[:5]] != [bool, int, float, str, bytes]:
        return f"the types came back different: {[type(v) for v in echoed]!r}"
    return "ok"


@perper.stream_delegate(persistent=True)
async def count(n: int):
    for i in range(n):
        yield i


@perper.stream_delegate(persistent=True)
async def broken():
    yield "first"
    raise RuntimeError("the Python producer broke")


async def consume_dotnet(word: str):
    stream = await perper.Agent("DotnetPeer", "dotnet").call("Letters", word)
    return "".join([f"{letter}." async for letter in stream.values(type=str)])


if __name__ == "__main__":
    perper.run("PyPeer", {"EchoAll": echo_all, "CallDotnet": call_dotnet, "Count": count,
                          "Broken": broken, "ConsumeDotnet": consume_dotnet})
