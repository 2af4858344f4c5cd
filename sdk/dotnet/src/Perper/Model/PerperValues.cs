// SPDX-License-Identifier: MIT
using System.Collections;
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Text;
using Google.Protobuf;
using Google.Protobuf.Reflection;
using Google.Protobuf.WellKnownTypes;
using Type = System.Type;

namespace Perper.Model;

/// <summary>
/// The value table shared by every Perper SDK: .NET values ⇄ <c>google.protobuf.Any</c>.
/// </summary>
/// <remarks>
/// <list type="table">
/// <listheader><term>.NET</term><description>travels as (also read from)</description></listheader>
/// <item><term>null</term><description>an empty Any (also <c>Value</c> null)</description></item>
/// <item><term>bool</term><description>BoolValue</description></item>
/// <item><term>int, short, sbyte</term><description>Int32Value</description></item>
/// <item><term>long</term><description>Int64Value (Int32Value, UInt32Value)</description></item>
/// <item><term>uint, ushort, byte</term><description>UInt32Value</description></item>
/// <item><term>ulong</term><description>UInt64Value (UInt32Value)</description></item>
/// <item><term>float</term><description>FloatValue</description></item>
/// <item><term>double</term><description>DoubleValue (FloatValue, Int32Value, UInt32Value)</description></item>
/// <item><term>string</term><description>StringValue</description></item>
/// <item><term>byte[], ByteString</term><description>BytesValue</description></item>
/// <item><term>a protobuf message (PerperStream, PerperInstance, …)</term><description>itself</description></item>
/// <item><term>IDictionary&lt;string, V&gt;</term><description>Struct (Value holding a struct)</description></item>
/// <item><term>arrays, IEnumerable&lt;V&gt;</term><description>ListValue (Value holding a list)</description></item>
/// </list>
/// Inside a Struct or ListValue a number is a double: integers go in only within ±2^53. A
/// tuple is not a value: a handler returning one has several results.
/// </remarks>
public static class PerperValues
{
    /// <summary>Integers up to this magnitude are exact as a double.</summary>
    public const long MaxExactInteger = 1L << 53;

    private static readonly ConcurrentDictionary<string, MessageParser> KnownMessages = new();
    private static readonly ConcurrentDictionary<Type, MessageDescriptor?> Descriptors = new();

    static PerperValues()
    {
        foreach (MessageDescriptor d in ModelReflection.Descriptor.MessageTypes)
        {
            KnownMessages[d.FullName] = d.Parser;
        }
        foreach (MessageDescriptor d in new[]
                 {
                     Timestamp.Descriptor, Duration.Descriptor, Empty.Descriptor, FieldMask.Descriptor,
                 })
        {
            KnownMessages[d.FullName] = d.Parser;
        }
    }

    /// <summary>Makes untyped reads (<c>object</c>) of <typeparamref name="T"/> values return the
    /// message instead of the Any.</summary>
    public static void RegisterMessageType<T>() where T : IMessage<T>, new()
    {
        MessageDescriptor descriptor = new T().Descriptor;
        KnownMessages[descriptor.FullName] = descriptor.Parser;
    }

    /// <summary>The full message name of a packed Any ("" for an empty one).</summary>
    public static string TypeNameOf(Any value)
    {
        string url = value.TypeUrl;
        return url.Length == 0 ? "" : url[(url.LastIndexOf('/') + 1)..];
    }

    /// <summary>Tells whether an Any is null: an empty type URL, or a <c>Value</c> holding null.</summary>
    public static bool IsNull(Any? value)
    {
        if (value is null || value.TypeUrl.Length == 0)
        {
            return true;
        }
        if (TypeNameOf(value) == Value.Descriptor.FullName)
        {
            Value v = Value.Parser.ParseFrom(value.Value);
            return v.KindCase is Value.KindOneofCase.None or Value.KindOneofCase.NullValue;
        }
        return false;
    }

    // ------------------------------------------------------------------------------------------
    // Packing.

    /// <summary>Packs a value following the table. Throws <see cref="PerperTypeException"/>.</summary>
    public static Any Pack(object? value) => value switch
    {
        null => new Any(),
        Any any => any,
        bool b => PackMessage(new BoolValue { Value = b }),
        int or short or sbyte => PackMessage(new Int32Value { Value = Convert.ToInt32(value) }),
        long l => PackMessage(new Int64Value { Value = l }),
        uint or ushort or byte => PackMessage(new UInt32Value { Value = Convert.ToUInt32(value) }),
        ulong u => PackMessage(new UInt64Value { Value = u }),
        float f => PackMessage(new FloatValue { Value = f }),
        double d => PackMessage(new DoubleValue { Value = d }),
        string s => PackMessage(new StringValue { Value = s }),
        byte[] bytes => PackMessage(new BytesValue { Value = ByteString.CopyFrom(bytes) }),
        ByteString bytes => PackMessage(new BytesValue { Value = bytes }),
        Struct s => PackMessage(CanonicalStruct(s)),
        Value v => PackMessage(CanonicalValue(v)),
        ListValue l => PackMessage(CanonicalList(l)),
        IMessage message => PackMessage(message),
        ITuple => throw new PerperTypeException(
            "cannot pack a tuple: a handler returning a tuple returns several results; pack an array or a list to send one list (google.protobuf.ListValue)"),
        IDictionary dictionary => PackMessage(ToStruct(dictionary, "")),
        IEnumerable items => PackMessage(ToListValue(items, "")),
        _ => throw new PerperTypeException(
            $"cannot pack a value of .NET type {value.GetType()}: use null, bool, an integer, float, double, string, byte[], a dictionary with string keys, an array or list, a Perper model object or a protobuf message"),
    };

    /// <summary>Packs each value (arguments, results).</summary>
    public static List<Any> PackAll(IEnumerable<object?> values) => values.Select(Pack).ToList();

    /// <summary>Packs what a handler returned: null (or void) is no result, a tuple several
    /// results, anything else one.</summary>
    public static List<Any> ResultsOf(object? returned)
    {
        if (returned is null)
        {
            return [];
        }
        if (returned is PerperResults several)
        {
            return PackAll(several.Values);
        }
        if (returned is ITuple tuple)
        {
            var results = new List<Any>(tuple.Length);
            for (int i = 0; i < tuple.Length; i++)
            {
                results.Add(Pack(tuple[i]));
            }
            return results;
        }
        return [Pack(returned)];
    }

    private static Any PackMessage(IMessage message) => Any.Pack(message);

    private static Struct ToStruct(IDictionary dictionary, string path)
    {
        var fields = new List<KeyValuePair<string, Value>>();
        foreach (DictionaryEntry entry in dictionary)
        {
            if (entry.Key is not string key)
            {
                throw new PerperTypeException(
                    $"cannot pack a dictionary with a key of .NET type {entry.Key.GetType()} (key {entry.Key}{(path.Length > 0 ? " in " + path : "")}): a Struct's keys are strings");
            }
            fields.Add(new(key, ToValue(entry.Value, path.Length > 0 ? $"{path}.{key}" : key)));
        }
        return SortedStruct(fields);
    }

    private static ListValue ToListValue(IEnumerable items, string path)
    {
        var list = new ListValue();
        int index = 0;
        foreach (object? item in items)
        {
            list.Values.Add(ToValue(item, $"{path}[{index++}]"));
        }
        return list;
    }

    private static Value ToValue(object? value, string path) => value switch
    {
        null => Value.ForNull(),
        bool b => Value.ForBool(b),
        int or short or sbyte or long or uint or ushort or byte or ulong => Value.ForNumber(ExactNumber(value, path)),
        float f => Value.ForNumber(f),
        double d => Value.ForNumber(d),
        string s => Value.ForString(s),
        Value v => CanonicalValue(v),
        Struct s => new Value { StructValue = CanonicalStruct(s) },
        ListValue l => new Value { ListValue = CanonicalList(l) },
        IDictionary dictionary => new Value { StructValue = ToStruct(dictionary, path) },
        IEnumerable and not byte[] => new Value { ListValue = ToListValue((IEnumerable)value, path) },
        _ => throw new PerperTypeException(
            $"cannot put a value of .NET type {value.GetType()} inside a Struct (at key path '{path}'): use null, bool, a number, string, a dictionary or a list"),
    };

    private static double ExactNumber(object value, string path)
    {
        bool exact = value is ulong u ? u <= MaxExactInteger : Math.Abs(Convert.ToDecimal(value)) <= MaxExactInteger;
        if (!exact)
        {
            throw new PerperTypeException(
                $"integer {value} at key path '{path}' is beyond 2^53: a number inside a Struct is a double and would lose digits (store it outside the dictionary, or as a string)");
        }
        return Convert.ToDouble(value);
    }

    // Equal structures are equal bytes (dictionary keys and compare-and-set compare bytes): map
    // entries are serialized in insertion order, so insert them in UTF-8 byte order, as the C++
    // and Python SDKs serialize them.
    private static Struct SortedStruct(IEnumerable<KeyValuePair<string, Value>> fields)
    {
        var result = new Struct();
        foreach (KeyValuePair<string, Value> field in fields.OrderBy(f => f.Key, Utf8Order.Instance))
        {
            result.Fields[field.Key] = field.Value;
        }
        return result;
    }

    private static Struct CanonicalStruct(Struct value) =>
        SortedStruct(value.Fields.Select(f => new KeyValuePair<string, Value>(f.Key, CanonicalValue(f.Value))));

    private static ListValue CanonicalList(ListValue value)
    {
        var list = new ListValue();
        list.Values.AddRange(value.Values.Select(CanonicalValue));
        return list;
    }

    private static Value CanonicalValue(Value value) => value.KindCase switch
    {
        Value.KindOneofCase.StructValue => new Value { StructValue = CanonicalStruct(value.StructValue) },
        Value.KindOneofCase.ListValue => new Value { ListValue = CanonicalList(value.ListValue) },
        _ => value,
    };

    private sealed class Utf8Order : IComparer<string>
    {
        public static readonly Utf8Order Instance = new();

        public int Compare(string? x, string? y)
        {
            StringRuneEnumerator a = (x ?? "").EnumerateRunes();
            StringRuneEnumerator b = (y ?? "").EnumerateRunes();
            while (true)
            {
                bool moreA = a.MoveNext(), moreB = b.MoveNext();
                if (!moreA || !moreB)
                {
                    return moreA.CompareTo(moreB);
                }
                int order = a.Current.Value.CompareTo(b.Current.Value);
                if (order != 0)
                {
                    return order;
                }
            }
        }
    }

    // ------------------------------------------------------------------------------------------
    // Unpacking.

    /// <summary>Reads a value as <typeparamref name="T"/> (<c>object</c>: whatever it is).</summary>
    public static T Unpack<T>(Any? value) => (T)Unpack(value, typeof(T))!;

    /// <summary>Reads a value as <paramref name="type"/>. A value of another type throws
    /// <see cref="PerperTypeException"/> naming both types; null reads as null (a non-nullable
    /// value type refuses it). <c>object</c> reads whatever the value is; a message type this
    /// process does not know is then returned as the Any itself.</summary>
    public static object? Unpack(Any? value, Type type)
    {
        if (NullFor(ref type, IsNull(value), ""))
        {
            return null;
        }
        if (type == typeof(Any))
        {
            return value;
        }
        string name = TypeNameOf(value!);
        ByteString bytes = value!.Value;
        bool untyped = type == typeof(object);
        object? result = name switch
        {
            "google.protobuf.BoolValue" => Scalar(type, BoolValue.Parser.ParseFrom(bytes), m => m.Value, typeof(bool)),
            "google.protobuf.StringValue" => Scalar(type, StringValue.Parser.ParseFrom(bytes), m => m.Value, typeof(string)),
            "google.protobuf.BytesValue" => Bytes(type, BytesValue.Parser.ParseFrom(bytes)),
            "google.protobuf.Int32Value" => Scalar(type, Int32Value.Parser.ParseFrom(bytes), m => m.Value, typeof(int), typeof(long), typeof(double)),
            "google.protobuf.Int64Value" => Scalar(type, Int64Value.Parser.ParseFrom(bytes), m => m.Value, typeof(long)),
            "google.protobuf.UInt32Value" => Scalar(type, UInt32Value.Parser.ParseFrom(bytes), m => m.Value, typeof(uint), typeof(long), typeof(ulong), typeof(double)),
            "google.protobuf.UInt64Value" => Scalar(type, UInt64Value.Parser.ParseFrom(bytes), m => m.Value, typeof(ulong)),
            "google.protobuf.FloatValue" => Scalar(type, FloatValue.Parser.ParseFrom(bytes), m => m.Value, typeof(float), typeof(double)),
            "google.protobuf.DoubleValue" => Scalar(type, DoubleValue.Parser.ParseFrom(bytes), m => m.Value, typeof(double)),
            "google.protobuf.Value" => type == typeof(Value) ? Value.Parser.ParseFrom(bytes) : FromValue(Value.Parser.ParseFrom(bytes), type, ""),
            "google.protobuf.Struct" => type == typeof(Struct) ? Struct.Parser.ParseFrom(bytes) : FromValue(new Value { StructValue = Struct.Parser.ParseFrom(bytes) }, type, ""),
            "google.protobuf.ListValue" => type == typeof(ListValue) ? ListValue.Parser.ParseFrom(bytes) : FromValue(new Value { ListValue = ListValue.Parser.ParseFrom(bytes) }, type, ""),
            _ => NotHandled,
        };
        if (ReferenceEquals(result, NotHandled))
        {
            result = Message(type, name, bytes, value, untyped);
        }
        if (ReferenceEquals(result, Mismatch))
        {
            throw new PerperTypeException($"cannot read a value of type {name} as {Describe(type)}");
        }
        return result;
    }

    /// <summary>Reads the results of an execution as <paramref name="type"/>: none is null
    /// (default), one is that value, several fill a tuple type (or an <c>object?[]</c> for
    /// <c>object</c>).</summary>
    public static object? UnpackResults(IReadOnlyList<Any> results, Type type)
    {
        if (type == typeof(void))
        {
            return null;
        }
        Type[] elements = TupleElements(type);
        if (elements.Length > 0 && (results.Count > 1 || elements.Length > 1))
        {
            if (elements.Length != results.Count)
            {
                throw new PerperTypeException($"expected {elements.Length} results, the execution returned {results.Count}");
            }
            return Activator.CreateInstance(type, results.Select((r, i) => Unpack(r, elements[i])).ToArray());
        }
        switch (results.Count)
        {
            case 0:
                return type.IsValueType && Nullable.GetUnderlyingType(type) is null ? Activator.CreateInstance(type) : null;
            case 1:
                return Unpack(results[0], type);
            default:
                if (type == typeof(object) || type == typeof(object[]))
                {
                    return results.Select(r => Unpack(r, typeof(object))).ToArray();
                }
                throw new PerperTypeException($"expected one result of type {Describe(type)}, the execution returned {results.Count}");
        }
    }

    /// <summary>The element types of a tuple type (ValueTuple or Tuple), or none.</summary>
    public static Type[] TupleElements(Type type)
    {
        if (!type.IsGenericType || !typeof(ITuple).IsAssignableFrom(type))
        {
            return [];
        }
        Type[] arguments = type.GetGenericArguments();
        return arguments.Length == 8 ? [] : arguments;  // no nesting of long tuples
    }

    private static readonly object NotHandled = new();
    private static readonly object Mismatch = new();

    private static object? Scalar<TMessage>(Type type, TMessage message, Func<TMessage, object> read, params Type[] readable)
        where TMessage : IMessage
    {
        if (type == typeof(TMessage))
        {
            return message;
        }
        object value = read(message);
        if (type == typeof(object))
        {
            return value;
        }
        return readable.Contains(type) ? Convert.ChangeType(value, type, System.Globalization.CultureInfo.InvariantCulture) : Mismatch;
    }

    private static object? Bytes(Type type, BytesValue message)
    {
        if (type == typeof(BytesValue))
        {
            return message;
        }
        if (type == typeof(ByteString))
        {
            return message.Value;
        }
        return type == typeof(byte[]) || type == typeof(object) ? message.Value.ToByteArray() : Mismatch;
    }

    private static object? Message(Type type, string name, ByteString bytes, Any value, bool untyped)
    {
        if (untyped)
        {
            return KnownMessages.TryGetValue(name, out MessageParser? parser) ? parser.ParseFrom(bytes) : value;
        }
        MessageDescriptor? descriptor = DescriptorOf(type);
        if (descriptor is null || descriptor.FullName != name)
        {
            return Mismatch;
        }
        return descriptor.Parser.ParseFrom(bytes);
    }

    private static MessageDescriptor? DescriptorOf(Type type) => Descriptors.GetOrAdd(type, t =>
        typeof(IMessage).IsAssignableFrom(t)
            ? t.GetProperty("Descriptor", System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static)?.GetValue(null) as MessageDescriptor
            : null);

    private static object? FromValue(Value value, Type type, string path)
    {
        if (NullFor(ref type, value.KindCase is Value.KindOneofCase.None or Value.KindOneofCase.NullValue, path))
        {
            return null;
        }
        if (type == typeof(Value))
        {
            return value;
        }
        bool untyped = type == typeof(object);
        switch (value.KindCase)
        {
            case Value.KindOneofCase.BoolValue when untyped || type == typeof(bool):
                return value.BoolValue;
            case Value.KindOneofCase.StringValue when untyped || type == typeof(string):
                return value.StringValue;
            case Value.KindOneofCase.NumberValue:
                return FromNumber(value.NumberValue, type, path);
            case Value.KindOneofCase.StructValue when type == typeof(Struct):
                return value.StructValue;
            case Value.KindOneofCase.StructValue:
                return FromStruct(value.StructValue, untyped ? typeof(Dictionary<string, object?>) : type, path);
            case Value.KindOneofCase.ListValue when type == typeof(ListValue):
                return value.ListValue;
            case Value.KindOneofCase.ListValue:
                return FromList(value.ListValue, untyped ? typeof(List<object?>) : type, path);
        }
        throw new PerperTypeException($"cannot read a {KindName(value)}{At(path)} as {Describe(type)}");
    }

    // Unwraps Nullable<T> in `type`; tells whether the value is null (which a non-nullable value
    // type refuses).
    private static bool NullFor(ref Type type, bool isNull, string path)
    {
        Type? underlying = Nullable.GetUnderlyingType(type);
        if (isNull && type.IsValueType && underlying is null)
        {
            throw new PerperTypeException($"cannot read null{At(path)} as {Describe(type)}");
        }
        type = underlying ?? type;
        return isNull;
    }

    private static string At(string path) => path.Length > 0 ? $" at '{path}'" : "";

    private static string KindName(Value value) => value.KindCase switch
    {
        Value.KindOneofCase.BoolValue => "bool",
        Value.KindOneofCase.StringValue => "string",
        Value.KindOneofCase.NumberValue => "number",
        Value.KindOneofCase.StructValue => "struct",
        _ => "list",
    };

    private static object FromNumber(double number, Type type, string path)
    {
        bool integral = Math.Floor(number) == number && !double.IsInfinity(number);
        if (type == typeof(object))
        {
            return integral && Math.Abs(number) <= MaxExactInteger ? (object)(long)number : number;
        }
        if (type == typeof(double))
        {
            return number;
        }
        if (type == typeof(float))
        {
            return (float)number;
        }
        if (type == typeof(decimal))
        {
            return (decimal)number;
        }
        if (type.IsPrimitive && type != typeof(bool) && type != typeof(char))
        {
            if (!integral)
            {
                throw new PerperTypeException($"number {number}{At(path)} is not an integer");
            }
            try
            {
                return Convert.ChangeType((decimal)number, type, System.Globalization.CultureInfo.InvariantCulture);
            }
            catch (OverflowException)
            {
                throw new PerperTypeException($"number {number}{At(path)} is out of the range of {type}");
            }
        }
        throw new PerperTypeException($"cannot read a number{At(path)} as {Describe(type)}");
    }

    private static object FromStruct(Struct value, Type type, string path)
    {
        Type? element = DictionaryValueType(type);
        if (element is null)
        {
            throw new PerperTypeException($"cannot read a struct{At(path)} as {Describe(type)}");
        }
        var result = (IDictionary)Activator.CreateInstance(typeof(Dictionary<,>).MakeGenericType(typeof(string), element))!;
        foreach (KeyValuePair<string, Value> field in value.Fields)
        {
            result[field.Key] = FromValue(field.Value, element, path.Length > 0 ? $"{path}.{field.Key}" : field.Key);
        }
        return result;
    }

    private static object FromList(ListValue value, Type type, string path)
    {
        Type? element = ListElementType(type);
        if (element is null)
        {
            throw new PerperTypeException($"cannot read a list{At(path)} as {Describe(type)}");
        }
        var list = (IList)Activator.CreateInstance(typeof(List<>).MakeGenericType(element))!;
        for (int i = 0; i < value.Values.Count; i++)
        {
            list.Add(FromValue(value.Values[i], element, $"{path}[{i}]"));
        }
        if (type.IsArray)
        {
            Array array = Array.CreateInstance(element, list.Count);
            list.CopyTo(array, 0);
            return array;
        }
        return list;
    }

    private static Type? DictionaryValueType(Type type)
    {
        if (!type.IsGenericType)
        {
            return null;
        }
        Type definition = type.GetGenericTypeDefinition();
        Type[] arguments = type.GetGenericArguments();
        bool fits = definition == typeof(Dictionary<,>) || definition == typeof(IDictionary<,>) ||
                    definition == typeof(IReadOnlyDictionary<,>);
        return fits && arguments[0] == typeof(string) ? arguments[1] : null;
    }

    private static Type? ListElementType(Type type)
    {
        if (type.IsArray)
        {
            return type.GetArrayRank() == 1 && type != typeof(byte[]) ? type.GetElementType() : null;
        }
        if (!type.IsGenericType)
        {
            return null;
        }
        Type definition = type.GetGenericTypeDefinition();
        bool fits = definition == typeof(List<>) || definition == typeof(IList<>) || definition == typeof(IEnumerable<>) ||
                    definition == typeof(IReadOnlyList<>) || definition == typeof(ICollection<>) ||
                    definition == typeof(IReadOnlyCollection<>);
        return fits ? type.GetGenericArguments()[0] : null;
    }

    private static string Describe(Type type)
    {
        MessageDescriptor? descriptor = DescriptorOf(type);
        if (descriptor is not null)
        {
            return descriptor.FullName;
        }
        var text = new StringBuilder();
        AppendName(text, type);
        return text.ToString();
    }

    private static void AppendName(StringBuilder text, Type type)
    {
        if (!type.IsGenericType)
        {
            text.Append(type.Name switch
            {
                "Int32" => "int", "Int64" => "long", "UInt32" => "uint", "UInt64" => "ulong", "Double" => "double",
                "Single" => "float", "Boolean" => "bool", "String" => "string", "Object" => "object", _ => type.Name,
            });
            return;
        }
        text.Append(type.Name[..type.Name.IndexOf('`')]).Append('<');
        Type[] arguments = type.GetGenericArguments();
        for (int i = 0; i < arguments.Length; i++)
        {
            if (i > 0)
            {
                text.Append(", ");
            }
            AppendName(text, arguments[i]);
        }
        text.Append('>');
    }
}
