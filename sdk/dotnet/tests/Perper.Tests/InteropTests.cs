// SPDX-License-Identifier: MIT
using System.Diagnostics;
using System.Runtime.CompilerServices;
using Google.Protobuf.WellKnownTypes;
using Perper.Extensions;
using Perper.Model;

namespace Perper.Tests;

/// <summary>What the C++ agent (sdk/python/tests/interop/cpp_interop_agent.cc, which calls the
/// agent "PyInterop", instance "py") and the Python agent (tests/interop/py_peer.py, which calls
/// "DotnetPeer", instance "dotnet") call back.</summary>
public sealed class PeerAgent
{
    public static PerperResults Echo(params object?[] values) => new(values);

    public static async IAsyncEnumerable<string> Letters(string word, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        foreach (char letter in word)
        {
            await Task.Yield();
            yield return letter.ToString();
        }
    }
}

/// <summary>A .NET agent with a C++ agent and a Python agent: calls both ways with every type of
/// the value table, and streams produced by one and read by the other.</summary>
public sealed class InteropTests(FabricFixture fabric) : IClassFixture<FabricFixture>
{
    private static readonly object?[] Sent =
    [
        true, -(1L << 40), 0.25, "from .NET ✓", new byte[] { 0, 255 }, null, new PerperStream("s-from-dotnet", 4, 2),
        new PerperInstance("DotnetPeer", "dotnet"), new Timestamp { Seconds = 1700000000, Nanos = 5 },
    ];

    private static ChildAgent StartCpp(string address)
    {
        string binary = Environment.GetEnvironmentVariable("PERPER_CPP_INTEROP_AGENT") is { Length: > 0 } b
            ? b : Path.Combine(Repository.BuildDir, "sdk", "python", "cpp_interop_agent");
        return new ChildAgent(binary, [], address);
    }

    private static ChildAgent StartPython(string address) =>
        new("/usr/bin/python3", [Path.Combine(Repository.Root, "sdk", "dotnet", "tests", "interop", "py_peer.py")], address);

    private static async Task<List<T>> All<T>(PerperStream stream)
    {
        var items = new List<T>();
        await foreach (T item in stream.EnumerateAsync<T>())
        {
            items.Add(item);
        }
        return items;
    }

    private static void AssertEchoed(object?[] echoed)
    {
        Assert.Equal(Sent.Length, echoed.Length);
        for (int i = 0; i < Sent.Length; i++)
        {
            Assert.Equal(Sent[i], echoed[i]);
            Assert.Equal(Sent[i]?.GetType(), echoed[i]?.GetType());
        }
    }

    [Fact]
    public async Task DotnetAndCppCallEachOtherWithEveryValueType()
    {
        await using var session = Session.Start(fabric.Address, "PyInterop", b => b.AddHandlers<PeerAgent>(), instance: "py");
        await using ChildAgent cpp = StartCpp(fabric.Address);
        var peer = new PerperInstance("CppInterop", "cpp");
        AssertEchoed(await peer.CallAsync<object?[]>("EchoAll", Sent));
        Assert.Equal((-7, 18000000000000000000UL, 1.5f), await peer.CallAsync<(int, ulong, float)>("Narrow"));
        var structure = new Dictionary<string, object?> { ["n"] = 1L << 53, ["ratio"] = 0.5, ["list"] = new object?[] { 1, "x", null, new[] { true } } };
        var echoed = await peer.CallAsync<Dictionary<string, object?>>("EchoStruct", structure);
        Assert.Equal(true, echoed["from_cpp"]);
        Assert.Equal(1L << 53, echoed["n"]);
        Assert.Equal(new List<object?> { 1L, "x", null, new List<object?> { true } }, echoed["list"]);
        // The reverse: C++ calls this process's PyInterop.Echo with every type and compares.
        Assert.Equal("ok", await peer.CallAsync<string>("CallPython"));
    }

    [Fact]
    public async Task DotnetAndCppShareStreamsBothWays()
    {
        await using var session = Session.Start(fabric.Address, "PyInterop", b => b.AddHandlers<PeerAgent>(), instance: "py");
        await using ChildAgent cpp = StartCpp(fabric.Address);
        var peer = new PerperInstance("CppInterop", "cpp");
        Assert.Equal([0L, 1L, 2L, 3L, 4L, 5L, 6L], await All<long>(await peer.CallAsync<PerperStream>("Count", 7L)));
        var received = new List<string>();
        PerperStream broken = await peer.CallAsync<PerperStream>("Broken");
        var failure = await Assert.ThrowsAsync<PerperStreamException>(async () =>
        {
            await foreach (string item in broken.EnumerateAsync<string>())
            {
                received.Add(item);
            }
        });
        Assert.Equal(["first"], received);
        Assert.Contains("the C++ producer broke", failure.Message);
        Assert.Equal("p.e.r.p.e.r.", await peer.CallAsync<string>("ConsumePython", "perper"));
    }

    [Fact]
    public async Task DotnetAndPythonCallEachOtherAndShareStreams()
    {
        await using var session = Session.Start(fabric.Address, "DotnetPeer", b => b.AddHandlers<PeerAgent>(), instance: "dotnet");
        await using ChildAgent python = StartPython(fabric.Address);
        var peer = new PerperInstance("PyPeer", "py");
        object?[] sent = [.. Sent];
        // Bounded: a peer that failed to start must fail the test, not hang it.
        AssertEchoed(await peer.CallAsync<object?[]>("EchoAll", sent).WaitAsync(TimeSpan.FromSeconds(60)));
        Assert.Equal("ok", await peer.CallAsync<string>("CallDotnet"));
        Assert.Equal([0L, 1L, 2L], await All<long>(await peer.CallAsync<PerperStream>("Count", 3L)));
        PerperStream broken = await peer.CallAsync<PerperStream>("Broken");
        var failure = await Assert.ThrowsAsync<PerperStreamException>(() => All<string>(broken));
        Assert.Contains("the Python producer broke", failure.Message);
        Assert.Equal("p.e.r.p.e.r.", await peer.CallAsync<string>("ConsumeDotnet", "perper"));
    }
}

/// <summary>An agent process of another SDK, stopped (SIGTERM) and checked for a clean exit when disposed.</summary>
public sealed class ChildAgent : IAsyncDisposable
{
    private readonly Process _process;
    private readonly System.Text.StringBuilder _output = new();

    public ChildAgent(string program, IEnumerable<string> args, string address, IDictionary<string, string>? env = null)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        if (address.Length > 0)
        {
            start.Environment["PERPER_FABRIC_ENDPOINT"] = address;
        }
        // The Python SDK as the build lays it out (the package with its generated stubs).
        start.Environment["PYTHONPATH"] = Path.Combine(Repository.BuildDir, "python");
        start.Environment["PYTHONUNBUFFERED"] = "1";
        foreach ((string key, string value) in env ?? new Dictionary<string, string>())
        {
            start.Environment[key] = value;
        }
        _process = Process.Start(start)!;
        _process.OutputDataReceived += (_, e) => Append(e.Data);
        _process.ErrorDataReceived += (_, e) => Append(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    private void Append(string? line)
    {
        if (line is not null)
        {
            lock (_output)
            {
                _output.AppendLine(line);
            }
        }
    }

    public string Output { get { lock (_output) { return _output.ToString(); } } }

    /// <summary>Waits for the process to exit by itself; returns its exit code.</summary>
    public async Task<int> WaitAsync(TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cancel.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"{_process.StartInfo.FileName} did not exit within {timeout.TotalSeconds} s:\n{Output}");
        }
        _exited = true;
        return _process.ExitCode;
    }

    /// <summary>SIGKILL, as a crash would.</summary>
    public void Kill()
    {
        _process.Kill();
        _process.WaitForExit();
        _killed = true;
    }

    private bool _exited;
    private bool _killed;

    public async ValueTask DisposeAsync()
    {
        if (_killed || _exited)
        {
            _process.Dispose();
            return;
        }
        if (!_process.HasExited)
        {
            Process.Start("kill", ["-TERM", _process.Id.ToString()])!.WaitForExit();
        }
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await _process.WaitForExitAsync(timeout.Token);
        int code = _process.ExitCode;
        _process.Dispose();
        Assert.True(code == 0, $"the agent exited with {code}:\n{Output}");
    }
}
