// SPDX-License-Identifier: MIT
namespace Perper.Protocol;

/// <summary>Exponential back-off with jitter: 50 ms growing ×1.5 up to 2 s. Not thread-safe.</summary>
public sealed class Backoff
{
    private static readonly TimeSpan First = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan Maximum = TimeSpan.FromSeconds(2);
    private TimeSpan _next = First;

    /// <summary>Starts again from the first delay (after a success).</summary>
    public void Reset() => _next = First;

    /// <summary>Waits the next delay.</summary>
    public Task WaitAsync(CancellationToken cancellationToken = default)
    {
        TimeSpan delay = _next * (0.8 + (Random.Shared.NextDouble() * 0.4));
        _next = TimeSpan.FromTicks(Math.Min((long)(_next.Ticks * 1.5), Maximum.Ticks));
        return Task.Delay(delay, cancellationToken);
    }
}
