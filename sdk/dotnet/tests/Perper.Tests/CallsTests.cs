// SPDX-License-Identifier: MIT
using Perper.Application;
using Perper.Extensions;
using Perper.Model;

namespace Perper.Tests;

public sealed class CallsAgent
{
    public static int Add(int a, int b) => a + b;

    public static async Task<(long Sum, string Text)> SumAndTextAsync(long[] values, string label)
    {
        await Task.Yield();
        return (values.Sum(), $"{label}:{values.Length}");
    }

    public static int CountParams(object? first, params object?[] rest) => 1 + rest.Length;

    public static string Greet(string name = "world") => $"Hello, {name}!";

    public static void Nothing() { }

    public static Task Fail(string message) => throw new InvalidOperationException(message);

    public static async Task<string> WaitForCancel(CancellationToken cancellationToken)
    {
        Cancelled = new TaskCompletionSource();
        Waiting.TrySetResult();
        try
        {
            await Task.Delay(Timeout.Infinite, cancellationToken);
        }
        catch (OperationCanceledException)
        {
            Cancelled.TrySetResult();
            throw;
        }
        return "never";
    }

    public static byte[] Reverse(byte[] data) => data.Reverse().ToArray();

    public static async Task<int> Nested(int n) => n == 0 ? 0 : 1 + await Context.CallAsync<int>("Nested", n - 1);

    public static TaskCompletionSource Waiting { get; set; } = new();
    public static TaskCompletionSource Cancelled { get; set; } = new();
}

public sealed class CallsTests(FabricFixture fabric) : IClassFixture<FabricFixture>
{
    [Fact]
    public async Task CallsWithSeveralArgumentsAndResults()
    {
        await using var session = Session.Start(fabric.Address, "Calls1", b => b.AddHandlers<CallsAgent>());
        Assert.Equal(5, await Context.CallAsync<int>("Add", 2, 3));
        (long sum, string text) = await Context.CallAsync<(long, string)>("SumAndText", new long[] { 1, 2, 3 }, "x");
        Assert.Equal((6L, "x:3"), (sum, text));
        Assert.Equal(4, await Context.CallAsync<int>("CountParams", 1, "a", "b", "c"));
        Assert.Equal("Hello, world!", await Context.CallAsync<string>("Greet"));
        Assert.Equal("Hello, you!", await Context.CallAsync<string>("Greet", "you"));
        await Context.CallAsync("Nothing");
        Assert.Equal(5, await Context.CallAsync<int>("Nested", 5));
    }

    [Fact]
    public async Task ValuesOf16MiBTravelBothWays()
    {
        await using var session = Session.Start(fabric.Address, "Calls4", b => b.AddHandlers<CallsAgent>());
        byte[] data = new byte[16 * 1024 * 1024];
        Random.Shared.NextBytes(data);
        byte[] reversed = await Context.CallAsync<byte[]>("Reverse", data);
        Assert.Equal(data.Reverse(), reversed);
    }

    [Fact]
    public async Task RemoteErrorsAreExceptions()
    {
        await using var session = Session.Start(fabric.Address, "Calls2", b => b.AddHandlers<CallsAgent>());
        var failed = await Assert.ThrowsAsync<PerperExecutionException>(() => Context.CallAsync("Fail", "it broke"));
        Assert.Equal("InvalidOperationException: it broke", failed.Error);
        var mismatch = await Assert.ThrowsAsync<PerperExecutionException>(() => Context.CallAsync("Add", "two", 3));
        Assert.Contains("argument 0 of delegate Add: cannot read a value of type google.protobuf.StringValue as int", mismatch.Error);
        var tooMany = await Assert.ThrowsAsync<PerperExecutionException>(() => Context.CallAsync("Add", 1, 2, 3));
        Assert.Contains("takes 2 arguments, the call has 3", tooMany.Error);
    }

    /// <summary>A failed handler is logged as in the other SDKs: at warning, IDs first
    /// (<c>[agent=… exec=…] Fail failed: …</c>).</summary>
    [Fact]
    public async Task AFailedHandlerIsLoggedAtWarningWithItsIds()
    {
        var logger = new CollectingLogger();
        using var loggers = new SingleLoggerFactory(logger);
        await using var session = Session.Start(fabric.Address, "Calls5", b => b.AddHandlers<CallsAgent>().WithLogging(loggers));
        await Assert.ThrowsAsync<PerperExecutionException>(() => Context.CallAsync("Fail", "logged"));
        Assert.Contains(logger.Messages, m => m.StartsWith("Warning: [agent=Calls5 exec=") &&
                                             m.EndsWith("] Fail failed: InvalidOperationException: logged"));
    }

    [Fact]
    public async Task DeletingAnExecutionCancelsItsHandler()
    {
        await using var session = Session.Start(fabric.Address, "Calls3", b => b.AddHandlers<CallsAgent>());
        CallsAgent.Waiting = new TaskCompletionSource();
        using var cancel = new CancellationTokenSource();
        var context = new PerperContext(session.Host.Fabric, session.Me, "driver", cancel.Token);
        Task call;
        using (PerperContext.Enter(context))
        {
            call = Context.CallAsync<string>("WaitForCancel");
        }
        await CallsAgent.Waiting.Task.WaitAsync(TimeSpan.FromSeconds(10));
        cancel.Cancel();  // the Call is cancelled: the Fabric deletes the execution
        await CallsAgent.Cancelled.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await Assert.ThrowsAnyAsync<Exception>(() => call);
    }
}

/// <summary>One Fabric for the tests of a class (each test uses its own agent names).</summary>
public sealed class FabricFixture : IAsyncLifetime
{
    private FabricProcess? _fabric;
    public string Address => _fabric!.Address;
    public Task InitializeAsync()
    {
        _fabric = new FabricProcess();
        return Task.CompletedTask;
    }
    public async Task DisposeAsync() => await _fabric!.DisposeAsync();
}
