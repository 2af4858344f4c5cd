// SPDX-License-Identifier: MIT
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Perper.Application;
using Perper.Extensions;

namespace Perper.Tests;

public sealed class Greetings(string greeting)
{
    public string Greeting { get; } = greeting;
}

/// <summary>A handler class made per execution through the host's services.</summary>
public sealed class HostedAgent(Greetings greetings)
{
    public string Greet(string name) => $"{greetings.Greeting}, {name}!";

    [PerperHandler("Renamed")]
    public static string SomethingElse() => "renamed";

    [PerperIgnore]
    public static string Hidden() => "hidden";

    public static async Task<int> Deploy() => (await Context.CallAsync<string>("Greet", "host")) == "Hi, host!" ? 7 : 1;
}

public sealed class LimitedAgent
{
    private static int _inFlight;
    public static int MostInFlight;

    [PerperHandler(Concurrency = 2)]
    public static async Task<int> Slow(int x, CancellationToken cancellationToken)
    {
        int now = Interlocked.Increment(ref _inFlight);
        InterlockedMax(ref MostInFlight, now);
        await Task.Delay(20, cancellationToken);
        Interlocked.Decrement(ref _inFlight);
        return x;
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int seen;
        while ((seen = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, seen) != seen)
        {
        }
    }
}

public sealed class ApplicationTests(FabricFixture fabric) : IClassFixture<FabricFixture>
{
    [Fact]
    public async Task AGenericHostRunsTheAgentWithInjectedHandlersAndStopsAfterDeploy()
    {
        using IHost host = Host.CreateDefaultBuilder()
            .ConfigureServices(s => s.AddSingleton(new Greetings("Hi")))
            .ConfigurePerper(p => p.AddHandlers<HostedAgent>().WithEndpoint(fabric.Address).StopAfterDeploy())
            .Build();
        int before = Environment.ExitCode;
        await host.RunAsync().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(7, Environment.ExitCode);  // what Deploy returned
        Environment.ExitCode = before;
    }

    [Fact]
    public void HandlerNamesFollowTheAttributes()
    {
        string[] names = HandlerMethod.FromType(typeof(HostedAgent)).Select(h => h.Name).Order().ToArray();
        Assert.Equal(["Deploy", "Greet", "Renamed"], names);
    }

    [Fact]
    public async Task AHandlersConcurrencyLimitsItsExecutionsInFlight()
    {
        await using var session = Session.Start(fabric.Address, "Limited", b => b.AddHandlers<LimitedAgent>());
        int[] results = await Task.WhenAll(Enumerable.Range(0, 20).Select(i => Context.CallAsync<int>("Slow", i)));
        Assert.Equal(Enumerable.Range(0, 20), results);
        Assert.InRange(LimitedAgent.MostInFlight, 1, 2);
    }
}
