"""The application layer: registering handlers and running an agent process.

An Application serves one agent type. It keeps one FabricExecutions.ListenAndReserve call open
for every delegate of its agent (and instance), in its workgroup, with `concurrency` credits: the
executions running at once in the process. The Fabric hands each execution to one member of the
workgroup, so several processes share the work; the process runs it with the handler of its
delegate (Start and Stop get empty defaults; an execution of any other delegate without a handler
fails). Each execution runs as its own asyncio task in a context (perper.context) naming its
instance and execution; deleting the execution cancels the task; a handler's exception fails the
execution. A handler's completion rides on the reservation call together with the credit for
the next execution (completions that are ready together share one message); the unary Complete
is the fallback while that call is reconnecting, and is used by an execution that kept calls
(perper.model.KeptCalls), whose answer lets the SDK delete them. A call the Fabric refuses for
good (INVALID_ARGUMENT, PERMISSION_DENIED, ...) ends serving: serve() raises
ReservationRefusedError and run() exits with code 1, as a C++ agent does.

Lifecycle handlers (the names upstream uses):
- "Deploy": runs once when the process starts, in the instance "{agent}-deploy" (no execution).
- "Init" (alias "EnterContainer"): runs once per instance per process, before that instance's
  first execution here.
- "Start" / "Stop": the constructor and destructor executions of an instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
from collections import deque
from typing import Any, Callable, Mapping, Optional, Union

import grpc

from perper import _logging, values
from perper._ambient import Context, DerivedIds, current_context, set_default_context
from perper._stats import COUNTERS
from perper._stubs import executions_pb2, introspection_pb2, model_pb2, streams_pb2
from perper.connection import Backoff, FabricConnection, is_retryable, is_transient
from perper.errors import ReservationRefusedError, bounded_error_text
from perper.context import StreamDelegate, start_stream, stream_delegate  # noqa: F401
from perper.model import Agent, KeptCalls, Stream, results_of_response

_log = _logging.log

Handler = Union[Callable[..., Any], StreamDelegate]
LIFECYCLE = ("Deploy", "Init", "EnterContainer")
STREAM_SUFFIX = "-stream"
# Set to "1" (the scaler does, for the deploy process) to record Deploy as an execution.
RECORD_DEPLOY_VARIABLE = "X_PERPER_RECORD_DEPLOY"
# The recorded Deploy execution: agent and delegate (its instance is "{agent}-deploy").
DEPLOY_RECORD_AGENT = "perper.Deploy"
DEPLOY_RECORD_DELEGATE = "Deploy"


async def _invoke(function: Callable[..., Any], args: list) -> Any:
    result = function(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


def describe_error(error: BaseException) -> str:
    """Returns the message an execution or stream fails with for `error`."""
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return f"{type(error).__name__}: {error}"


def _is_keyed(item: Any) -> bool:
    return (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], int)
            and not isinstance(item[0], bool))


class _BatchWriter:
    """Writes stream items in batches (FabricStreams.WriteItems) from a background task.

    put() waits while the queue is full (backpressure) and raises the writer's error once a
    write failed; close() flushes and raises it too. Use from one event loop.
    """

    MAX_BATCH = 256

    def __init__(self, connection: FabricConnection, stream: Stream) -> None:
        self._connection = connection
        self._stream = stream
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=4 * self.MAX_BATCH)
        self._error: Optional[BaseException] = None
        self._task = asyncio.create_task(self._run())

    async def put(self, key: Optional[int], value: Any) -> None:
        if self._error is not None:
            raise self._error
        await self._queue.put((key, value))

    async def close(self) -> None:
        await self._queue.put(None)
        await self._task
        if self._error is not None:
            raise self._error

    def cancel(self) -> None:
        self._task.cancel()

    async def _run(self) -> None:
        done = False
        while not done:
            batch = [await self._queue.get()]
            while batch[-1] is not None and len(batch) < self.MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            done = batch[-1] is None
            items = [item for item in batch if item is not None]
            if not items or self._error is not None:
                continue  # after a failure, keep draining so that put() never blocks forever
            request = streams_pb2.StreamsWriteItemsRequest(stream=self._stream.to_message())
            for key, value in items:
                entry = request.items.add(value=value)
                if key is None:
                    entry.auto_key = True
                else:
                    entry.key = key
            try:
                await self._connection.retry(self._connection.streams.WriteItems, request)
            except Exception as e:  # noqa: BLE001  (reported to the producer)
                self._error = e


class _ReservationCall:
    """One open FabricExecutions.ListenAndReserve call: its credits, and the completions that
    ride on it (ExecutionsListenAndReserveRequest.completions).

    push() queues a completion and/or credits; one writer task sends whatever has accumulated as
    one message, so completions that are ready together cost one message. There is no reply to
    a completion: it counts as applied once the Fabric has delivered an execution that needed
    the credits of a later message (the Fabric reads a call's messages in order and applies a
    message's completions before granting its credits). Until then it is unconfirmed, and close()
    hands it back when the call has ended, to be sent again with the unary Complete (a repeat is
    answered FAILED_PRECONDITION or NOT_FOUND, which is ignored). Use from one event loop.
    """

    # Completions per message are capped by size (each is at most MAX_COMPLETION_BYTES).
    MAX_MESSAGE_BYTES = 4 * 1024 * 1024

    def __init__(self, call: Any, credits: int) -> None:
        self.call = call
        self.open = True
        self._granted = credits  # credits in the messages written so far
        self._delivered = 0
        self._queue: list[executions_pb2.ExecutionsCompleteRequest] = []
        self._credits = 0
        # (credits granted before the message, its completions), oldest first.
        self._sent: deque[tuple[int, list]] = deque()
        self._wake = asyncio.Event()
        self._writer: Optional[asyncio.Task] = None

    def start_writer(self) -> None:
        self._writer = asyncio.create_task(self._write_loop())

    def push(self, completion: Optional[executions_pb2.ExecutionsCompleteRequest],
             credits: int) -> None:
        if completion is not None:
            self._queue.append(completion)
        self._credits += credits
        self._wake.set()

    def delivered(self) -> list[str]:
        """Counts a delivered execution; returns the executions whose completions are now
        known to be applied."""
        self._delivered += 1
        confirmed: list[str] = []
        while self._sent and self._sent[0][0] < self._delivered:
            confirmed += [c.execution.execution for c in self._sent.popleft()[1]]
        return confirmed

    def close(self) -> list[executions_pb2.ExecutionsCompleteRequest]:
        """Marks the call ended; returns the completions not known to be applied."""
        self.open = False
        if self._writer is not None:
            self._writer.cancel()
        left = [c for _, sent in self._sent for c in sent] + self._queue
        self._sent.clear()
        self._queue = []
        return left

    async def _write_loop(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue or self._credits:
                    batch, size = [], 0
                    while self._queue and (not batch or size + self._queue[0].ByteSize()
                                           <= self.MAX_MESSAGE_BYTES):
                        size += self._queue[0].ByteSize()
                        batch.append(self._queue.pop(0))
                    credits, self._credits = self._credits, 0
                    # Recorded before the write: if the write fails, the call has ended and
                    # these completions are handed back by close().
                    self._sent.append((self._granted, batch))
                    self._granted += credits
                    COUNTERS.reservation_messages += 1
                    COUNTERS.reservation_completions += len(batch)
                    await self.call.write(executions_pb2.ExecutionsListenAndReserveRequest(
                        completions=batch, reserve_next=credits))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001  the call has ended; the listen loop reconnects
            pass


class Application:
    """Serves the handlers of one agent type. Use from one event loop.

    `handlers` maps delegate names to functions (sync or async), async generator functions
    (stream delegates with default options) or StreamDelegate objects. `instance` restricts the
    process to one instance (default: X_PERPER_INSTANCE, else every instance). `concurrency` is
    how many executions run at once in the process, whatever their delegates.
    """

    # How long stop() waits for completions still being sent.
    STOP_GRACE = 5.0
    # A completion larger than this (serialized) goes with the unary Complete, which can report
    # a refused value (the execution then fails instead); on the reservation call, a refused
    # completion would end the call.
    MAX_COMPLETION_BYTES = 1024 * 1024

    def __init__(self, agent: Optional[str] = None,
                 handlers: Optional[Mapping[str, Handler]] = None, *,
                 connection: Optional[FabricConnection] = None, endpoint: Optional[str] = None,
                 instance: Optional[str] = None, workgroup: str = "",
                 concurrency: int = 64) -> None:
        self.agent = agent or os.environ.get("X_PERPER_AGENT", "")
        if not self.agent:
            raise ValueError("perper: no agent name (pass agent=... or set X_PERPER_AGENT)")
        _logging.apply_environment()
        self.instance = instance if instance is not None else os.environ.get(
            "X_PERPER_INSTANCE", "")
        self.workgroup = workgroup
        self.concurrency = concurrency
        self._own_connection = connection is None
        self._connection = connection
        self._endpoint = endpoint
        self._handlers: dict[str, Handler] = {}
        self._listener: Optional[asyncio.Task] = None
        # Set once the reservation call has been answered (or refused).
        self._answered = asyncio.Event()
        self._running: dict[str, asyncio.Task] = {}
        self._inits: dict[str, asyncio.Task] = {}
        # The open ListenAndReserve call (None while reconnecting), and the one being opened:
        # completions ride on the open one only, credits on either.
        self._call: Optional[_ReservationCall] = None
        self._opening: Optional[_ReservationCall] = None
        # Why the Fabric refused the reservation call for good, once it has.
        self._refusal: Optional[ReservationRefusedError] = None
        # Executions whose handler has returned and whose completion is not yet known to be
        # applied, with it; a delivery of one of them again is not run again.
        self._finishing: dict[str, executions_pb2.ExecutionsCompleteRequest] = {}
        self._unary_completes: set[asyncio.Task] = set()
        # The calls each running execution keeps (perper.model.KeptCalls), until it finishes.
        self._kept_calls: dict[str, KeptCalls] = {}
        # Deletions of kept calls, in the background (stop() waits for them).
        self._deletions: set[asyncio.Task] = set()
        self._stop_requested = asyncio.Event()
        self._serving = False  # "serving" is logged once, when the call is first answered
        self._stopping = False
        for name, handler in (handlers or {}).items():
            self._add(name, handler)

    @property
    def connection(self) -> FabricConnection:
        if self._connection is None:
            self._connection = FabricConnection(self._endpoint)
            self._connection.agent = self.agent
        return self._connection

    def deploy_agent(self) -> Agent:
        """Returns the instance Deploy runs in: "{agent}-deploy"."""
        return Agent(self.agent, f"{self.agent}-deploy")

    # Registration.

    def _add(self, name: str, handler: Handler) -> None:
        if inspect.isasyncgenfunction(handler):
            handler = StreamDelegate(handler)
        if not callable(handler) and not isinstance(handler, StreamDelegate):
            raise TypeError(f"handler of {name!r} is not callable: {handler!r}")
        self._handlers[name] = handler

    def register(self, delegate: str, handler: Handler) -> None:
        """Adds (or replaces) the handler of `delegate`, also while serving.

        Register a handler before anything calls it: the reservation call takes every delegate
        of the agent, so an execution that arrives before its handler is registered fails with
        "agent X has no delegate Y" (Start and Stop complete with no result instead).
        """
        self._add(delegate, handler)

    def stream_options(self, delegate: str) -> Optional[StreamDelegate]:
        """Returns the StreamDelegate registered for `delegate`, if any."""
        handler = self._handlers.get(delegate)
        return handler if isinstance(handler, StreamDelegate) else None

    # Running.

    async def start(self) -> None:
        """Opens the reservation call (one for every delegate). Returns at once; see ready()."""
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen_loop(), name="perper-listen")

    async def ready(self, timeout: Optional[float] = None) -> None:
        """Waits until the reservation call has received the executions waiting at its start;
        raises ReservationRefusedError if the Fabric refused it."""
        await asyncio.wait_for(self._answered.wait(), timeout)
        if self._refusal is not None:
            raise self._refusal

    def request_stop(self) -> None:
        """Asks serve() to return (thread-unsafe; call from the loop, e.g. a signal handler)."""
        self._stop_requested.set()

    async def serve(self, *, stop_after_deploy: bool = False) -> Any:
        """Starts, runs Deploy if there is one, then serves until request_stop() (or, with
        `stop_after_deploy`, until Deploy returns). Returns what Deploy returned; a stop request
        while Deploy runs cancels it, and then serve returns None. Raises
        ReservationRefusedError, after stopping, when the Fabric refused the reservation call."""
        result = await self._serve(stop_after_deploy)
        if self._refusal is not None:
            raise self._refusal
        return result

    async def _serve(self, stop_after_deploy: bool) -> Any:
        await self.start()
        try:
            # A stop request (Ctrl-C, or the scaler's SIGTERM) ends a Deploy that is still
            # running at once, instead of after it returns.
            deploy = asyncio.ensure_future(self.run_deploy())
            stop = asyncio.ensure_future(self._stop_requested.wait())
            try:
                await asyncio.wait({deploy, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not deploy.done():
                    _log.info("[agent=%s] stop requested while Deploy runs: cancelling Deploy",
                              self.agent)
                    deploy.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await deploy
                    return None
                result = deploy.result()
                if not stop_after_deploy:
                    await stop
                return result
            finally:
                stop.cancel()
        finally:
            await self.stop()

    async def run_deploy(self) -> Any:
        """Runs the Deploy handler (if any) in the "{agent}-deploy" context; returns its result.

        With X_PERPER_RECORD_DEPLOY=1, Deploy is recorded as the execution
        "{agent}-deploy-deploy" first: if that execution is finished already, Deploy does not
        run again and its recorded result is returned (its recorded error raised as
        ExecutionFailedError); otherwise Deploy runs with derived IDs (a re-run after a crash
        finds what the first run made) and its result or error completes the execution.
        """
        handler = self._handlers.get("Deploy")
        if handler is None:
            return None
        agent = self.deploy_agent()
        execution = f"{agent.instance}-deploy"
        record = os.environ.get(RECORD_DEPLOY_VARIABLE, "") == "1"
        if record:
            recorded = await self._record_deploy(agent, execution)
            if recorded is not None:
                _log.info("[agent=%s] Deploy already ran on this Fabric (execution %s); "
                          "`perper up --reset` runs it anew", self.agent, execution)
                return results_of_response(execution, recorded)
        kept = KeptCalls(self.connection, self._deletions) if record else None
        token = current_context.set(Context(self.connection, agent, execution, self,
                                            DerivedIds(execution) if record else None, kept))
        try:
            returned = await _invoke(handler, [])
            if kept is not None:
                await self._complete(self._completion(execution, values.results_of(returned),
                                                      None))
                kept.release()
            return returned
        except asyncio.CancelledError:
            raise  # not finished: a later run runs Deploy again
        except Exception as e:
            _log.error("[agent=%s exec=%s] Deploy failed: %s", self.agent, execution,
                       describe_error(e))
            if kept is not None:
                await self._complete(self._completion(execution, [], describe_error(e)))
                kept.release()
            raise
        finally:
            current_context.reset(token)

    async def _record_deploy(self, agent: Agent, execution: str
                             ) -> Optional[executions_pb2.ExecutionsGetResultResponse]:
        """Creates the Deploy record (idempotent); returns its result when it is finished."""
        connection = self.connection
        await connection.retry(connection.executions.Create, executions_pb2.ExecutionsCreateRequest(
            execution=model_pb2.PerperExecution(execution=execution),
            instance=model_pb2.PerperInstance(instance=agent.instance, agent=DEPLOY_RECORD_AGENT),
            delegate=DEPLOY_RECORD_DELEGATE))
        listing = await connection.retry(
            connection.introspection.ListExecutions,
            introspection_pb2.IntrospectionListExecutionsRequest(
                agent=DEPLOY_RECORD_AGENT, instance=agent.instance,
                delegate=DEPLOY_RECORD_DELEGATE, include_finished=True))
        if not any(summary.execution.execution == execution and summary.finished
                   for summary in listing.executions):
            return None
        return await connection.retry(connection.executions.GetResult,
                                      executions_pb2.ExecutionsGetResultRequest(
                                          execution=model_pb2.PerperExecution(
                                              execution=execution)))

    async def stop(self) -> None:
        """Ends the listen calls, cancels running executions, closes an owned connection.

        Completions not known to be applied are sent again with the unary Complete first
        (waiting at most STOP_GRACE seconds for them), then the deletions of completed
        executions' kept calls are given STOP_GRACE seconds.
        """
        self._stopping = True
        tasks = ([self._listener] if self._listener is not None else []) + list(
            self._running.values()) + list(self._inits.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._listener = None
        for pending in (self._unary_completes, self._deletions):
            if pending:
                _, late = await asyncio.wait(list(pending), timeout=self.STOP_GRACE)
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
        if self._own_connection and self._connection is not None:
            await self._connection.close()
            self._connection = None

    # Listening.

    def _answered_by(self, endpoint: str, again: bool) -> None:
        self._answered.set()
        if not self._serving:
            self._serving = True
            _log.info("[agent=%s] serving from %s (concurrency %d, workgroup '%s')", self.agent,
                      endpoint, self.concurrency, self.workgroup)
        elif again:
            _log.info("[agent=%s] listen call reconnected to %s", self.agent, endpoint)

    def _refused(self, error: grpc.aio.AioRpcError) -> None:
        """The Fabric refused the reservation call for good: the process stops (and exits 1,
        under run), as a C++ agent does."""
        _log.error("[agent=%s] listen call ended: %d %s", self.agent, error.code().value[0],
                   error.details())
        self._refusal = ReservationRefusedError(self.agent, error.code().name, error.details())
        self._answered.set()
        self.request_stop()

    def _open_call(self) -> tuple[_ReservationCall, int]:
        """Opens a reservation call (self._opening until its first message is written).
        Executions still running keep their credits (each grants one to the call open or being
        opened when it finishes), so the call asks for the rest: no await between counting
        them and recording the call, so that none finishes in between with no call to take its
        credit."""
        credits = max(self.concurrency - len(self._running), 0)
        call = self.connection.executions.ListenAndReserve(wait_for_ready=True)
        self._opening = _ReservationCall(call, credits)
        return self._opening, credits

    async def _listen_loop(self) -> None:
        backoff = Backoff()
        again = False  # a reconnection
        # An empty delegate: every delegate of the agent (and instance).
        listen = executions_pb2.ExecutionsListenRequest(
            instance_filter=model_pb2.PerperInstance(agent=self.agent, instance=self.instance))
        while not self._stopping:
            endpoint = self.connection.endpoint
            reservation, credits = self._open_call()
            call = reservation.call
            why = "ended by the Fabric"
            try:
                await call.write(executions_pb2.ExecutionsListenAndReserveRequest(
                    reserve_next=credits, workgroup=self.workgroup, filter=listen))
                self._call, self._opening = reservation, None
                reservation.start_writer()
                while True:
                    message = await call.read()
                    if message is grpc.aio.EOF:
                        break
                    backoff.reset()
                    if message.start_of_stream:
                        self._answered_by(endpoint, again)
                        continue
                    execution = message.execution.execution
                    if message.deleted:
                        task = self._running.get(execution)
                        if task is not None:
                            task.cancel()
                        continue
                    for applied in reservation.delivered():
                        self._finishing.pop(applied, None)
                    if execution in self._running or execution in self._finishing:
                        reservation.push(None, 1)  # delivered again after a reconnect
                        continue
                    delegate = message.delegate
                    task = asyncio.create_task(self._run_execution(message),
                                               name=f"perper-execution-{execution}")
                    self._running[execution] = task
                    task.add_done_callback(
                        lambda task, execution=execution, delegate=delegate: self._finished(
                            delegate, execution, task))
            except grpc.aio.AioRpcError as e:
                if self._stopping:
                    return
                why = f"{e.code().value[0]} {e.details()}"
                if not is_transient(e):
                    self._refused(e)
                    return
                if is_retryable(e):
                    self.connection.moved_from(endpoint)
            finally:
                if self._call is reservation:
                    self._call = None
                if self._opening is reservation:
                    self._opening = None
                # Completions the Fabric may not have read: sent again (a repeat is harmless).
                for request in reservation.close():
                    self._complete_unary(request)
                call.cancel()
            if not self._stopping:
                delay = backoff.next_delay()
                _log.warning("[agent=%s] listen call ended (%s); reconnecting in %d ms",
                             self.agent, why, delay * 1000)
                again = True
                await asyncio.sleep(delay)

    # Executions.

    def _finished(self, delegate: str, execution: str, task: asyncio.Task) -> None:
        """Routes the completion of a finished execution task, and its credit.

        The completion rides on the open reservation call with the credit the execution frees
        (whichever call delivered it: a newer call counted it as running). With no open call (or
        a large completion) it goes with the unary Complete, and the credit to the call being
        opened, if any (a call opened later counts the execution as finished).
        """
        if self._running.get(execution) is task:
            del self._running[execution]
        # A cancelled execution keeps its calls: it was deleted, or it runs again elsewhere.
        kept = self._kept_calls.pop(execution, None)
        request = None
        if not task.cancelled():
            error = task.exception()
            if error is not None:
                _log.error("[agent=%s exec=%s] %s failed: %s", self.agent, execution, delegate,
                           describe_error(error))
                request = self._completion(execution, [], describe_error(error))
            else:
                request = task.result()
        current = self._call if not self._stopping else None
        taker = current or (self._opening if not self._stopping else None)
        credits = 1 if taker is not None and taker.open else 0
        # An execution that kept calls completes with the unary Complete, whose answer tells
        # when they can go; on the reservation call that could wait for the next delivery.
        if request is not None and current is not None and current.open and (
                request.ByteSize() <= self.MAX_COMPLETION_BYTES) and not kept:
            self._finishing[execution] = request
            current.push(request, credits)
            return
        if request is not None:
            self._complete_unary(request, kept)
        if credits:
            taker.push(None, credits)

    @staticmethod
    def _completion(execution: str, results: list,
                    error: Optional[str]) -> executions_pb2.ExecutionsCompleteRequest:
        request = executions_pb2.ExecutionsCompleteRequest(
            execution=model_pb2.PerperExecution(execution=execution), results=results)
        if error is not None:
            request.error.message = bounded_error_text(error or "error")
        return request

    def _complete_unary(self, request: executions_pb2.ExecutionsCompleteRequest,
                        kept: Optional[KeptCalls] = None) -> None:
        """Sends a completion with the unary Complete from a background task (stop() waits for
        it); until it is answered, a new delivery of the execution is not run. Once it is
        acknowledged, the execution's `kept` calls are released."""
        execution = request.execution.execution
        self._finishing[execution] = request
        task = asyncio.ensure_future(self._complete(request))
        self._unary_completes.add(task)

        def done(task: asyncio.Task) -> None:
            self._unary_completes.discard(task)
            if self._finishing.get(execution) is request:
                del self._finishing[execution]
            if task.cancelled():
                return
            if task.exception() is not None:
                _log.warning("[agent=%s exec=%s] complete failed: %s", self.agent, execution,
                             describe_error(task.exception()))
            elif kept is not None:
                kept.release()
        task.add_done_callback(done)

    async def _complete(self, request: executions_pb2.ExecutionsCompleteRequest) -> None:
        COUNTERS.unary_completes += 1
        try:
            await self.connection.retry(self.connection.executions.Complete, request)
        except grpc.aio.AioRpcError as e:
            if e.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                return  # deleted meanwhile, or completed already (an earlier delivery, a repeat)
            if request.HasField("error"):
                raise
            # The results were refused (e.g. over the value limit): fail the execution instead.
            await self._complete(self._completion(request.execution.execution, [],
                                                  f"results refused: {describe_error(e)}"))

    async def _ensure_initialized(self, agent: Agent) -> None:
        handler = self._handlers.get("Init") or self._handlers.get("EnterContainer")
        if handler is None:
            return
        task = self._inits.get(agent.instance)
        if task is None:
            async def init() -> None:
                current_context.set(Context(self.connection, agent,
                                            f"{agent.instance}-EnterContainer", self))
                await _invoke(handler, [])
            task = asyncio.create_task(init())
            self._inits[agent.instance] = task
        await asyncio.shield(task)

    async def _run_execution(self, message: executions_pb2.ExecutionsListenResponse
                             ) -> executions_pb2.ExecutionsCompleteRequest:
        """Runs the handler of a delivered execution's delegate; returns its completion
        (_finished sends it). Cancelled when the execution is deleted or the application
        stops."""
        execution = message.execution.execution
        delegate = message.delegate
        agent = Agent(message.instance.agent, message.instance.instance)
        kept = KeptCalls(self.connection, self._deletions)
        self._kept_calls[execution] = kept
        current_context.set(Context(self.connection, agent, execution, self,
                                    DerivedIds(execution), kept))
        try:
            await self._ensure_initialized(agent)
            args = [values.unpack(a) for a in message.arguments]
            producer = self.stream_options(delegate[:-len(STREAM_SUFFIX)]) if delegate.endswith(
                STREAM_SUFFIX) else None
            handler = self._handlers.get(delegate) if delegate not in LIFECYCLE else None
            if producer is not None:
                await self._produce(producer, args)
                results: list = []
            elif handler is None and delegate not in ("Start", "Stop"):
                # Not registered (yet): the same error as a C++ agent's.
                error = f"agent {self.agent} has no delegate {delegate}"
                _log.warning("[agent=%s exec=%s] %s failed: %s", agent.agent, execution,
                             delegate, error)
                return self._completion(execution, [], error)
            else:
                if handler is None:  # the Start/Stop defaults
                    returned = None
                elif isinstance(handler, StreamDelegate):
                    returned = await start_stream(agent, delegate, tuple(args),
                                                  ephemeral=handler.ephemeral,
                                                  stride=handler.stride, action=handler.action)
                else:
                    returned = await _invoke(handler, args)
                results = values.results_of(returned)
        except asyncio.CancelledError:
            raise  # the execution was deleted, or the application stops: nothing to complete
        except Exception as e:  # a handler's failure becomes the execution's error
            _log.warning("[agent=%s exec=%s] %s failed: %s", agent.agent, execution, delegate,
                         describe_error(e))
            return self._completion(execution, [], describe_error(e))
        return self._completion(execution, results, None)

    async def _produce(self, handler: StreamDelegate, args: list) -> None:
        """Runs a stream delegate's generator, writing its items to the stream args[0].

        Items go through a bounded queue to a writer task that sends whatever has accumulated
        as one WriteItems batch, so a fast generator is not held to one round trip per item.
        """
        if not args or not isinstance(args[0], Stream):
            raise TypeError("a stream producer's first argument must be its stream")
        stream = args[0]
        stride = stream.stride or handler.stride
        if handler.ephemeral and not handler.action:
            await stream.wait_for_listener()
        writer = _BatchWriter(self.connection, stream)
        next_key = 0
        try:
            async for item in handler.function(*args[1:]):
                if _is_keyed(item):
                    key, value = item
                elif stride:
                    key, value = next_key, item
                    next_key += stride
                else:
                    key, value = None, item
                await writer.put(key, values.pack(value))
            await writer.close()
        except asyncio.CancelledError:
            writer.cancel()
            raise
        except Exception as e:
            try:
                await writer.close()  # what was yielded before the failure is still written
            finally:
                await self._complete_stream(stream, describe_error(e))
            raise
        await self._complete_stream(stream, None)

    async def _complete_stream(self, stream: Stream, error: Optional[str]) -> None:
        request = streams_pb2.StreamsCompleteRequest(stream=stream.to_message())
        if error is not None:
            request.error.message = bounded_error_text(error)
        try:
            await self.connection.retry(self.connection.streams.Complete, request)
        except grpc.aio.AioRpcError as e:
            if e.code() not in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
                raise


def run(agent: Optional[str] = None, handlers: Optional[Mapping[str, Handler]] = None, *,
        stop_after_deploy: bool = False, **options: Any) -> Any:
    """Runs an agent process: connects (PERPER_FABRIC_ENDPOINT), serves `handlers` for `agent`
    (default X_PERPER_AGENT), runs Deploy, and serves until SIGINT/SIGTERM (or, with
    `stop_after_deploy`, until Deploy returns). Returns what Deploy returned.

    `options` go to Application (instance, workgroup, concurrency, endpoint). A process the
    scaler started for another agent (X_PERPER_AGENT) is refused with ValueError: serving a
    name nobody calls would leave its callers waiting for ever. When the Fabric refuses the
    reservation call for good (logged at error), the process exits with code 1 (SystemExit).
    """
    started_as = os.environ.get("X_PERPER_AGENT", "")
    if agent and started_as and agent != started_as:
        raise ValueError(f"perper: X_PERPER_AGENT is {started_as} but this process serves agent "
                         f"{agent}")

    async def main() -> Any:
        application = Application(agent, handlers, **options)
        loop = asyncio.get_running_loop()
        def stop(signum: int) -> None:
            _log.info("[agent=%s] signal %d: stopping", application.agent, signum)
            application.request_stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop, signum)
        return await application.serve(stop_after_deploy=stop_after_deploy)

    try:
        return asyncio.run(main())
    except ReservationRefusedError:
        # Logged already; retrying cannot help, and a scaler sees the failure by the exit code.
        raise SystemExit(1) from None


async def connect(agent: str = "notebook", instance: Optional[str] = None, *,
                  handlers: Optional[Mapping[str, Handler]] = None,
                  **options: Any) -> Application:
    """Connects from a notebook or REPL: starts serving `handlers` (more can be added with
    Application.register) and makes the ambient API (perper.call, perper.stream, perper.state,
    ...) work outside handlers, as the instance `instance` (default "{agent}-Main").
    Call `await application.stop()` when done.
    """
    application = Application(agent, handlers, **options)
    await application.start()
    me = Agent(agent, instance or f"{agent}-Main")
    set_default_context(Context(application.connection, me, f"{me.instance}-notebook",
                                application))
    return application


run_notebook = connect
