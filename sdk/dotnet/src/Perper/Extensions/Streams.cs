// SPDX-License-Identifier: MIT
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Perper.Grpc2;
using Perper.Model;
using Perper.Protocol;

namespace Perper.Extensions;

/// <summary>Reading and writing streams, as extension methods on the model's
/// <see cref="PerperStream"/>, acting through the ambient <see cref="PerperContext"/>.</summary>
public static class PerperStreamExtensions
{
    /// <summary>How many items a listen call asks the Fabric to pack into one response.</summary>
    public const int MaxItemsPerMessage = 256;
    /// <summary>The listener that keeps an action stream's producer running without a reader.</summary>
    public const string TriggerListener = "-trigger";

    /// <summary>The values of the stream's items, in key order, until it completes (see
    /// <see cref="EnumerateItemsAsync{T}"/>).</summary>
    public static async IAsyncEnumerable<T> EnumerateAsync<T>(this PerperStream stream, string? listener = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await foreach ((long _, T value) in stream.EnumerateItemsAsync<T>(listener, cancellationToken).ConfigureAwait(false))
        {
            yield return value;
        }
    }

    /// <summary>
    /// <c>(key, value)</c> of each item, in key order, until the stream completes; throws
    /// <see cref="PerperStreamException"/> when it completes with an error or is deleted.
    /// </summary>
    /// <remarks>
    /// Reading starts at the reference's <c>StartKey</c> (−1: only items written from now on).
    /// With <paramref name="listener"/>, the Fabric keeps a durable listener of that name: each
    /// item is acknowledged once the next one is asked for (on the same ListenItemsAndMove call,
    /// in the background), the last one when the enumeration ends or is disposed, and a later
    /// enumeration with the same name resumes at the last acknowledged item, delivered again
    /// (at-least-once). When the Fabric is unreachable the enumeration reconnects and goes on
    /// after the last item it delivered. The Fabric sends up to
    /// <see cref="MaxItemsPerMessage"/> items per message.
    /// </remarks>
    public static async IAsyncEnumerable<(long Key, T Value)> EnumerateItemsAsync<T>(this PerperStream stream,
        string? listener = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        PerperContext context = PerperContext.Current;
        FabricService fabric = context.Fabric;
        using CancellationTokenSource linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, context.CancellationToken);
        CancellationToken token = linked.Token;
        long startKey = stream.StartKey;
        bool fromLatest = stream.StartKey == PerperStream.LiveKey;
        long? lastKey = null;
        var backoff = new Backoff();
        bool named = !string.IsNullOrEmpty(listener);
        while (true)
        {
            var request = new StreamsListenItemsRequest
            {
                Stream = new PerperStream(stream.Stream, startKey, stream.Stride),
                ListenerName = listener ?? "",
                StartFromLatest = fromLatest,
                MaxItemsPerMessage = MaxItemsPerMessage,
            };
            string endpoint = fabric.Endpoint;
            using var callCancel = CancellationTokenSource.CreateLinkedTokenSource(token);
            AsyncDuplexStreamingCall<StreamsListenItemsAndMoveRequest, StreamsListenItemsResponse>? duplex = null;
            AsyncServerStreamingCall<StreamsListenItemsResponse>? server = null;
            Acks? acks = null;
            IAsyncStreamReader<StreamsListenItemsResponse> responses;
            if (named)
            {
                duplex = fabric.Streams.ListenItemsAndMove(cancellationToken: callCancel.Token);
                responses = duplex.ResponseStream;
                acks = new Acks(fabric, duplex.RequestStream, stream, listener!);
            }
            else
            {
                server = fabric.Streams.ListenItems(request, cancellationToken: callCancel.Token);
                responses = server.ResponseStream;
            }
            bool finished = false;
            long? given = null;
            try
            {
                if (duplex is not null)
                {
                    await duplex.RequestStream.WriteAsync(new StreamsListenItemsAndMoveRequest { Listen = request }, token).ConfigureAwait(false);
                }
                while (true)
                {
                    StreamsListenItemsResponse message;
                    RpcException? failure = null;
                    try
                    {
                        if (!await responses.MoveNext(token).ConfigureAwait(false))
                        {
                            finished = true;
                            break;
                        }
                        message = responses.Current;
                    }
                    catch (RpcException e) when (!token.IsCancellationRequested)
                    {
                        failure = e;
                        message = null!;
                    }
                    if (failure is not null)
                    {
                        if (!FabricService.IsRetryable(failure))
                        {
                            throw Failed(stream, failure);
                        }
                        fabric.MovedFrom(endpoint);
                        if (lastKey is long last)
                        {
                            startKey = named ? last : last + (stream.Stride == 0 ? 1 : stream.Stride);
                            fromLatest = false;
                        }
                        break;
                    }
                    backoff.Reset();
                    foreach ((long key, Any packed) in ItemsOf(message))
                    {
                        if (lastKey == key)
                        {
                            continue;  // the resumed item, delivered again after a reconnect
                        }
                        T value = PerperValues.Unpack<T>(packed);
                        given = key;
                        yield return (key, value);
                        lastKey = key;
                        acks?.Note(key);
                    }
                }
            }
            finally
            {
                callCancel.Cancel();
                if (acks is not null)
                {
                    if (given is long taken && given != lastKey)
                    {
                        acks.Note(taken);  // disposed while holding this item: the consumer took it
                    }
                    // The consumer finished or stopped early: store its last item, so that a new
                    // enumeration with the same listener resumes from it.
                    await acks.FinishAsync().ConfigureAwait(false);
                }
                duplex?.Dispose();
                server?.Dispose();
            }
            if (finished)
            {
                yield break;
            }
            await backoff.WaitAsync(token).ConfigureAwait(false);
        }
    }

    private static PerperException Failed(PerperStream stream, RpcException e) => e.StatusCode switch
    {
        StatusCode.Unknown or StatusCode.NotFound => new PerperStreamException(stream.Stream, e.Status.Detail),
        _ => new PerperException($"reading stream {stream.Stream} failed: {e.StatusCode}: {e.Status.Detail}", e),
    };

    private static IEnumerable<(long, Any)> ItemsOf(StreamsListenItemsResponse message)
    {
        if (message.Items.Count > 0)
        {
            return message.Items.Select(item => (item.Key, item.Value));
        }
        return [(message.Key, message.Value)];
    }

    /// <summary>Acknowledges a named listener's items on its ListenItemsAndMove call, from a
    /// background task that writes the latest noted key whenever its previous write is done (so
    /// acknowledgements never hold up the consumer, and items taken together share one).</summary>
    private sealed class Acks
    {
        private readonly FabricService _fabric;
        private readonly IClientStreamWriter<StreamsListenItemsAndMoveRequest> _writer;
        private readonly PerperStream _stream;
        private readonly string _listener;
        private readonly SemaphoreSlim _wake = new(0);
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _loop;
        private long _last;
        private bool _noted;

        public Acks(FabricService fabric, IClientStreamWriter<StreamsListenItemsAndMoveRequest> writer, PerperStream stream, string listener)
        {
            _fabric = fabric;
            _writer = writer;
            _stream = stream;
            _listener = listener;
            _loop = Task.Run(RunAsync);
        }

        public void Note(long key)
        {
            Volatile.Write(ref _last, key);
            _noted = true;
            if (_wake.CurrentCount == 0)
            {
                _wake.Release();
            }
        }

        private async Task RunAsync()
        {
            long? sent = null;
            try
            {
                while (true)
                {
                    await _wake.WaitAsync(_stop.Token).ConfigureAwait(false);
                    long key = Volatile.Read(ref _last);
                    if (sent == key)
                    {
                        continue;
                    }
                    sent = key;
                    await _writer.WriteAsync(new StreamsListenItemsAndMoveRequest { ReachedKey = key }, _stop.Token).ConfigureAwait(false);
                }
            }
            catch (Exception)
            {
                // The call ended (or the enumeration did): FinishAsync stores the last key.
            }
        }

        public async Task FinishAsync()
        {
            _stop.Cancel();
            try
            {
                await _loop.ConfigureAwait(false);
            }
            catch (Exception)
            {
                // Nothing to report: the loop only ends.
            }
            if (!_noted)
            {
                return;
            }
            var request = new StreamsMoveListenerRequest { Stream = _stream, ListenerName = _listener, ReachedKey = Volatile.Read(ref _last) };
            try
            {
                using var bounded = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                await _fabric.RetryAsync(o => _fabric.Streams.MoveListenerAsync(request, o), bounded.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is RpcException or OperationCanceledException)
            {
                // The stream is gone, or the Fabric for too long: the next run repeats (at-least-once).
            }
        }
    }

    /// <summary>Writes one item under a key the Fabric chooses (unpacked streams).</summary>
    public static Task WriteItemAsync(this PerperStream stream, object? value) =>
        WriteAsync(stream, new StreamsWriteItemRequest { Stream = stream, AutoKey = true, Value = PerperValues.Pack(value) });

    /// <summary>Writes one item under <paramref name="key"/>; rewriting a key with the same value
    /// is accepted (a replay), with another value is ALREADY_EXISTS.</summary>
    public static Task WriteItemAsync(this PerperStream stream, long key, object? value) =>
        WriteAsync(stream, new StreamsWriteItemRequest { Stream = stream, Key = key, Value = PerperValues.Pack(value) });

    private static async Task WriteAsync(PerperStream stream, StreamsWriteItemRequest request)
    {
        await PerperContext.UnaryAsync((fabric, o) => fabric.Streams.WriteItemAsync(request, o)).ConfigureAwait(false);
    }

    /// <summary>Completes the stream (with <paramref name="error"/>, if given): its readers end
    /// after its last item.</summary>
    public static async Task CompleteAsync(this PerperStream stream, string? error = null)
    {
        var request = new StreamsCompleteRequest { Stream = stream };
        if (error is not null)
        {
            request.Error = new PerperError { Message = PerperException.BoundedErrorText(error) };
        }
        await PerperContext.UnaryAsync((fabric, o) => fabric.Streams.CompleteAsync(request, o)).ConfigureAwait(false);
    }

    /// <summary>Returns once the stream has a listener.</summary>
    public static async Task WaitForListenerAsync(this PerperStream stream)
    {
        var request = new StreamsWaitForListenerRequest { Stream = stream };
        await PerperContext.UnaryAsync((fabric, o) => fabric.Streams.WaitForListenerAsync(request, o)).ConfigureAwait(false);
    }

    /// <summary>Deletes the stream, its items and its listeners.</summary>
    public static async Task DestroyAsync(this PerperStream stream)
    {
        var request = new StreamsDeleteRequest { Stream = stream };
        await PerperContext.UnaryAsync((fabric, o) => fabric.Streams.DeleteAsync(request, o)).ConfigureAwait(false);
    }

    /// <summary>Where the stream stands: what a producer that runs again needs to resume.</summary>
    public static async Task<PerperStreamProgress> GetProgressAsync(this PerperStream stream)
    {
        var request = new StreamsGetProgressRequest { Stream = stream };
        StreamsGetProgressResponse response = await PerperContext.UnaryAsync((fabric, o) => fabric.Streams.GetProgressAsync(request, o)).ConfigureAwait(false);
        return new PerperStreamProgress(response.HasItems ? response.LastKey : null, response.WrittenCount,
            response.Completed, response.Error?.Message);
    }

    /// <summary>Applies <paramref name="changes"/> (to one dictionary) and moves the named
    /// listener to <paramref name="key"/> as one operation that happens entirely or not at all
    /// (FabricStreams.Step): a consumer that steps each item accounts for it exactly once in the
    /// Fabric's state, however often it is restarted.</summary>
    public static async Task<PerperStepResult> StepAsync(this PerperStream stream, string listener, long key,
        PerperChanges? changes = null, long? expectedPosition = null)
    {
        var request = new StreamsStepRequest { Stream = stream, ListenerName = listener, ReachedKey = key };
        if (changes is { Operations.Count: > 0 })
        {
            request.Dictionary = changes.Dictionary;
            request.Operations.AddRange(changes.Operations);
        }
        if (expectedPosition is long position)
        {
            request.ExpectedPosition = position;
        }
        StreamsStepResponse response = await PerperContext.UnaryAsync((fabric, o) => fabric.Streams.StepAsync(request, o)).ConfigureAwait(false);
        return new PerperStepResult(response.Applied, response.AlreadyTaken, response.PositionMismatch, response.Position);
    }

    /// <summary>Creates the stream (idempotent) and, for an action stream, its trigger listener.</summary>
    internal static async Task CreateAsync(PerperContext context, PerperStream stream, PerperStreamOptions options)
    {
        var request = new StreamsCreateRequest { Stream = stream, Ephemeral = !options.Persistent };
        await PerperContext.UnaryAsync((fabric, o) => fabric.Streams.CreateAsync(request, o)).ConfigureAwait(false);
        if (options.Action)
        {
            var trigger = new StreamsMoveListenerRequest { Stream = stream, ListenerName = TriggerListener, ReachedKey = long.MaxValue };
            await PerperContext.UnaryAsync((fabric, o) => fabric.Streams.MoveListenerAsync(trigger, o)).ConfigureAwait(false);
        }
    }

    /// <summary>Starts the producer of <paramref name="stream"/>: the execution of the same ID
    /// on delegate <c>"{delegate}-stream"</c> of <paramref name="instance"/>, with arguments
    /// (stream, args…).</summary>
    internal static async Task StartProducerAsync(PerperContext context, PerperInstance instance, string @delegate,
        PerperStream stream, object?[] args)
    {
        var request = new ExecutionsCreateRequest
        {
            Execution = new PerperExecution(stream.Stream),
            Instance = instance,
            Delegate = @delegate + StreamSuffix,
            Arguments = { PerperValues.Pack(stream) },
        };
        request.Arguments.AddRange(PerperValues.PackAll(args));
        await PerperContext.UnaryAsync((fabric, o) => fabric.Executions.CreateAsync(request, o)).ConfigureAwait(false);
    }

    /// <summary>The suffix of a stream delegate's producer delegate.</summary>
    public const string StreamSuffix = "-stream";

    /// <summary>Writes the items of a producer in batches (FabricStreams.WriteItems) from a
    /// background task; <see cref="PutAsync"/> waits while 1024 items are queued.</summary>
    internal sealed class BatchWriter
    {
        private const int MaxBatch = 256;
        private readonly PerperContext _context;
        private readonly PerperStream _stream;
        private readonly Channel<(long? Key, Any Value)> _queue = Channel.CreateBounded<(long?, Any)>(4 * MaxBatch);
        private readonly Task _task;

        public BatchWriter(PerperContext context, PerperStream stream)
        {
            _context = context;
            _stream = stream;
            _task = Task.Run(RunAsync);
        }

        public async ValueTask PutAsync(long? key, Any value)
        {
            if (_task.IsFaulted)
            {
                await _task.ConfigureAwait(false);
            }
            try
            {
                await _queue.Writer.WriteAsync((key, value), _context.CancellationToken).ConfigureAwait(false);
            }
            catch (ChannelClosedException)
            {
                await _task.ConfigureAwait(false);
                throw;
            }
        }

        public async Task CloseAsync()
        {
            _queue.Writer.TryComplete();
            await _task.ConfigureAwait(false);
        }

        private async Task RunAsync()
        {
            try
            {
                var batch = new List<(long? Key, Any Value)>(MaxBatch);
                while (await _queue.Reader.WaitToReadAsync(_context.CancellationToken).ConfigureAwait(false))
                {
                    batch.Clear();
                    while (batch.Count < MaxBatch && _queue.Reader.TryRead(out (long? Key, Any Value) item))
                    {
                        batch.Add(item);
                    }
                    var request = new StreamsWriteItemsRequest { Stream = _stream };
                    foreach ((long? key, Any value) in batch)
                    {
                        var entry = new StreamsWriteItemsRequest.Types.Item { Value = value };
                        if (key is long k)
                        {
                            entry.Key = k;
                        }
                        else
                        {
                            entry.AutoKey = true;
                        }
                        request.Items.Add(entry);
                    }
                    await _context.Fabric.RetryAsync(o => _context.Fabric.Streams.WriteItemsAsync(request, o), _context.CancellationToken).ConfigureAwait(false);
                }
            }
            catch (Exception e)
            {
                _queue.Writer.TryComplete(e);
                throw;
            }
        }
    }
}

/// <summary>Configures, then creates and starts a stream (upstream's PerperStreamBuilder):
/// <c>await Perper.Context.Stream("Generator").Persistent().Packed().StartAsync(28)</c>.</summary>
public sealed class PerperStreamBuilder
{
    private readonly PerperContext _context;
    private readonly string? _delegate;
    private PerperStreamOptions _options;
    private bool _created;

    internal PerperStreamBuilder(PerperContext context, string? @delegate)
    {
        _context = context;
        _delegate = @delegate;
        _options = (@delegate is null ? null : context.StreamOptions?.StreamOptionsOf(@delegate)) ?? PerperStreamOptions.Default;
        string id = @delegate is null ? context.NewId("stream") : context.NewId(@delegate + PerperStreamExtensions.StreamSuffix);
        Stream = new PerperStream(id, 0, _options.Stride);
    }

    /// <summary>The stream's reference (reading from its first item), known before it starts.</summary>
    public PerperStream Stream { get; private set; }

    /// <summary>Keep the items (the default is ephemeral).</summary>
    public PerperStreamBuilder Persistent() => Configure(_options with { Persistent = true });
    /// <summary>Free items once every listener has passed them.</summary>
    public PerperStreamBuilder Ephemeral() => Configure(_options with { Persistent = false });
    /// <summary>Packed: keys 0, stride, 2·stride, … read in key order.</summary>
    public PerperStreamBuilder Packed(long stride = 1) => Configure(_options with { Stride = stride });
    /// <summary>The producer runs at once, without waiting for a listener.</summary>
    public PerperStreamBuilder Action() => Configure(_options with { Action = true });

    private PerperStreamBuilder Configure(PerperStreamOptions options)
    {
        if (_created)
        {
            throw new InvalidOperationException($"stream {Stream.Stream} is created already");
        }
        _options = options;
        Stream = new PerperStream(Stream.Stream, 0, options.Stride);
        return this;
    }

    /// <summary>Creates the stream without starting its producer, so its reference can be handed
    /// to others first (two streams that consume each other).</summary>
    public async Task<PerperStream> DeclareAsync()
    {
        if (!_created)
        {
            await PerperStreamExtensions.CreateAsync(_context, Stream, _options).ConfigureAwait(false);
            _created = true;
        }
        return Stream;
    }

    /// <summary>Creates the stream (unless declared) and starts its producer with
    /// <paramref name="args"/>; a blank stream (no delegate) is only created.</summary>
    public async Task<PerperStream> StartAsync(params object?[] args)
    {
        await DeclareAsync().ConfigureAwait(false);
        if (_delegate is not null)
        {
            await PerperStreamExtensions.StartProducerAsync(_context, _context.Instance, _delegate, Stream, args).ConfigureAwait(false);
        }
        return Stream;
    }
}
