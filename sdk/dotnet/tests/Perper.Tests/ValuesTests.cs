// SPDX-License-Identifier: MIT
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Perper.Model;

namespace Perper.Tests;

/// <summary>The value table, without a Fabric.</summary>
public sealed class ValuesTests
{
    private static T RoundTrip<T>(T value) => PerperValues.Unpack<T>(PerperValues.Pack(value));

    [Fact]
    public void ScalarsTravelAsTheWrapperTypes()
    {
        Assert.Equal("type.googleapis.com/google.protobuf.Int32Value", PerperValues.Pack(1).TypeUrl);
        Assert.Equal("type.googleapis.com/google.protobuf.Int64Value", PerperValues.Pack(1L).TypeUrl);
        Assert.Equal("type.googleapis.com/google.protobuf.UInt32Value", PerperValues.Pack(1u).TypeUrl);
        Assert.Equal("type.googleapis.com/google.protobuf.UInt64Value", PerperValues.Pack(1ul).TypeUrl);
        Assert.Equal("type.googleapis.com/google.protobuf.FloatValue", PerperValues.Pack(1f).TypeUrl);
        Assert.Equal("type.googleapis.com/google.protobuf.DoubleValue", PerperValues.Pack(1.0).TypeUrl);
        Assert.Equal("type.googleapis.com/google.protobuf.BoolValue", PerperValues.Pack(true).TypeUrl);
        Assert.Equal("type.googleapis.com/google.protobuf.StringValue", PerperValues.Pack("s").TypeUrl);
        Assert.Equal("type.googleapis.com/google.protobuf.BytesValue", PerperValues.Pack(new byte[] { 1 }).TypeUrl);
        Assert.Equal("", PerperValues.Pack(null).TypeUrl);
        Assert.Equal("type.googleapis.com/perper.grpc2.model.PerperStream", PerperValues.Pack(new PerperStream("s")).TypeUrl);
        Assert.Equal(-5, RoundTrip(-5));
        Assert.Equal(long.MinValue, RoundTrip(long.MinValue));
        Assert.Equal(ulong.MaxValue, RoundTrip(ulong.MaxValue));
        Assert.Equal(0.25f, RoundTrip(0.25f));
        Assert.Equal(new byte[] { 0, 255 }, RoundTrip(new byte[] { 0, 255 }));
        Assert.Equal("✓", RoundTrip("✓"));
        Assert.Null(RoundTrip<int?>(null));
        Assert.Equal(new PerperInstance("A", "i"), RoundTrip(new PerperInstance("A", "i")));
        var time = new Timestamp { Seconds = 5 };
        Assert.Equal(time, RoundTrip(time));
    }

    [Fact]
    public void WideningsAndMismatches()
    {
        Assert.Equal(7L, PerperValues.Unpack<long>(PerperValues.Pack(7)));
        Assert.Equal(7L, PerperValues.Unpack<long>(PerperValues.Pack(7u)));
        Assert.Equal(7.0, PerperValues.Unpack<double>(PerperValues.Pack(7)));
        Assert.Equal(0.5, PerperValues.Unpack<double>(PerperValues.Pack(0.5f)));
        var e = Assert.Throws<PerperTypeException>(() => PerperValues.Unpack<int>(PerperValues.Pack(7L)));
        Assert.Equal("cannot read a value of type google.protobuf.Int64Value as int", e.Message);
        Assert.Equal("cannot read null as int", Assert.Throws<PerperTypeException>(() => PerperValues.Unpack<int>(new Any())).Message);
        Assert.Null(PerperValues.Unpack<string>(Any.Pack(Value.ForNull())));
        Assert.Throws<PerperTypeException>(() => PerperValues.Unpack<PerperStream>(PerperValues.Pack(new PerperInstance("a", "b"))));
        Assert.Throws<PerperTypeException>(() => PerperValues.Pack((1, 2)));
        Assert.Throws<PerperTypeException>(() => PerperValues.Pack(new object()));
    }

    [Fact]
    public void UntypedReadsGiveTheNaturalType()
    {
        Assert.IsType<int>(PerperValues.Unpack<object>(PerperValues.Pack(1)));
        Assert.IsType<long>(PerperValues.Unpack<object>(PerperValues.Pack(1L)));
        Assert.IsType<PerperStream>(PerperValues.Unpack<object>(PerperValues.Pack(new PerperStream("s"))));
        Assert.IsType<Any>(PerperValues.Unpack<object>(Any.Pack(new Api { Name = "unknown here" })));
        var nested = (Dictionary<string, object?>)PerperValues.Unpack<object>(PerperValues.Pack(
            new Dictionary<string, object?> { ["n"] = 3, ["r"] = 0.5, ["l"] = new object?[] { "x", null, true } }))!;
        Assert.Equal(3L, nested["n"]);
        Assert.Equal(0.5, nested["r"]);
        Assert.Equal(new List<object?> { "x", null, true }, nested["l"]);
    }

    [Fact]
    public void StructuredValues()
    {
        var map = new Dictionary<string, List<long>> { ["b"] = [1, 2], ["a"] = [] };
        Assert.Equal(map, RoundTrip(map));
        Assert.Equal(new[] { "x", "y" }, RoundTrip(new[] { "x", "y" }));
        // Keys in byte order: equal dictionaries are equal bytes.
        Assert.Equal(PerperValues.Pack(new Dictionary<string, int> { ["a"] = 1, ["é"] = 2, ["b"] = 3 }).Value,
                     PerperValues.Pack(new Dictionary<string, int> { ["b"] = 3, ["é"] = 2, ["a"] = 1 }).Value);
        var e = Assert.Throws<PerperTypeException>(() => PerperValues.Pack(new Dictionary<string, object> { ["big"] = new[] { 1L, 1L << 54 } }));
        Assert.Contains("at key path 'big[1]' is beyond 2^53", e.Message);
        Assert.Contains("number 2.5 at 'x' is not an integer",
            Assert.Throws<PerperTypeException>(() => PerperValues.Unpack<Dictionary<string, int>>(PerperValues.Pack(new Dictionary<string, double> { ["x"] = 2.5 }))).Message);
    }

    [Fact]
    public void SeveralResults()
    {
        List<Any> results = PerperValues.ResultsOf((1, "two", (string?)null));
        Assert.Equal(3, results.Count);
        Assert.Equal((1, "two", (string?)null), PerperValues.UnpackResults(results, typeof((int, string, string?))));
        Assert.Empty(PerperValues.ResultsOf(null));
        Assert.Equal(new object?[] { 1, "two", null }, (object?[])PerperValues.UnpackResults(results, typeof(object))!);
        Assert.Throws<PerperTypeException>(() => PerperValues.UnpackResults(results, typeof((int, string))));
    }

    [Fact]
    public void EndpointListsAreParsedAsTheOtherSdksDo()
    {
        Assert.Equal(["a:1", "b:2", "c:3"], Perper.Protocol.FabricService.ParseEndpoints(" a:1, http://b:2 ,c:3/"));
        Assert.Contains("has an empty address", Assert.Throws<ArgumentException>(() => Perper.Protocol.FabricService.ParseEndpoints("a:1,,b:2")).Message);
        Assert.Contains("TLS is not supported yet", Assert.Throws<ArgumentException>(() => Perper.Protocol.FabricService.ParseEndpoints("https://a:1")).Message);
    }

    [Fact]
    public void LongErrorsAreCutToTheFabricsLimit()
    {
        string text = new('é', 100_000);
        string cut = PerperException.BoundedErrorText(text);
        Assert.True(System.Text.Encoding.UTF8.GetByteCount(cut) <= PerperException.MaxErrorBytes);
        Assert.EndsWith("…[cut: 200000 bytes in all]", cut);
    }
}
