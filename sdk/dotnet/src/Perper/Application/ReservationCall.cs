// SPDX-License-Identifier: MIT
using Grpc.Core;
using Perper.Grpc2;

namespace Perper.Application;

/// <summary>
/// One open FabricExecutions.ListenAndReserve call, the process's one for every delegate: its
/// credits, and the completions that ride on it (<c>ExecutionsListenAndReserveRequest.completions</c>).
/// <see cref="Push"/> queues a completion and/or credits; one writer task, started once the first
/// message is written, sends whatever has accumulated as one message.
/// </summary>
/// <remarks>
/// There is no reply to a completion: it counts as applied once the Fabric has delivered an
/// execution that needed the credits of a later message (the Fabric reads a call's messages in
/// order and applies a message's completions before granting its credits). Until then it is
/// unconfirmed, and <see cref="Close"/> hands it back to be sent again with the unary Complete
/// (a repeat is answered FAILED_PRECONDITION or NOT_FOUND, which is ignored). Thread-safe.
/// </remarks>
internal sealed class ReservationCall
{
    private const int MaxMessageBytes = 4 * 1024 * 1024;
    private readonly Lock _lock = new();
    private readonly IClientStreamWriter<ExecutionsListenAndReserveRequest> _writer;
    private readonly SemaphoreSlim _wake = new(0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Queue<(long GrantedBefore, List<ExecutionsCompleteRequest> Completions)> _sent = new();
    private List<ExecutionsCompleteRequest> _queue = [];
    private long _granted;
    private long _delivered;
    private long _credits;
    private Task? _task;

    public ReservationCall(IClientStreamWriter<ExecutionsListenAndReserveRequest> writer, long credits)
    {
        _writer = writer;
        _granted = credits;
    }

    public bool Open { get; private set; } = true;

    public void StartWriter() => _task = Task.Run(WriteLoopAsync);

    /// <summary>Queues <paramref name="completion"/> (if any) and <paramref name="credits"/>;
    /// false, with nothing taken, once the call is closed (the completion goes by unary Complete,
    /// the credits to the next call).</summary>
    public bool Push(ExecutionsCompleteRequest? completion, long credits)
    {
        lock (_lock)
        {
            if (!Open)
            {
                return false;
            }
            if (completion is not null)
            {
                _queue.Add(completion);
            }
            _credits += credits;
        }
        _wake.Release();
        return true;
    }

    /// <summary>Counts a delivered execution; returns the executions whose completions are now
    /// known to be applied.</summary>
    public List<string> Delivered()
    {
        var confirmed = new List<string>();
        lock (_lock)
        {
            _delivered++;
            while (_sent.Count > 0 && _sent.Peek().GrantedBefore < _delivered)
            {
                confirmed.AddRange(_sent.Dequeue().Completions.Select(c => c.Execution.Execution));
            }
        }
        return confirmed;
    }

    /// <summary>Marks the call ended; returns the completions not known to be applied.</summary>
    public List<ExecutionsCompleteRequest> Close()
    {
        lock (_lock)
        {
            Open = false;
            _stop.Cancel();
            List<ExecutionsCompleteRequest> left = _sent.SelectMany(s => s.Completions).Concat(_queue).ToList();
            _sent.Clear();
            _queue = [];
            return left;
        }
    }

    private async Task WriteLoopAsync()
    {
        try
        {
            while (true)
            {
                await _wake.WaitAsync(_stop.Token).ConfigureAwait(false);
                while (true)
                {
                    var message = new ExecutionsListenAndReserveRequest();
                    lock (_lock)
                    {
                        if (_queue.Count == 0 && _credits == 0)
                        {
                            break;
                        }
                        int size = 0, taken = 0;
                        while (taken < _queue.Count && (taken == 0 || size + _queue[taken].CalculateSize() <= MaxMessageBytes))
                        {
                            size += _queue[taken].CalculateSize();
                            taken++;
                        }
                        List<ExecutionsCompleteRequest> batch = _queue.GetRange(0, taken);
                        _queue.RemoveRange(0, taken);
                        // Recorded before the write: if the write fails the call has ended, and
                        // Close hands these completions back.
                        _sent.Enqueue((_granted, batch));
                        _granted += _credits;
                        message.ReserveNext = (ulong)_credits;
                        _credits = 0;
                        message.Completions.AddRange(batch);
                    }
                    await _writer.WriteAsync(message, _stop.Token).ConfigureAwait(false);
                }
            }
        }
        catch (Exception)
        {
            // The call has ended (or is being closed); the listen loop reconnects.
        }
    }
}
