// SPDX-License-Identifier: MIT
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Perper.Grpc2;
using Perper.Model;
using Perper.Protocol;

namespace Perper.Extensions;

/// <summary>Calls and instances (create, call, destroy), as extension methods on the model's
/// <see cref="PerperInstance"/>, acting through the ambient <see cref="PerperContext"/>.</summary>
public static class PerperInstanceExtensions
{
    /// <summary>Calls <paramref name="delegate"/> on the instance and waits for it; throws
    /// <see cref="PerperExecutionException"/> when the handler failed and
    /// <see cref="PerperCancelledException"/> when the execution was deleted.</summary>
    public static async Task CallAsync(this PerperInstance instance, string @delegate, params object?[] args) =>
        await CallRawAsync(instance, @delegate, args).ConfigureAwait(false);

    /// <summary>Calls <paramref name="delegate"/> and reads its result as
    /// <typeparamref name="T"/> (a tuple type for several results).</summary>
    public static async Task<T> CallAsync<T>(this PerperInstance instance, string @delegate, params object?[] args)
    {
        ExecutionsGetResultResponse response = await CallRawAsync(instance, @delegate, args).ConfigureAwait(false);
        return (T)PerperValues.UnpackResults(response.Results, typeof(T))!;
    }

    /// <summary>Stops the instance (its Stop with <paramref name="stopArgs"/>, then its children,
    /// recursively) and deletes it with what it owns; throws when Stop failed.</summary>
    public static async Task DestroyAsync(this PerperInstance instance, params object?[] stopArgs)
    {
        var request = new InstancesStopAndDeleteRequest { Instance = instance, StopParameters = { PerperValues.PackAll(stopArgs) } };
        // Stop runs in a process of the agent: with none, the warning says why this waits.
        ExecutionsGetResultResponse response = await WatchUnservedAsync(instance.Agent, instance.Instance,
            () => PerperContext.UnaryAsync((fabric, o) => fabric.Instances.StopAndDeleteAsync(request, o))).ConfigureAwait(false);
        Check($"Stop of {instance.Instance}", response);
    }

    /// <summary>Creates the execution, waits for its result and deletes it (one round trip:
    /// FabricInstances.Call); inside a real execution the finished call is kept instead (see
    /// <see cref="KeptCalls"/>). Cancelling the calling execution deletes the callee's.</summary>
    internal static async Task<ExecutionsGetResultResponse> CallRawAsync(PerperInstance instance, string @delegate, object?[] args)
    {
        PerperContext context = PerperContext.Current;
        string execution = context.NewId(@delegate);
        var request = new ExecutionsCreateRequest
        {
            Execution = new PerperExecution(execution),
            Instance = instance,
            Delegate = @delegate,
            Arguments = { PerperValues.PackAll(args) },
        };
        ExecutionsGetResultResponse response = await WatchUnservedAsync(instance.Agent, execution,
            () => context.KeptCalls is { } kept
                ? CallKeptAsync(context, request, kept)
                : PerperContext.UnaryAsync((fabric, o) => fabric.Instances.CallAsync(request, o))).ConfigureAwait(false);
        return Check(execution, response);
    }

    /// <summary>Awaits <paramref name="request"/>, which only a process of
    /// <paramref name="agent"/> can answer (a call, or an instance's Start or Stop:
    /// <paramref name="id"/> is then the instance's), warning meanwhile when no process serves
    /// <paramref name="agent"/> (see <see cref="WarnWhenUnservedAsync"/>).</summary>
    private static async Task<T> WatchUnservedAsync<T>(string agent, string id, Func<Task<T>> request)
    {
        using var answered = new CancellationTokenSource();
        PerperContext context = PerperContext.Current;
        _ = WarnWhenUnservedAsync(context.Fabric, context.Instance.Agent, agent, id, answered.Token);
        try
        {
            return await request().ConfigureAwait(false);
        }
        finally
        {
            answered.Cancel();
        }
    }

    /// <summary>How long a call, a start or a destroy (whose Start or Stop runs in a process of
    /// the agent) waits for its answer before checking that some process serves the agent (a
    /// warning names the agent when none does; the wait goes on). Zero: never. Lowered by
    /// tests.</summary>
    public static TimeSpan UnservedCheckAfter { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Runs beside a call: once it has waited <see cref="UnservedCheckAfter"/>, asks the
    /// Fabric whether any process listens for <paramref name="agent"/> and warns when none
    /// does.</summary>
    private static async Task WarnWhenUnservedAsync(FabricService fabric, string caller, string agent, string execution, CancellationToken answered)
    {
        if (UnservedCheckAfter <= TimeSpan.Zero)
        {
            return;
        }
        try
        {
            await Task.Delay(UnservedCheckAfter, answered).ConfigureAwait(false);
            var request = new IntrospectionListAgentListenersRequest { Agent = agent };
            IntrospectionListAgentListenersResponse listeners = await fabric.Introspection.ListAgentListenersAsync(
                request, deadline: DateTime.UtcNow.AddSeconds(5), cancellationToken: answered).ConfigureAwait(false);
            if (listeners.Agents.Any(a => a.Agent == agent && (a.ListenCalls > 0 || a.ReservationCalls > 0)))
            {
                return;
            }
            fabric.Logger.LogWarning(
                "[agent={Caller} exec={Execution}] waiting for {Agent}: no process serves agent {Served} (no listen call for it on the Fabric at {Address}); the call waits until one does",
                caller, execution, agent, agent, fabric.Endpoint);
        }
        catch (Exception e) when (e is OperationCanceledException or RpcException)
        {
            // Answered in time, or an older or unreachable Fabric: nothing to say.
        }
    }

    /// <summary>Inside a real execution: creates the call's execution (an identical one, finished
    /// or not, is left as it is: a re-run finds the first run's result) and waits for its result
    /// without deleting it; the finished call is kept (see <see cref="KeptCalls"/>). Cancellation
    /// deletes it, as FabricInstances.Call does.</summary>
    private static async Task<ExecutionsGetResultResponse> CallKeptAsync(PerperContext context, ExecutionsCreateRequest request, KeptCalls kept)
    {
        await PerperContext.UnaryAsync((fabric, o) => fabric.Executions.CreateAsync(request, o)).ConfigureAwait(false);
        var get = new ExecutionsGetResultRequest { Execution = request.Execution };
        ExecutionsGetResultResponse response;
        try
        {
            response = await PerperContext.UnaryAsync((fabric, o) => fabric.Executions.GetResultAsync(get, o)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException || e is RpcException { StatusCode: StatusCode.Cancelled })
        {
            var delete = new ExecutionsDeleteRequest { Execution = request.Execution };
            try
            {
                using var bounded = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                await context.Fabric.RetryAsync(o => context.Fabric.Executions.DeleteAsync(delete, o), bounded.Token).ConfigureAwait(false);
            }
            catch (Exception failed) when (failed is RpcException or OperationCanceledException)
            {
                // A process stopping while the Fabric is away does not hang here.
            }
            throw;
        }
        if (!response.Deleted)
        {
            kept.Keep(request.Execution.Execution);
        }
        return response;
    }

    /// <summary>Throws the execution's error or cancellation; returns the response otherwise.</summary>
    internal static ExecutionsGetResultResponse Check(string execution, ExecutionsGetResultResponse response)
    {
        if (response.Deleted)
        {
            throw new PerperCancelledException(execution);
        }
        if (response.Error is { Message.Length: > 0 })
        {
            throw new PerperExecutionException(execution, response.Error.Message);
        }
        return response;
    }

    /// <summary>Creates an instance of <paramref name="agent"/> (ID <c>Run-{uuid}</c>, a child of
    /// the current instance) and calls its Start with <paramref name="args"/>.</summary>
    internal static async Task<(PerperInstance Instance, ExecutionsGetResultResponse Start)> StartAgentRawAsync(string agent, object?[] args)
    {
        PerperContext context = PerperContext.Current;
        var instance = new PerperInstance(agent, context.NewId("Run"));
        var request = new InstancesCreateAndStartRequest
        {
            Instance = instance,
            Arguments = { PerperValues.PackAll(args) },
            Parent = context.Instance,
        };
        // Start runs in a process of the agent: with none, the warning says why this waits.
        ExecutionsGetResultResponse response = await WatchUnservedAsync(agent, instance.Instance,
            () => PerperContext.UnaryAsync((fabric, o) => fabric.Instances.CreateAndStartAsync(request, o))).ConfigureAwait(false);
        return (instance, Check($"Start of {instance.Instance}", response));
    }
}
