"""The connection to the Fabric: gRPC channels to its addresses and the grpc2 stubs, with retries
and moving between the addresses."""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any, AsyncIterator, Awaitable, Callable, Optional, TypeVar

import grpc

from perper._logging import log as _log
from perper._stubs import (executions_pb2_grpc, instances_pb2_grpc, introspection_pb2_grpc,
                           states_pb2_grpc, streams_pb2_grpc)

T = TypeVar("T")

DEFAULT_ENDPOINT = "127.0.0.1:40400"
# No message cap of the SDK's own (-1), as in the C++ and .NET SDKs: the Fabric's limits apply
# (--max-value-size; docs/limits.md), so a Fabric that allows larger values needs no SDK setting.
MAX_MESSAGE_BYTES = -1

ENDPOINT_VARIABLE = "PERPER_FABRIC_ENDPOINT"
# Pins the start index into the address list; meant for tests only (the default spreads the
# processes of one machine over the Fabric processes).
ENDPOINT_INDEX_VARIABLE = "PERPER_FABRIC_ENDPOINT_INDEX"


def parse_endpoints(value: str, source: str = ENDPOINT_VARIABLE) -> list[str]:
    """Splits a comma-separated address list, dropping http:// and dns:/// prefixes and the
    whitespace around entries, as the C++ SDK does. An empty entry, or an https:// one (the
    channel has no TLS), is an error naming `source` and the value."""
    endpoints = []
    for entry in value.split(","):
        endpoint = entry.strip()
        if endpoint.startswith("https://"):
            raise ValueError(f"{source} '{value}': {endpoint}: TLS is not supported yet")
        for prefix in ("http://", "dns:///"):
            if endpoint.startswith(prefix):
                endpoint = endpoint[len(prefix):]
        endpoint = endpoint.rstrip("/")
        if not endpoint:
            raise ValueError(f"{source} '{value}' has an empty address")
        endpoints.append(endpoint)
    return endpoints


def endpoints_from_env() -> list[str]:
    """Returns the addresses of PERPER_FABRIC_ENDPOINT (default 127.0.0.1:40400)."""
    return parse_endpoints(os.environ.get(ENDPOINT_VARIABLE, "") or DEFAULT_ENDPOINT)


def first_index(count: int) -> int:
    """The index of the first address: PERPER_FABRIC_ENDPOINT_INDEX (tests) or pid % count."""
    pinned = os.environ.get(ENDPOINT_INDEX_VARIABLE, "")
    if pinned:
        try:
            return int(pinned) % count
        except ValueError:
            raise ValueError(f"{ENDPOINT_INDEX_VARIABLE}: not an integer: {pinned!r}") from None
    return os.getpid() % count


class Backoff:
    """Exponential back-off with jitter: 50 ms growing ×1.5 up to 2 s. Not thread-safe."""

    def __init__(self, first: float = 0.05, maximum: float = 2.0) -> None:
        self._first = first
        self._maximum = maximum
        self._next = first

    def reset(self) -> None:
        self._next = self._first

    def next_delay(self) -> float:
        """Returns the next delay, in seconds, and grows the one after it."""
        delay = self._next * random.uniform(0.8, 1.2)
        self._next = min(self._next * 1.5, self._maximum)
        return delay

    async def wait(self) -> None:
        await asyncio.sleep(self.next_delay())


def is_retryable(error: BaseException) -> bool:
    """Tells whether an RPC error means "the Fabric is not reachable right now"."""
    return isinstance(error, grpc.aio.AioRpcError) and error.code() == grpc.StatusCode.UNAVAILABLE


# The codes by which the Fabric refuses a request for good: trying it again cannot help (as the
# C++ SDK's IsTransient).
REFUSALS = frozenset((
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.UNAUTHENTICATED))


def is_transient(error: grpc.aio.AioRpcError) -> bool:
    """Tells whether a call that ended with `error` may work when made again."""
    return error.code() not in REFUSALS


class _Method:
    """A stub method bound late: every call goes to the connection's current address, so a call
    retried after a move reaches the new one."""

    def __init__(self, connection: "FabricConnection", service: type, name: str) -> None:
        self._connection = connection
        self._service = service
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        connection = self._connection
        if len(connection.endpoints) > 1 and "wait_for_ready" in kwargs:
            # Waiting for an unreachable address would never move on: fail fast instead, and let
            # the caller's back-off and move do the waiting.
            kwargs["wait_for_ready"] = False
        stub = connection._stub(self._service)
        return getattr(stub, self._name)(*args, **kwargs)


class _Service:
    """The stub of one grpc2 service on the connection's current address."""

    def __init__(self, connection: "FabricConnection", service: type) -> None:
        self._connection = connection
        self._service = service
        self._methods: dict[str, _Method] = {}

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("_"):
            raise AttributeError(name)
        method = self._methods.get(name)
        if method is None:
            method = self._methods[name] = _Method(self._connection, self._service, name)
        return method


class FabricConnection:
    """One process's connection to the Fabric: grpc.aio channels and the grpc2 stubs.

    `endpoint` is one address or a comma-separated list of the processes of one Fabric (default:
    PERPER_FABRIC_ENDPOINT). The connection uses one address at a time, starting at `start_index`
    (default: PERPER_FABRIC_ENDPOINT_INDEX, else pid % count); when a call finds it unavailable,
    `moved_from` switches to the next one (round robin). It keeps one channel per address it has
    used.

    Create it inside a running event loop; use it from that loop only. Unary calls go through
    `retry`, which waits for the channel to be ready and retries UNAVAILABLE with back-off, so a
    restarting Fabric is waited for (up to `retry_timeout` seconds per call).
    """

    def __init__(self, endpoint: Optional[str] = None, *, retry_timeout: float = 60.0,
                 start_index: Optional[int] = None) -> None:
        self.endpoints = parse_endpoints(endpoint, "endpoint") if endpoint \
            else endpoints_from_env()
        count = len(self.endpoints)
        self._index = (start_index if start_index is not None else first_index(count)) % count
        self.retry_timeout = retry_timeout
        # Named in log lines ("[agent=...]"); the Application that owns the connection sets it.
        self.agent = ""
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[tuple[str, type], Any] = {}
        self.executions = _Service(self, executions_pb2_grpc.FabricExecutionsStub)
        self.instances = _Service(self, instances_pb2_grpc.FabricInstancesStub)
        self.streams = _Service(self, streams_pb2_grpc.FabricStreamsStub)
        self.dictionaries = _Service(self, states_pb2_grpc.FabricStatesDictionaryStub)
        self.lists = _Service(self, states_pb2_grpc.FabricStatesListStub)
        self.introspection = _Service(self, introspection_pb2_grpc.FabricIntrospectionStub)

    @property
    def endpoint(self) -> str:
        """The address in use."""
        return self.endpoints[self._index]

    @property
    def channel(self) -> grpc.aio.Channel:
        """The channel to the address in use."""
        endpoint = self.endpoint
        channel = self._channels.get(endpoint)
        if channel is None:
            channel = self._channels[endpoint] = grpc.aio.insecure_channel(endpoint, options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.enable_retries", 0),
                ("grpc.initial_reconnect_backoff_ms", 50),
                ("grpc.max_reconnect_backoff_ms", 1000),
            ])
        return channel

    def _stub(self, service: type) -> Any:
        key = (self.endpoint, service)
        stub = self._stubs.get(key)
        if stub is None:
            stub = self._stubs[key] = service(self.channel)
        return stub

    def moved_from(self, endpoint: str) -> None:
        """Tells that a call to `endpoint` found it unavailable: moves to the next address, unless
        another call has already moved away from it (so concurrent failures move once)."""
        if len(self.endpoints) == 1 or self.endpoint != endpoint:
            return
        self._index = (self._index + 1) % len(self.endpoints)
        _log.warning("%sFabric %s unavailable; moving to %s", self.log_prefix(), endpoint,
                     self.endpoint)

    def log_prefix(self) -> str:
        """The "[agent=...] " that starts this connection's log lines ("" without an agent)."""
        return f"[agent={self.agent}] " if self.agent else ""

    async def retry(self, method: Callable[..., Awaitable[T]], request: Any,
                    timeout: Optional[float] = None) -> T:
        """Calls a unary RPC, retrying UNAVAILABLE with back-off until `retry_timeout` passes,
        moving to the next address after each failure.

        Every request the SDK retries is safe to repeat: IDs are chosen by the client, and the
        Fabric accepts an identical retry of a create.
        """
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.retry_timeout
        backoff = Backoff()
        while True:
            endpoint = self.endpoint
            try:
                return await method(request, timeout=timeout, wait_for_ready=True)
            except grpc.aio.AioRpcError as e:
                if not is_retryable(e) or loop.time() >= give_up:
                    raise
                if len(self.endpoints) == 1:
                    _log.warning("%sFabric %s unavailable (%s); retrying", self.log_prefix(),
                                 endpoint, e.details())
                self.moved_from(endpoint)
                await backoff.wait()

    async def snapshot(self, method: Callable[..., Any], request: Any) -> AsyncIterator[Any]:
        """Yields the responses of a server-streaming snapshot read. UNAVAILABLE before the first
        response is retried like `retry` does (moving on); after it, the error is raised, since
        a snapshot cannot be resumed."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.retry_timeout
        backoff = Backoff()
        while True:
            endpoint = self.endpoint
            call = method(request, wait_for_ready=True)
            started = False
            try:
                async for response in call:
                    started = True
                    yield response
                return
            except grpc.aio.AioRpcError as e:
                if started or not is_retryable(e) or loop.time() >= give_up:
                    raise
                self.moved_from(endpoint)
            finally:
                call.cancel()
            await backoff.wait()

    async def close(self) -> None:
        """Closes the channels; open calls end with CANCELLED."""
        channels, self._channels = list(self._channels.values()), {}
        self._stubs.clear()
        for channel in channels:
            await channel.close()
