// SPDX-License-Identifier: MIT
using Perper.Model;

namespace Perper.Application;

/// <summary>Names a handler method's delegate (default: the method's name without an
/// <c>Async</c> suffix) and optionally limits how many of its executions run at once.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class PerperHandlerAttribute(string? name = null) : Attribute
{
    public string? Name { get; } = name;

    /// <summary>At most this many executions of this delegate run at once in one process (0: no
    /// limit of its own). A limit inside the process's concurrency, not beside it: executions of
    /// the delegate beyond it wait in the process, each holding one of the process's credits.</summary>
    public int Concurrency { get; set; }
}

/// <summary>Keeps a public method from becoming a delegate.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class PerperIgnoreAttribute : Attribute;

/// <summary>The options of the streams a stream delegate (a method returning
/// <c>IAsyncEnumerable&lt;T&gt;</c>) makes.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class PerperStreamOptionsAttribute : Attribute
{
    /// <summary>Keep the items (default: ephemeral, freed once every listener passed them).</summary>
    public bool Persistent { get; set; }
    /// <summary>Packed with stride 1 (unless <see cref="Stride"/> says otherwise).</summary>
    public bool Packed { get; set; }
    /// <summary>The packing stride (0: unpacked).</summary>
    public long Stride { get; set; }
    /// <summary>The producer starts at once, without waiting for a listener.</summary>
    public bool Action { get; set; }

    internal PerperStreamOptions ToOptions() => new(Persistent, Stride != 0 ? Stride : Packed ? 1 : 0, Action);
}
