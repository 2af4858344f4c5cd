"""The connection to the Fabric: one gRPC channel and the grpc2 stubs, with retries."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from typing import Any, Awaitable, Callable, Optional, TypeVar

import grpc

from perper._stubs import (executions_pb2_grpc, instances_pb2_grpc, introspection_pb2_grpc,
                           states_pb2_grpc, streams_pb2_grpc)

_log = logging.getLogger("perper")
T = TypeVar("T")

DEFAULT_ENDPOINT = "127.0.0.1:40400"
# Values of 16 MiB must travel in every direction; leave room for several of them per message.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024 + 1024 * 1024


def endpoint_from_env() -> str:
    """Returns PERPER_FABRIC_ENDPOINT without any http:// prefix (default 127.0.0.1:40400)."""
    endpoint = os.environ.get("PERPER_FABRIC_ENDPOINT", "") or DEFAULT_ENDPOINT
    for prefix in ("http://", "https://", "dns:///"):
        if endpoint.startswith(prefix):
            endpoint = endpoint[len(prefix):]
    return endpoint.rstrip("/")


class Backoff:
    """Exponential back-off with jitter: 50 ms growing ×1.5 up to 2 s. Not thread-safe."""

    def __init__(self, first: float = 0.05, maximum: float = 2.0) -> None:
        self._first = first
        self._maximum = maximum
        self._next = first

    def reset(self) -> None:
        self._next = self._first

    async def wait(self) -> None:
        delay = self._next * random.uniform(0.8, 1.2)
        self._next = min(self._next * 1.5, self._maximum)
        await asyncio.sleep(delay)


def is_retryable(error: BaseException) -> bool:
    """Tells whether an RPC error means "the Fabric is not reachable right now"."""
    return isinstance(error, grpc.aio.AioRpcError) and error.code() == grpc.StatusCode.UNAVAILABLE


class FabricConnection:
    """One process's connection to the Fabric: a grpc.aio channel and the grpc2 stubs.

    Create it inside a running event loop; use it from that loop only. Unary calls go through
    `retry`, which waits for the channel to be ready and retries UNAVAILABLE with back-off, so a
    restarting Fabric is waited for (up to `retry_timeout` seconds per call).
    """

    def __init__(self, endpoint: Optional[str] = None, *, retry_timeout: float = 60.0) -> None:
        self.endpoint = endpoint or endpoint_from_env()
        self.retry_timeout = retry_timeout
        self.channel = grpc.aio.insecure_channel(self.endpoint, options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.enable_retries", 0),
            ("grpc.initial_reconnect_backoff_ms", 50),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ])
        self.executions = executions_pb2_grpc.FabricExecutionsStub(self.channel)
        self.instances = instances_pb2_grpc.FabricInstancesStub(self.channel)
        self.streams = streams_pb2_grpc.FabricStreamsStub(self.channel)
        self.dictionaries = states_pb2_grpc.FabricStatesDictionaryStub(self.channel)
        self.lists = states_pb2_grpc.FabricStatesListStub(self.channel)
        self.introspection = introspection_pb2_grpc.FabricIntrospectionStub(self.channel)

    async def retry(self, method: Callable[..., Awaitable[T]], request: Any,
                    timeout: Optional[float] = None) -> T:
        """Calls a unary RPC, retrying UNAVAILABLE with back-off until `retry_timeout` passes.

        Every request the SDK retries is safe to repeat: IDs are chosen by the client, and the
        Fabric accepts an identical retry of a create.
        """
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.retry_timeout
        backoff = Backoff()
        while True:
            try:
                return await method(request, timeout=timeout, wait_for_ready=True)
            except grpc.aio.AioRpcError as e:
                if not is_retryable(e) or loop.time() >= give_up:
                    raise
                _log.warning("perper: Fabric at %s unavailable (%s); retrying", self.endpoint,
                             e.details())
                await backoff.wait()

    async def close(self) -> None:
        """Closes the channel; open calls end with CANCELLED."""
        await self.channel.close()
