"""The model: references to agents (instances), executions, streams, dictionaries and lists.

Each model object is a plain reference (IDs only) that can be passed as an argument, a result, a
stream item or a state value; it travels as its perper.grpc2.model message. Methods use the
FabricConnection of the current context (perper._ambient).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Optional

import grpc
from google.protobuf import any_pb2

from perper import _logging, values
from perper._ambient import (current, get_connection, in_execution,  # noqa: F401  (re-exported)
                            new_id)
from perper._stats import COUNTERS
from perper._stubs import (executions_pb2, instances_pb2, introspection_pb2, model_pb2, states_pb2,
                           streams_pb2)
from perper.connection import Backoff, is_retryable
from perper.errors import (ExecutionCancelledError, ExecutionFailedError, PerperError,
                           StreamFailedError, bounded_error_text)

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
# How many stream items a listen call asks the Fabric to pack into one response message.
MAX_ITEMS_PER_MESSAGE = 256
# How long a cancelled call inside an execution tries to delete its callee's execution.
CANCEL_DELETE_TIMEOUT = 5.0
# How many finished calls one running execution keeps for a re-run (the most recent ones).
# Read at each call, so a test can lower it.
MAX_KEPT_CALLS = 1000
# How many kept calls are deleted concurrently.
KEPT_DELETE_BATCH = 32
# After how many seconds without an answer a call checks that some process serves its agent
# (and logs a warning when none does). Read at each call, so a test can lower it.
UNSERVED_CHECK_AFTER = 5.0

_log = _logging.log


def results_of_response(execution: str, response: executions_pb2.ExecutionsGetResultResponse,
                        result_type: Any = None) -> Any:
    """Returns the results of a finished execution, or raises its error or its cancellation."""
    if response.deleted:
        raise ExecutionCancelledError(execution)
    if response.HasField("error") and response.error.message:
        raise ExecutionFailedError(execution, response.error.message)
    return values.unpack_results(response.results, result_type)


async def _warn_when_unserved(agent: str, execution: str) -> None:
    """Runs beside a call: once it has waited UNSERVED_CHECK_AFTER seconds, asks the Fabric
    whether any process listens for `agent` and, when none does, says so (the call goes on
    waiting: a process may yet start)."""
    await asyncio.sleep(UNSERVED_CHECK_AFTER)
    connection = get_connection()
    try:
        response = await connection.introspection.ListAgentListeners(
            introspection_pb2.IntrospectionListAgentListenersRequest(agent=agent), timeout=5)
    except (grpc.aio.AioRpcError, asyncio.TimeoutError):
        return  # An older Fabric, or an unreachable one: nothing to say.
    if any(a.agent == agent and (a.listen_calls or a.reservation_calls) for a in response.agents):
        return
    # Named as the C++ SDK names it: the waiting (calling) agent first, then the execution.
    try:
        caller = current().agent.agent
    except PerperError:
        caller = "?"
    _log.warning("[agent=%s exec=%s] waiting for %s: no process serves agent %s (no listen call "
                 "for it on the Fabric at %s); the call waits until one does", caller, execution,
                 agent, agent, connection.endpoint)


async def watch_unserved(agent: str, execution: str, awaitable: Awaitable[Any]) -> Any:
    """Awaits `awaitable`, a request that only a process of `agent` can answer (a call, or an
    instance's Start or Stop: `execution` is then the instance's ID), warning meanwhile when no
    process serves `agent` (see _warn_when_unserved)."""
    watchdog = asyncio.ensure_future(_warn_when_unserved(agent, execution))
    try:
        return await awaitable
    finally:
        watchdog.cancel()


async def _call_kept(request: executions_pb2.ExecutionsCreateRequest
                     ) -> executions_pb2.ExecutionsGetResultResponse:
    """Creates the execution (an identical one, finished or not, is left as it is) and waits for
    its result without deleting it. Cancellation deletes it, as FabricInstances.Call does."""
    connection = get_connection()
    await connection.retry(connection.executions.Create, request)
    try:
        return await connection.retry(
            connection.executions.GetResult,
            executions_pb2.ExecutionsGetResultRequest(execution=request.execution))
    except asyncio.CancelledError:
        # Bounded: a process stopping while the Fabric is away does not hang here.
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.TimeoutError):
            await asyncio.wait_for(connection.retry(
                connection.executions.Delete,
                executions_pb2.ExecutionsDeleteRequest(execution=request.execution)),
                CANCEL_DELETE_TIMEOUT)
        raise


class KeptCalls:
    """The finished call executions one run of an execution keeps, so that a re-run of that
    execution gets their stored results instead of running the callees again (Agent.call).

    While the execution runs, the most recent MAX_KEPT_CALLS are kept: when a newer call
    finishes beyond that, the oldest kept one is deleted. Once the Fabric has acknowledged the
    execution's completion (release()), every kept call is deleted, and a call finishing after
    that is deleted at once: a completed execution never runs again. Deletions run in the
    background (tasks held in `tasks`, which the owner may await), best effort: a failure is
    logged at debug level and the call stays until its instance is destroyed. Use from one
    event loop.
    """

    def __init__(self, connection: Any, tasks: set) -> None:
        self._connection = connection
        self._tasks = tasks
        self._kept: deque[str] = deque()
        self._released = False

    def __len__(self) -> int:
        return len(self._kept)

    def keep(self, execution: str) -> None:
        """Keeps a finished call; deletes the oldest kept ones beyond MAX_KEPT_CALLS."""
        if self._released:
            self._delete([execution])
            return
        self._kept.append(execution)
        excess = []
        while len(self._kept) > max(MAX_KEPT_CALLS, 0):
            excess.append(self._kept.popleft())
        self._delete(excess)

    def release(self) -> None:
        """The execution has completed: deletes every kept call."""
        self._released = True
        calls = list(self._kept)
        self._kept.clear()
        self._delete(calls)

    def _delete(self, calls: list[str]) -> None:
        if not calls:
            return
        task = asyncio.ensure_future(self._delete_all(calls))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _delete_all(self, calls: list[str]) -> None:
        for start in range(0, len(calls), KEPT_DELETE_BATCH):
            await asyncio.gather(*(self._delete_one(call)
                                   for call in calls[start:start + KEPT_DELETE_BATCH]))

    async def _delete_one(self, call: str) -> None:
        try:
            await self._connection.retry(
                self._connection.executions.Delete,
                executions_pb2.ExecutionsDeleteRequest(
                    execution=model_pb2.PerperExecution(execution=call)))
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:  # gone already (its instance destroyed)
                _log.debug("%sdelete of kept call %s failed: %d %s",
                           self._connection.log_prefix(), call, e.code().value[0], e.details())
        except Exception as e:  # noqa: BLE001  best effort; e.g. the connection was closed
            _log.debug("%sdelete of kept call %s failed: %r", self._connection.log_prefix(),
                       call, e)


class Agent:
    """A reference to an agent instance: (agent type, instance ID)."""

    __slots__ = ("agent", "instance", "start_result")

    def __init__(self, agent: str, instance: str, start_result: Any = None) -> None:
        self.agent = agent
        self.instance = instance
        # What the instance's Start returned (set by perper.start_agent).
        self.start_result = start_result

    def to_message(self) -> model_pb2.PerperInstance:
        return model_pb2.PerperInstance(instance=self.instance, agent=self.agent)

    @staticmethod
    def from_message(message: model_pb2.PerperInstance) -> "Agent":
        return Agent(message.agent, message.instance)

    async def call(self, delegate: str, *args: Any, result_type: Any = None) -> Any:
        """Calls `delegate` on this instance and returns its result.

        No result gives None, one result the value, several a tuple. `result_type` (a type, or a
        tuple of types for several results) checks the results' types. Raises
        ExecutionFailedError when the handler failed, ExecutionCancelledError when the execution
        was deleted. Cancelling the awaiting task cancels the execution.

        Inside a real execution the call's ID is derived (see perper._ambient.DerivedIds) and
        the finished call is kept (see KeptCalls: until the calling execution has completed, at
        most the most recent MAX_KEPT_CALLS of its calls), so a re-run of the calling execution
        gets the stored result instead of running the callee again. Elsewhere the call is
        deleted once answered (FabricInstances.Call).
        """
        execution = new_id(delegate)
        request = executions_pb2.ExecutionsCreateRequest(
            execution=model_pb2.PerperExecution(execution=execution), instance=self.to_message(),
            delegate=delegate, arguments=values.pack_all(args))
        connection = get_connection()
        if in_execution():
            response = await watch_unserved(self.agent, execution, _call_kept(request))
            kept = current().kept
            if kept is not None and not response.deleted:
                kept.keep(execution)
        else:
            response = await watch_unserved(
                self.agent, execution, connection.retry(connection.instances.Call, request))
        return results_of_response(execution, response, result_type)

    async def destroy(self, *stop_args: Any) -> Any:
        """Stops the instance (its Stop delegate, then its children) and deletes it.

        Returns what Stop returned; raises ExecutionFailedError when Stop failed.
        """
        request = instances_pb2.InstancesStopAndDeleteRequest(
            instance=self.to_message(), stop_parameters=values.pack_all(stop_args))
        # Stop runs in a process of the agent: with none, the warning says why this waits.
        response = await watch_unserved(
            self.agent, self.instance,
            get_connection().retry(get_connection().instances.StopAndDelete, request))
        return results_of_response(f"Stop of {self.instance}", response)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Agent) and other.agent == self.agent
                and other.instance == self.instance)

    def __hash__(self) -> int:
        return hash((self.agent, self.instance))

    def __repr__(self) -> str:
        return f"Agent({self.agent!r}, {self.instance!r})"


class Execution:
    """A reference to an execution."""

    __slots__ = ("execution",)

    def __init__(self, execution: str) -> None:
        self.execution = execution

    def to_message(self) -> model_pb2.PerperExecution:
        return model_pb2.PerperExecution(execution=self.execution)

    @staticmethod
    def from_message(message: model_pb2.PerperExecution) -> "Execution":
        return Execution(message.execution)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Execution) and other.execution == self.execution

    def __hash__(self) -> int:
        return hash(self.execution)

    def __repr__(self) -> str:
        return f"Execution({self.execution!r})"


_END = object()


async def _pump(call: Any, inbox: asyncio.Queue) -> None:
    """Moves the messages of a listen call into `inbox`, then _END or the call's error."""
    try:
        while True:
            message = await call.read()
            if message is grpc.aio.EOF:
                await inbox.put(_END)
                return
            await inbox.put(message)
    except grpc.aio.AioRpcError as e:
        await inbox.put(e)


class _ListenerGuard:
    """Keeps this process's own acknowledgements of one named listener from moving it back below
    a step (Stream.step) taken on it: `floor` is the highest position a step reported, and
    acknowledgements at or below it are dropped. `lock` orders MoveListener calls with steps, so
    a MoveListener sent before a step cannot arrive after it. (An acknowledgement on the
    ListenItemsAndMove call is never held by the lock: the Fabric ignores a backward one there,
    and waiting on it could hold up the consumer.) Use from one event loop.
    """

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.floor: Optional[int] = None

    def allows(self, key: int) -> bool:
        return self.floor is None or key > self.floor

    def raise_floor(self, position: int) -> None:
        self.floor = position if self.floor is None else max(self.floor, position)


# The guards of the listeners an enumeration or a step is using now, by (stream, listener).
_guards: "weakref.WeakValueDictionary[tuple[str, str], _ListenerGuard]" = (
    weakref.WeakValueDictionary())


def _guard_of(stream: str, listener: str) -> _ListenerGuard:
    guard = _guards.get((stream, listener))
    if guard is None:
        guard = _guards[(stream, listener)] = _ListenerGuard()
    return guard


class _Acks:
    """Acknowledges items of a named listener: on the ListenItemsAndMove call while it is open,
    with MoveListener once it has ended. Never moves the listener below a step (_ListenerGuard).
    Use from one event loop.

    note() records the last item the consumer has taken; a background task writes the latest
    noted key whenever its previous write is done, so acknowledgements never hold up the consumer
    and items taken together cost one acknowledgement. (Writing from the consumer itself could
    deadlock: a write on a call the Fabric has ended waits for the call's status, which arrives
    only after every response has been read, and the responses wait for the consumer.)
    """

    def __init__(self, call: Any, stream: model_pb2.PerperStream, listener: str) -> None:
        self._call = call
        self._stream = stream
        self._listener = listener
        self._guard = _guard_of(stream.stream, listener)
        self._on_call = True
        self._last: Optional[int] = None
        self._sent: Optional[int] = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task = asyncio.create_task(self._run())

    def note(self, key: int) -> None:
        self._last = key
        self._idle.clear()
        self._wake.set()

    async def finish(self) -> None:
        """Waits until the last noted key is sent, then stores it with a unary call (an
        acknowledgement written as the call ended may be lost)."""
        await self._idle.wait()
        self._task.cancel()
        await self.confirm()

    def cancel(self) -> None:
        self._task.cancel()

    async def confirm(self) -> None:
        """Applies the last noted key with a unary call (returns once it is stored)."""
        if self._last is not None:
            await self._move(self._last)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._last != self._sent:
                key = self._sent = self._last
                if not self._guard.allows(key):
                    continue  # a step has moved the listener past it
                try:
                    if self._on_call:
                        try:
                            await self._call.write(streams_pb2.StreamsListenItemsAndMoveRequest(
                                reached_key=key))
                            continue
                        except asyncio.CancelledError:
                            raise
                        except Exception:  # the call has ended: acknowledge with MoveListener
                            self._on_call = False
                    await self._move(key)
                except grpc.aio.AioRpcError:
                    pass  # the stream is gone, or the Fabric for too long: at-least-once
            self._idle.set()

    async def _move(self, key: int) -> None:
        connection = get_connection()
        async with self._guard.lock:
            if not self._guard.allows(key):
                return  # MoveListener can move backwards: never below a step
            await connection.retry(connection.streams.MoveListener,
                                   streams_pb2.StreamsMoveListenerRequest(
                                       stream=self._stream, listener_name=self._listener,
                                       reached_key=key))


def _items_of(message: streams_pb2.StreamsListenItemsResponse) -> Any:
    """Returns the (key, value) items of one listen response, either form."""
    if message.items:
        return [(item.key, item.value) for item in message.items]
    return [(message.key, message.value)]


@dataclass(frozen=True)
class StreamProgress:
    """Where a stream stands (Stream.progress): the largest key ever written (None before the
    first item), the number of items ever written (items an ephemeral stream has collected
    still count; an identical rewrite of a key does not), and whether it is completed."""

    last_key: Optional[int]
    written_count: int
    completed: bool


@dataclass(frozen=True)
class StepResult:
    """What Stream.step did. `applied`: the changes were applied and the listener moved to the
    key. Otherwise nothing changed, because the step was taken before (`already_taken`: the
    listener is at or past the key), the listener was not at `expected_position`
    (`position_mismatch`), or, with both false, a compare_and_set found another value.
    `position` is the listener's position after the call."""

    applied: bool
    already_taken: bool
    position_mismatch: bool
    position: int


class Stream:
    """A reference to a stream: its ID, where reading starts, and its stride.

    `start_key == -1` reads live (items written from now on); any other key replays from that
    key. `stride != 0` is a packed stream (keys k, k+stride, ...). Iterating it
    (`async for value in stream`) delivers the values until the stream completes; `items()` gives
    (key, value) pairs and takes a listener name to resume where a previous run stopped.
    """

    __slots__ = ("stream", "start_key", "stride")

    def __init__(self, stream: str, start_key: int = -1, stride: int = 0) -> None:
        self.stream = stream
        self.start_key = start_key
        self.stride = stride

    def to_message(self) -> model_pb2.PerperStream:
        return model_pb2.PerperStream(stream=self.stream, start_key=self.start_key,
                                      stride=self.stride)

    @staticmethod
    def from_message(message: model_pb2.PerperStream) -> "Stream":
        return Stream(message.stream, message.start_key, message.stride)

    def replay(self, key: int = 0) -> "Stream":
        """Returns a reference that reads the stream from `key` (inclusive) instead of live."""
        return Stream(self.stream, key, self.stride)

    def live(self) -> "Stream":
        """Returns a reference that reads only the items written from now on."""
        return Stream(self.stream, -1, self.stride)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self.values()

    async def values(self, listener: Optional[str] = None,
                     type: Any = None) -> AsyncIterator[Any]:  # noqa: A002
        """Yields the values of the items (see items())."""
        async for _, value in self.items(listener, type):
            yield value

    async def items(self, listener: Optional[str] = None,
                    type: Any = None) -> AsyncIterator[tuple[int, Any]]:  # noqa: A002
        """Yields (key, value) for each item, in key order, until the stream completes.

        With `listener`, the Fabric keeps a durable listener of that name: each item is
        acknowledged once the consumer asks for the next one (items taken together share one
        acknowledgement, sent in the background; the last one is stored when the enumeration
        ends or is closed), and a later enumeration with the same name resumes at the last
        acknowledged item (delivered again: at-least-once). Without it the enumeration starts at
        `start_key` and cannot resume. A named listener that does not exist yet is created by the
        Fabric just below `start_key` (nothing processed), so that Stream.step accounts for the
        first item too. `type` checks each value's type. Raises StreamFailedError when the stream completes
        with an error or is deleted. When the Fabric is unreachable, reconnects and continues
        after the last item delivered to the consumer.

        The Fabric sends up to MAX_ITEMS_PER_MESSAGE items per response message.
        """
        connection = get_connection()
        start_key = self.start_key
        from_latest = self.start_key == -1
        last_key: Optional[int] = None
        backoff = Backoff()
        while True:
            request = streams_pb2.StreamsListenItemsRequest(
                stream=model_pb2.PerperStream(stream=self.stream, start_key=start_key,
                                              stride=self.stride),
                listener_name=listener or "", start_from_latest=from_latest,
                max_items_per_message=MAX_ITEMS_PER_MESSAGE)
            endpoint = connection.endpoint
            if listener:
                call = connection.streams.ListenItemsAndMove(wait_for_ready=True)
            else:
                call = connection.streams.ListenItems(request, wait_for_ready=True)
            # Reading runs in its own task, so that an acknowledgement written on a call the
            # Fabric has just ended fails at once (and falls back to MoveListener).
            inbox: asyncio.Queue = asyncio.Queue(maxsize=8)
            reader = asyncio.create_task(_pump(call, inbox))
            acks = _Acks(call, self.to_message(), listener) if listener else None
            finished = False
            try:
                if listener:
                    await call.write(streams_pb2.StreamsListenItemsAndMoveRequest(listen=request))
                while True:
                    message = await inbox.get()
                    if message is _END:
                        finished = True
                        if acks is not None:
                            with contextlib.suppress(grpc.aio.AioRpcError):
                                await acks.finish()  # unless the stream is gone meanwhile
                        return
                    if isinstance(message, BaseException):
                        raise message
                    backoff.reset()
                    items = _items_of(message)
                    COUNTERS.listen_responses += 1
                    COUNTERS.listen_items += len(items)
                    for key, packed in items:
                        if last_key is not None and key == last_key:
                            continue  # the resumed item, delivered again after a reconnect
                        value = values.unpack(packed, type)
                        yield key, value
                        last_key = key
                        if acks is not None:
                            acks.note(key)
            except grpc.aio.AioRpcError as e:
                if is_retryable(e):
                    connection.moved_from(endpoint)
                    if last_key is not None:
                        start_key = last_key if listener else last_key + (self.stride or 1)
                        from_latest = False
                    await backoff.wait()
                    continue
                if e.code() in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.NOT_FOUND):
                    raise StreamFailedError(self.stream, e.details() or str(e.code())) from None
                raise
            except GeneratorExit:
                # The consumer stopped early: make sure the last acknowledgement is applied
                # before the caller goes on (a new enumeration resumes from it).
                if acks is not None and not finished:
                    acks.cancel()
                    call.cancel()
                    await acks.confirm()
                raise
            finally:
                if acks is not None:
                    acks.cancel()
                reader.cancel()
                call.cancel()

    async def write(self, value: Any, key: Optional[int] = None) -> None:
        """Writes one item: under `key`, or under a key chosen by the Fabric (unpacked)."""
        request = streams_pb2.StreamsWriteItemRequest(stream=self.to_message(),
                                                      value=values.pack(value))
        if key is None:
            request.auto_key = True
        else:
            request.key = key
        await get_connection().retry(get_connection().streams.WriteItem, request)

    async def complete(self, error: Optional[str] = None) -> None:
        """Completes the stream (with `error`, if given): its readers end after the last item."""
        request = streams_pb2.StreamsCompleteRequest(stream=self.to_message())
        if error is not None:
            request.error.message = bounded_error_text(error)
        await get_connection().retry(get_connection().streams.Complete, request)

    async def progress(self) -> StreamProgress:
        """Returns where the stream stands (FabricStreams.GetProgress): what a producer that
        runs again needs to resume. Raises grpc.aio.AioRpcError NOT_FOUND for an unknown
        stream."""
        request = streams_pb2.StreamsGetProgressRequest(stream=self.to_message())
        response = await get_connection().retry(get_connection().streams.GetProgress, request)
        return StreamProgress(last_key=response.last_key if response.has_items else None,
                              written_count=response.written_count, completed=response.completed)

    async def step(self, listener: str, key: int, changes: Optional["Changes"] = None, *,
                   expected_position: Optional[int] = None) -> StepResult:
        """Applies `changes` (to one dictionary) and moves the named listener `listener` to
        `key`, as one operation that happens entirely or not at all (FabricStreams.Step).

        A step whose key is not above the listener's position has been taken already: nothing
        applies (`already_taken`). So a consumer that steps each item it took, and is restarted
        anywhere, accounts for every item exactly once in the Fabric's state. With
        `expected_position`, the step applies only when the listener is at that position (a
        fence against a second consumer). From then on, this process's own acknowledgements of
        the listener (items()) never move it back below the step.
        """
        request = streams_pb2.StreamsStepRequest(stream=self.to_message(), listener_name=listener,
                                                 reached_key=key)
        if changes is not None and changes.operations:
            request.dictionary.CopyFrom(changes.dictionary.to_message())
            request.operations.extend(changes.operations)
        if expected_position is not None:
            request.expected_position = expected_position
        connection = get_connection()
        guard = _guard_of(self.stream, listener)
        async with guard.lock:
            # A retry after a lost answer finds the step taken: already_taken, nothing twice.
            response = await connection.retry(connection.streams.Step, request)
            guard.raise_floor(response.position)
        return StepResult(applied=response.applied, already_taken=response.already_taken,
                          position_mismatch=response.position_mismatch,
                          position=response.position)

    async def wait_for_listener(self) -> None:
        """Returns once the stream has a listener."""
        request = streams_pb2.StreamsWaitForListenerRequest(stream=self.to_message())
        await get_connection().retry(get_connection().streams.WaitForListener, request)

    async def delete(self) -> None:
        """Deletes the stream, its items and its listeners."""
        request = streams_pb2.StreamsDeleteRequest(stream=self.to_message())
        await get_connection().retry(get_connection().streams.Delete, request)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Stream) and other.stream == self.stream
                and other.start_key == self.start_key and other.stride == self.stride)

    def __hash__(self) -> int:
        return hash((self.stream, self.start_key, self.stride))

    def __repr__(self) -> str:
        return f"Stream({self.stream!r}, start_key={self.start_key}, stride={self.stride})"


class Changes:
    """A batch of operations on one dictionary, applied together by Stream.step.

    Built with chainable calls (`state.changes().set("a", 1).remove("b")`); each operation has
    the meaning of the Dictionary method of the same name. Nothing is sent until the step.
    """

    __slots__ = ("dictionary", "operations")

    def __init__(self, dictionary: "Dictionary") -> None:
        self.dictionary = dictionary
        self.operations: list[states_pb2.StatesDictionaryOperateRequest] = []

    def set(self, key: Any, value: Any) -> "Changes":
        """Sets `key` to `value` (None removes the key)."""
        self.operations.append(states_pb2.StatesDictionaryOperateRequest(
            key=values.pack(key), set_new_value=True, new_value=values.pack(value)))
        return self

    def remove(self, key: Any) -> "Changes":
        """Removes `key` (nothing when absent)."""
        self.operations.append(states_pb2.StatesDictionaryOperateRequest(
            key=values.pack(key), set_new_value=True, new_value=any_pb2.Any()))
        return self

    def compare_and_set(self, key: Any, expected: Any, new: Any) -> "Changes":
        """Sets `key` to `new` if it holds `expected` (None: absent); if it does not, the whole
        step applies nothing."""
        self.operations.append(states_pb2.StatesDictionaryOperateRequest(
            key=values.pack(key), set_new_value=True, new_value=values.pack(new),
            compare_existing_value=True, expected_existing_value=values.pack(expected)))
        return self

    def __len__(self) -> int:
        return len(self.operations)

    def __repr__(self) -> str:
        return f"Changes({self.dictionary!r}, {len(self.operations)} operations)"


class Dictionary:
    """A reference to a state dictionary. Keys and values follow the value table."""

    __slots__ = ("dictionary",)

    def __init__(self, dictionary: str) -> None:
        self.dictionary = dictionary

    def to_message(self) -> model_pb2.PerperDictionary:
        return model_pb2.PerperDictionary(dictionary=self.dictionary)

    @staticmethod
    def from_message(message: model_pb2.PerperDictionary) -> "Dictionary":
        return Dictionary(message.dictionary)

    async def _operate(self, key: Any, **fields: Any) -> states_pb2.StatesDictionaryOperateResponse:
        request = states_pb2.StatesDictionaryOperateRequest(
            dictionary=self.to_message(), key=values.pack(key), **fields)
        return await get_connection().retry(get_connection().dictionaries.Operate, request)

    @staticmethod
    def _previous(response: states_pb2.StatesDictionaryOperateResponse, default: Any,
                  type: Any) -> Any:  # noqa: A002
        if not response.HasField("previous_value") or values.is_null(response.previous_value):
            return default
        return values.unpack(response.previous_value, type)

    async def get(self, key: Any, default: Any = None, *, type: Any = None) -> Any:  # noqa: A002
        """Returns the value under `key`, or `default` when absent; `type` checks its type."""
        response = await self._operate(key, get_existing_value=True)
        return self._previous(response, default, type)

    async def set(self, key: Any, value: Any) -> None:
        """Sets `key` to `value` (None removes the key)."""
        await self._operate(key, set_new_value=True, new_value=values.pack(value))

    async def remove(self, key: Any) -> bool:
        """Removes `key`; tells whether it was present."""
        response = await self._operate(key, set_new_value=True, new_value=any_pb2.Any())
        return response.operation_successful

    async def contains(self, key: Any) -> bool:
        """Tells whether `key` is present."""
        return (await self._operate(key)).operation_successful

    async def compare_and_set(self, key: Any, expected: Any, new: Any) -> bool:
        """Sets `key` to `new` only if it currently holds `expected` (None: absent).

        Comparison is on the packed bytes (an int is an Int64Value). Tells whether it was set.
        """
        response = await self._operate(
            key, set_new_value=True, new_value=values.pack(new), compare_existing_value=True,
            expected_existing_value=values.pack(expected))
        return response.operation_successful

    async def set_if_absent(self, key: Any, value: Any) -> bool:
        """Sets `key` to `value` only if `key` is absent; tells whether it was set."""
        return await self.compare_and_set(key, None, value)

    async def get_and_set(self, key: Any, value: Any, *, type: Any = None) -> Any:  # noqa: A002
        """Sets `key` to `value` (None removes) and returns the previous value (None: absent)."""
        response = await self._operate(key, get_existing_value=True, set_new_value=True,
                                       new_value=values.pack(value))
        return self._previous(response, None, type)

    async def update(self, key: Any, function: Any, default: Any = None) -> Any:
        """Atomically replaces the value with function(current or default); returns the new one.

        Retries with compare-and-set while another writer changes the key in between.
        """
        while True:
            response = await self._operate(key, get_existing_value=True)
            present = (response.HasField("previous_value")
                       and not values.is_null(response.previous_value))
            current_value = values.unpack(response.previous_value) if present else default
            new = function(current_value)
            expected = response.previous_value if present else any_pb2.Any()
            result = await self._operate(
                key, set_new_value=True, new_value=values.pack(new), compare_existing_value=True,
                expected_existing_value=expected)
            if result.operation_successful:
                return new

    def changes(self) -> Changes:
        """Returns an empty batch of operations on this dictionary, for Stream.step."""
        return Changes(self)

    async def items(self, *, type: Any = None) -> AsyncIterator[tuple[Any, Any]]:  # noqa: A002
        """Yields every (key, value), in key byte order (a snapshot)."""
        request = states_pb2.StatesDictionaryListItemsRequest(dictionary=self.to_message())
        connection = get_connection()
        async for item in connection.snapshot(connection.dictionaries.ListItems, request):
            yield values.unpack(item.key), values.unpack(item.value, type)

    async def count(self) -> int:
        """Returns the number of keys."""
        request = states_pb2.StatesDictionaryCountItemsRequest(dictionary=self.to_message())
        return (await get_connection().retry(get_connection().dictionaries.CountItems,
                                             request)).count

    async def clear(self) -> None:
        """Removes every key."""
        request = states_pb2.StatesDictionaryDeleteRequest(dictionary=self.to_message(),
                                                           keep_cache=True)
        await get_connection().retry(get_connection().dictionaries.Delete, request)

    async def delete(self) -> None:
        """Deletes the dictionary."""
        request = states_pb2.StatesDictionaryDeleteRequest(dictionary=self.to_message())
        await get_connection().retry(get_connection().dictionaries.Delete, request)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dictionary) and other.dictionary == self.dictionary

    def __hash__(self) -> int:
        return hash(self.dictionary)

    def __repr__(self) -> str:
        return f"Dictionary({self.dictionary!r})"


class List:
    """A reference to a state list (a deque). Values follow the value table."""

    __slots__ = ("list",)

    def __init__(self, list: str) -> None:  # noqa: A002
        self.list = list

    def to_message(self) -> model_pb2.PerperList:
        return model_pb2.PerperList(list=self.list)

    @staticmethod
    def from_message(message: model_pb2.PerperList) -> "List":
        return List(message.list)

    async def _operate(self, **fields: Any) -> states_pb2.StatesListOperateResponse:
        request = states_pb2.StatesListOperateRequest(list=self.to_message(), **fields)
        try:
            return await get_connection().retry(get_connection().lists.Operate, request)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.OUT_OF_RANGE:
                raise IndexError(e.details()) from None
            raise

    async def push_back(self, *items: Any) -> None:
        """Appends the items at the back, in order."""
        await self._operate(at_back=True, insert_values=values.pack_all(items))

    async def push_front(self, *items: Any) -> None:
        """Inserts the items at the front, as a block in their order."""
        await self._operate(at_front=True, insert_values=values.pack_all(items))

    async def pop_back(self, default: Any = None, *, type: Any = None) -> Any:  # noqa: A002
        """Removes and returns the last item, or returns `default` when the list is empty."""
        response = await self._operate(at_back=True, values_count=1, get_values=True,
                                       remove_values=True)
        return values.unpack(response.values[0], type) if response.values else default

    async def pop_front(self, default: Any = None, *, type: Any = None) -> Any:  # noqa: A002
        """Removes and returns the first item, or returns `default` when the list is empty."""
        response = await self._operate(at_front=True, values_count=1, get_values=True,
                                       remove_values=True)
        return values.unpack(response.values[0], type) if response.values else default

    async def get(self, index: int, *, type: Any = None) -> Any:  # noqa: A002
        """Returns item `index` (negative counts from the back). Raises IndexError."""
        if index < 0:
            response = await self._operate(index_backwards=-index - 1, values_count=1,
                                           get_values=True)
        else:
            response = await self._operate(index=index, values_count=1, get_values=True)
        if not response.values:
            raise IndexError(f"index {index} is past the end of list {self.list!r}")
        return values.unpack(response.values[0], type)

    async def set(self, index: int, value: Any) -> None:
        """Replaces item `index`. Raises IndexError."""
        if index < 0 or index >= await self.count():
            raise IndexError(f"index {index} is outside list {self.list!r}")
        await self._operate(index=index, values_count=1, remove_values=True,
                            insert_values=[values.pack(value)])

    async def insert(self, index: int, value: Any) -> None:
        """Inserts `value` before item `index` (index == count appends)."""
        await self._operate(index=index, insert_values=[values.pack(value)])

    async def remove_at(self, index: int) -> Any:
        """Removes item `index` and returns it. Raises IndexError."""
        response = await self._operate(index=index, values_count=1, get_values=True,
                                       remove_values=True)
        if not response.values:
            raise IndexError(f"index {index} is past the end of list {self.list!r}")
        return values.unpack(response.values[0])

    async def locate(self, value: Any) -> Optional[int]:
        """Returns the index of the first item equal to `value` (packed bytes), or None."""
        request = states_pb2.StatesListLocateRequest(list=self.to_message(),
                                                     value=values.pack(value))
        response = await get_connection().retry(get_connection().lists.Locate, request)
        return response.index if response.found else None

    async def count(self) -> int:
        """Returns the number of items."""
        request = states_pb2.StatesListCountItemsRequest(list=self.to_message())
        return (await get_connection().retry(get_connection().lists.CountItems, request)).count

    async def items(self, *, type: Any = None) -> AsyncIterator[Any]:  # noqa: A002
        """Yields every item in index order (a snapshot)."""
        request = states_pb2.StatesListListItemsRequest(list=self.to_message())
        connection = get_connection()
        async for item in connection.snapshot(connection.lists.ListItems, request):
            yield values.unpack(item.value, type)

    async def clear(self) -> None:
        """Removes every item."""
        request = states_pb2.StatesListDeleteRequest(list=self.to_message(), keep_cache=True)
        await get_connection().retry(get_connection().lists.Delete, request)

    async def delete(self) -> None:
        """Deletes the list."""
        request = states_pb2.StatesListDeleteRequest(list=self.to_message())
        await get_connection().retry(get_connection().lists.Delete, request)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, List) and other.list == self.list

    def __hash__(self) -> int:
        return hash(self.list)

    def __repr__(self) -> str:
        return f"List({self.list!r})"


values.register_model_type(model_pb2.PerperInstance, Agent, Agent.from_message)
values.register_model_type(model_pb2.PerperStream, Stream, Stream.from_message)
values.register_model_type(model_pb2.PerperExecution, Execution, Execution.from_message)
values.register_model_type(model_pb2.PerperDictionary, Dictionary, Dictionary.from_message)
values.register_model_type(model_pb2.PerperList, List, List.from_message)

