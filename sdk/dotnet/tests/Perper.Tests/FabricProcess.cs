// SPDX-License-Identifier: MIT
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Perper.Application;
using Perper.Extensions;
using Perper.Model;
using Perper.Protocol;

namespace Perper.Tests;

/// <summary>A perper-fabric child process on a free loopback port (memory storage, or rocksdb in
/// <see cref="DataDir"/>), stopped when disposed.</summary>
public sealed class FabricProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly string _dir;
    private readonly System.Text.StringBuilder _log = new();

    public FabricProcess(string? dataDir = null, string listen = "127.0.0.1:0")
        : this(dataDir is null
                   ? new[] { "--storage", "memory" }
                   : new[] { "--storage", "rocksdb", "--data-dir", dataDir, "--sync", "false" },
               listen)
    {
        DataDir = dataDir;
    }

    /// <summary>A Fabric with these storage options (e.g. <c>--storage redis --redis ADDRESS</c>).</summary>
    public FabricProcess(IEnumerable<string> storageArgs, string listen = "127.0.0.1:0")
    {
        _dir = Directory.CreateTempSubdirectory("perper-dotnet-").FullName;
        string addressFile = Path.Combine(_dir, "address");
        var start = new ProcessStartInfo(Repository.FabricBinary) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (string arg in storageArgs)
        {
            start.ArgumentList.Add(arg);
        }
        foreach (string arg in new[] { "--listen", listen, "--address-file", addressFile, "--log-level", "warn" })
        {
            start.ArgumentList.Add(arg);
        }
        _process = Process.Start(start)!;
        _process.ErrorDataReceived += (_, e) => { lock (_log) { _log.AppendLine(e.Data); } };
        _process.OutputDataReceived += (_, e) => { lock (_log) { _log.AppendLine(e.Data); } };
        _process.BeginErrorReadLine();
        _process.BeginOutputReadLine();
        Wait.Until(() => File.Exists(addressFile) && File.ReadAllText(addressFile).Trim().Length > 0 || _process.HasExited,
            TimeSpan.FromSeconds(15), "perper-fabric writes its address");
        if (_process.HasExited)
        {
            throw new InvalidOperationException("perper-fabric exited: " + Log);
        }
        Address = File.ReadAllText(addressFile).Trim();
    }

    public string Address { get; }
    public string? DataDir { get; private init; }
    public string Log { get { lock (_log) { return _log.ToString(); } } }

    /// <summary>SIGKILL, as a crash would.</summary>
    public void Kill()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
        }
        _process.WaitForExit();
    }

    public ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit();
        }
        _process.Dispose();
        Directory.Delete(_dir, true);
        return ValueTask.CompletedTask;
    }
}

/// <summary>A durable Fabric (rocksdb in a temporary folder) on a free port, which
/// <see cref="RestartAsync"/> kills, as a crash would, and starts again on the same address and data.</summary>
public sealed class RestartableFabric : IAsyncDisposable
{
    private readonly string _data = Directory.CreateTempSubdirectory("perper-dotnet-data-").FullName;
    private FabricProcess _fabric;

    public RestartableFabric()
    {
        Listen = $"127.0.0.1:{Repository.FreePort()}";
        _fabric = new FabricProcess(_data, Listen);
    }

    /// <summary>The address it listens on, the same after a restart.</summary>
    public string Listen { get; }
    public string Address => _fabric.Address;

    public async Task RestartAsync()
    {
        _fabric.Kill();
        await _fabric.DisposeAsync();
        _fabric = new FabricProcess(_data, Listen);
    }

    public async ValueTask DisposeAsync()
    {
        await _fabric.DisposeAsync();
        Directory.Delete(_data, true);
    }
}

/// <summary>Waiting on conditions, never on time alone.</summary>
public static class Wait
{
    public static void Until(Func<bool> condition, TimeSpan timeout, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > timeout)
            {
                throw new TimeoutException($"timed out after {timeout.TotalSeconds} s waiting until {what}");
            }
            Thread.Sleep(10);  // polling a condition another process makes true
        }
    }

    public static async Task UntilAsync(Func<Task<bool>> condition, TimeSpan timeout, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!await condition())
        {
            if (clock.Elapsed > timeout)
            {
                throw new TimeoutException($"timed out after {timeout.TotalSeconds} s waiting until {what}");
            }
            await Task.Delay(10);  // polling a condition another process makes true
        }
    }
}

public static class Repository
{
    public static string Root { get; } = FindRoot();

    private static string FindRoot()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "proto", "perper", "grpc2", "model.proto")))
        {
            dir = Path.GetDirectoryName(dir);
        }
        return dir ?? throw new InvalidOperationException("the repository root was not found above " + AppContext.BaseDirectory);
    }

    public static string BuildDir => Environment.GetEnvironmentVariable("PERPER_BUILD_DIR") is { Length: > 0 } dir ? dir : Path.Combine(Root, "build");

    public static string FabricBinary => Environment.GetEnvironmentVariable("PERPER_FABRIC_BINARY") is { Length: > 0 } binary
        ? binary : Path.Combine(BuildDir, "apps", "perper-fabric");

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

/// <summary>An agent host serving handlers in the test process, and a context to drive it from
/// the test (as its instance <c>"{agent}-Main"</c>).</summary>
public sealed class Session : IAsyncDisposable
{
    private readonly IDisposable _entered;

    private Session(PerperAgentHost host, IDisposable entered)
    {
        Host = host;
        _entered = entered;
    }

    public PerperAgentHost Host { get; }

    /// <summary>Starts serving and enters the session's context. Synchronous on purpose: an
    /// AsyncLocal set here stays set in the calling test (an async method's would not).</summary>
    public static Session Start(string address, string agent, Action<PerperBuilder>? configure = null, string? instance = null)
    {
        var builder = new PerperBuilder(agent).WithEndpoint(address);
        configure?.Invoke(builder);
        PerperAgentHost host = builder.Build();
        host.StartAsync().GetAwaiter().GetResult();
        host.ReadyAsync(TimeSpan.FromSeconds(15)).GetAwaiter().GetResult();
        return new Session(host, PerperContext.Enter(host.CreateContext(instance)));
    }

    public PerperInstance Me => PerperContext.Current.Instance;

    public async ValueTask DisposeAsync()
    {
        _entered.Dispose();
        await Host.StopAsync();
    }
}
