// SPDX-License-Identifier: MIT
using Perper.Protocol;

namespace Perper.Tests;

public sealed class BackoffTests
{
    /// <summary>The back-off every SDK shares (STYLE.md): 50 ms growing ×1.5 up to 2 s, each delay
    /// within 20 % either side; Reset starts again from 50 ms.</summary>
    [Fact]
    public void GrowsByHalfUpToTwoSecondsWithinTwentyPercent()
    {
        var backoff = new Backoff();
        double expected = 50;
        for (int attempt = 0; attempt < 30; attempt++)
        {
            double delay = backoff.NextDelay().TotalMilliseconds;
            Assert.InRange(delay, (expected * 0.8) - 1e-3, (expected * 1.2) + 1e-3);
            expected = Math.Min(expected * 1.5, 2000);
        }
        Assert.Equal(2000, expected);
        backoff.Reset();
        Assert.InRange(backoff.NextDelay().TotalMilliseconds, 40 - 1e-3, 60 + 1e-3);
    }
}
