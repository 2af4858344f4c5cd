// SPDX-License-Identifier: MIT
using System.Reflection;
using System.Runtime.CompilerServices;
using Google.Protobuf.WellKnownTypes;
using Type = System.Type;
using Microsoft.Extensions.DependencyInjection;
using Perper.Model;

namespace Perper.Application;

/// <summary>
/// One delegate's handler: a method with typed parameters, bound to its arguments by the value
/// table. A <see cref="CancellationToken"/> parameter receives the execution's (cancelled when
/// the execution is deleted); a <c>params</c> array takes the remaining arguments; missing
/// arguments take the parameter's default value. Returns: <c>void</c>, <c>Task</c> or
/// <c>ValueTask</c> (no result), a value or a task of one (one result), a tuple (several
/// results), <c>IAsyncEnumerable&lt;T&gt;</c> (a stream delegate; items of type
/// <c>(long, T)</c> are written under their key).
/// </summary>
public sealed class HandlerMethod
{
    private static readonly MethodInfo BoxMethod = typeof(HandlerMethod).GetMethod(nameof(Box), BindingFlags.NonPublic | BindingFlags.Static)!;
    private readonly Func<IServiceProvider?, object?> _target;
    private readonly ParameterInfo[] _parameters;
    private readonly Type _returnType;
    private readonly MethodInfo? _box;

    /// <summary>A handler for the method <paramref name="method"/>; <paramref name="target"/>
    /// gives the object an instance method is called on, per execution.</summary>
    public HandlerMethod(string name, MethodInfo method, Func<IServiceProvider?, object?> target)
    {
        Name = name;
        Method = method;
        _target = target;
        _parameters = method.GetParameters();
        _returnType = method.ReturnType;
        Concurrency = method.GetCustomAttribute<PerperHandlerAttribute>()?.Concurrency ?? 0;
        Type? items = AsyncEnumerableItemType(_returnType);
        if (items is not null)
        {
            StreamOptions = method.GetCustomAttribute<PerperStreamOptionsAttribute>()?.ToOptions() ?? PerperStreamOptions.Default;
            Type[] tuple = PerperValues.TupleElements(items);
            Keyed = tuple.Length == 2 && tuple[0] == typeof(long);
            _box = BoxMethod.MakeGenericMethod(items);
        }
    }

    /// <summary>A handler for a delegate (lambda or method group).</summary>
    public static HandlerMethod FromDelegate(string name, Delegate handler) =>
        new(name, handler.Method, _ => handler.Target);

    /// <summary>Every public method declared by <paramref name="type"/> (static or not), named
    /// by <see cref="PerperHandlerAttribute"/> or by the method's name without <c>Async</c> (kept
    /// when the class also declares the name without it);
    /// instance methods are called on an object made per execution (through the service provider
    /// when there is one), or on <paramref name="instance"/> when given.</summary>
    public static IEnumerable<HandlerMethod> FromType(Type type, object? instance = null)
    {
        const BindingFlags flags = BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        MethodInfo[] methods = type.GetMethods(flags);
        var declared = methods.Select(m => m.Name).ToHashSet(StringComparer.Ordinal);
        foreach (MethodInfo method in methods)
        {
            if (method.IsSpecialName || method.IsGenericMethodDefinition || method.GetCustomAttribute<PerperIgnoreAttribute>() is not null ||
                method.GetCustomAttribute<CompilerGeneratedAttribute>() is not null)
            {
                continue;
            }
            // "XAsync" is the delegate X, unless the class also has a method X.
            bool strip = method.Name.EndsWith("Async", StringComparison.Ordinal) && method.Name.Length > 5 && !declared.Contains(method.Name[..^5]);
            string name = method.GetCustomAttribute<PerperHandlerAttribute>()?.Name ?? (strip ? method.Name[..^5] : method.Name);
            Func<IServiceProvider?, object?> target = method.IsStatic ? _ => null
                : instance is not null ? _ => instance
                : services => services is null ? Activator.CreateInstance(type) : ActivatorUtilities.GetServiceOrCreateInstance(services, type);
            yield return new HandlerMethod(name, method, target);
        }
    }

    public string Name { get; }
    public MethodInfo Method { get; }
    /// <summary>Set for a stream delegate: the options of its streams.</summary>
    public PerperStreamOptions? StreamOptions { get; }
    public bool IsStream => StreamOptions is not null;
    /// <summary>A stream delegate whose items are <c>(long key, T value)</c>.</summary>
    public bool Keyed { get; }
    /// <summary>Executions of this delegate at once per process (0: no limit of its own).</summary>
    public int Concurrency { get; }

    /// <summary>Reads the arguments into the method's parameters.</summary>
    public object?[] Bind(IReadOnlyList<Any> arguments, CancellationToken cancellationToken)
    {
        var bound = new object?[_parameters.Length];
        int next = 0;
        for (int p = 0; p < _parameters.Length; p++)
        {
            ParameterInfo parameter = _parameters[p];
            Type type = parameter.ParameterType;
            if (type == typeof(CancellationToken))
            {
                bound[p] = cancellationToken;
            }
            else if (p == _parameters.Length - 1 && type.IsArray && parameter.IsDefined(typeof(ParamArrayAttribute)))
            {
                Type element = type.GetElementType()!;
                Array rest = Array.CreateInstance(element, Math.Max(0, arguments.Count - next));
                for (int i = 0; i < rest.Length; i++)
                {
                    rest.SetValue(Read(arguments[next], element, next), i);
                    next++;
                }
                bound[p] = rest;
            }
            else if (next < arguments.Count)
            {
                bound[p] = Read(arguments[next], type, next);
                next++;
            }
            else if (parameter.HasDefaultValue)
            {
                bound[p] = parameter.DefaultValue;
            }
            else if (type.IsValueType && Nullable.GetUnderlyingType(type) is null)
            {
                throw new PerperTypeException($"delegate {Name} takes argument {next} ({parameter.Name}), but the call has only {arguments.Count}");
            }
        }
        if (next < arguments.Count)
        {
            throw new PerperTypeException($"delegate {Name} takes {next} arguments, the call has {arguments.Count}");
        }
        return bound;
    }

    private object? Read(Any argument, Type type, int index)
    {
        try
        {
            return PerperValues.Unpack(argument, type);
        }
        catch (PerperTypeException e)
        {
            throw new PerperTypeException($"argument {index} of delegate {Name}: {e.Message}");
        }
    }

    /// <summary>Calls the method and awaits what it returns: its result (null for none); for a
    /// stream delegate, its items as <c>IAsyncEnumerable&lt;object?&gt;</c>.</summary>
    public async Task<object?> InvokeAsync(object?[] arguments, IServiceProvider? services)
    {
        object? target = _target(services);
        object? returned;
        try
        {
            returned = Method.Invoke(target, arguments);
        }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerException).Throw();
            throw;
        }
        if (_box is not null)
        {
            return returned is null ? null : _box.Invoke(null, [returned]);
        }
        return await Awaited(returned, _returnType).ConfigureAwait(false);
    }

    private static async Task<object?> Awaited(object? returned, Type declared)
    {
        if (returned is null)
        {
            return null;
        }
        if (declared.IsGenericType && declared.GetGenericTypeDefinition() == typeof(ValueTask<>))
        {
            returned = declared.GetMethod(nameof(ValueTask<int>.AsTask))!.Invoke(returned, null);
            declared = typeof(Task<>).MakeGenericType(declared.GetGenericArguments());
        }
        switch (returned)
        {
            case ValueTask valueTask:
                await valueTask.ConfigureAwait(false);
                return null;
            case Task task:
                await task.ConfigureAwait(false);
                return declared.IsGenericType && declared.GetGenericTypeDefinition() == typeof(Task<>)
                    ? declared.GetProperty(nameof(Task<int>.Result))!.GetValue(task)
                    : null;
            default:
                return returned;
        }
    }

    private static Type? AsyncEnumerableItemType(Type type)
    {
        if (type.IsGenericType && type.GetGenericTypeDefinition() == typeof(IAsyncEnumerable<>))
        {
            return type.GetGenericArguments()[0];
        }
        return type.GetInterfaces().FirstOrDefault(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IAsyncEnumerable<>))
            ?.GetGenericArguments()[0];
    }

    private static async IAsyncEnumerable<object?> Box<T>(IAsyncEnumerable<T> items)
    {
        await foreach (T item in items.ConfigureAwait(false))
        {
            yield return item;
        }
    }
}
