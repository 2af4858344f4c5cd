// SPDX-License-Identifier: MIT
// The basic sample (scenario S1) in one agent process:
// - streams: a packed, persistent generator of 28 keyed items written out of order; a processor
//   reading it in key order and writing batches of 10 (and the final partial batch); an action
//   consumer printing each batch;
// - a cycle: Node1 and Node2 consume each other's streams until Node1 has received 11;
// - calls: random numbers, several results, a parameter count, a void call, an async call.
// The program exits once Deploy is done: every finite stream completes.
using Perper;
using Perper.Application;
using Perper.Extensions;
using Perper.Model;

return await new PerperBuilder("basic-sample").AddHandlers<BasicSample>().StopAfterDeploy().RunAsync();

public class BasicSample
{
    private const int Batch = 10;

    public static async Task Deploy()
    {
        // Streams.
        PerperStream messages = await Context.Stream("Generator").StartAsync(28);
        PerperStream batches = await Context.Stream("Processor").StartAsync(messages.Replay(0), Batch);
        PerperStream consumed = await Context.Stream("Consumer").StartAsync(batches);

        // The cycle: Node1's stream is declared first so that Node2 can be given it.
        PerperStreamBuilder node1 = Context.Stream("Node1");
        await node1.DeclareAsync();
        PerperStream node2 = await Context.Stream("Node2").StartAsync(node1.Stream);
        await node1.StartAsync(node2);

        // Calls.
        Console.WriteLine($"Random number: {await Context.CallAsync<int>("GetRandomNumber", 1, 100)}");
        Console.WriteLine($"Random number: {await Context.CallAsync<int>("GetRandomNumber", 1, 100)}");
        (int a, int b) = await Context.CallAsync<(int, int)>("GetTwoRandomNumbers", 1, 100);
        Console.WriteLine($"Random numbers: {a} + {b}");
        Console.WriteLine($"Params: {await Context.CallAsync<int>("CountParams", 1, "a", "b", "c")}");
        await Context.CallAsync("DoSomething", "123");
        await Context.CallAsync("DoSomethingAsync", "456");

        // Wait for the finite streams to complete.
        await foreach (object? _ in consumed.EnumerateAsync<object>()) { }
        await foreach (object? _ in node2.EnumerateAsync<object>()) { }
        Console.WriteLine("Basic sample done.");
    }

    [PerperStreamOptions(Persistent = true, Packed = true)]
    public static async IAsyncEnumerable<(long, string)> Generator(int count)
    {
        for (int i = 0; i < count; i++)
        {
            int key = (i / 3 * 3) + ((i + 1) % 3);  // 1, 2, 0, 4, 5, 3, ...
            key = key < count ? key : i;
            Console.WriteLine($"Generating message {key}");
            await Task.Delay(10);
            yield return (key, $"message {key}");
        }
    }

    public static async IAsyncEnumerable<string> Processor(PerperStream messages, int batchSize)
    {
        var batch = new List<string>();
        await foreach (string message in messages.EnumerateAsync<string>())
        {
            Console.WriteLine($"Processing {message}");
            batch.Add(message);
            if (batch.Count == batchSize)
            {
                yield return string.Join(",", batch);
                batch.Clear();
            }
        }
        if (batch.Count > 0)
        {
            yield return string.Join(",", batch);
        }
    }

    [PerperStreamOptions(Action = true)]
    public static async IAsyncEnumerable<string> Consumer(PerperStream batches)
    {
        await foreach (string batch in batches.EnumerateAsync<string>())
        {
            Console.WriteLine($"Received batch of {batch.Split(',').Length} messages.");
            Console.WriteLine(batch);
        }
        yield break;  // an action stream that produces nothing
    }

    public static async IAsyncEnumerable<int> Node1(PerperStream other)
    {
        yield return 1;
        await foreach (int n in other.EnumerateAsync<int>())
        {
            Console.WriteLine($"Node 1 received {n}.");
            if (n >= 11)
            {
                yield break;
            }
            yield return n - 1;
        }
    }

    [PerperStreamOptions(Action = true)]
    public static async IAsyncEnumerable<int> Node2(PerperStream other)
    {
        await foreach (int n in other.EnumerateAsync<int>())
        {
            Console.WriteLine($"Node 2 received {n}.");
            yield return n + 2;
        }
    }

    public static int GetRandomNumber(int low, int high) => Random.Shared.Next(low, high);

    public static (int, int) GetTwoRandomNumbers(int low, int high) => (Random.Shared.Next(low, high), Random.Shared.Next(low, high));

    public static int CountParams(object? first, params object?[] rest) => 1 + rest.Length;

    public static void DoSomething(string message) => Console.WriteLine($"DoSomething called: {message}");

    public static async Task DoSomethingAsync(string message)
    {
        await Task.Delay(10);
        Console.WriteLine($"DoSomethingAsync called: {message}");
    }
}
