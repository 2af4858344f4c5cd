// SPDX-License-Identifier: MIT
using System.Diagnostics;
using System.Net.Sockets;
using Perper.Extensions;
using Perper.Model;
using Perper.Protocol;

namespace Perper.Tests;

/// <summary>A private redis-server on a free loopback port, without persistence, killed when
/// disposed.</summary>
public sealed class RedisServer : IDisposable
{
    private readonly Process _process;

    public RedisServer()
    {
        Port = Repository.FreePort();
        var start = new ProcessStartInfo("redis-server") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string arg in new[] { "--port", Port.ToString(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no" })
        {
            start.ArgumentList.Add(arg);
        }
        _process = Process.Start(start)!;
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        Wait.Until(() => _process.HasExited || Accepts(Port), TimeSpan.FromSeconds(15), "redis-server accepts connections");
        if (_process.HasExited)
        {
            throw new InvalidOperationException("redis-server exited with " + _process.ExitCode);
        }
    }

    public int Port { get; }
    public string Address => $"127.0.0.1:{Port}";

    private static bool Accepts(int port)
    {
        try
        {
            using var client = new TcpClient();
            client.Connect("127.0.0.1", port);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit();
        }
        _process.Dispose();
    }
}

/// <summary>Several Fabric processes on one Redis behave as one Fabric; an agent given all their
/// addresses moves to another when its own dies.</summary>
public sealed class ClusterTests
{
    [Fact]
    public async Task AnAgentMovesToAnotherFabricProcessWhenItsOwnDies()
    {
        using var redis = new RedisServer();
        string[] storage = { "--storage", "redis", "--redis", redis.Address, "--redis-lease-ms", "1000" };
        var first = new FabricProcess(storage);
        await using var second = new FabricProcess(storage);
        try
        {
            // Connected to the first address; the second is where it goes when the first dies.
            var fabric = new FabricService($"{first.Address},{second.Address}", startIndex: 0);
            await using var session = Session.Start(first.Address, "Moving",
                b => b.AddHandlers<LoadAgent>().WithFabric(fabric));
            Assert.Equal(first.Address, fabric.Endpoint);
            Assert.Equal(9L, await Context.CallAsync<long>("Square", 3L));
            PerperStream numbers = await Context.BlankStream().Persistent().StartAsync();
            await numbers.WriteItemAsync(1L, 10L);

            first.Kill();

            // Calls and the agent's reservation carry on through the second process, and what
            // the first acknowledged is there.
            Assert.Equal(16L, await Context.CallAsync<long>("Square", 4L));
            Assert.Equal(second.Address, fabric.Endpoint);
            await numbers.WriteItemAsync(2L, 20L);
            await numbers.CompleteAsync();
            var read = new List<long>();
            await foreach (long item in numbers.Replay().EnumerateAsync<long>())
            {
                read.Add(item);
            }
            Assert.Equal(new[] { 10L, 20L }, read);
        }
        finally
        {
            await first.DisposeAsync();
        }
    }
}
