// SPDX-License-Identifier: MIT
namespace Perper.Protocol;

/// <summary>Exponential back-off of retried unary calls, reservation calls and stream readers:
/// 50 ms growing ×1.5 up to 2 s, each delay within 20 % either side, as in the C++ and Python
/// SDKs (STYLE.md, "What the SDKs share"). Not thread-safe.</summary>
public sealed class Backoff
{
    private static readonly TimeSpan First = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan Maximum = TimeSpan.FromSeconds(2);
    private TimeSpan _next = First;

    /// <summary>Starts again from the first delay (after a success).</summary>
    public void Reset() => _next = First;

    /// <summary>Returns the next delay and grows the one after it.</summary>
    public TimeSpan NextDelay()
    {
        TimeSpan delay = _next * (0.8 + (Random.Shared.NextDouble() * 0.4));
        _next = TimeSpan.FromTicks(Math.Min((long)(_next.Ticks * 1.5), Maximum.Ticks));
        return delay;
    }

    /// <summary>Waits the next delay.</summary>
    public Task WaitAsync(CancellationToken cancellationToken = default) =>
        Task.Delay(NextDelay(), cancellationToken);
}
