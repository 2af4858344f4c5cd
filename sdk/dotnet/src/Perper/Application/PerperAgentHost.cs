// SPDX-License-Identifier: MIT
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Perper.Extensions;
using Perper.Grpc2;
using Perper.Model;
using Perper.Protocol;

namespace Perper.Application;

/// <summary>
/// The Application layer's runtime: serves the handlers of one agent type in this process.
/// </summary>
/// <remarks>
/// It keeps one FabricExecutions.ListenAndReserve call open in its workgroup for every delegate
/// of the agent (as the C++ SDK does), with <see cref="PerperAgentOptions.Concurrency"/> credits:
/// the executions at once in this process, whatever their delegates. The Fabric hands each
/// execution to one member of the workgroup; the host runs it by its delegate's handler. Start
/// and Stop without a handler complete empty; any other delegate without one fails with
/// <c>"agent X has no delegate Y"</c>. A handler's <see cref="PerperHandlerAttribute.Concurrency"/>
/// limits that delegate within the process's credits: its executions beyond the limit wait here,
/// holding their credits. Each execution runs as its own task, in a <see cref="PerperContext"/>
/// naming its instance and execution, with a CancellationToken cancelled when the execution is
/// deleted; an exception fails the execution with <c>"{ExceptionType}: {message}"</c>. A
/// completion rides on the reservation call with the credit for the next execution; the unary
/// Complete is the fallback while that call reconnects. A call the Fabric refuses
/// (<c>INVALID_ARGUMENT</c>, <c>PERMISSION_DENIED</c>, ...) is logged at error and stops the host
/// with exit code 1; any other end reconnects with back-off. Lifecycle handlers: <c>Deploy</c> (once
/// when the process starts, as the instance <c>"{agent}-deploy"</c>), <c>Init</c> (alias
/// <c>EnterContainer</c>: once per instance per process, before its first execution here),
/// <c>Start</c> and <c>Stop</c> (an instance's constructor and destructor executions).
/// </remarks>
public sealed class PerperAgentHost : IStreamOptionsSource, IAsyncDisposable
{
    /// <summary>The scaler sets it to "1" for the Deploy process: Deploy is recorded and runs once per Fabric.</summary>
    public const string RecordDeployVariable = "X_PERPER_RECORD_DEPLOY";
    /// <summary>The agent of the recorded Deploy execution.</summary>
    public const string DeployRecordAgent = "perper.Deploy";
    private const int MaxCompletionBytes = 1024 * 1024;
    private static readonly string[] Lifecycle = ["Deploy", "Init", "EnterContainer"];
    private static readonly TimeSpan StopGrace = TimeSpan.FromSeconds(5);

    private readonly Dictionary<string, HandlerMethod> _handlers;
    private readonly IServiceProvider? _services;
    private readonly ILogger _logger;
    private readonly bool _ownsFabric;
    private readonly CancellationTokenSource _stopping = new();
    private readonly TaskCompletionSource _stopRequested = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    // The current reservation call and the executions holding a credit (delivered, not finished),
    // under one lock: a new call is opened with the concurrency minus those, and each grants its
    // credit to the call current when it finishes, so none is counted twice or lost.
    private readonly Lock _callLock = new();
    private ReservationCall? _call;
    private int _holding;
    // Per-delegate limits (PerperHandler's Concurrency) inside the process's credits.
    private readonly Dictionary<string, SemaphoreSlim> _limits = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, CancellationTokenSource> _running = new();
    private readonly ConcurrentDictionary<string, ExecutionsCompleteRequest> _finishing = new();
    private readonly ConcurrentDictionary<string, Lazy<Task>> _inits = new();
    private readonly ConcurrentDictionary<Task, bool> _background = new();
    private readonly Lock _startLock = new();
    private Task? _listener;
    private volatile int _exitCode;

    internal PerperAgentHost(PerperAgentOptions options, IEnumerable<HandlerMethod> handlers, FabricService fabric, bool ownsFabric,
        ILogger logger, IServiceProvider? services)
    {
        Options = options;
        Fabric = fabric;
        _ownsFabric = ownsFabric;
        _logger = logger;
        _services = services;
        _handlers = new Dictionary<string, HandlerMethod>();
        foreach (HandlerMethod handler in handlers)
        {
            _handlers[handler.Name] = handler;
        }
        foreach (HandlerMethod handler in _handlers.Values.Where(h => h.Concurrency > 0 && !Lifecycle.Contains(h.Name)))
        {
            _limits[handler.Name] = new SemaphoreSlim(handler.Concurrency);
            if (handler.IsStream)
            {
                _limits[handler.Name + PerperStreamExtensions.StreamSuffix] = new SemaphoreSlim(handler.Concurrency);
            }
        }
    }

    public PerperAgentOptions Options { get; }
    public string Agent => Options.Agent;
    public FabricService Fabric { get; }

    /// <summary>The instance Deploy runs in: <c>"{agent}-deploy"</c>.</summary>
    public PerperInstance DeployInstance => new(Agent, $"{Agent}-deploy");

    /// <summary>A context for code outside handlers (a test driver, a REPL) acting as
    /// <paramref name="instance"/> (default: <c>"{agent}-Main"</c>) of this agent.</summary>
    public PerperContext CreateContext(string? instance = null) =>
        new(Fabric, new PerperInstance(Agent, instance ?? $"{Agent}-Main"), $"{instance ?? Agent + "-Main"}-main", default, false, this);

    public PerperStreamOptions? StreamOptionsOf(string @delegate) =>
        _handlers.TryGetValue(@delegate, out HandlerMethod? handler) ? handler.StreamOptions : null;

    /// <summary>Opens the reservation call (one for every delegate). Returns at once; see <see cref="ReadyAsync"/>.</summary>
    public Task StartAsync()
    {
        lock (_startLock)
        {
            _listener ??= Task.Run(ListenLoopAsync);
        }
        return Task.CompletedTask;
    }

    /// <summary>Waits until the reservation call has received the executions waiting at its
    /// start; throws the Fabric's refusal when it refused the call.</summary>
    public Task ReadyAsync(TimeSpan timeout) => _ready.Task.WaitAsync(timeout);

    /// <summary>Asks <see cref="RunAsync"/> to return (thread-safe; a signal handler may call it).</summary>
    public void RequestStop() => _stopRequested.TrySetResult();

    /// <summary>Starts, runs Deploy (if there is one), then serves until <see cref="RequestStop"/>
    /// (or, with <paramref name="stopAfterDeploy"/>, until Deploy returns), and stops. Returns the
    /// exit code: 0, what Deploy returned when it returned an int, or 1 when Deploy failed or the
    /// Fabric refused the reservation call. A stop request while Deploy runs cancels it.</summary>
    public async Task<int> RunAsync(bool stopAfterDeploy = false)
    {
        await StartAsync().ConfigureAwait(false);
        try
        {
            Task<object?> deploy = RunDeployAsync();
            await Task.WhenAny(deploy, _stopRequested.Task).ConfigureAwait(false);
            if (!deploy.IsCompleted)
            {
                _logger.LogInformation("[agent={Agent}] stop requested while Deploy runs: cancelling Deploy", Agent);
                _stopping.Cancel();
            }
            int code;
            try
            {
                code = await deploy.ConfigureAwait(false) is int returned ? returned : 0;
            }
            catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
            {
                return _exitCode;
            }
            catch (Exception e)
            {
                _logger.LogError("[agent={Agent}] Deploy failed: {Error}", Agent, Describe(e));
                return 1;
            }
            if (!stopAfterDeploy)
            {
                await _stopRequested.Task.ConfigureAwait(false);
            }
            return _exitCode != 0 ? _exitCode : code;
        }
        finally
        {
            await StopAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Runs the Deploy handler (if any) in the <c>"{agent}-deploy"</c> context and
    /// returns its result. With <c>X_PERPER_RECORD_DEPLOY=1</c>, Deploy is recorded first as
    /// the execution <c>"{agent}-deploy-deploy"</c>: if that is finished already Deploy does not
    /// run again and its recorded result is returned; otherwise it runs with derived IDs and its
    /// result or error completes the execution.</summary>
    public async Task<object?> RunDeployAsync()
    {
        if (!_handlers.TryGetValue("Deploy", out HandlerMethod? deploy))
        {
            return null;
        }
        PerperInstance instance = DeployInstance;
        string execution = $"{instance.Instance}-deploy";
        bool record = Environment.GetEnvironmentVariable(RecordDeployVariable) == "1";
        if (record)
        {
            ExecutionsGetResultResponse? recorded = await RecordDeployAsync(instance, execution).ConfigureAwait(false);
            if (recorded is not null)
            {
                _logger.LogInformation("[agent={Agent}] Deploy already ran on this Fabric (execution {Execution}); `perper up --reset` runs it anew", Agent, execution);
                PerperInstanceExtensions.Check(execution, recorded);
                return PerperValues.UnpackResults(recorded.Results, typeof(object));
            }
        }
        KeptCalls? kept = record ? new KeptCalls(Fabric) : null;
        var context = new PerperContext(Fabric, instance, execution, _stopping.Token, record, this, kept);
        object? returned;
        try
        {
            using (PerperContext.Enter(context))
            {
                returned = await deploy.InvokeAsync(deploy.Bind([], _stopping.Token), _services).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (record && !_stopping.IsCancellationRequested)
        {
            await CompleteAsync(Completion(execution, [], Describe(e))).ConfigureAwait(false);
            kept?.Release();
            throw;
        }
        if (record)
        {
            await CompleteAsync(Completion(execution, PerperValues.ResultsOf(returned), null)).ConfigureAwait(false);
            kept?.Release();
        }
        return returned;
    }

    private async Task<ExecutionsGetResultResponse?> RecordDeployAsync(PerperInstance instance, string execution)
    {
        var create = new ExecutionsCreateRequest
        {
            Execution = new PerperExecution(execution),
            Instance = new PerperInstance(DeployRecordAgent, instance.Instance),
            Delegate = "Deploy",
        };
        await Fabric.RetryAsync(o => Fabric.Executions.CreateAsync(create, o), _stopping.Token).ConfigureAwait(false);
        var list = new IntrospectionListExecutionsRequest
        {
            Agent = DeployRecordAgent, Instance = instance.Instance, Delegate = "Deploy", IncludeFinished = true,
        };
        IntrospectionListExecutionsResponse listing = await Fabric.RetryAsync(o => Fabric.Introspection.ListExecutionsAsync(list, o), _stopping.Token).ConfigureAwait(false);
        if (!listing.Executions.Any(e => e.Execution.Execution == execution && e.Finished))
        {
            return null;
        }
        var get = new ExecutionsGetResultRequest { Execution = new PerperExecution(execution) };
        return await Fabric.RetryAsync(o => Fabric.Executions.GetResultAsync(get, o), _stopping.Token).ConfigureAwait(false);
    }

    /// <summary>Ends the reservation call, cancels running executions, sends the completions not
    /// known to be applied again (waiting at most 5 s), and closes an owned connection.</summary>
    public async Task StopAsync()
    {
        _stopRequested.TrySetResult();
        _stopping.Cancel();
        Task? listener;
        lock (_startLock)
        {
            listener = _listener;
        }
        if (listener is not null)
        {
            await listener.ConfigureAwait(false);
        }
        Task[] pending = _background.Keys.ToArray();
        if (pending.Length > 0)
        {
            await Task.WhenAny(Task.WhenAll(pending), Task.Delay(StopGrace)).ConfigureAwait(false);
        }
        if (_ownsFabric)
        {
            await Fabric.DisposeAsync().ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync() => await StopAsync().ConfigureAwait(false);

    // ------------------------------------------------------------------------------------------
    // Listening.

    /// <summary>A status the Fabric refuses a reservation call with for good (the C++ SDK's
    /// list): reopening it would be refused again.</summary>
    internal static bool IsRefusal(StatusCode code) => code is StatusCode.InvalidArgument or StatusCode.NotFound
        or StatusCode.AlreadyExists or StatusCode.PermissionDenied or StatusCode.FailedPrecondition or StatusCode.OutOfRange
        or StatusCode.Unimplemented or StatusCode.Unauthenticated;

    private async Task ListenLoopAsync()
    {
        var backoff = new Backoff();
        bool serving = false;
        CancellationToken stopping = _stopping.Token;
        while (!stopping.IsCancellationRequested)
        {
            string endpoint = Fabric.Endpoint;
            ReservationCall? reservation = null;
            string ended;
            try
            {
                using AsyncDuplexStreamingCall<ExecutionsListenAndReserveRequest, ExecutionsListenResponse> call =
                    Fabric.Executions.ListenAndReserve(cancellationToken: stopping);
                try
                {
                    long credits;
                    lock (_callLock)
                    {
                        // Executions still running from an earlier call keep their credits.
                        credits = Math.Max(0, Options.Concurrency - _holding);
                        reservation = new ReservationCall(call.RequestStream, credits);
                        _call = reservation;
                    }
                    // No delegate in the filter: every delegate of the agent.
                    var first = new ExecutionsListenAndReserveRequest
                    {
                        ReserveNext = (ulong)credits,
                        Workgroup = Options.Workgroup,
                        Filter = new ExecutionsListenRequest { InstanceFilter = new PerperInstance(Agent, Options.Instance ?? "") },
                    };
                    await call.RequestStream.WriteAsync(first, stopping).ConfigureAwait(false);
                    reservation.StartWriter();
                    while (await call.ResponseStream.MoveNext(stopping).ConfigureAwait(false))
                    {
                        backoff.Reset();
                        ExecutionsListenResponse message = call.ResponseStream.Current;
                        if (message.StartOfStream)
                        {
                            Answered(endpoint, ref serving);
                        }
                        else
                        {
                            Delivered(message, reservation);
                        }
                    }
                    ended = "0 OK";
                }
                finally
                {
                    if (reservation is not null)
                    {
                        lock (_callLock)
                        {
                            if (ReferenceEquals(_call, reservation))
                            {
                                _call = null;
                            }
                        }
                        // Completions the Fabric may not have read: sent again (a repeat is harmless).
                        foreach (ExecutionsCompleteRequest completion in reservation.Close())
                        {
                            CompleteInBackground(completion);
                        }
                    }
                }
            }
            catch (Exception) when (stopping.IsCancellationRequested)
            {
                return;
            }
            catch (RpcException e) when (IsRefusal(e.StatusCode))
            {
                _logger.LogError("[agent={Agent}] listen call ended: {Code} {Detail}", Agent, (int)e.StatusCode, e.Status.Detail);
                _exitCode = 1;
                _ready.TrySetException(e);
                RequestStop();
                return;
            }
            catch (RpcException e)
            {
                if (e.StatusCode == StatusCode.Unavailable)
                {
                    Fabric.MovedFrom(endpoint);
                }
                ended = $"{(int)e.StatusCode} {e.Status.Detail}";
            }
            catch (Exception e)
            {
                ended = Describe(e);
            }
            TimeSpan delay = backoff.NextDelay();
            _logger.LogWarning("[agent={Agent}] listen call ended ({Status}); reconnecting in {Delay} ms", Agent, ended, (long)delay.TotalMilliseconds);
            try
            {
                await Task.Delay(delay, stopping).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>The Fabric's first answer of a call: logged, with the other SDKs' messages, once
    /// as "serving from", then as a reconnection.</summary>
    private void Answered(string endpoint, ref bool serving)
    {
        if (!serving)
        {
            serving = true;
            // At debug, not info as in the other SDKs: an agent's output under `perper up` (a
            // program's own lines, which the examples' tests compare) stays as it was.
            _logger.LogDebug("[agent={Agent}] serving from {Endpoint} (concurrency {Concurrency}, workgroup '{Workgroup}')",
                Agent, endpoint, Options.Concurrency, Options.Workgroup);
        }
        else
        {
            _logger.LogInformation("[agent={Agent}] listen call reconnected to {Endpoint}", Agent, endpoint);
        }
        _ready.TrySetResult();
    }

    private void Delivered(ExecutionsListenResponse message, ReservationCall reservation)
    {
        string execution = message.Execution.Execution;
        if (message.Deleted)
        {
            if (_running.TryGetValue(execution, out CancellationTokenSource? cancel))
            {
                cancel.Cancel();
            }
            return;
        }
        foreach (string applied in reservation.Delivered())
        {
            _finishing.TryRemove(applied, out _);
        }
        var cancellation = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
        if (_finishing.ContainsKey(execution) || !_running.TryAdd(execution, cancellation))
        {
            cancellation.Dispose();
            reservation.Push(null, 1);  // delivered again after a reconnect: it runs or has run here
            return;
        }
        lock (_callLock)
        {
            _holding++;
        }
        string @delegate = message.Delegate;
        _ = Task.Run(async () =>
        {
            ExecutionsCompleteRequest? completion = null;
            var kept = new KeptCalls(Fabric);
            try
            {
                completion = await RunExecutionAsync(message, kept, cancellation.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
            {
                // Deleted, or the process stops: nothing to complete.
            }
            catch (Exception e)
            {
                _logger.LogWarning("[agent={Agent} exec={Execution}] {Delegate} failed: {Error}", message.Instance.Agent, execution, @delegate, Describe(e));
                completion = Completion(execution, [], Describe(e));
            }
            // A cancelled execution keeps its calls: it was deleted, or it runs again elsewhere.
            Finished(execution, completion, kept);
            _running.TryRemove(execution, out _);
            cancellation.Dispose();
        });
    }

    /// <summary>Routes the completion of a finished execution, and its credit: on the current
    /// reservation call (which counted it as running if it opened after the delivery), else with
    /// the unary Complete (and the credit goes to the next call).</summary>
    /// An execution that kept calls completes with the unary Complete, whose answer tells when
    /// they can go (on the reservation call that could wait for the next delivery).
    private void Finished(string execution, ExecutionsCompleteRequest? completion, KeptCalls kept)
    {
        ReservationCall? current;
        lock (_callLock)
        {
            _holding--;
            current = _stopping.IsCancellationRequested ? null : _call;
        }
        if (completion is not null && current is not null && completion.CalculateSize() <= MaxCompletionBytes && kept.Count == 0)
        {
            _finishing[execution] = completion;
            if (current.Push(completion, 1))
            {
                return;
            }
        }
        if (completion is not null)
        {
            CompleteInBackground(completion, kept);
        }
        current?.Push(null, 1);
    }

    private static ExecutionsCompleteRequest Completion(string execution, IEnumerable<Any> results, string? error)
    {
        var request = new ExecutionsCompleteRequest { Execution = new PerperExecution(execution), Results = { results } };
        if (error is not null)
        {
            request.Error = new PerperError { Message = PerperException.BoundedErrorText(error.Length > 0 ? error : "error") };
        }
        return request;
    }

    /// <summary>The message an execution or stream fails with for <paramref name="error"/>.</summary>
    public static string Describe(Exception error) => error switch
    {
        RpcException rpc => $"{rpc.StatusCode}: {rpc.Status.Detail}",
        _ => $"{error.GetType().Name}: {error.Message}",
    };

    private void CompleteInBackground(ExecutionsCompleteRequest completion, KeptCalls? kept = null)
    {
        string execution = completion.Execution.Execution;
        _finishing[execution] = completion;
        Task task = Task.Run(async () =>
        {
            try
            {
                await CompleteAsync(completion).ConfigureAwait(false);
                kept?.Release();
            }
            catch (Exception e)
            {
                _logger.LogWarning("[agent={Agent} exec={Execution}] complete failed: {Error}", Agent, execution, Describe(e));
            }
            finally
            {
                _finishing.TryRemove(new KeyValuePair<string, ExecutionsCompleteRequest>(execution, completion));
            }
        });
        _background[task] = true;
        task.ContinueWith(t => _background.TryRemove(t, out _), TaskScheduler.Default);
    }

    private async Task CompleteAsync(ExecutionsCompleteRequest request)
    {
        try
        {
            using var bounded = new CancellationTokenSource(Fabric.RetryTimeout);
            await Fabric.RetryAsync(o => Fabric.Executions.CompleteAsync(request, o), bounded.Token).ConfigureAwait(false);
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.NotFound or StatusCode.FailedPrecondition)
        {
            // Deleted meanwhile, or completed already (an earlier delivery, a repeat).
        }
        catch (RpcException e) when (request.Error is null)
        {
            // The results were refused (e.g. over the value limit): fail the execution instead.
            await CompleteAsync(Completion(request.Execution.Execution, [], $"results refused: {Describe(e)}")).ConfigureAwait(false);
        }
    }

    // ------------------------------------------------------------------------------------------
    // Executions.

    private Task EnsureInitializedAsync(PerperInstance instance)
    {
        HandlerMethod? init = _handlers.GetValueOrDefault("Init") ?? _handlers.GetValueOrDefault("EnterContainer");
        if (init is null)
        {
            return Task.CompletedTask;
        }
        return _inits.GetOrAdd(instance.Instance, _ => new Lazy<Task>(() => Task.Run(async () =>
        {
            var context = new PerperContext(Fabric, instance, $"{instance.Instance}-EnterContainer", _stopping.Token, false, this);
            using (PerperContext.Enter(context))
            {
                await init.InvokeAsync(init.Bind([], _stopping.Token), _services).ConfigureAwait(false);
            }
        }))).Value;
    }

    private async Task<ExecutionsCompleteRequest> RunExecutionAsync(ExecutionsListenResponse message, KeptCalls kept,
        CancellationToken cancellationToken)
    {
        string execution = message.Execution.Execution;
        string @delegate = message.Delegate;
        // Beyond the delegate's own limit, an execution waits here, holding its credit.
        SemaphoreSlim? limit = _limits.GetValueOrDefault(@delegate);
        if (limit is not null)
        {
            await limit.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        try
        {
            var context = new PerperContext(Fabric, message.Instance, execution, cancellationToken, true, this, kept);
            using (PerperContext.Enter(context))
            {
                await EnsureInitializedAsync(message.Instance).ConfigureAwait(false);
                if (@delegate.EndsWith(PerperStreamExtensions.StreamSuffix, StringComparison.Ordinal) &&
                    _handlers.GetValueOrDefault(@delegate[..^PerperStreamExtensions.StreamSuffix.Length]) is { IsStream: true } producer)
                {
                    await ProduceAsync(producer, message.Arguments, context).ConfigureAwait(false);
                    return Completion(execution, [], null);
                }
                if (Lifecycle.Contains(@delegate) || !_handlers.TryGetValue(@delegate, out HandlerMethod? handler))
                {
                    if (@delegate is "Start" or "Stop")
                    {
                        return Completion(execution, [], null);  // the default constructor and destructor do nothing
                    }
                    // The reservation call takes every delegate of the agent, handled here or not.
                    string error = $"agent {message.Instance.Agent} has no delegate {@delegate}";
                    _logger.LogWarning("[agent={Agent} exec={Execution}] {Delegate} failed: {Error}", message.Instance.Agent, execution, @delegate, error);
                    return Completion(execution, [], error);
                }
                object? returned = handler.IsStream
                    ? await new PerperStreamBuilder(context, @delegate).StartAsync(message.Arguments.Select(a => (object?)a).ToArray()).ConfigureAwait(false)
                    : await handler.InvokeAsync(handler.Bind(message.Arguments, cancellationToken), _services).ConfigureAwait(false);
                return Completion(execution, PerperValues.ResultsOf(returned), null);
            }
        }
        finally
        {
            limit?.Release();
        }
    }

    /// <summary>Runs a stream delegate's enumeration, writing its items to the stream (its first
    /// argument) in batches, then completes the stream (with the error, if it throws).</summary>
    private async Task ProduceAsync(HandlerMethod handler, IReadOnlyList<Any> arguments, PerperContext context)
    {
        if (arguments.Count == 0 || PerperValues.Unpack(arguments[0], typeof(object)) is not PerperStream stream)
        {
            throw new PerperTypeException($"the producer of stream delegate {handler.Name} takes its stream as its first argument");
        }
        PerperStreamOptions options = handler.StreamOptions!;
        long stride = stream.Stride != 0 ? stream.Stride : options.Stride;
        if (!options.Persistent && !options.Action)
        {
            await stream.WaitForListenerAsync().ConfigureAwait(false);
        }
        var writer = new PerperStreamExtensions.BatchWriter(context, stream);
        long nextKey = 0;
        try
        {
            var items = (IAsyncEnumerable<object?>?)await handler.InvokeAsync(
                handler.Bind(arguments.Skip(1).ToList(), context.CancellationToken), _services).ConfigureAwait(false);
            if (items is not null)
            {
                await foreach (object? item in items.WithCancellation(context.CancellationToken).ConfigureAwait(false))
                {
                    long? key = null;
                    object? value = item;
                    if (handler.Keyed && item is ITuple keyed)
                    {
                        key = (long)keyed[0]!;
                        value = keyed[1];
                    }
                    else if (stride != 0)
                    {
                        key = nextKey;
                        nextKey += stride;
                    }
                    await writer.PutAsync(key, PerperValues.Pack(value)).ConfigureAwait(false);
                }
            }
            await writer.CloseAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (!context.CancellationToken.IsCancellationRequested)
        {
            try
            {
                await writer.CloseAsync().ConfigureAwait(false);  // what was yielded before the failure is still written
            }
            catch (Exception)
            {
                // The write that failed is the error reported below (or the one thrown).
            }
            await CompleteStreamAsync(stream, Describe(e)).ConfigureAwait(false);
            throw;
        }
        await CompleteStreamAsync(stream, null).ConfigureAwait(false);
    }

    private static async Task CompleteStreamAsync(PerperStream stream, string? error)
    {
        try
        {
            await stream.CompleteAsync(error).ConfigureAwait(false);
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.FailedPrecondition or StatusCode.NotFound)
        {
            // Completed already (a re-run), or deleted.
        }
    }
}

/// <summary>How an agent process serves its agent.</summary>
public sealed record PerperAgentOptions
{
    /// <summary>The agent type served.</summary>
    public required string Agent { get; init; }
    /// <summary>Serve only this instance (default: <c>X_PERPER_INSTANCE</c>, else every instance).</summary>
    public string? Instance { get; init; }
    /// <summary>Processes of one workgroup share executions; each goes to one of them.</summary>
    public string Workgroup { get; init; } = "";
    /// <summary>Executions at once in this process, whatever their delegates (the credits of its
    /// one reservation call).</summary>
    public int Concurrency { get; init; } = 64;
}
