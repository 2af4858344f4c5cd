// SPDX-License-Identifier: MIT
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Perper.Grpc2;
using Perper.Model;
using Perper.Protocol;

namespace Perper.Extensions;

/// <summary>
/// The finished calls one run of an execution keeps, so that a re-run of that execution (after
/// its process died) gets their stored results instead of running the callees again.
/// </summary>
/// <remarks>
/// While the execution runs, the most recent <see cref="MaxKept"/> are kept: when a newer call
/// finishes beyond that, the oldest kept one is deleted. Once the Fabric has acknowledged the
/// execution's completion (<see cref="Release"/>), every kept call is deleted, and a call
/// finishing after that is deleted at once: a completed execution never runs again. Deletions
/// run in the background, best effort (a failure is logged at debug level, and the call then
/// stays until its instance is destroyed). The same rule as the C++ and Python SDKs. Thread-safe.
/// </remarks>
public sealed class KeptCalls(FabricService fabric)
{
    /// <summary>How many finished calls one running execution keeps (the most recent ones).</summary>
    public static int MaxKept { get; set; } = 1000;

    private readonly Lock _lock = new();
    private readonly Queue<string> _kept = new();
    private bool _released;

    /// <summary>The calls kept now.</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _kept.Count;
            }
        }
    }

    /// <summary>Keeps a finished call; deletes the oldest kept ones beyond <see cref="MaxKept"/>.</summary>
    public void Keep(string execution)
    {
        var excess = new List<string>();
        lock (_lock)
        {
            if (_released)
            {
                excess.Add(execution);
            }
            else
            {
                _kept.Enqueue(execution);
                while (_kept.Count > Math.Max(MaxKept, 0))
                {
                    excess.Add(_kept.Dequeue());
                }
            }
        }
        Delete(excess);
    }

    /// <summary>The execution has completed: deletes every kept call.</summary>
    public void Release()
    {
        List<string> calls;
        lock (_lock)
        {
            _released = true;
            calls = [.. _kept];
            _kept.Clear();
        }
        Delete(calls);
    }

    private void Delete(List<string> calls)
    {
        if (calls.Count == 0)
        {
            return;
        }
        _ = Task.Run(async () =>
        {
            foreach (string call in calls)
            {
                var request = new ExecutionsDeleteRequest { Execution = new PerperExecution(call) };
                try
                {
                    using var bounded = new CancellationTokenSource(fabric.RetryTimeout);
                    await fabric.RetryAsync(o => fabric.Executions.DeleteAsync(request, o), bounded.Token).ConfigureAwait(false);
                }
                catch (Exception e) when (e is RpcException or OperationCanceledException or ObjectDisposedException)
                {
                    fabric.Logger.LogDebug("delete of kept call {Call} failed: {Error}", call, e.Message);
                }
            }
        });
    }
}
