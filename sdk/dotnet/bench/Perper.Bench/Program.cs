// SPDX-License-Identifier: MIT
// B1 calls into a .NET agent beside the C++ SDK's agent, in one run, on one Fabric.
//
//   dotnet run -c Release --project sdk/dotnet/bench/Perper.Bench -- [--calls N] [--fabric BINARY]
//       [--cpp-agent BINARY] [--storage memory|rocksdb]
//
// Starts perper-fabric on a free loopback port, then for each agent, a process serving Add(a, b)
// (the C++ example `calculator`, agent Calculator; this program in agent mode, agent
// DotnetCalculator): N sequential calls (FabricInstances.Call from this .NET process, after a
// warm-up) for p50/p99, then 64 calls in flight for the rate. The caller is the same for both, so
// the ratio compares the agents.
using System.Diagnostics;
using Perper.Application;
using Perper.Extensions;
using Perper.Model;
using Perper.Protocol;

if (args.Length > 0 && args[0] == "agent")
{
    return await new PerperBuilder("DotnetCalculator").AddHandler("Add", (long a, long b) => a + b).RunAsync();
}

string root = FindRoot();
string fabricBinary = Option("--fabric", Path.Combine(root, "build", "apps", "perper-fabric"));
string cppAgent = Option("--cpp-agent", Path.Combine(root, "build", "examples", "cpp", "calculator"));
int calls = int.Parse(Option("--calls", "2000"));
string storage = Option("--storage", "memory");

string dir = Directory.CreateTempSubdirectory("perper-bench-dotnet-").FullName;
var fabricStart = new ProcessStartInfo(fabricBinary) { RedirectStandardError = true };
foreach (string arg in new[] { "--storage", storage, "--data-dir", Path.Combine(dir, "data"), "--listen", "127.0.0.1:0",
                               "--address-file", Path.Combine(dir, "address"), "--log-level", "warn" })
{
    fabricStart.ArgumentList.Add(arg);
}
using Process fabric = Process.Start(fabricStart)!;
string addressFile = Path.Combine(dir, "address");
for (var clock = Stopwatch.StartNew(); !(File.Exists(addressFile) && File.ReadAllText(addressFile).Trim().Length > 0); Thread.Sleep(10))
{
    if (clock.Elapsed > TimeSpan.FromSeconds(15) || fabric.HasExited)
    {
        throw new InvalidOperationException("perper-fabric did not start");
    }
}
string address = File.ReadAllText(addressFile).Trim();
await using var service = new FabricService(address);
using IDisposable _ = PerperContext.Enter(new PerperContext(service, new PerperInstance("bench", "bench"), "bench"));

Console.WriteLine($"B1 calls, {storage} storage, caller: .NET SDK (FabricInstances.Call); {calls} sequential calls, then {calls * 2} with 64 in flight");
Console.WriteLine($"{"agent",-22} {"p50 µs",8} {"p99 µs",8} {"mean µs",8} {"64 in flight/s",15}");
var rows = new List<(string Name, double P50)>();
foreach ((string name, string agent, string program, string[] arguments) in new[]
         {
             ("C++ SDK (calculator)", "Calculator", cppAgent, Array.Empty<string>()),
             (".NET SDK", "DotnetCalculator", "dotnet", new[] { typeof(Program).Assembly.Location, "agent" }),
         })
{
    var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
    foreach (string arg in arguments)
    {
        start.ArgumentList.Add(arg);
    }
    start.Environment["PERPER_FABRIC_ENDPOINT"] = address;
    using Process process = Process.Start(start)!;
    process.BeginOutputReadLine();
    process.BeginErrorReadLine();
    var instance = new PerperInstance(agent, agent);
    for (int i = 0; i < 500; i++)
    {
        await instance.CallAsync<long>("Add", (long)i, 1L);  // warm-up (and the agent is up)
    }
    var latencies = new double[calls];
    for (int i = 0; i < calls; i++)
    {
        long before = Stopwatch.GetTimestamp();
        await instance.CallAsync<long>("Add", (long)i, 1L);
        latencies[i] = Stopwatch.GetElapsedTime(before).TotalMicroseconds;
    }
    Array.Sort(latencies);
    int next = 0;
    var rate = Stopwatch.StartNew();
    await Task.WhenAll(Enumerable.Range(0, 64).Select(async _ =>
    {
        while (Interlocked.Increment(ref next) <= calls * 2)
        {
            await instance.CallAsync<long>("Add", 1L, 1L);
        }
    }));
    double perSecond = calls * 2 / rate.Elapsed.TotalSeconds;
    double p50 = latencies[calls / 2];
    Console.WriteLine($"{name,-22} {p50,8:F0} {latencies[calls * 99 / 100],8:F0} {latencies.Average(),8:F0} {perSecond,15:F0}");
    rows.Add((name, p50));
    process.Kill();
    process.WaitForExit();
}
Console.WriteLine($"sequential p50, .NET / C++: {rows[1].P50 / rows[0].P50:F2} (target <= 1.5)");
fabric.Kill();
fabric.WaitForExit();
Directory.Delete(dir, true);
return 0;

string Option(string name, string fallback)
{
    int index = Array.IndexOf(args, name);
    return index >= 0 && index + 1 < args.Length ? args[index + 1] : fallback;
}

static string FindRoot()
{
    string? dir = AppContext.BaseDirectory;
    while (dir is not null && !File.Exists(Path.Combine(dir, "proto", "perper", "grpc2", "model.proto")))
    {
        dir = Path.GetDirectoryName(dir);
    }
    return dir ?? Directory.GetCurrentDirectory();
}
