// SPDX-License-Identifier: MIT
using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Perper.Application;
using Perper.Extensions;
using Perper.Model;

namespace Perper.Tests;

public sealed class LonelyAgent
{
    public static int Plus(int x) => x + 1;
}

public sealed class SensorAgent
{
    public static long Start(long x) => x * 2;
}

/// <summary>Collects the messages logged through it.</summary>
public sealed class CollectingLogger : ILogger
{
    public ConcurrentQueue<string> Messages { get; } = new();
    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
    public bool IsEnabled(LogLevel logLevel) => true;
    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
        Messages.Enqueue($"{logLevel}: {formatter(state, exception)}");
    public int Count(string text) => Messages.Count(m => m.Contains(text));
}

/// <summary>Hands <see cref="CollectingLogger"/> out for every category.</summary>
public sealed class SingleLoggerFactory(ILogger logger) : ILoggerFactory
{
    public ILogger CreateLogger(string categoryName) => logger;
    public void AddProvider(ILoggerProvider provider) { }
    public void Dispose() { }
}

public sealed class UnservedTests(FabricFixture fabric) : IClassFixture<FabricFixture>
{
    /// <summary>A call to an agent no process serves warns, naming it, once it has waited a
    /// while, and is answered when a process starts serving it.</summary>
    [Fact]
    public Task ACallToAnAgentNoProcessServesSaysSoAndGoesOnWaiting() => WithQuickCheckAsync("Unserved1", async logger =>
    {
        const string warning = "no process serves agent LonelyNet";
        Task<int> call = new PerperInstance("LonelyNet", "lonely-1").CallAsync<int>("Plus", 1);
        await UntilAsync(() => logger.Count(warning) > 0);
        Assert.Equal(1, logger.Count(warning));
        // Named as the C++ SDK names it: the waiting agent first.
        Assert.Contains(logger.Messages, m => m.StartsWith("Warning: [agent=Unserved1 exec="));
        Assert.False(call.IsCompleted);
        Assert.Equal(2, await ServedAsync<LonelyAgent, int>("LonelyNet", call));
        Assert.Equal(1, logger.Count(warning));
    });

    /// <summary>Starting or destroying an instance waits for its Start or Stop to run in a
    /// process of its agent: with none (a process serving "sensor" while the code says
    /// "SensorNet"), the wait is named, once each, and ends when a process serves it.</summary>
    [Fact]
    public Task StartingOrDestroyingAnAgentNoProcessServesSaysSoAndGoesOnWaiting() => WithQuickCheckAsync("Unserved2", async logger =>
    {
        const string warning = "no process serves agent SensorNet";
        Task<(PerperInstance Instance, long Result)> starting = Context.StartAgentAsync<long>("SensorNet", 5L);
        await UntilAsync(() => logger.Count(warning) == 1);
        Assert.Equal(1, logger.Count(warning));
        Assert.False(starting.IsCompleted);
        (PerperInstance started, long result) = await ServedAsync<SensorAgent, (PerperInstance, long)>("SensorNet", starting);
        Assert.Equal(10L, result);
        Assert.Contains(logger.Messages, m => m.StartsWith($"Warning: [agent=Unserved2 exec={started.Instance}] waiting for SensorNet"));

        Task destroying = started.DestroyAsync();
        await UntilAsync(() => logger.Count(warning) == 2);
        Assert.Equal(2, logger.Count(warning));
        Assert.False(destroying.IsCompleted);
        await ServedAsync<SensorAgent, bool>("SensorNet", destroying.ContinueWith(t => { t.GetAwaiter().GetResult(); return true; }, TaskScheduler.Default));
        Assert.Equal(2, logger.Count(warning));
    });

    /// <summary>Runs <paramref name="body"/> in a session of <paramref name="agent"/> whose
    /// warnings it collects, with the unserved check after 200 ms.</summary>
    private async Task WithQuickCheckAsync(string agent, Func<CollectingLogger, Task> body)
    {
        TimeSpan before = PerperInstanceExtensions.UnservedCheckAfter;
        PerperInstanceExtensions.UnservedCheckAfter = TimeSpan.FromMilliseconds(200);
        try
        {
            await using var session = Session.Start(fabric.Address, agent);
            var logger = new CollectingLogger();
            PerperContext.Current.Fabric.Logger = logger;
            await body(logger);
        }
        finally
        {
            PerperInstanceExtensions.UnservedCheckAfter = before;
        }
    }

    /// <summary>Serves <paramref name="agent"/> with <typeparamref name="THandlers"/> until
    /// <paramref name="waiting"/> (a wait on that agent) ends, at most 20 s.</summary>
    private async Task<T> ServedAsync<THandlers, T>(string agent, Task<T> waiting)
    {
        PerperAgentHost host = new PerperBuilder(agent).WithEndpoint(fabric.Address).AddHandlers<THandlers>().Build();
        await host.StartAsync();
        try
        {
            return await waiting.WaitAsync(TimeSpan.FromSeconds(20));
        }
        finally
        {
            await host.StopAsync();
        }
    }

    private static async Task UntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (!condition() && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }
    }
}
