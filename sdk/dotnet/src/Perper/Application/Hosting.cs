// SPDX-License-Identifier: MIT
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Perper.Application;

/// <summary>Generic-Host integration: <c>Host.CreateDefaultBuilder(args).ConfigurePerper(p =>
/// p.AddHandlers&lt;MyAgent&gt;()).Build().RunAsync()</c> turns a host into an agent process.
/// Handler classes are created through the host's services (constructor injection).</summary>
public static class PerperHostingExtensions
{
    public static IHostBuilder ConfigurePerper(this IHostBuilder builder, Action<PerperBuilder> configure) =>
        builder.ConfigureServices(services => services.AddPerper(configure));

    /// <summary>Registers the agent host as a hosted service; with
    /// <see cref="PerperBuilder.StopAfterDeploy"/> the application stops (with Deploy's exit code)
    /// once Deploy returns.</summary>
    public static IServiceCollection AddPerper(this IServiceCollection services, Action<PerperBuilder> configure)
    {
        services.AddHostedService(provider =>
        {
            var builder = new PerperBuilder();
            configure(builder);
            builder.WithLogging(provider.GetRequiredService<ILoggerFactory>());
            return new PerperHostedService(builder, provider);
        });
        return services;
    }

    private sealed class PerperHostedService(PerperBuilder builder, IServiceProvider services) : BackgroundService
    {
        protected override async Task ExecuteAsync(CancellationToken stoppingToken)
        {
            PerperAgentHost host = builder.Build(services);
            await using CancellationTokenRegistration stop = stoppingToken.Register(host.RequestStop);
            int code = await host.RunAsync(builder.StopsAfterDeploy).ConfigureAwait(false);
            if (builder.StopsAfterDeploy || code != 0)
            {
                Environment.ExitCode = code;
                services.GetRequiredService<IHostApplicationLifetime>().StopApplication();
            }
        }
    }
}
