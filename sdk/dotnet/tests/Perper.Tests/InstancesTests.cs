// SPDX-License-Identifier: MIT
using System.Collections.Concurrent;
using Perper.Application;
using Perper.Extensions;
using Perper.Model;

namespace Perper.Tests;

public sealed class CounterAgent
{
    public static readonly ConcurrentQueue<string> Events = new();

    public static void Init() => Events.Enqueue($"init {Context.Agent.Instance}");

    public static async Task<string> Start(long initial, bool withChild = false)
    {
        await Context.State.SetAsync("count", initial);
        if (withChild)
        {
            PerperInstance child = await Context.StartAgentAsync("Counter", 100L);
            await Context.State.SetAsync("child", child);
        }
        Events.Enqueue($"start {Context.Agent.Instance}");
        return $"started at {initial}";
    }

    public static Task<long> Increment() => Context.State.UpdateAsync<long>("count", x => x + 1);

    public static Task<PerperInstance> Child() => Context.State.GetOrDefaultAsync<PerperInstance>("child");

    public static void Stop() => Events.Enqueue($"stop {Context.Agent.Instance}");
}

public sealed class InstancesTests(FabricFixture fabric) : IClassFixture<FabricFixture>
{
    [Fact]
    public async Task InstancesStartServeAndAreDestroyedWithTheirChildren()
    {
        PerperAgentHost counters = new PerperBuilder("Counter").WithEndpoint(fabric.Address).AddHandlers<CounterAgent>().Build();
        await counters.StartAsync();
        await using var _ = counters;
        await using var session = Session.Start(fabric.Address, "Instances1");

        (PerperInstance parent, string started) = await Context.StartAgentAsync<string>("Counter", 5L, true);
        Assert.Equal("started at 5", started);
        Assert.StartsWith("Run-", parent.Instance);
        Assert.Equal(6L, await parent.CallAsync<long>("Increment"));
        Assert.Equal(7L, await parent.CallAsync<long>("Increment"));
        PerperInstance child = await parent.CallAsync<PerperInstance>("Child");
        Assert.Equal(101L, await child.CallAsync<long>("Increment"));

        await parent.DestroyAsync();
        // Stop of the parent, then of its child; Init ran once per instance, before Start.
        string[] events = CounterAgent.Events.Where(e => e.EndsWith(parent.Instance) || e.EndsWith(child.Instance)).ToArray();
        Assert.Equal([$"init {parent.Instance}", $"init {child.Instance}", $"start {child.Instance}", $"start {parent.Instance}",
                      $"stop {parent.Instance}", $"stop {child.Instance}"], events);
        // Destroyed instances' state is gone.
        Assert.Equal((false, 0L), await new PerperDictionary($"{parent.Instance}-").TryGetAsync<long>("count"));
    }
}
