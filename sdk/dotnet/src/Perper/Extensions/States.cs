// SPDX-License-Identifier: MIT
using System.Runtime.CompilerServices;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Perper.Grpc2;
using Perper.Model;

namespace Perper.Extensions;

/// <summary>A batch of operations on one dictionary, applied together by
/// <see cref="PerperStreamExtensions.StepAsync"/>. Nothing is sent before the step.</summary>
public sealed class PerperChanges
{
    internal PerperChanges(PerperDictionary dictionary) => Dictionary = dictionary;

    public PerperDictionary Dictionary { get; }
    public List<StatesDictionaryOperateRequest> Operations { get; } = [];

    /// <summary>Sets <paramref name="key"/> to <paramref name="value"/> (null removes it).</summary>
    public PerperChanges Set(object key, object? value) => Add(new() { Key = PerperValues.Pack(key), SetNewValue = true, NewValue = PerperValues.Pack(value) });

    /// <summary>Removes <paramref name="key"/>.</summary>
    public PerperChanges Remove(object key) => Add(new() { Key = PerperValues.Pack(key), SetNewValue = true, NewValue = new Any() });

    /// <summary>Sets <paramref name="key"/> to <paramref name="value"/> if it holds
    /// <paramref name="expected"/> (null: absent); otherwise the whole step applies nothing.</summary>
    public PerperChanges CompareAndSet(object key, object? expected, object? value) => Add(new()
    {
        Key = PerperValues.Pack(key), SetNewValue = true, NewValue = PerperValues.Pack(value),
        CompareExistingValue = true, ExpectedExistingValue = PerperValues.Pack(expected),
    });

    private PerperChanges Add(StatesDictionaryOperateRequest operation)
    {
        Operations.Add(operation);
        return this;
    }
}

/// <summary>Dictionary operations (upstream's names), as extension methods on the model's
/// <see cref="PerperDictionary"/>. Keys and values follow the value table; comparisons are of
/// the packed bytes (an <c>int</c> 1 is not a <c>long</c> 1).</summary>
public static class PerperDictionaryExtensions
{
    private static async Task<StatesDictionaryOperateResponse> OperateAsync(PerperDictionary dictionary, object key,
        StatesDictionaryOperateRequest request)
    {
        request.Dictionary = dictionary;
        request.Key = PerperValues.Pack(key);
        return await PerperContext.UnaryAsync((fabric, o) => fabric.Dictionaries.OperateAsync(request, o)).ConfigureAwait(false);
    }

    private static (bool, T) Previous<T>(StatesDictionaryOperateResponse response) =>
        PerperValues.IsNull(response.PreviousValue) ? (false, default!) : (true, PerperValues.Unpack<T>(response.PreviousValue));

    /// <summary>Sets <paramref name="key"/> to <paramref name="value"/> (null removes it).</summary>
    public static Task SetAsync(this PerperDictionary dictionary, object key, object? value) =>
        OperateAsync(dictionary, key, new() { SetNewValue = true, NewValue = PerperValues.Pack(value) });

    /// <summary>(whether present, the value).</summary>
    public static async Task<(bool Exists, T Value)> TryGetAsync<T>(this PerperDictionary dictionary, object key) =>
        Previous<T>(await OperateAsync(dictionary, key, new() { GetExistingValue = true }).ConfigureAwait(false));

    /// <summary>The value, or <paramref name="default"/> when absent.</summary>
    public static async Task<T> GetOrDefaultAsync<T>(this PerperDictionary dictionary, object key, T @default = default!)
    {
        (bool exists, T value) = await dictionary.TryGetAsync<T>(key).ConfigureAwait(false);
        return exists ? value : @default;
    }

    /// <summary>Removes <paramref name="key"/>; tells whether it was present.</summary>
    public static async Task<bool> RemoveAsync(this PerperDictionary dictionary, object key) =>
        (await OperateAsync(dictionary, key, new() { SetNewValue = true, NewValue = new Any() }).ConfigureAwait(false)).OperationSuccessful;

    public static async Task<bool> ContainsKeyAsync(this PerperDictionary dictionary, object key) =>
        (await OperateAsync(dictionary, key, new()).ConfigureAwait(false)).OperationSuccessful;

    /// <summary>Compare-and-set: sets <paramref name="key"/> to <paramref name="value"/> only if
    /// it holds <paramref name="expected"/> (null: absent); tells whether it did.</summary>
    public static async Task<bool> SetIfNotChangedAsync(this PerperDictionary dictionary, object key, object? expected, object? value) =>
        (await OperateAsync(dictionary, key, new()
        {
            SetNewValue = true, NewValue = PerperValues.Pack(value),
            CompareExistingValue = true, ExpectedExistingValue = PerperValues.Pack(expected),
        }).ConfigureAwait(false)).OperationSuccessful;

    /// <summary>Put-if-absent; tells whether it set.</summary>
    public static Task<bool> SetIfNotExistingAsync(this PerperDictionary dictionary, object key, object? value) =>
        dictionary.SetIfNotChangedAsync(key, null, value);

    /// <summary>Removes <paramref name="key"/> only if it holds <paramref name="expected"/>.</summary>
    public static Task<bool> RemoveIfNotChangedAsync(this PerperDictionary dictionary, object key, object? expected) =>
        dictionary.SetIfNotChangedAsync(key, expected, null);

    /// <summary>Get-and-set: sets <paramref name="value"/> (null removes) and returns what was there.</summary>
    public static async Task<(bool Exists, T Value)> TryGetAndReplaceAsync<T>(this PerperDictionary dictionary, object key, object? value) =>
        Previous<T>(await OperateAsync(dictionary, key, new() { GetExistingValue = true, SetNewValue = true, NewValue = PerperValues.Pack(value) }).ConfigureAwait(false));

    /// <summary>Get-and-remove.</summary>
    public static Task<(bool Exists, T Value)> TryGetAndRemoveAsync<T>(this PerperDictionary dictionary, object key) =>
        dictionary.TryGetAndReplaceAsync<T>(key, null);

    /// <summary>Atomically replaces the value with <paramref name="update"/>(current or
    /// <paramref name="default"/>), retrying with compare-and-set; returns the new value.</summary>
    public static async Task<T> UpdateAsync<T>(this PerperDictionary dictionary, object key, Func<T, T> update, T @default = default!)
    {
        while (true)
        {
            StatesDictionaryOperateResponse current = await OperateAsync(dictionary, key, new() { GetExistingValue = true }).ConfigureAwait(false);
            bool exists = !PerperValues.IsNull(current.PreviousValue);
            T next = update(exists ? PerperValues.Unpack<T>(current.PreviousValue) : @default);
            StatesDictionaryOperateResponse set = await OperateAsync(dictionary, key, new()
            {
                SetNewValue = true, NewValue = PerperValues.Pack(next),
                CompareExistingValue = true, ExpectedExistingValue = exists ? current.PreviousValue : new Any(),
            }).ConfigureAwait(false);
            if (set.OperationSuccessful)
            {
                return next;
            }
        }
    }

    /// <summary>Every (key, value), in key byte order (a snapshot).</summary>
    public static async IAsyncEnumerable<(TKey Key, TValue Value)> EnumerateItemsAsync<TKey, TValue>(this PerperDictionary dictionary,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        PerperContext context = PerperContext.Current;
        var request = new StatesDictionaryListItemsRequest { Dictionary = dictionary };
        await foreach (StatesDictionaryListItemsResponse item in context.Fabric.SnapshotAsync(
                           o => context.Fabric.Dictionaries.ListItems(request, o), cancellationToken).ConfigureAwait(false))
        {
            yield return (PerperValues.Unpack<TKey>(item.Key), PerperValues.Unpack<TValue>(item.Value));
        }
    }

    public static async Task<int> CountAsync(this PerperDictionary dictionary)
    {
        var request = new StatesDictionaryCountItemsRequest { Dictionary = dictionary };
        return (await PerperContext.UnaryAsync((fabric, o) => fabric.Dictionaries.CountItemsAsync(request, o)).ConfigureAwait(false)).Count;
    }

    /// <summary>Removes every key.</summary>
    public static Task ClearAsync(this PerperDictionary dictionary) => DeleteAsync(dictionary, keepCache: true);

    /// <summary>Deletes the dictionary.</summary>
    public static Task DestroyAsync(this PerperDictionary dictionary) => DeleteAsync(dictionary, keepCache: false);

    private static async Task DeleteAsync(PerperDictionary dictionary, bool keepCache)
    {
        var request = new StatesDictionaryDeleteRequest { Dictionary = dictionary, KeepCache = keepCache };
        await PerperContext.UnaryAsync((fabric, o) => fabric.Dictionaries.DeleteAsync(request, o)).ConfigureAwait(false);
    }

    /// <summary>An empty batch of operations on this dictionary, for a stream step.</summary>
    public static PerperChanges Changes(this PerperDictionary dictionary) => new(dictionary);
}

/// <summary>List (deque) operations, as extension methods on the model's <see cref="PerperList"/>.
/// Positions past the end throw <see cref="ArgumentOutOfRangeException"/>.</summary>
public static class PerperListExtensions
{
    private static async Task<StatesListOperateResponse> OperateAsync(PerperList list, StatesListOperateRequest request)
    {
        request.List = list;
        try
        {
            return await PerperContext.UnaryAsync((fabric, o) => fabric.Lists.OperateAsync(request, o)).ConfigureAwait(false);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.OutOfRange)
        {
            throw new ArgumentOutOfRangeException(e.Status.Detail, e);
        }
    }

    private static (bool, T) First<T>(StatesListOperateResponse response) =>
        response.Values.Count == 0 ? (false, default!) : (true, PerperValues.Unpack<T>(response.Values[0]));

    /// <summary>Appends the items at the back, in order.</summary>
    public static Task AddAsync(this PerperList list, params object?[] items) =>
        OperateAsync(list, new() { AtBack = true, InsertValues = { PerperValues.PackAll(items) } });

    /// <summary>Inserts the items at the front, as a block in their order.</summary>
    public static Task PushFrontAsync(this PerperList list, params object?[] items) =>
        OperateAsync(list, new() { AtFront = true, InsertValues = { PerperValues.PackAll(items) } });

    /// <summary>Removes and returns the last item: (false, default) when empty.</summary>
    public static async Task<(bool Exists, T Value)> PopAsync<T>(this PerperList list) =>
        First<T>(await OperateAsync(list, new() { AtBack = true, ValuesCount = 1, GetValues = true, RemoveValues = true }).ConfigureAwait(false));

    /// <summary>Removes and returns the first item: (false, default) when empty.</summary>
    public static async Task<(bool Exists, T Value)> DequeueAsync<T>(this PerperList list) =>
        First<T>(await OperateAsync(list, new() { AtFront = true, ValuesCount = 1, GetValues = true, RemoveValues = true }).ConfigureAwait(false));

    /// <summary>Item <paramref name="index"/> (negative: from the back).</summary>
    public static async Task<T> GetAtAsync<T>(this PerperList list, int index)
    {
        var request = new StatesListOperateRequest { ValuesCount = 1, GetValues = true };
        if (index < 0)
        {
            request.IndexBackwards = (uint)(-index - 1);
        }
        else
        {
            request.Index = (uint)index;
        }
        (bool exists, T value) = First<T>(await OperateAsync(list, request).ConfigureAwait(false));
        return exists ? value : throw new ArgumentOutOfRangeException(nameof(index), $"index {index} is past the end of list {list.List}");
    }

    /// <summary>Replaces item <paramref name="index"/>.</summary>
    public static async Task SetAtAsync(this PerperList list, int index, object? value)
    {
        StatesListOperateResponse replaced = await OperateAsync(list, new()
        {
            Index = (uint)index, ValuesCount = 1, GetValues = true, RemoveValues = true, InsertValues = { PerperValues.Pack(value) },
        }).ConfigureAwait(false);
        if (replaced.Values.Count == 0)
        {
            await OperateAsync(list, new() { Index = (uint)index, ValuesCount = 1, RemoveValues = true }).ConfigureAwait(false);
            throw new ArgumentOutOfRangeException(nameof(index), $"index {index} is past the end of list {list.List}");
        }
    }

    /// <summary>Inserts <paramref name="value"/> before item <paramref name="index"/> (the count appends).</summary>
    public static Task InsertAtAsync(this PerperList list, int index, object? value) =>
        OperateAsync(list, new() { Index = (uint)index, InsertValues = { PerperValues.Pack(value) } });

    /// <summary>Removes item <paramref name="index"/>; tells whether there was one.</summary>
    public static async Task<bool> RemoveAtAsync(this PerperList list, int index) =>
        (await OperateAsync(list, new() { Index = (uint)index, ValuesCount = 1, GetValues = true, RemoveValues = true }).ConfigureAwait(false)).Values.Count > 0;

    /// <summary>The index of the first item equal to <paramref name="value"/> (packed bytes), or −1.</summary>
    public static async Task<int> IndexOfAsync(this PerperList list, object? value)
    {
        var request = new StatesListLocateRequest { List = list, Value = PerperValues.Pack(value) };
        StatesListLocateResponse response = await PerperContext.UnaryAsync((fabric, o) => fabric.Lists.LocateAsync(request, o)).ConfigureAwait(false);
        return response.Found ? (int)response.Index : -1;
    }

    public static async Task<bool> ContainsAsync(this PerperList list, object? value) => await list.IndexOfAsync(value).ConfigureAwait(false) >= 0;

    /// <summary>Removes the first item equal to <paramref name="value"/>; tells whether there was one.</summary>
    public static async Task<bool> RemoveAsync(this PerperList list, object? value)
    {
        int index = await list.IndexOfAsync(value).ConfigureAwait(false);
        return index >= 0 && await list.RemoveAtAsync(index).ConfigureAwait(false);
    }

    public static async Task<int> CountAsync(this PerperList list)
    {
        var request = new StatesListCountItemsRequest { List = list };
        return (int)(await PerperContext.UnaryAsync((fabric, o) => fabric.Lists.CountItemsAsync(request, o)).ConfigureAwait(false)).Count;
    }

    /// <summary>Every item in index order (a snapshot).</summary>
    public static async IAsyncEnumerable<T> EnumerateAsync<T>(this PerperList list, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        PerperContext context = PerperContext.Current;
        var request = new StatesListListItemsRequest { List = list };
        await foreach (StatesListListItemsResponse item in context.Fabric.SnapshotAsync(o => context.Fabric.Lists.ListItems(request, o), cancellationToken).ConfigureAwait(false))
        {
            yield return PerperValues.Unpack<T>(item.Value);
        }
    }

    public static Task ClearAsync(this PerperList list) => DeleteAsync(list, keepCache: true);

    public static Task DestroyAsync(this PerperList list) => DeleteAsync(list, keepCache: false);

    private static async Task DeleteAsync(PerperList list, bool keepCache)
    {
        var request = new StatesListDeleteRequest { List = list, KeepCache = keepCache };
        await PerperContext.UnaryAsync((fabric, o) => fabric.Lists.DeleteAsync(request, o)).ConfigureAwait(false);
    }
}
