"""Interoperability at the wire: a client speaking raw grpc2 (as another SDK would) and the
Python SDK call each other and share streams, with the shared value table."""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf import any_pb2, wrappers_pb2

import perper
from perper.grpc2 import (executions_pb2, executions_pb2_grpc, model_pb2, streams_pb2,
                          streams_pb2_grpc)

from conftest import run, session


def packed(message) -> any_pb2.Any:
    result = any_pb2.Any()
    result.Pack(message)
    return result


def test_raw_client_calls_a_python_delegate(fabric):
    async def body():
        async with session(fabric.address, agent="Py", handlers={"Twice": lambda n: (n, n * 2.0)}):
            async with grpc.aio.insecure_channel(fabric.address) as channel:
                stub = executions_pb2_grpc.FabricExecutionsStub(channel)
                execution = model_pb2.PerperExecution(execution="Twice-raw-1")
                await stub.Create(executions_pb2.ExecutionsCreateRequest(
                    execution=execution, instance=model_pb2.PerperInstance(agent="Py",
                                                                           instance="p"),
                    delegate="Twice", arguments=[packed(wrappers_pb2.Int32Value(value=21))]))
                result = await stub.GetResult(executions_pb2.ExecutionsGetResultRequest(
                    execution=execution))
                await stub.Delete(executions_pb2.ExecutionsDeleteRequest(execution=execution))
            assert not result.deleted and not result.HasField("error")
            assert list(result.results) == [packed(wrappers_pb2.Int64Value(value=21)),
                                            packed(wrappers_pb2.DoubleValue(value=42.0))]
    run(body())


def test_python_calls_a_raw_agent_and_reads_its_stream(fabric):
    async def raw_agent(channel, ready: asyncio.Event):
        executions = executions_pb2_grpc.FabricExecutionsStub(channel)
        streams = streams_pb2_grpc.FabricStreamsStub(channel)
        listen = executions.Listen(executions_pb2.ExecutionsListenRequest(
            instance_filter=model_pb2.PerperInstance(agent="Raw")))
        async for message in listen:
            if message.start_of_stream:
                ready.set()
                continue
            if message.deleted:
                continue
            if message.delegate == "Add":
                a, b = (perper.unpack(x) for x in message.arguments)
                results = [packed(wrappers_pb2.Int32Value(value=a + b))]
            else:  # "Numbers": a packed stream of UInt32Value items, completed
                stream = model_pb2.PerperStream(stream="raw-numbers", stride=1)
                await streams.Create(streams_pb2.StreamsCreateRequest(stream=stream,
                                                                      ephemeral=False))
                for key in (1, 0, 2):
                    await streams.WriteItem(streams_pb2.StreamsWriteItemRequest(
                        stream=stream, key=key,
                        value=packed(wrappers_pb2.UInt32Value(value=key + 100))))
                await streams.Complete(streams_pb2.StreamsCompleteRequest(stream=stream))
                results = [packed(stream)]
            await executions.Complete(executions_pb2.ExecutionsCompleteRequest(
                execution=message.execution, results=results))

    async def body():
        async with grpc.aio.insecure_channel(fabric.address) as channel:
            ready = asyncio.Event()
            agent_task = asyncio.create_task(raw_agent(channel, ready))
            await asyncio.wait_for(ready.wait(), 10)
            try:
                async with session(fabric.address):
                    raw = perper.Agent("Raw", "r")
                    assert await raw.call("Add", 1, 2, result_type=int) == 3
                    stream = await raw.call("Numbers")
                    assert stream == perper.Stream("raw-numbers", 0, 1)
                    assert [v async for v in stream.values(type=int)] == [100, 101, 102]
            finally:
                agent_task.cancel()
    run(body())
