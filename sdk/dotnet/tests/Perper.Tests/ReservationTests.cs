// SPDX-License-Identifier: MIT
using System.Collections.Concurrent;
using Grpc.Core;
using Perper.Application;
using Perper.Extensions;
using Perper.Grpc2;
using Perper.Model;

namespace Perper.Tests;

/// <summary>Executions that run until the test releases them, counting how many run at once.</summary>
public sealed class Gates
{
    private readonly ConcurrentQueue<TaskCompletionSource> _waiting = new();
    private int _inFlight;
    private int _mostInFlight;
    private int _started;

    public int InFlight => Volatile.Read(ref _inFlight);
    public int MostInFlight => Volatile.Read(ref _mostInFlight);
    public int Started => Volatile.Read(ref _started);

    public async Task<int> PassAsync(int x, CancellationToken cancellationToken)
    {
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        int now = Interlocked.Increment(ref _inFlight);
        Interlocked.Increment(ref _started);
        int seen;
        while ((seen = Volatile.Read(ref _mostInFlight)) < now && Interlocked.CompareExchange(ref _mostInFlight, now, seen) != seen)
        {
        }
        _waiting.Enqueue(gate);
        try
        {
            await gate.Task.WaitAsync(cancellationToken);
        }
        finally
        {
            Interlocked.Decrement(ref _inFlight);
        }
        return x;
    }

    /// <summary>Lets one waiting execution return.</summary>
    public void ReleaseOne()
    {
        Wait.Until(() => !_waiting.IsEmpty, TimeSpan.FromSeconds(15), "an execution waits at its gate");
        Assert.True(_waiting.TryDequeue(out TaskCompletionSource? gate));
        gate.SetResult();
    }
}

/// <summary>Three delegates sharing one set of gates.</summary>
public sealed class ThreeDelegatesAgent
{
    public static readonly Gates Gates = new();
    public static Task<int> Red(int x, CancellationToken cancellationToken) => Gates.PassAsync(x, cancellationToken);
    public static Task<int> Green(int x, CancellationToken cancellationToken) => Gates.PassAsync(x, cancellationToken);
    public static Task<int> Blue(int x, CancellationToken cancellationToken) => Gates.PassAsync(x, cancellationToken);
}

/// <summary>One delegate limited to one execution at once, and one without a limit of its own.</summary>
public sealed class OneAtATimeAgent
{
    public static readonly Gates Gates = new();

    [PerperHandler(Concurrency = 1)]
    public static Task<int> Single(int x, CancellationToken cancellationToken) => Gates.PassAsync(x, cancellationToken);

    public static int Free(int x) => x + 1;
}

/// <summary>One delegate whose executions run until the test releases them.</summary>
public sealed class HoldingAgent
{
    public static readonly Gates Gates = new();
    public static Task<int> Hold(int x, CancellationToken cancellationToken) => Gates.PassAsync(x, cancellationToken);
}

public sealed class ReservationTests(FabricFixture fabric) : IClassFixture<FabricFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private static async Task<uint> ReservationCallsOfAsync(Session session, string agent)
    {
        IntrospectionListAgentListenersResponse listeners = await session.Host.Fabric.Introspection.ListAgentListenersAsync(
            new IntrospectionListAgentListenersRequest { Agent = agent });
        return listeners.Agents.Where(a => a.Agent == agent).Select(a => a.ReservationCalls).FirstOrDefault();
    }

    /// <summary>A host opens one ListenAndReserve call for all its delegates (and Start and
    /// Stop), as the Fabric's introspection counts them, logs "serving from" once (at debug), and serves
    /// every delegate on it.</summary>
    [Fact]
    public async Task AHostWithThreeDelegatesOpensOneReservationCall()
    {
        var logger = new CollectingLogger();
        using var loggers = new SingleLoggerFactory(logger);
        await using var session = Session.Start(fabric.Address, "OneCall",
            b => b.AddHandlers<OneAtATimeAgent>().AddHandler("Twice", (int x) => 2 * x).WithConcurrency(5).WithLogging(loggers));
        Assert.Equal(1u, await ReservationCallsOfAsync(session, "OneCall"));
        Assert.Equal(8, await Context.CallAsync<int>("Twice", 4).WaitAsync(Timeout));
        Assert.Equal(5, await Context.CallAsync<int>("Free", 4).WaitAsync(Timeout));
        Assert.Equal(1u, await ReservationCallsOfAsync(session, "OneCall"));
        Assert.Equal(1, logger.Count($"Debug: [agent=OneCall] serving from {fabric.Address} (concurrency 5, workgroup '')"));
    }

    /// <summary>The concurrency counts the executions at once in the process, across delegates:
    /// with 2, six blocked calls to three delegates run two at a time.</summary>
    [Fact]
    public async Task TheConcurrencyLimitsExecutionsAcrossDelegates()
    {
        await using var session = Session.Start(fabric.Address, "Across", b => b.AddHandlers<ThreeDelegatesAgent>().WithConcurrency(2));
        Gates gates = ThreeDelegatesAgent.Gates;
        string[] delegates = ["Red", "Green", "Blue", "Red", "Green", "Blue"];
        Task<int>[] calls = delegates.Select((d, i) => Context.CallAsync<int>(d, i)).ToArray();
        for (int released = 0; released < calls.Length; released++)
        {
            int expected = Math.Min(2, calls.Length - released);
            Wait.Until(() => gates.InFlight == expected, Timeout, $"{expected} executions run");
            gates.ReleaseOne();
        }
        Assert.Equal(Enumerable.Range(0, 6), await Task.WhenAll(calls).WaitAsync(Timeout));
        Assert.Equal(6, gates.Started);
        Assert.Equal(2, gates.MostInFlight);
    }

    /// <summary>The reservation call takes every delegate of the agent: one without a handler
    /// fails, as in the C++ SDK, while Start and Stop without one complete empty.</summary>
    [Fact]
    public async Task AnExecutionOfADelegateWithoutAHandlerFails()
    {
        await using var session = Session.Start(fabric.Address, "Unhandled", b => b.AddHandler("Known", (int x) => x));
        var failed = await Assert.ThrowsAsync<PerperExecutionException>(() => Context.CallAsync<int>("Missing", 1).WaitAsync(Timeout));
        Assert.Equal("agent Unhandled has no delegate Missing", failed.Error);
        var lifecycle = await Assert.ThrowsAsync<PerperExecutionException>(() => Context.CallAsync("Init").WaitAsync(Timeout));
        Assert.Equal("agent Unhandled has no delegate Init", lifecycle.Error);
        await Context.CallAsync("Start").WaitAsync(Timeout);
        await Context.CallAsync("Stop").WaitAsync(Timeout);
        Assert.Equal(3, await Context.CallAsync<int>("Known", 3).WaitAsync(Timeout));
    }

    /// <summary><c>[PerperHandler(Concurrency = 1)]</c> runs one execution of its delegate at
    /// once; the others wait in the process holding the process's credits (the Fabric lists
    /// them reserved), so another delegate waits for a credit too.</summary>
    [Fact]
    public async Task AHandlersConcurrencyIsALimitWithinTheProcesssCredits()
    {
        const string workgroup = "one-at-a-time";
        await using var session = Session.Start(fabric.Address, "OneAtATime",
            b => b.AddHandlers<OneAtATimeAgent>().WithConcurrency(3).WithWorkgroup(workgroup));
        Gates gates = OneAtATimeAgent.Gates;
        Task<int>[] singles = Enumerable.Range(0, 3).Select(i => Context.CallAsync<int>("Single", i)).ToArray();
        var listReservations = new IntrospectionListReservationsRequest { Workgroup = workgroup };
        await Wait.UntilAsync(async () => (await session.Host.Fabric.Introspection.ListReservationsAsync(listReservations)).Reservations.Count == 3,
            Timeout, "the three executions of Single hold the process's three credits");
        Assert.Equal(1, gates.InFlight);
        Task<int> free = Context.CallAsync<int>("Free", 10);
        for (int released = 0; released < singles.Length; released++)
        {
            Wait.Until(() => gates.InFlight == 1, Timeout, "one execution of Single runs");
            gates.ReleaseOne();
        }
        Assert.Equal(new[] { 0, 1, 2 }, (await Task.WhenAll(singles).WaitAsync(Timeout)).Order().ToArray());
        Assert.Equal(11, await free.WaitAsync(Timeout));
        Assert.Equal(1, gates.MostInFlight);
    }

    /// <summary>After a Fabric restart the host opens one call again, asking for the concurrency
    /// minus the executions still running: with 2 and one execution held across the restart, two
    /// more calls run one at a time beside it.</summary>
    [Fact]
    public async Task AReopenedCallAsksForTheCreditsOfTheExecutionsNotRunning()
    {
        await using var fabric = new RestartableFabric();
        var logger = new CollectingLogger();
        using var loggers = new SingleLoggerFactory(logger);
        await using var session = Session.Start(fabric.Address, "Reopened",
            b => b.AddHandlers<HoldingAgent>().WithConcurrency(2).WithLogging(loggers));
        Gates gates = HoldingAgent.Gates;
        Task<int> held = Context.CallAsync<int>("Hold", 0);
        Wait.Until(() => gates.InFlight == 1, Timeout, "the first execution runs");

        await fabric.RestartAsync();

        Wait.Until(() => logger.Count($"Information: [agent=Reopened] listen call reconnected to {fabric.Address}") == 1,
            Timeout, "the reservation call is reopened");
        Assert.Equal(1u, await ReservationCallsOfAsync(session, "Reopened"));
        Task<int>[] calls = [held, Context.CallAsync<int>("Hold", 1), Context.CallAsync<int>("Hold", 2)];
        for (int released = 0; released < calls.Length; released++)
        {
            int expected = Math.Min(2, calls.Length - released);
            Wait.Until(() => gates.InFlight == expected, Timeout, $"{expected} executions run");
            gates.ReleaseOne();
        }
        Assert.Equal(new[] { 0, 1, 2 }, await Task.WhenAll(calls).WaitAsync(Timeout));
        Assert.Equal(2, gates.MostInFlight);
    }

    /// <summary>A reservation call the Fabric refuses (here INVALID_ARGUMENT: a workgroup over
    /// its ID limit) is logged at error and stops the host with exit code 1, as in the C++ SDK.</summary>
    [Fact]
    public async Task ARefusedReservationCallStopsTheHostWithExitCode1()
    {
        var logger = new CollectingLogger();
        using var loggers = new SingleLoggerFactory(logger);
        await using PerperAgentHost host = new PerperBuilder("Refused").WithEndpoint(fabric.Address)
            .AddHandler("Known", (int x) => x).WithWorkgroup(new string('w', 2000)).WithLogging(loggers).Build();
        Assert.Equal(1, await host.RunAsync().WaitAsync(Timeout));
        var refused = await Assert.ThrowsAsync<RpcException>(() => host.ReadyAsync(Timeout));
        Assert.Equal(StatusCode.InvalidArgument, refused.StatusCode);
        Assert.Contains(logger.Messages, m => m.StartsWith("Error: [agent=Refused] listen call ended: 3 ") && m.Contains("workgroup"));
        Assert.Equal(0, logger.Count("reconnecting"));
    }
}
