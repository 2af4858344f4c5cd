// SPDX-License-Identifier: MIT
using System.Text;

namespace Perper.Model;

/// <summary>Base class of the exceptions the SDK throws.</summary>
public class PerperException : Exception
{
    public PerperException(string message) : base(message) { }
    public PerperException(string message, Exception inner) : base(message, inner) { }

    /// <summary>The Fabric's limit on an error text (an execution's or a stream's), in UTF-8 bytes.</summary>
    public const int MaxErrorBytes = 64 * 1024;

    /// <summary><paramref name="text"/> cut to what the Fabric accepts as an error message, with
    /// a note of its length, so that a long error still fails its execution instead of the
    /// completion being refused.</summary>
    public static string BoundedErrorText(string text)
    {
        byte[] data = Encoding.UTF8.GetBytes(text);
        if (data.Length <= MaxErrorBytes)
        {
            return text;
        }
        string note = $" …[cut: {data.Length} bytes in all]";
        int keep = MaxErrorBytes - Encoding.UTF8.GetByteCount(note);
        // Decoding a cut multi-byte sequence gives U+FFFD (3 bytes): leave room for it.
        return Encoding.UTF8.GetString(data, 0, keep - 3).TrimEnd('\uFFFD') + note;
    }
}

/// <summary>A value could not be packed, or a stored value is not of the type asked for.</summary>
public class PerperTypeException : PerperException
{
    public PerperTypeException(string message) : base(message) { }
}

/// <summary>The called delegate failed; <see cref="Error"/> is what its execution failed with.</summary>
public class PerperExecutionException : PerperException
{
    public PerperExecutionException(string execution, string error)
        : base($"execution {execution} failed: {error}")
    {
        Execution = execution;
        Error = error;
    }

    public string Execution { get; }
    public string Error { get; }
}

/// <summary>The execution was deleted (cancelled) before it finished.</summary>
public class PerperCancelledException : PerperException
{
    public PerperCancelledException(string execution)
        : base($"execution {execution} was deleted before it finished")
    {
        Execution = execution;
    }

    public string Execution { get; }
}

/// <summary>The stream completed with an error, or was deleted, while it was being read.</summary>
public class PerperStreamException : PerperException
{
    public PerperStreamException(string stream, string error) : base(error)
    {
        Stream = stream;
        Error = error;
    }

    public string Stream { get; }
    public string Error { get; }
}
