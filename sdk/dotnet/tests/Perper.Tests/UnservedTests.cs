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

public sealed class UnservedTests(FabricFixture fabric) : IClassFixture<FabricFixture>
{
    /// <summary>A call to an agent no process serves warns, naming it, once it has waited a
    /// while, and is answered when a process starts serving it.</summary>
    [Fact]
    public async Task ACallToAnAgentNoProcessServesSaysSoAndGoesOnWaiting()
    {
        TimeSpan before = PerperInstanceExtensions.UnservedCheckAfter;
        PerperInstanceExtensions.UnservedCheckAfter = TimeSpan.FromMilliseconds(200);
        try
        {
            await using var session = Session.Start(fabric.Address, "Unserved1");
            var logger = new CollectingLogger();
            PerperContext.Current.Fabric.Logger = logger;
            const string warning = "no process serves agent LonelyNet";
            Task<int> call = new PerperInstance("LonelyNet", "lonely-1").CallAsync<int>("Plus", 1);
            var deadline = DateTime.UtcNow.AddSeconds(20);
            while (logger.Count(warning) == 0 && DateTime.UtcNow < deadline)
            {
                await Task.Delay(20);
            }
            Assert.Equal(1, logger.Count(warning));
            Assert.Contains(logger.Messages, m => m.StartsWith("Warning: [exec="));
            Assert.False(call.IsCompleted);

            PerperAgentHost lonely = new PerperBuilder("LonelyNet").WithEndpoint(fabric.Address).AddHandlers<LonelyAgent>().Build();
            await lonely.StartAsync();
            try
            {
                Assert.Equal(2, await call.WaitAsync(TimeSpan.FromSeconds(20)));
            }
            finally
            {
                await lonely.StopAsync();
            }
            Assert.Equal(1, logger.Count(warning));
        }
        finally
        {
            PerperInstanceExtensions.UnservedCheckAfter = before;
        }
    }
}
