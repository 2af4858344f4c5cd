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
/// For every delegate it has a handler for (and Start and Stop, which complete empty by default)
/// it keeps one FabricExecutions.ListenAndReserve call open in its workgroup, with the
/// delegate's concurrency as credits: the Fabric hands each execution to one member of the
/// workgroup. Each execution runs as its own task, in a <see cref="PerperContext"/> naming its
/// instance and execution, with a CancellationToken cancelled when the execution is deleted; an
/// exception fails the execution with <c>"{ExceptionType}: {message}"</c>. A completion rides
/// on the delegate's reservation call with the credit for the next execution; the unary
/// Complete is the fallback while that call reconnects. Lifecycle handlers: <c>Deploy</c> (once
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
    private readonly ConcurrentDictionary<string, TaskCompletionSource> _ready = new();
    private readonly ConcurrentDictionary<string, ReservationCall> _calls = new();
    private readonly ConcurrentDictionary<string, CancellationTokenSource> _running = new();
    private readonly ConcurrentDictionary<string, ExecutionsCompleteRequest> _finishing = new();
    private readonly ConcurrentDictionary<string, Lazy<Task>> _inits = new();
    private readonly ConcurrentDictionary<Task, bool> _background = new();
    private readonly List<Task> _listeners = [];

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

    private IEnumerable<string> Delegates()
    {
        var names = new SortedSet<string>(StringComparer.Ordinal) { "Start", "Stop" };
        foreach (HandlerMethod handler in _handlers.Values.Where(h => !Lifecycle.Contains(h.Name)))
        {
            names.Add(handler.Name);
            if (handler.IsStream)
            {
                names.Add(handler.Name + PerperStreamExtensions.StreamSuffix);
            }
        }
        return names;
    }

    /// <summary>Opens the listen calls (one per delegate). Returns at once; see <see cref="ReadyAsync"/>.</summary>
    public Task StartAsync()
    {
        lock (_listeners)
        {
            if (_listeners.Count == 0)
            {
                foreach (string name in Delegates())
                {
                    _ready[name] = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    string @delegate = name;
                    _listeners.Add(Task.Run(() => ListenLoopAsync(@delegate)));
                }
            }
        }
        return Task.CompletedTask;
    }

    /// <summary>Waits until every listen call has received the executions waiting at its start.</summary>
    public Task ReadyAsync(TimeSpan timeout) => Task.WhenAll(_ready.Values.Select(r => r.Task)).WaitAsync(timeout);

    /// <summary>Asks <see cref="RunAsync"/> to return (thread-safe; a signal handler may call it).</summary>
    public void RequestStop() => _stopRequested.TrySetResult();

    /// <summary>Starts, runs Deploy (if there is one), then serves until <see cref="RequestStop"/>
    /// (or, with <paramref name="stopAfterDeploy"/>, until Deploy returns), and stops. Returns the
    /// exit code: 0, what Deploy returned when it returned an int, or 1 when Deploy failed. A
    /// stop request while Deploy runs cancels it.</summary>
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
                return 0;
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
            return code;
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

    /// <summary>Ends the listen calls, cancels running executions, sends the completions not
    /// known to be applied again (waiting at most 5 s), and closes an owned connection.</summary>
    public async Task StopAsync()
    {
        _stopRequested.TrySetResult();
        _stopping.Cancel();
        Task[] listeners;
        lock (_listeners)
        {
            listeners = _listeners.ToArray();
        }
        await Task.WhenAll(listeners).ConfigureAwait(false);
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

    private int CreditsOf(string @delegate)
    {
        string name = @delegate.EndsWith(PerperStreamExtensions.StreamSuffix, StringComparison.Ordinal)
            ? @delegate[..^PerperStreamExtensions.StreamSuffix.Length] : @delegate;
        int own = _handlers.TryGetValue(name, out HandlerMethod? handler) ? handler.Concurrency : 0;
        return own > 0 ? own : Options.Concurrency;
    }

    private async Task ListenLoopAsync(string @delegate)
    {
        var backoff = new Backoff();
        int credits = CreditsOf(@delegate);
        var first = new ExecutionsListenAndReserveRequest
        {
            ReserveNext = (ulong)credits,
            Workgroup = Options.Workgroup,
            Filter = new ExecutionsListenRequest
            {
                InstanceFilter = new PerperInstance(Agent, Options.Instance ?? ""),
                Delegate = @delegate,
            },
        };
        CancellationToken stopping = _stopping.Token;
        while (!stopping.IsCancellationRequested)
        {
            string endpoint = Fabric.Endpoint;
            ReservationCall? reservation = null;
            try
            {
                using AsyncDuplexStreamingCall<ExecutionsListenAndReserveRequest, ExecutionsListenResponse> call =
                    Fabric.Executions.ListenAndReserve(cancellationToken: stopping);
                try
                {
                    await call.RequestStream.WriteAsync(first, stopping).ConfigureAwait(false);
                    reservation = new ReservationCall(call.RequestStream, credits);
                    _calls[@delegate] = reservation;
                    reservation.StartWriter();
                    while (await call.ResponseStream.MoveNext(stopping).ConfigureAwait(false))
                    {
                        backoff.Reset();
                        Delivered(@delegate, call.ResponseStream.Current, reservation);
                    }
                }
                finally
                {
                    if (reservation is not null)
                    {
                        _calls.TryRemove(new KeyValuePair<string, ReservationCall>(@delegate, reservation));
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
            catch (RpcException e) when (FabricService.IsRetryable(e))
            {
                _logger.LogWarning("[agent={Agent} delegate={Delegate}] listen call ended (Fabric unavailable); reconnecting", Agent, @delegate);
                Fabric.MovedFrom(endpoint);
            }
            catch (RpcException e)
            {
                _logger.LogError("[agent={Agent} delegate={Delegate}] listen call ended: {Code} {Detail}", Agent, @delegate, e.StatusCode, e.Status.Detail);
            }
            try
            {
                await backoff.WaitAsync(stopping).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private void Delivered(string @delegate, ExecutionsListenResponse message, ReservationCall reservation)
    {
        if (message.StartOfStream)
        {
            _ready[@delegate].TrySetResult();
            return;
        }
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
        _ = Task.Run(async () =>
        {
            ExecutionsCompleteRequest? completion = null;
            var kept = new KeptCalls(Fabric);
            try
            {
                completion = await RunExecutionAsync(message, @delegate, kept, cancellation.Token).ConfigureAwait(false);
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
            Finished(@delegate, execution, completion, reservation, kept);
            _running.TryRemove(execution, out _);
            cancellation.Dispose();
        });
    }

    /// <summary>Routes the completion of a finished execution, and its credit: on the delegate's
    /// open reservation call (with the credit when that call delivered it), else with the unary
    /// Complete.</summary>
    /// An execution that kept calls completes with the unary Complete, whose answer tells when
    /// they can go (on the reservation call that could wait for the next delivery).
    private void Finished(string @delegate, string execution, ExecutionsCompleteRequest? completion, ReservationCall origin, KeptCalls kept)
    {
        ReservationCall? current = _stopping.IsCancellationRequested ? null : _calls.GetValueOrDefault(@delegate);
        long credits = ReferenceEquals(current, origin) && origin.Open ? 1 : 0;
        if (completion is not null && current is { Open: true } && completion.CalculateSize() <= MaxCompletionBytes && kept.Count == 0)
        {
            _finishing[execution] = completion;
            current.Push(completion, credits);
            return;
        }
        if (completion is not null)
        {
            CompleteInBackground(completion, kept);
        }
        if (credits > 0)
        {
            origin.Push(null, credits);
        }
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

    private async Task<ExecutionsCompleteRequest> RunExecutionAsync(ExecutionsListenResponse message, string @delegate, KeptCalls kept,
        CancellationToken cancellationToken)
    {
        string execution = message.Execution.Execution;
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
            if (!_handlers.TryGetValue(@delegate, out HandlerMethod? handler))
            {
                return Completion(execution, [], null);  // the Start and Stop defaults
            }
            object? returned = handler.IsStream
                ? await new PerperStreamBuilder(context, @delegate).StartAsync(message.Arguments.Select(a => (object?)a).ToArray()).ConfigureAwait(false)
                : await handler.InvokeAsync(handler.Bind(message.Arguments, cancellationToken), _services).ConfigureAwait(false);
            return Completion(execution, PerperValues.ResultsOf(returned), null);
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
    /// <summary>Executions in flight per delegate (the credits of its reservation call).</summary>
    public int Concurrency { get; init; } = 64;
}
