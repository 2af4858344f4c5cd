"""The ambient API: what a handler calls without passing connections around.

Every function acts in the context of the running handler (a contextvars.ContextVar set by the
application for each execution), or, outside handlers, in the default context set by
perper.connect() (notebooks, REPLs).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Optional

from perper import values
from perper._ambient import Context, current, get_connection  # noqa: F401  (re-exported)
from perper._stubs import executions_pb2, instances_pb2, model_pb2, streams_pb2
from perper.model import (INT64_MAX, Agent, Dictionary, List, Stream, StreamProgress, new_id,
                          results_of_response, watch_unserved)

TRIGGER_LISTENER = "-trigger"


class StreamDelegate:
    """A stream delegate: an async generator function and the options of the streams it makes.

    Each item the generator yields is written to the stream: a `(key, value)` tuple (the key an
    int) under that key, any other value under the next key (packed: 0, stride, 2·stride, ...;
    unpacked: a key chosen by the Fabric). The stream completes when the generator ends and fails
    when it raises.

    - `ephemeral`: items are freed once every listener has passed them (else persistent).
    - `stride`: 0 for an unpacked stream, else the key step of a packed stream.
    - `action`: the producer runs at once, without waiting for a consumer.
    """

    def __init__(self, function: Callable[..., Any], *, ephemeral: bool = True, stride: int = 0,
                 action: bool = False) -> None:
        if not inspect.isasyncgenfunction(function):
            raise TypeError(f"stream delegate {function!r} must be an async generator function")
        self.function = function
        self.ephemeral = ephemeral
        self.stride = stride
        self.action = action

    def __repr__(self) -> str:
        return (f"StreamDelegate({getattr(self.function, '__name__', self.function)!r}, "
                f"ephemeral={self.ephemeral}, stride={self.stride}, action={self.action})")


def stream_delegate(function: Optional[Callable[..., Any]] = None, *, ephemeral: bool = True,
                    persistent: bool = False, packed: bool = False, stride: int = 0,
                    action: bool = False) -> Any:
    """Marks an async generator function as a stream delegate with options (a decorator).

    `persistent=True` is `ephemeral=False`; `packed=True` is `stride=1`.
    """
    def wrap(f: Callable[..., Any]) -> StreamDelegate:
        return StreamDelegate(f, ephemeral=ephemeral and not persistent,
                              stride=stride or (1 if packed else 0), action=action)
    return wrap(function) if function is not None else wrap


def current_agent() -> Agent:
    """Returns the instance the running handler belongs to."""
    return current().agent


def current_execution() -> str:
    """Returns the ID of the running execution."""
    return current().execution


async def call(delegate: str, *args: Any, result_type: Any = None) -> Any:
    """Calls `delegate` on the current instance (see Agent.call)."""
    return await current().agent.call(delegate, *args, result_type=result_type)


async def start_agent(agent: str, *args: Any) -> Agent:
    """Creates an instance of the agent type `agent` and calls its Start with `args`.

    The instance (ID "Run-{uuid}") is a child of the current instance, so destroying the current
    one destroys it too. Start's result is in the returned Agent's `start_result`. Raises
    ExecutionFailedError when Start failed.
    """
    instance = new_id("Run")
    request = instances_pb2.InstancesCreateAndStartRequest(
        instance=model_pb2.PerperInstance(instance=instance, agent=agent),
        arguments=values.pack_all(args), parent=current().agent.to_message())
    # Start runs in a process of the agent: with none, the warning says why this waits.
    response = await watch_unserved(
        agent, instance,
        get_connection().retry(get_connection().instances.CreateAndStart, request))
    start_result = results_of_response(f"Start of {instance}", response)
    return Agent(agent, instance, start_result)


async def stream_progress() -> StreamProgress:
    """Returns the progress of the stream the running stream handler produces (its ID is the
    execution's ID): a producer that runs again resumes from it (see Stream.progress)."""
    return await Stream(current().execution).progress()


def state() -> Dictionary:
    """Returns the current instance's own dictionary ("{instance}-")."""
    return Dictionary(f"{current().agent.instance}-")


def dictionary(name: Optional[str] = None) -> Dictionary:
    """Returns the dictionary `name`, or a new one (a fresh "-{uuid}" name)."""
    return Dictionary(name if name is not None else new_id(""))


def list_state(name: Optional[str] = None) -> List:
    """Returns the list `name`, or a new one (a fresh "-{uuid}" name)."""
    return List(name if name is not None else new_id(""))


async def create_stream(stream_id: str, *, ephemeral: bool = True, stride: int = 0,
                        action: bool = False) -> Stream:
    """Creates the stream `stream_id` (idempotent) and, for an action stream, its trigger."""
    connection = get_connection()
    reference = Stream(stream_id, 0, stride)
    await connection.retry(connection.streams.Create, streams_pb2.StreamsCreateRequest(
        stream=reference.to_message(), ephemeral=ephemeral))
    if action:
        await connection.retry(connection.streams.MoveListener,
                               streams_pb2.StreamsMoveListenerRequest(
                                   stream=reference.to_message(), listener_name=TRIGGER_LISTENER,
                                   reached_key=INT64_MAX))
    return reference


class DeclaredStream:
    """A stream created before its producer starts, so that its reference can be handed to
    others first (for example two streams that consume each other)."""

    def __init__(self, stream: Stream, instance: Agent, delegate: str) -> None:
        self.stream = stream
        self.instance = instance
        self.delegate = delegate

    async def start(self, *args: Any) -> Stream:
        """Starts the producer: the execution "{delegate}-stream" with (stream, *args)."""
        connection = get_connection()
        await connection.retry(connection.executions.Create,
                               executions_pb2.ExecutionsCreateRequest(
                                   execution=model_pb2.PerperExecution(
                                       execution=self.stream.stream),
                                   instance=self.instance.to_message(),
                                   delegate=f"{self.delegate}-stream",
                                   arguments=values.pack_all((self.stream,) + tuple(args))))
        return self.stream


async def declare_stream_on(instance: Agent, delegate: str, *, ephemeral: bool = True,
                            stride: int = 0, action: bool = False) -> DeclaredStream:
    """Creates the stream "{delegate}-stream-{uuid}" of `instance`'s stream delegate `delegate`
    without starting its producer."""
    stream_id = new_id(f"{delegate}-stream")
    reference = await create_stream(stream_id, ephemeral=ephemeral, stride=stride, action=action)
    return DeclaredStream(reference, instance, delegate)


async def start_stream(instance: Agent, delegate: str, args: tuple, *, ephemeral: bool = True,
                       stride: int = 0, action: bool = False) -> Stream:
    """Creates the stream "{delegate}-stream-{uuid}" and its producer, the execution of the same
    ID on delegate "{delegate}-stream" of `instance` with arguments (stream, *args)."""
    declared = await declare_stream_on(instance, delegate, ephemeral=ephemeral, stride=stride,
                                       action=action)
    return await declared.start(*args)


def _options(delegate: str, ephemeral: Optional[bool], stride: Optional[int],
             action: Optional[bool]) -> dict:
    lookup = getattr(current().application, "stream_options", None)
    registered: Optional[StreamDelegate] = lookup(delegate) if lookup else None
    return {
        "ephemeral": ephemeral if ephemeral is not None else (
            registered.ephemeral if registered else True),
        "stride": stride if stride is not None else (registered.stride if registered else 0),
        "action": action if action is not None else (
            registered.action if registered else False),
    }


async def declare_stream(delegate: str, *, ephemeral: Optional[bool] = None,
                         stride: Optional[int] = None,
                         action: Optional[bool] = None) -> DeclaredStream:
    """Creates the stream of the current instance's stream delegate `delegate` without starting
    it; `await declared.start(*args)` starts it. Options as for stream()."""
    return await declare_stream_on(current().agent, delegate,
                                   **_options(delegate, ephemeral, stride, action))


async def stream(delegate: str, *args: Any, ephemeral: Optional[bool] = None,
                 stride: Optional[int] = None, action: Optional[bool] = None) -> Stream:
    """Starts the stream delegate `delegate` of the current instance and returns its stream.

    The options default to those the delegate was registered with in this process (see
    StreamDelegate), else an ephemeral unpacked stream. The returned reference reads from the
    first item (start_key 0); use .live() to read only new items.
    """
    return await start_stream(current().agent, delegate, args,
                              **_options(delegate, ephemeral, stride, action))


async def blank_stream(*, ephemeral: bool = True, stride: int = 0) -> Stream:
    """Creates a stream without a producer, written by whoever holds it (Stream.write)."""
    return await create_stream(new_id("stream"), ephemeral=ephemeral, stride=stride)
