// SPDX-License-Identifier: MIT
using Perper.Extensions;
using Perper.Grpc2;
using Perper.Model;

namespace Perper;

/// <summary>
/// The ambient API: what a handler calls without passing objects around. Everything acts in the
/// <see cref="PerperContext"/> of the running code (an AsyncLocal set by the agent host for each
/// execution, or the default one outside handlers).
/// </summary>
public static class Context
{
    /// <summary>The instance the running handler belongs to (upstream's <c>PerperContext.Agent</c>).</summary>
    public static PerperInstance Agent => PerperContext.Current.Instance;

    /// <summary>The running execution's ID.</summary>
    public static string Execution => PerperContext.Current.Execution;

    /// <summary>Cancelled when the running execution is deleted.</summary>
    public static CancellationToken CancellationToken => PerperContext.Current.CancellationToken;

    /// <summary>The current instance's own dictionary (<c>"{instance}-"</c>).</summary>
    public static PerperDictionary State => new($"{Agent.Instance}-");

    /// <summary>The dictionary <paramref name="name"/>, or a new one (a fresh <c>"-{uuid}"</c> name).</summary>
    public static PerperDictionary Dictionary(string? name = null) => new(name ?? PerperContext.Current.NewId(""));

    /// <summary>The list <paramref name="name"/>, or a new one.</summary>
    public static PerperList List(string? name = null) => new(name ?? PerperContext.Current.NewId(""));

    /// <summary>Calls <paramref name="delegate"/> on the current instance.</summary>
    public static Task CallAsync(string @delegate, params object?[] args) => Agent.CallAsync(@delegate, args);

    /// <summary>Calls <paramref name="delegate"/> on the current instance and reads its result.</summary>
    public static Task<T> CallAsync<T>(string @delegate, params object?[] args) => Agent.CallAsync<T>(@delegate, args);

    /// <summary>Creates an instance of <paramref name="agent"/> (a child of the current one, so
    /// destroying the current one destroys it too) and calls its Start with <paramref name="args"/>.</summary>
    public static async Task<PerperInstance> StartAgentAsync(string agent, params object?[] args) =>
        (await PerperInstanceExtensions.StartAgentRawAsync(agent, args).ConfigureAwait(false)).Instance;

    /// <summary>As <see cref="StartAgentAsync"/>, also returning what Start returned.</summary>
    public static async Task<(PerperInstance Instance, T Result)> StartAgentAsync<T>(string agent, params object?[] args)
    {
        (PerperInstance instance, ExecutionsGetResultResponse start) = await PerperInstanceExtensions.StartAgentRawAsync(agent, args).ConfigureAwait(false);
        return (instance, (T)PerperValues.UnpackResults(start.Results, typeof(T))!);
    }

    /// <summary>A stream of the current instance's stream delegate <paramref name="delegate"/>,
    /// with the options it was registered with; <c>.StartAsync(args)</c> starts it.</summary>
    public static PerperStreamBuilder Stream(string @delegate) => new(PerperContext.Current, @delegate);

    /// <summary>A stream without a producer, written by whoever holds it.</summary>
    public static PerperStreamBuilder BlankStream() => new(PerperContext.Current, null);

    /// <summary>In a stream delegate: the progress of the stream it produces (a producer that
    /// runs again resumes from it).</summary>
    public static Task<PerperStreamProgress> StreamProgressAsync() => new PerperStream(Execution).GetProgressAsync();
}
