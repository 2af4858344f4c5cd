// SPDX-License-Identifier: MIT
using Perper.Application;
using Perper.Extensions;
using Perper.Grpc2;
using Perper.Model;

namespace Perper.Tests;

public sealed class RerunAgent
{
    public static int InnerRuns;
    public static TaskCompletionSource FirstRunWaiting = new(TaskCreationOptions.RunContinuationsAsynchronously);
    public static bool Block = true;

    public static int Inner(int x)
    {
        Interlocked.Increment(ref InnerRuns);
        return x + 1;
    }

    public static async Task<int> Outer(int x, CancellationToken cancellationToken)
    {
        int inner = await Context.CallAsync<int>("Inner", x);
        if (Block)
        {
            FirstRunWaiting.TrySetResult();
            await Task.Delay(Timeout.Infinite, cancellationToken);  // the process "dies" here
        }
        return inner * 10;
    }
}

public sealed class KeptCallsTests(FabricFixture fabric) : IClassFixture<FabricFixture>
{
    [Fact]
    public async Task AReRunGetsTheStoredResultOfItsCallsWhichGoOnceItCompletes()
    {
        const string agent = "Rerun";
        await using var driver = Session.Start(fabric.Address, "RerunDriver");
        var outer = new ExecutionsCreateRequest
        {
            Execution = new PerperExecution("Outer-fixed"), Instance = new PerperInstance(agent, "r"), Delegate = "Outer",
            Arguments = { PerperValues.Pack(4) },
        };
        PerperAgentHost first = new PerperBuilder(agent).WithEndpoint(fabric.Address).AddHandlers<RerunAgent>().Build();
        await first.StartAsync();
        await driver.Host.Fabric.Executions.CreateAsync(outer);
        await RerunAgent.FirstRunWaiting.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await first.StopAsync();  // Outer is cancelled unfinished: the Fabric hands it out again

        RerunAgent.Block = false;
        await using PerperAgentHost second = new PerperBuilder(agent).WithEndpoint(fabric.Address).AddHandlers<RerunAgent>().Build();
        await second.StartAsync();
        ExecutionsGetResultResponse result = await driver.Host.Fabric.Executions.GetResultAsync(
            new ExecutionsGetResultRequest { Execution = outer.Execution });
        Assert.Equal(50, PerperValues.Unpack<int>(result.Results[0]));
        Assert.Equal(1, RerunAgent.InnerRuns);  // the re-run found Inner's stored result

        // Once Outer has completed, the call it kept is deleted.
        await Wait.UntilAsync(async () =>
        {
            IntrospectionListExecutionsResponse listing = await driver.Host.Fabric.Introspection.ListExecutionsAsync(
                new IntrospectionListExecutionsRequest { Agent = agent, Delegate = "Inner", IncludeFinished = true });
            return listing.Executions.Count == 0;
        }, TimeSpan.FromSeconds(10), "the kept call is deleted");
    }
}
