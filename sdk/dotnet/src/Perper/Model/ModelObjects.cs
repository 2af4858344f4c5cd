// SPDX-License-Identifier: MIT
// The Model layer's objects are the perper.grpc2.model messages themselves (generated from
// proto/perper/grpc2/model.proto into this namespace); these partial declarations add the
// conveniences. A model object is a plain reference (IDs only): it travels as itself, as an
// argument, a result, a stream item or a state value.
namespace Perper.Model;

public sealed partial class PerperInstance
{
    /// <summary>A reference to the instance <paramref name="instance"/> of the agent type
    /// <paramref name="agent"/>.</summary>
    public PerperInstance(string agent, string instance) : this()
    {
        Agent = agent;
        Instance = instance;
    }
}

public sealed partial class PerperStream
{
    /// <summary>Where <see cref="StartKey"/> means "live: only items written from now on".</summary>
    public const long LiveKey = -1;

    /// <summary>A reference to the stream <paramref name="stream"/>, read from
    /// <paramref name="startKey"/> (<see cref="LiveKey"/>: live), packed with
    /// <paramref name="stride"/> (0: unpacked).</summary>
    public PerperStream(string stream, long startKey = LiveKey, long stride = 0) : this()
    {
        Stream = stream;
        StartKey = startKey;
        Stride = stride;
    }

    /// <summary>A reference that reads the stream from <paramref name="key"/> (inclusive).</summary>
    public PerperStream Replay(long key = 0) => new(Stream, key, Stride);

    /// <summary>A reference that reads only the items written from now on.</summary>
    public PerperStream Live() => new(Stream, LiveKey, Stride);
}

public sealed partial class PerperExecution
{
    public PerperExecution(string execution) : this()
    {
        Execution = execution;
    }
}

public sealed partial class PerperDictionary
{
    public PerperDictionary(string dictionary) : this()
    {
        Dictionary = dictionary;
    }
}

public sealed partial class PerperList
{
    public PerperList(string list) : this()
    {
        List = list;
    }
}

/// <summary>The options of the streams a stream delegate makes (upstream's
/// <c>[PerperStreamOptions]</c>).</summary>
/// <param name="Persistent">Keep the items (else: ephemeral, freed once every listener passed them).</param>
/// <param name="Stride">0: unpacked (keys chosen by the Fabric, or the producer's); else packed:
/// keys 0, stride, 2·stride, … read in key order.</param>
/// <param name="Action">The producer runs at once, without waiting for a listener.</param>
public sealed record PerperStreamOptions(bool Persistent = false, long Stride = 0, bool Action = false)
{
    /// <summary>An ephemeral, unpacked stream whose producer waits for a listener.</summary>
    public static PerperStreamOptions Default { get; } = new();
}

/// <summary>Where a stream stands (FabricStreams.GetProgress): the largest key ever written
/// (null before the first item), how many items were ever written (items an ephemeral stream has
/// freed still count; an identical rewrite does not) and whether it is completed.</summary>
public sealed record PerperStreamProgress(long? LastKey, ulong WrittenCount, bool Completed, string? Error);

/// <summary>What a step (FabricStreams.Step) did: <see cref="Applied"/>, or nothing because the
/// step was taken before (<see cref="AlreadyTaken"/>), the listener was elsewhere
/// (<see cref="PositionMismatch"/>) or, both false, a compare failed.</summary>
public sealed record PerperStepResult(bool Applied, bool AlreadyTaken, bool PositionMismatch, long Position);

/// <summary>Several results of a handler, however many (a tuple type fixes their number):
/// <c>return new PerperResults(a, b, c);</c></summary>
public sealed class PerperResults(params object?[] values)
{
    public IReadOnlyList<object?> Values { get; } = values;
}
