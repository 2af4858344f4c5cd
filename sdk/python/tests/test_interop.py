"""Python and C++ agents together: calls both ways with every type of the value table, and
streams produced by one and consumed by the other (the C++ agent is
sdk/python/tests/interop/cpp_interop_agent.cc, path in $PERPER_CPP_INTEROP_AGENT)."""

from __future__ import annotations

import os
import subprocess

import pytest
from google.protobuf import timestamp_pb2

import perper

from conftest import run, session

SENT = (True, -(1 << 40), 0.25, "from Python ✓", b"\x00\xff", None,
        perper.Stream("s-from-python", 4, 2), perper.Agent("PyInterop", "py"),
        timestamp_pb2.Timestamp(seconds=1700000000, nanos=5))


async def echo(*values):
    return values


async def letters(word):
    for letter in word:
        yield letter


@pytest.fixture
def cpp_agent(fabric):
    binary = os.environ.get("PERPER_CPP_INTEROP_AGENT")
    assert binary, "PERPER_CPP_INTEROP_AGENT is not set (ctest sets it)"
    env = dict(os.environ, PERPER_FABRIC_ENDPOINT=fabric.address)
    process = subprocess.Popen([binary], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    yield process
    process.terminate()
    output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output.decode(errors="replace")


def py_session(fabric):
    return session(fabric.address, agent="PyInterop", instance="py",
                   handlers={"Echo": echo, "Letters": letters})


def test_python_calls_cpp_with_every_value_type(fabric, cpp_agent):
    async def body():
        async with py_session(fabric):
            cpp = perper.Agent("CppInterop", "cpp")
            echoed = await cpp.call("EchoAll", *SENT)
            assert tuple(echoed) == SENT
            assert type(echoed[0]) is bool and type(echoed[1]) is int
            assert type(echoed[2]) is float and type(echoed[4]) is bytes
            narrow = await cpp.call("Narrow")
            assert tuple(narrow) == (-7, 18000000000000000000, 1.5)
            assert [type(v) for v in narrow] == [int, int, float]
    run(body(), timeout=30)


def test_a_python_dict_reaches_cpp_as_a_struct_and_comes_back(fabric, cpp_agent):
    sent = {"n": 1 << 53, "ratio": 0.5, "list": [1, "x", None, [True]], "nested": {"f": -3}}

    async def body():
        async with py_session(fabric):
            echoed = await perper.Agent("CppInterop", "cpp").call("EchoStruct", sent)
            assert echoed == dict(sent, from_cpp=True)
            assert type(echoed["n"]) is int and type(echoed["ratio"]) is float
    run(body(), timeout=30)


def test_cpp_calls_python_with_every_value_type(fabric, cpp_agent):
    async def body():
        async with py_session(fabric):
            assert await perper.Agent("CppInterop", "cpp").call("CallPython") == "ok"
    run(body(), timeout=30)


def test_python_consumes_a_cpp_stream_to_its_end(fabric, cpp_agent):
    async def body():
        async with py_session(fabric):
            stream = await perper.Agent("CppInterop", "cpp").call("Count", 7)
            assert isinstance(stream, perper.Stream)
            assert [item async for item in stream] == list(range(7))
            broken = await perper.Agent("CppInterop", "cpp").call("Broken")
            received = []
            with pytest.raises(Exception, match="the C\\+\\+ producer broke"):
                async for item in broken:
                    received.append(item)
            assert received == ["first"]
    run(body(), timeout=30)


def test_cpp_consumes_a_python_stream_to_its_end(fabric, cpp_agent):
    async def body():
        async with py_session(fabric):
            read = await perper.Agent("CppInterop", "cpp").call("ConsumePython", "perper")
            assert read == "p.e.r.p.e.r."
    run(body(), timeout=30)
