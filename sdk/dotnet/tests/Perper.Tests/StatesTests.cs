// SPDX-License-Identifier: MIT
using Perper.Extensions;
using Perper.Model;

namespace Perper.Tests;

public sealed class StatesTests(FabricFixture fabric) : IClassFixture<FabricFixture>
{
    /// <summary>The SDKs cap no message of their own (STYLE.md): the Fabric's
    /// <c>--max-value-size</c> decides, so a Fabric that allows 100 MiB values takes and returns
    /// a 70 MiB one.</summary>
    [Fact]
    public async Task AValueOver65MiBTravelsWhenTheFabricAllowsIt()
    {
        await using var large = new FabricProcess(["--storage", "memory", "--max-value-size", (100 << 20).ToString()]);
        await using var session = Session.Start(large.Address, "States3");
        byte[] huge = new byte[70 << 20];
        Array.Fill(huge, (byte)0x5a);
        PerperDictionary d = Context.Dictionary();
        await d.SetAsync("huge", huge);
        Assert.Equal(huge, await d.GetOrDefaultAsync<byte[]>("huge"));
    }

    [Fact]
    public async Task DictionaryOperations()
    {
        await using var session = Session.Start(fabric.Address, "States1");
        PerperDictionary d = Context.Dictionary();
        Assert.Equal((false, 0L), await d.TryGetAsync<long>("n"));
        Assert.True(await d.SetIfNotExistingAsync("n", 1L));
        Assert.False(await d.SetIfNotExistingAsync("n", 2L));
        Assert.False(await d.SetIfNotChangedAsync("n", 2L, 3L));
        Assert.False(await d.SetIfNotChangedAsync("n", 1, 3L));  // an int is not a long: bytes differ
        Assert.True(await d.SetIfNotChangedAsync("n", 1L, 3L));
        Assert.Equal((true, 3L), await d.TryGetAndReplaceAsync<long>("n", 4L));
        Assert.Equal(5L, await d.UpdateAsync<long>("n", x => x + 1));
        Assert.True(await d.ContainsKeyAsync("n"));
        await d.SetAsync("s", "text");
        await d.SetAsync(new Dictionary<string, object?> { ["b"] = 1, ["a"] = "x" }, "a struct key");
        Assert.Equal("a struct key", await d.GetOrDefaultAsync<string>(new Dictionary<string, object?> { ["a"] = "x", ["b"] = 1 }));
        Assert.Equal(3, await d.CountAsync());
        var keys = new List<object?>();
        await foreach ((object key, object value) in d.EnumerateItemsAsync<object, object>())
        {
            keys.Add(key is string ? key : "struct");
        }
        Assert.Equal(3, keys.Count);
        Assert.Equal((true, "text"), await d.TryGetAndRemoveAsync<string>("s"));
        Assert.False(await d.RemoveAsync("s"));
        Assert.True(await d.RemoveIfNotChangedAsync("n", 5L));
        await d.ClearAsync();
        Assert.Equal(0, await d.CountAsync());
        await d.DestroyAsync();
    }

    [Fact]
    public async Task ListOperations()
    {
        await using var session = Session.Start(fabric.Address, "States2");
        PerperList l = Context.List();
        await l.AddAsync("a", "b", "c");
        await l.PushFrontAsync("z");
        Assert.Equal(4, await l.CountAsync());
        Assert.Equal("z", await l.GetAtAsync<string>(0));
        Assert.Equal("c", await l.GetAtAsync<string>(-1));
        await l.SetAtAsync(1, "A");
        await l.InsertAtAsync(2, "i");
        var items = new List<string>();
        await foreach (string item in l.EnumerateAsync<string>())
        {
            items.Add(item);
        }
        Assert.Equal(["z", "A", "i", "b", "c"], items);
        Assert.Equal(2, await l.IndexOfAsync("i"));
        Assert.True(await l.RemoveAsync("i"));
        Assert.False(await l.ContainsAsync("i"));
        Assert.Equal((true, "c"), await l.PopAsync<string>());
        Assert.Equal((true, "z"), await l.DequeueAsync<string>());
        Assert.True(await l.RemoveAtAsync(0));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => l.GetAtAsync<string>(5));
        await l.ClearAsync();
        Assert.Equal((false, null), await l.PopAsync<string>());
        await l.DestroyAsync();
    }
}
