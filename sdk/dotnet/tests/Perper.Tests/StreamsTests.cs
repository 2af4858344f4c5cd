// SPDX-License-Identifier: MIT
using System.Runtime.CompilerServices;
using Perper.Application;
using Perper.Extensions;
using Perper.Model;

namespace Perper.Tests;

public sealed class StreamsAgent
{
    public static async IAsyncEnumerable<int> Count(int n, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        for (int i = 0; i < n; i++)
        {
            await Task.Yield();
            yield return i;
        }
    }

    // Keyed items written out of order into a packed stream, read in key order.
    [PerperStreamOptions(Persistent = true, Packed = true)]
    public static async IAsyncEnumerable<(long, string)> Shuffled(int n)
    {
        for (int i = 0; i < n; i++)
        {
            await Task.Yield();
            long key = (i / 3 * 3) + ((i + 1) % 3);
            yield return (key < n ? key : i, $"m{(key < n ? key : i)}");
        }
    }

    [PerperStreamOptions(Persistent = true)]
    public static async IAsyncEnumerable<string> Broken()
    {
        await Task.Yield();
        yield return "first";
        throw new InvalidOperationException("the producer broke");
    }

    [PerperStreamOptions(Persistent = true)]
    public static async IAsyncEnumerable<long> Many(int n)
    {
        await Task.Yield();
        for (long i = 0; i < n; i++)
        {
            yield return i;
        }
    }

    // An action stream: runs without a reader, writes what it reads from its input, doubled.
    [PerperStreamOptions(Action = true, Persistent = true)]
    public static async IAsyncEnumerable<int> Doubler(PerperStream input)
    {
        await foreach (int x in input.EnumerateAsync<int>())
        {
            yield return 2 * x;
        }
    }
}

public sealed class StreamsTests(FabricFixture fabric) : IClassFixture<FabricFixture>
{
    private static async Task<List<T>> All<T>(IAsyncEnumerable<T> items)
    {
        var list = new List<T>();
        await foreach (T item in items)
        {
            list.Add(item);
        }
        return list;
    }

    [Fact]
    public async Task AStreamDelegateProducesUntilItCompletes()
    {
        await using var session = Session.Start(fabric.Address, "Streams1", b => b.AddHandlers<StreamsAgent>());
        PerperStream stream = await Context.Stream("Count").StartAsync(5);
        Assert.Equal([0, 1, 2, 3, 4], await All(stream.EnumerateAsync<int>()));
        // Calling the delegate (as another SDK would) returns the stream too.
        PerperStream called = await Context.CallAsync<PerperStream>("Count", 3);
        Assert.StartsWith("Count-stream-", called.Stream);
        Assert.Equal([0, 1, 2], await All(called.EnumerateAsync<int>()));
    }

    [Fact]
    public async Task APackedStreamIsReadInKeyOrder()
    {
        await using var session = Session.Start(fabric.Address, "Streams2", b => b.AddHandlers<StreamsAgent>());
        PerperStream stream = await Context.Stream("Shuffled").StartAsync(28);
        Assert.Equal(1, stream.Stride);
        List<(long Key, string Value)> items = await All(stream.EnumerateItemsAsync<string>());
        Assert.Equal(Enumerable.Range(0, 28).Select(k => ((long)k, $"m{k}")), items);
        // Replay from a key.
        Assert.Equal(["m25", "m26", "m27"], await All(stream.Replay(25).EnumerateAsync<string>()));
    }

    [Fact]
    public async Task AFailingProducerFailsItsReaders()
    {
        await using var session = Session.Start(fabric.Address, "Streams3", b => b.AddHandlers<StreamsAgent>());
        PerperStream stream = await Context.Stream("Broken").StartAsync();
        var received = new List<string>();
        var failure = await Assert.ThrowsAsync<PerperStreamException>(async () =>
        {
            await foreach (string item in stream.EnumerateAsync<string>())
            {
                received.Add(item);
            }
        });
        Assert.Equal(["first"], received);
        Assert.Contains("InvalidOperationException: the producer broke", failure.Message);
    }

    [Fact]
    public async Task ANamedListenerResumesWhereItStopped()
    {
        await using var session = Session.Start(fabric.Address, "Streams4", b => b.AddHandlers<StreamsAgent>());
        PerperStream stream = await Context.Stream("Many").StartAsync(1000);
        var first = new List<long>();
        await foreach (long item in stream.EnumerateAsync<long>("reader"))
        {
            first.Add(item);
            if (item == 99)
            {
                break;
            }
        }
        // The last item taken (99) is delivered again, then the rest: at-least-once, no gap.
        List<long> rest = await All(stream.EnumerateAsync<long>("reader"));
        Assert.Equal(Enumerable.Range(0, 100).Select(i => (long)i), first);
        Assert.Equal(Enumerable.Range(99, 901).Select(i => (long)i), rest);
        PerperStreamProgress progress = await stream.GetProgressAsync();
        Assert.Equal((1000UL, true, null), (progress.WrittenCount, progress.Completed, progress.Error));
        Assert.NotNull(progress.LastKey);  // an auto key: ticks
    }

    [Fact]
    public async Task BlankStreamsAndActionStreams()
    {
        await using var session = Session.Start(fabric.Address, "Streams5", b => b.AddHandlers<StreamsAgent>());
        PerperStream input = await Context.BlankStream().Persistent().StartAsync();
        PerperStream doubled = await Context.Stream("Doubler").StartAsync(input);
        for (int i = 1; i <= 3; i++)
        {
            await input.WriteItemAsync(i);
        }
        await input.CompleteAsync();
        // The action producer ran without a reader; its persistent stream replays from 0.
        Assert.Equal([2, 4, 6], await All(doubled.EnumerateAsync<int>()));
    }

    [Fact]
    public async Task AStepMovesAListenerWithStateChangesAtomically()
    {
        await using var session = Session.Start(fabric.Address, "Streams6", b => b.AddHandlers<StreamsAgent>());
        PerperStream stream = await Context.Stream("Many").StartAsync(10);
        PerperDictionary state = Context.State;
        await foreach ((long key, long value) in stream.EnumerateItemsAsync<long>("sum"))
        {
            long total = await state.GetOrDefaultAsync<long>("total");
            PerperStepResult step = await stream.StepAsync("sum", key, state.Changes().Set("total", total + value));
            Assert.True(step.Applied);
        }
        Assert.Equal(45L, await state.GetOrDefaultAsync<long>("total"));
        PerperStepResult again = await stream.StepAsync("sum", 3, state.Changes().Set("total", 0L));
        Assert.True(again.AlreadyTaken);
        Assert.Equal(45L, await state.GetOrDefaultAsync<long>("total"));
    }
}
