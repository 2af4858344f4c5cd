// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using Perper.Protocol;

namespace Perper.Application;

/// <summary>
/// Builds an agent process: the agent's name, its handlers and how it serves them.
/// </summary>
/// <example>
/// <code>
/// return await new PerperBuilder("MyFirstAgent").AddHandlers&lt;MyFirstAgent&gt;().StopAfterDeploy().RunAsync();
/// </code>
/// </example>
public sealed class PerperBuilder
{
    /// <summary>The environment variable naming the agent the scaler started the process for.</summary>
    public const string AgentVariable = "X_PERPER_AGENT";
    /// <summary>The environment variable naming the one instance to serve.</summary>
    public const string InstanceVariable = "X_PERPER_INSTANCE";

    private readonly List<HandlerMethod> _handlers = [];
    private string? _agent;
    private string? _endpoint;
    private string? _instance = Environment.GetEnvironmentVariable(InstanceVariable) is { Length: > 0 } instance ? instance : null;
    private string _workgroup = "";
    private int _concurrency = 64;
    private FabricService? _fabric;
    private ILoggerFactory? _loggerFactory;

    /// <summary>A builder for <paramref name="agent"/> (default: <c>X_PERPER_AGENT</c>, else the
    /// name of the first class added).</summary>
    public PerperBuilder(string? agent = null) => _agent = agent;

    /// <summary>The agent served.</summary>
    public string Agent => _agent ?? Environment.GetEnvironmentVariable(AgentVariable) ??
        throw new InvalidOperationException("perper: no agent name (pass one to PerperBuilder, add a class of handlers, or set X_PERPER_AGENT)");

    /// <summary>Whether the process stops once Deploy returns.</summary>
    public bool StopsAfterDeploy { get; private set; }

    /// <summary>Adds every public method of <typeparamref name="T"/> as a delegate (see
    /// <see cref="HandlerMethod.FromType"/>); the agent is named after the class unless named already.</summary>
    public PerperBuilder AddHandlers<T>() => AddHandlers(typeof(T));

    /// <summary>Adds every public method of <paramref name="type"/> as a delegate.</summary>
    public PerperBuilder AddHandlers(Type type)
    {
        _agent ??= Environment.GetEnvironmentVariable(AgentVariable) is { Length: > 0 } variable ? variable : type.Name;
        _handlers.AddRange(HandlerMethod.FromType(type));
        return this;
    }

    /// <summary>Adds every public method of <paramref name="target"/>'s class, called on it.</summary>
    public PerperBuilder AddHandlers(object target)
    {
        _agent ??= Environment.GetEnvironmentVariable(AgentVariable) is { Length: > 0 } variable ? variable : target.GetType().Name;
        _handlers.AddRange(HandlerMethod.FromType(target.GetType(), target));
        return this;
    }

    /// <summary>Adds a handler for <paramref name="delegate"/> (a lambda or a method group).</summary>
    public PerperBuilder AddHandler(string @delegate, Delegate handler)
    {
        _handlers.Add(HandlerMethod.FromDelegate(@delegate, handler));
        return this;
    }

    /// <summary>The Fabric's address: a connection of the host's own (default: the process's
    /// <see cref="FabricService.Default"/>, from <c>PERPER_FABRIC_ENDPOINT</c>).</summary>
    public PerperBuilder WithEndpoint(string endpoint)
    {
        _endpoint = endpoint;
        return this;
    }

    /// <summary>Uses this connection (not disposed by the host).</summary>
    public PerperBuilder WithFabric(FabricService fabric)
    {
        _fabric = fabric;
        return this;
    }

    /// <summary>Serves only <paramref name="instance"/> (default: <c>X_PERPER_INSTANCE</c>).</summary>
    public PerperBuilder WithInstance(string? instance)
    {
        _instance = instance;
        return this;
    }

    public PerperBuilder WithWorkgroup(string workgroup)
    {
        _workgroup = workgroup;
        return this;
    }

    /// <summary>Executions at once in this process, across every delegate (default 64): the
    /// credits of its one reservation call. A handler's
    /// <see cref="PerperHandlerAttribute.Concurrency"/> limits its delegate within them.</summary>
    public PerperBuilder WithConcurrency(int concurrency)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(concurrency, 1);
        _concurrency = concurrency;
        return this;
    }

    public PerperBuilder WithLogging(ILoggerFactory loggerFactory)
    {
        _loggerFactory = loggerFactory;
        return this;
    }

    /// <summary>Stops the process once Deploy returns.</summary>
    public PerperBuilder StopAfterDeploy(bool stop = true)
    {
        StopsAfterDeploy = stop;
        return this;
    }

    /// <summary>The agent host (not started).</summary>
    public PerperAgentHost Build(IServiceProvider? services = null)
    {
        string agent = Agent;
        ILoggerFactory loggers = _loggerFactory ?? LoggerFactory.Create(b => b
            .AddSimpleConsole(o => o.SingleLine = true)
            .AddFilter("perper", LogLevel.Information)
            .SetMinimumLevel(LogLevel.Warning)
            .AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace));
        ILogger logger = loggers.CreateLogger("perper");
        // Without an endpoint of its own, the host uses the process's singleton (so several agent
        // types in one process share one connection), and leaves it open when it stops.
        FabricService fabric = _fabric ?? (_endpoint is null ? FabricService.Default : new FabricService(_endpoint, logger));
        if (_fabric is null && _endpoint is null)
        {
            fabric.Logger = logger;
        }
        var options = new PerperAgentOptions { Agent = agent, Instance = _instance, Workgroup = _workgroup, Concurrency = _concurrency };
        return new PerperAgentHost(options, _handlers, fabric, _fabric is null && _endpoint is not null, logger, services);
    }

    /// <summary>Builds and runs the agent process until SIGINT or SIGTERM (or, with
    /// <see cref="StopAfterDeploy"/>, until Deploy returns); returns the exit code. A process the
    /// scaler started for another agent (<c>X_PERPER_AGENT</c>) is refused with exit code 2.</summary>
    public async Task<int> RunAsync()
    {
        PerperAgentHost host;
        try
        {
            string? startedAs = Environment.GetEnvironmentVariable(AgentVariable);
            if (!string.IsNullOrEmpty(startedAs) && startedAs != Agent)
            {
                // Serving a name nobody calls would leave the scaler's callers waiting for ever.
                throw new InvalidOperationException($"perper: X_PERPER_AGENT is {startedAs} but this process serves agent {Agent}");
            }
            host = Build();
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException)
        {
            await Console.Error.WriteLineAsync(e.Message).ConfigureAwait(false);
            return 2;
        }
        using PosixSignalRegistration term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
        using PosixSignalRegistration interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        return await host.RunAsync(StopsAfterDeploy).ConfigureAwait(false);

        void Stop(PosixSignalContext context)
        {
            context.Cancel = true;
            host.RequestStop();
        }
    }
}
