// SPDX-License-Identifier: MIT
using System.Diagnostics;
using Perper.Extensions;
using Perper.Model;
using Xunit.Abstractions;

namespace Perper.Tests;

public sealed class LoadAgent
{
    public static async Task<long> Square(long x)
    {
        await Task.Yield();
        return x * x;
    }
}

public sealed class ProcessTests(ITestOutputHelper output)
{
    [Fact]
    public async Task TenThousandConcurrentCallsIntoOneAgentProcess()
    {
        await using var fabric = new FabricProcess();
        await using var session = Session.Start(fabric.Address, "Load", b => b.AddHandlers<LoadAgent>().WithConcurrency(256));
        var clock = Stopwatch.StartNew();
        long[] results = await Task.WhenAll(Enumerable.Range(0, 10_000).Select(i => Context.CallAsync<long>("Square", (long)i)));
        clock.Stop();
        Assert.Equal(Enumerable.Range(0, 10_000).Select(i => (long)i * i), results);
        output.WriteLine($"10000 concurrent calls in {clock.Elapsed.TotalSeconds:F2} s ({10_000 / clock.Elapsed.TotalSeconds:F0} calls/s)");
    }

    [Fact]
    public async Task AgentsReconnectAfterAFabricRestart()
    {
        await using var fabric = new RestartableFabric();
        await using var session = Session.Start(fabric.Address, "Restart", b => b.AddHandlers<LoadAgent>());
        PerperStream numbers = await Context.BlankStream().Persistent().StartAsync();
        await numbers.WriteItemAsync(1L, 10L);
        Assert.Equal(9L, await Context.CallAsync<long>("Square", 3L));
        // A reader (named) and a reader (anonymous) in the middle of the stream.
        IAsyncEnumerator<long> named = numbers.EnumerateAsync<long>("reader").GetAsyncEnumerator();
        IAsyncEnumerator<long> anonymous = numbers.EnumerateAsync<long>().GetAsyncEnumerator();
        Assert.True(await named.MoveNextAsync());
        Assert.True(await anonymous.MoveNextAsync());
        Assert.Equal((10L, 10L), (named.Current, anonymous.Current));

        await fabric.RestartAsync();

        // The calls wait for the Fabric with back-off; the agent's reservation reconnects.
        Assert.Equal(16L, await Context.CallAsync<long>("Square", 4L));
        await numbers.WriteItemAsync(2L, 20L);
        await numbers.CompleteAsync();
        // The readers reconnect and go on after the last item they delivered.
        foreach (IAsyncEnumerator<long> reader in new[] { named, anonymous })
        {
            Assert.True(await reader.MoveNextAsync());
            Assert.Equal(20L, reader.Current);
            Assert.False(await reader.MoveNextAsync());
            await reader.DisposeAsync();
        }
    }
}
