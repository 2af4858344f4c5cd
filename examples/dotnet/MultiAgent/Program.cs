// SPDX-License-Identifier: MIT
// Multi-agent running sums (scenario S3): three agents in one process.
// - GeneratorAgent: its Start starts the persistent stream Generate of 0 .. n-1 (key i, value i).
// - ProcessorAgent: its Start starts the persistent stream Process of the running sums of its
//   input (key i, value 0+1+..+i).
// - MultiAgentSample: Deploy starts both (once: the processor's stream is kept in Deploy's state)
//   and prints the sums, read with the named listener "processor".
// Everything that must survive is in the Fabric: each producer resumes from its own stream's
// progress (its writes are keyed, so a rewrite is a replay). With a durable Fabric the program
// can be killed (with its Fabric) and started again: the output continues where it stopped, an
// item at the boundary possibly printed twice, none skipped.
//
// MULTI_AGENT_DELAY_MS sets the pause between generated numbers (default 50).
using Perper;
using Perper.Application;
using Perper.Extensions;
using Perper.Model;

// Three agent types, one host each, sharing the process's connection (FabricService.Default);
// the last one handles SIGINT/SIGTERM and decides the exit.
await using PerperAgentHost generator = new PerperBuilder("GeneratorAgent").AddHandlers<GeneratorAgent>().Build();
await using PerperAgentHost processor = new PerperBuilder("ProcessorAgent").AddHandlers<ProcessorAgent>().Build();
await generator.StartAsync();
await processor.StartAsync();
return await new PerperBuilder("MultiAgentSample").AddHandlers<MultiAgentSample>().StopAfterDeploy().RunAsync();

public class GeneratorAgent
{
    private static readonly int Delay = int.Parse(Environment.GetEnvironmentVariable("MULTI_AGENT_DELAY_MS") ?? "50");

    public static Task<PerperStream> Start(long count) => Context.Stream("Generate").StartAsync(count);

    [PerperStreamOptions(Persistent = true)]
    public static async IAsyncEnumerable<(long, long)> Generate(long count)
    {
        PerperStreamProgress progress = await Context.StreamProgressAsync();
        for (long i = (progress.LastKey ?? -1) + 1; i < count; i++)
        {
            await Task.Delay(Delay);
            yield return (i, i);
        }
    }
}

public class ProcessorAgent
{
    public static Task<PerperStream> Start(PerperStream input) => Context.Stream("Process").StartAsync(input);

    [PerperStreamOptions(Persistent = true)]
    public static async IAsyncEnumerable<(long, long)> Process(PerperStream input)
    {
        // Resume after the last sum written: it holds the accumulator.
        PerperStreamProgress progress = await Context.StreamProgressAsync();
        long accumulator = 0;
        if (progress.LastKey is long last)
        {
            await foreach (long sum in new PerperStream(Context.Execution, last).EnumerateAsync<long>())
            {
                accumulator = sum;
                break;
            }
        }
        await foreach ((long key, long value) in input.Replay((progress.LastKey ?? -1) + 1).EnumerateItemsAsync<long>())
        {
            accumulator += value;
            yield return (key, accumulator);
        }
    }
}

public class MultiAgentSample
{
    public static async Task Deploy()
    {
        PerperStream? sums = await Context.State.GetOrDefaultAsync<PerperStream?>("processor");
        if (sums is null)
        {
            (PerperInstance _, PerperStream numbers) = await Context.StartAgentAsync<PerperStream>("GeneratorAgent", 100L);
            (PerperInstance _, sums) = await Context.StartAgentAsync<PerperStream>("ProcessorAgent", numbers);
            await Context.State.SetAsync("processor", sums);
        }
        await foreach (long sum in sums.EnumerateAsync<long>("processor"))
        {
            Console.WriteLine(sum);
        }
    }
}
