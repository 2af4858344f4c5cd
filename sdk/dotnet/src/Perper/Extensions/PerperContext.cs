// SPDX-License-Identifier: MIT
using System.Security.Cryptography;
using System.Text;
using Perper.Model;
using Perper.Protocol;

namespace Perper.Extensions;

/// <summary>
/// What the running code acts in: the connection, its instance, its execution and that
/// execution's cancellation. Carried through async code by an <see cref="AsyncLocal{T}"/>, so a
/// handler calls <c>Perper.Context.CallAsync(...)</c> without passing objects around, and
/// concurrent executions never see each other's.
/// </summary>
public sealed class PerperContext
{
    private static readonly AsyncLocal<PerperContext?> Ambient = new();
    private static PerperContext? _default;
    private int _idCount;

    /// <summary>A context for the instance <paramref name="instance"/> on
    /// <paramref name="fabric"/>. With <paramref name="deriveIds"/>, the IDs made in it are
    /// derived from <paramref name="execution"/> (see <see cref="NewId"/>).</summary>
    public PerperContext(FabricService fabric, PerperInstance instance, string execution,
        CancellationToken cancellationToken = default, bool deriveIds = false, IStreamOptionsSource? streamOptions = null,
        KeptCalls? keptCalls = null)
    {
        KeptCalls = keptCalls;
        Fabric = fabric;
        Instance = instance;
        Execution = execution;
        CancellationToken = cancellationToken;
        DerivesIds = deriveIds;
        StreamOptions = streamOptions;
    }

    public FabricService Fabric { get; }
    /// <summary>The instance the running code belongs to.</summary>
    public PerperInstance Instance { get; }
    /// <summary>The running execution's ID.</summary>
    public string Execution { get; }
    /// <summary>Cancelled when the running execution is deleted (or its process stops).</summary>
    public CancellationToken CancellationToken { get; }
    /// <summary>Whether IDs made here are derived from the execution's ID.</summary>
    public bool DerivesIds { get; }
    /// <summary>The stream options of the delegates the process serves (for <c>Perper.Context.Stream</c>).</summary>
    public IStreamOptionsSource? StreamOptions { get; }

    /// <summary>Set in a real execution (one the Fabric handed out, or a recorded Deploy): the
    /// finished calls it keeps for a re-run of itself.</summary>
    public KeptCalls? KeptCalls { get; }

    /// <summary>The context of the running code, or the default one, or null.</summary>
    public static PerperContext? CurrentOrNull => Ambient.Value ?? _default;

    /// <summary>The context of the running code (or the default one).</summary>
    public static PerperContext Current => CurrentOrNull ?? throw new PerperException(
        "no Perper context: call this from a handler run by a Perper agent host, or set one with PerperContext.Enter or PerperContext.SetDefault");

    /// <summary>Makes <paramref name="context"/> the context of the calling code and what it
    /// awaits, until the returned object is disposed.</summary>
    public static IDisposable Enter(PerperContext context)
    {
        PerperContext? previous = Ambient.Value;
        Ambient.Value = context;
        return new Restore(previous);
    }

    /// <summary>Sets the context used where none is set (a test driver, a REPL).</summary>
    public static void SetDefault(PerperContext? context) => _default = context;

    /// <summary>A fresh ID <c>"{prefix}-{uuid}"</c> (the upstream convention). Where IDs are
    /// derived, the n-th ID (n = 1, 2, …) has as uuid the first 16 bytes of
    /// SHA-256(<c>"{execution}\n{n}"</c>), formatted 8-4-4-4-12 (the same in every Perper SDK), so
    /// a re-run of the execution makes the same IDs and finds what the first run made. Elsewhere
    /// the uuid is random.</summary>
    public string NewId(string prefix)
    {
        if (!DerivesIds)
        {
            return $"{prefix}-{Guid.NewGuid()}";
        }
        int n = Interlocked.Increment(ref _idCount);
        byte[] digest = SHA256.HashData(Encoding.UTF8.GetBytes($"{Execution}\n{n}"));
        string hex = Convert.ToHexStringLower(digest, 0, 16);
        return $"{prefix}-{hex[..8]}-{hex[8..12]}-{hex[12..16]}-{hex[16..20]}-{hex[20..32]}";
    }

    /// <summary>Calls a unary RPC on the current context's connection, with retries, cancelled
    /// with the running execution.</summary>
    internal static Task<T> UnaryAsync<T>(Func<FabricService, Grpc.Core.CallOptions, Grpc.Core.AsyncUnaryCall<T>> call)
    {
        PerperContext context = Current;
        return context.Fabric.RetryAsync(o => call(context.Fabric, o), context.CancellationToken);
    }

    private sealed class Restore(PerperContext? previous) : IDisposable
    {
        public void Dispose() => Ambient.Value = previous;
    }
}

/// <summary>Tells the stream options a delegate was registered with (the agent host).</summary>
public interface IStreamOptionsSource
{
    /// <summary>The options of the stream delegate <paramref name="delegate"/>, or null.</summary>
    PerperStreamOptions? StreamOptionsOf(string @delegate);
}
