// SPDX-License-Identifier: MIT
using System.Net.Http;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Perper.Grpc2;

namespace Perper.Protocol;

/// <summary>
/// The Protocol layer: one process's connection to the Fabric, a gRPC channel per Fabric address
/// it has used and the grpc2 stubs of the address in use. <see cref="Default"/> is the process's
/// singleton (from <c>PERPER_FABRIC_ENDPOINT</c>); agent hosts, the ambient context and the model
/// objects all go through one.
/// </summary>
/// <remarks>
/// Unary calls go through <see cref="RetryAsync{T}"/>, which retries <c>UNAVAILABLE</c> with
/// exponential back-off (50 ms ×1.5 up to 2 s) for up to <see cref="RetryTimeout"/>, so a
/// restarting Fabric is waited for; with several addresses it moves to the next one after each
/// failure. Every request the SDK retries is safe to repeat: IDs are chosen by the client and the
/// Fabric accepts an identical retry of a create. Thread-safe.
/// </remarks>
public sealed class FabricService : IAsyncDisposable
{
    /// <summary>The address used when <c>PERPER_FABRIC_ENDPOINT</c> is not set.</summary>
    public const string DefaultEndpoint = "127.0.0.1:40400";
    /// <summary>The environment variable naming the Fabric's address (or a comma-separated list).</summary>
    public const string EndpointVariable = "PERPER_FABRIC_ENDPOINT";
    /// <summary>Pins the first address of a list (tests); otherwise it is the process ID modulo the count.</summary>
    public const string EndpointIndexVariable = "PERPER_FABRIC_ENDPOINT_INDEX";
    /// <summary>Formerly the SDK's own message cap (65 MiB). The channels now cap no message, as in
    /// the C++ and Python SDKs: the Fabric's limits apply (<c>--max-value-size</c>; docs/limits.md),
    /// so a Fabric that allows larger values needs no SDK setting.</summary>
    [Obsolete("The channels cap no message; the Fabric's limits apply.")]
    public const int MaxMessageBytes = 64 * 1024 * 1024 + 1024 * 1024;

    private static readonly Lock DefaultLock = new();
    private static FabricService? _default;

    private readonly Lock _lock = new();
    private readonly Dictionary<string, Stubs> _stubs = new();
    private int _index;
    private bool _disposed;

    /// <summary>Connects to <paramref name="endpoint"/> (one address or a comma-separated list;
    /// default: <c>PERPER_FABRIC_ENDPOINT</c>, else 127.0.0.1:40400). Channels open lazily.</summary>
    public FabricService(string? endpoint = null, ILogger? logger = null, int? startIndex = null)
    {
        string source = endpoint is null ? EndpointVariable : "endpoint";
        string value = endpoint ?? Environment.GetEnvironmentVariable(EndpointVariable) ?? "";
        Endpoints = ParseEndpoints(value.Length == 0 ? DefaultEndpoint : value, source);
        Logger = logger ?? NullLogger.Instance;
        _index = (startIndex ?? FirstIndex(Endpoints.Count)) % Endpoints.Count;
    }

    /// <summary>The process's FabricService, created from the environment on first use (or set
    /// with <see cref="SetDefault"/>).</summary>
    public static FabricService Default
    {
        get
        {
            lock (DefaultLock)
            {
                return _default ??= new FabricService();
            }
        }
    }

    /// <summary>Makes <paramref name="service"/> the process's singleton.</summary>
    public static void SetDefault(FabricService? service)
    {
        lock (DefaultLock)
        {
            _default = service;
        }
    }

    /// <summary>Every address of the Fabric, in order.</summary>
    public IReadOnlyList<string> Endpoints { get; }

    /// <summary>The address in use.</summary>
    public string Endpoint
    {
        get
        {
            lock (_lock)
            {
                return Endpoints[_index];
            }
        }
    }

    /// <summary>How long a unary call keeps retrying an unavailable Fabric.</summary>
    public TimeSpan RetryTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Where the SDK logs (reconnections, failed executions).</summary>
    public ILogger Logger { get; set; }

    /// <summary>FabricExecutions of the address in use.</summary>
    public FabricExecutions.FabricExecutionsClient Executions => Current.Executions;
    /// <summary>FabricInstances of the address in use.</summary>
    public FabricInstances.FabricInstancesClient Instances => Current.Instances;
    /// <summary>FabricStreams of the address in use.</summary>
    public FabricStreams.FabricStreamsClient Streams => Current.Streams;
    /// <summary>FabricStatesDictionary of the address in use.</summary>
    public FabricStatesDictionary.FabricStatesDictionaryClient Dictionaries => Current.Dictionaries;
    /// <summary>FabricStatesList of the address in use.</summary>
    public FabricStatesList.FabricStatesListClient Lists => Current.Lists;
    /// <summary>FabricIntrospection of the address in use.</summary>
    public FabricIntrospection.FabricIntrospectionClient Introspection => Current.Introspection;

    private Stubs Current
    {
        get
        {
            lock (_lock)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                string endpoint = Endpoints[_index];
                if (!_stubs.TryGetValue(endpoint, out Stubs? stubs))
                {
                    stubs = new Stubs(endpoint);
                    _stubs[endpoint] = stubs;
                }
                return stubs;
            }
        }
    }

    /// <summary>Splits a comma-separated address list, dropping <c>http://</c> prefixes and the
    /// whitespace around entries (as the C++ and Python SDKs do). An empty entry or an
    /// <c>https://</c> one (there is no TLS yet) is an <see cref="ArgumentException"/> naming
    /// <paramref name="source"/> and the value.</summary>
    public static IReadOnlyList<string> ParseEndpoints(string value, string source = EndpointVariable)
    {
        var endpoints = new List<string>();
        foreach (string entry in value.Split(','))
        {
            string endpoint = entry.Trim();
            if (endpoint.StartsWith("https://", StringComparison.Ordinal))
            {
                throw new ArgumentException($"{source} '{value}': {endpoint}: TLS is not supported yet");
            }
            foreach (string prefix in new[] { "http://", "dns:///" })
            {
                if (endpoint.StartsWith(prefix, StringComparison.Ordinal))
                {
                    endpoint = endpoint[prefix.Length..];
                }
            }
            endpoint = endpoint.TrimEnd('/');
            if (endpoint.Length == 0)
            {
                throw new ArgumentException($"{source} '{value}' has an empty address");
            }
            endpoints.Add(endpoint);
        }
        return endpoints;
    }

    private static int FirstIndex(int count)
    {
        string? pinned = Environment.GetEnvironmentVariable(EndpointIndexVariable);
        if (!string.IsNullOrEmpty(pinned))
        {
            if (!int.TryParse(pinned, out int index))
            {
                throw new ArgumentException($"{EndpointIndexVariable}: not an integer: '{pinned}'");
            }
            return ((index % count) + count) % count;
        }
        return Environment.ProcessId % count;
    }

    /// <summary>Tells whether an RPC failure means "the Fabric is not reachable right now".</summary>
    public static bool IsRetryable(Exception error) =>
        error is RpcException { StatusCode: StatusCode.Unavailable };

    /// <summary>Tells that a call to <paramref name="endpoint"/> found it unavailable: moves to the
    /// next address, unless another call has moved away from it already.</summary>
    public void MovedFrom(string endpoint)
    {
        lock (_lock)
        {
            if (Endpoints.Count == 1 || Endpoints[_index] != endpoint)
            {
                return;
            }
            _index = (_index + 1) % Endpoints.Count;
            Logger.LogWarning("Fabric {Old} unavailable; moving to {New}", endpoint, Endpoints[_index]);
        }
    }

    /// <summary>Calls a unary RPC (<paramref name="call"/> issues it on the stubs of this service),
    /// retrying <c>UNAVAILABLE</c> with back-off until <see cref="RetryTimeout"/> passes.</summary>
    public async Task<T> RetryAsync<T>(Func<CallOptions, AsyncUnaryCall<T>> call,
        CancellationToken cancellationToken = default)
    {
        DateTime giveUp = DateTime.UtcNow + RetryTimeout;
        var backoff = new Backoff();
        while (true)
        {
            string endpoint = Endpoint;
            try
            {
                using AsyncUnaryCall<T> pending = call(new CallOptions(cancellationToken: cancellationToken));
                return await pending.ResponseAsync.ConfigureAwait(false);
            }
            catch (RpcException e) when (IsRetryable(e) && DateTime.UtcNow < giveUp &&
                                         !cancellationToken.IsCancellationRequested)
            {
                if (Endpoints.Count == 1)
                {
                    Logger.LogDebug("Fabric {Endpoint} unavailable ({Detail}); retrying", endpoint, e.Status.Detail);
                }
                MovedFrom(endpoint);
            }
            await backoff.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Reads a server-streaming snapshot (dictionary or list items). <c>UNAVAILABLE</c>
    /// before the first response is retried as <see cref="RetryAsync{T}"/> does; after it the
    /// error is thrown, since a snapshot cannot be resumed.</summary>
    public async IAsyncEnumerable<T> SnapshotAsync<T>(Func<CallOptions, AsyncServerStreamingCall<T>> call,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        DateTime giveUp = DateTime.UtcNow + RetryTimeout;
        var backoff = new Backoff();
        while (true)
        {
            string endpoint = Endpoint;
            using AsyncServerStreamingCall<T> pending = call(new CallOptions(cancellationToken: cancellationToken));
            bool started = false;
            while (true)
            {
                T item;
                try
                {
                    if (!await pending.ResponseStream.MoveNext(cancellationToken).ConfigureAwait(false))
                    {
                        yield break;
                    }
                    item = pending.ResponseStream.Current;
                }
                catch (RpcException e) when (!started && IsRetryable(e) && DateTime.UtcNow < giveUp)
                {
                    MovedFrom(endpoint);
                    break;
                }
                started = true;
                yield return item;
            }
            await backoff.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Closes the channels; open calls end with CANCELLED.</summary>
    public ValueTask DisposeAsync()
    {
        List<Stubs> stubs;
        lock (_lock)
        {
            _disposed = true;
            stubs = _stubs.Values.ToList();
            _stubs.Clear();
        }
        foreach (Stubs s in stubs)
        {
            s.Channel.Dispose();
        }
        lock (DefaultLock)
        {
            if (ReferenceEquals(_default, this))
            {
                _default = null;
            }
        }
        return ValueTask.CompletedTask;
    }

    private sealed class Stubs
    {
        public Stubs(string endpoint)
        {
            Channel = GrpcChannel.ForAddress("http://" + endpoint, new GrpcChannelOptions
            {
                // No cap of the SDK's own (null): the Fabric's limits apply.
                MaxReceiveMessageSize = null,
                MaxSendMessageSize = null,
                HttpHandler = new SocketsHttpHandler
                {
                    EnableMultipleHttp2Connections = true,
                    ConnectTimeout = TimeSpan.FromSeconds(5),
                    KeepAlivePingDelay = TimeSpan.FromSeconds(20),
                    KeepAlivePingTimeout = TimeSpan.FromSeconds(10),
                    KeepAlivePingPolicy = HttpKeepAlivePingPolicy.WithActiveRequests,
                    PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
                },
            });
            Executions = new FabricExecutions.FabricExecutionsClient(Channel);
            Instances = new FabricInstances.FabricInstancesClient(Channel);
            Streams = new FabricStreams.FabricStreamsClient(Channel);
            Dictionaries = new FabricStatesDictionary.FabricStatesDictionaryClient(Channel);
            Lists = new FabricStatesList.FabricStatesListClient(Channel);
            Introspection = new FabricIntrospection.FabricIntrospectionClient(Channel);
        }

        public GrpcChannel Channel { get; }
        public FabricExecutions.FabricExecutionsClient Executions { get; }
        public FabricInstances.FabricInstancesClient Instances { get; }
        public FabricStreams.FabricStreamsClient Streams { get; }
        public FabricStatesDictionary.FabricStatesDictionaryClient Dictionaries { get; }
        public FabricStatesList.FabricStatesListClient Lists { get; }
        public FabricIntrospection.FabricIntrospectionClient Introspection { get; }
    }
}
