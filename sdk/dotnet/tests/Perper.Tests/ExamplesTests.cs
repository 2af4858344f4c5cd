// SPDX-License-Identifier: MIT
using System.Text.RegularExpressions;

namespace Perper.Tests;

/// <summary>The C# examples (examples/dotnet) run as .NET agent processes: under `perper up`
/// with their manifests (examples/apps/*-dotnet.yaml), and the running sums with a kill and
/// restart of the program and its durable Fabric.</summary>
public sealed class ExamplesTests
{
    private static string PerperBinary => Environment.GetEnvironmentVariable("PERPER_BINARY") is { Length: > 0 } binary
        ? binary : Path.Combine(Repository.BuildDir, "apps", "perper");

    private static string Example(string name) => Path.Combine(Repository.Root, "examples", "dotnet", "bin", name, name + ".dll");

    /// <summary>Runs `perper up` on a manifest; returns (exit code, the processes' lines without
    /// their prefixes, everything printed).</summary>
    private static async Task<(int Code, List<string> Lines, string Output)> UpAsync(string manifest, params string[] env)
    {
        var environment = env.Select(e => e.Split('=', 2)).ToDictionary(e => e[0], e => e[1]);
        await using var up = new ChildAgent(PerperBinary, ["up", Path.Combine(Repository.Root, "examples", "apps", manifest)], "", environment);
        int code = await up.WaitAsync(TimeSpan.FromSeconds(90));
        string output = up.Output;
        List<string> lines = output.Split('\n').Select(l => Regex.Match(l, @"^\[agent=[^\]]*\] (.*)$"))
            .Where(m => m.Success).Select(m => m.Groups[1].Value).ToList();
        return (code, lines, output);
    }

    [Fact]
    public async Task HelloPrintsTheWholeMessageThroughAStreamAcrossTwoProcesses()
    {
        (int code, List<string> lines, string output) = await UpAsync("hello-dotnet.yaml", "HELLO_DELAY_MS=5");
        Assert.True(code == 0, output);
        Assert.Contains("Hello world from Deploy!", lines);
        Assert.Contains("Hello world from HelloWorldGenerator!", lines);
        Assert.Contains("Hello world from StreamPrinterAgent's StreamPrinter!", lines);
        Assert.Contains("Hello world through stream!", lines);
        Assert.Contains("StreamPrinter printed 27 characters", lines);
        Assert.Contains("[agent=StreamPrinterAgent instance=Run-", output);
    }

    [Fact]
    public async Task BasicSampleProcessesEveryItemInOrderAndExitsByItself()
    {
        (int code, List<string> lines, string output) = await UpAsync("basic-dotnet.yaml");
        Assert.True(code == 0, output);
        Assert.Equal(Enumerable.Range(0, 28).Select(k => $"Processing message {k}"), lines.Where(l => l.StartsWith("Processing ")));
        Assert.Equal(Enumerable.Range(0, 28), lines.Where(l => l.StartsWith("Generating ")).Select(l => int.Parse(l.Split(' ')[^1])).Order());
        Assert.True(lines.IndexOf("Generating message 1") < lines.IndexOf("Generating message 0"));
        Assert.Equal(["Received batch of 10 messages.", "Received batch of 10 messages.", "Received batch of 8 messages."],
            lines.Where(l => l.StartsWith("Received batch")));
        Assert.Contains(string.Join(",", Enumerable.Range(20, 8).Select(k => $"message {k}")), lines);
        Assert.Equal(Enumerable.Range(1, 9).Select(n => $"Node 2 received {n}."), lines.Where(l => l.StartsWith("Node 2")));
        Assert.Equal(Enumerable.Range(3, 9).Select(n => $"Node 1 received {n}."), lines.Where(l => l.StartsWith("Node 1")));
        Assert.Equal(2, lines.Count(l => Regex.IsMatch(l, @"^Random number: ([1-9]|[1-9][0-9])$")));
        Assert.Contains(lines, l => Regex.IsMatch(l, @"^Random numbers: \d+ \+ \d+$"));
        Assert.Contains("Params: 4", lines);
        Assert.Contains("DoSomething called: 123", lines);
        Assert.Contains("DoSomethingAsync called: 456", lines);
        Assert.Equal("Basic sample done.", lines[^1]);
    }

    [Fact]
    public async Task InstancesRoutesEveryCallToItsInstanceAndStopsBothProcesses()
    {
        (int code, List<string> lines, string output) = await UpAsync("instances-dotnet.yaml");
        Assert.True(code == 0, output);
        Assert.Equal(["Starting container-sample #1", "Started container-sample #1", "Starting container-sample #2",
                      "Started container-sample #2", "Test passed!", "Both agents destroyed!"], lines);
        Assert.Equal(2, Regex.Matches(output, @"\[agent=container-sample instance=Run-[^\]]*\] instance destroyed: stopping").Count);
    }

    [Fact]
    public async Task ARecordedDeployRunsOncePerFabric()
    {
        await using var fabric = new FabricProcess();
        var record = new Dictionary<string, string> { ["X_PERPER_RECORD_DEPLOY"] = "1" };
        var outputs = new List<string>();
        for (int run = 0; run < 2; run++)
        {
            await using var process = new ChildAgent("dotnet", [Example("BasicSample")], fabric.Address, record);
            Assert.Equal(0, await process.WaitAsync(TimeSpan.FromSeconds(60)));
            outputs.Add(process.Output);
        }
        Assert.Contains("Basic sample done.", outputs[0]);
        Assert.DoesNotContain("Deploy already ran", outputs[0]);
        Assert.DoesNotContain("Basic sample done.", outputs[1]);
        Assert.Contains("Deploy already ran on this Fabric (execution basic-sample-deploy-deploy)", outputs[1]);
    }

    [Fact]
    public async Task AProcessStartedForAnotherAgentRefusesToServe()
    {
        await using var process = new ChildAgent("dotnet", [Example("ContainerSample")], "127.0.0.1:1",
            new Dictionary<string, string> { ["X_PERPER_AGENT"] = "Sensor" });
        Assert.Equal(2, await process.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("perper: X_PERPER_AGENT is Sensor but this process serves agent container-sample", process.Output);
    }

    private static List<long> Sums(string output) =>
        output.Split('\n').Select(l => long.TryParse(l.Trim(), out long n) ? (long?)n : null).OfType<long>().ToList();

    // S3: kill -9 of the program and of its durable Fabric midway, then both restarted: the
    // output continues where it stopped (at-least-once at the boundary, never a gap).
    [Fact]
    public async Task RunningSumsContinueAfterAKillAndRestartOfFabricAndAgents()
    {
        string data = Directory.CreateTempSubdirectory("perper-dotnet-s3-").FullName;
        string listen = $"127.0.0.1:{Repository.FreePort()}";
        var expected = new List<long>();
        for (long i = 0, sum = 0; i < 100; i++)
        {
            expected.Add(sum += i);
        }
        var delay = new Dictionary<string, string> { ["MULTI_AGENT_DELAY_MS"] = "20" };
        List<long> before, after;
        var fabric = new FabricProcess(data, listen);
        try
        {
            var first = new ChildAgent("dotnet", [Example("MultiAgentSample")], fabric.Address, delay);
            await Wait.UntilAsync(() => Task.FromResult(Sums(first.Output).Count >= 20), TimeSpan.FromSeconds(60), "20 sums are printed");
            first.Kill();
            fabric.Kill();
            before = Sums(first.Output);
            await fabric.DisposeAsync();
            Assert.True(before.Count < expected.Count, "the kill came after the end; nothing was tested");

            fabric = new FabricProcess(data, listen);
            await using var second = new ChildAgent("dotnet", [Example("MultiAgentSample")], fabric.Address, delay);
            Assert.Equal(0, await second.WaitAsync(TimeSpan.FromSeconds(60)));
            after = Sums(second.Output);
        }
        finally
        {
            await fabric.DisposeAsync();
            Directory.Delete(data, true);
        }
        Assert.Equal(expected.Take(before.Count), before);
        Assert.NotEmpty(after);
        int start = expected.IndexOf(after[0]);
        Assert.True(start >= 0 && start <= before.Count, $"a gap: the first run stopped after {before[^1]}, the second began at {after[0]}");
        Assert.Equal(expected.Skip(start), after);
    }
}
