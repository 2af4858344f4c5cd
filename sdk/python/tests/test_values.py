"""The value table (PRODUCT.md §2.3): packing, unpacking, widening, null, model types."""

from __future__ import annotations

import pytest
from google.protobuf import any_pb2, struct_pb2, timestamp_pb2, wrappers_pb2

import perper
from perper import values
from perper.errors import PerperTypeError
from perper.grpc2 import model_pb2

from conftest import FabricProcess, run, session


def packed(message) -> any_pb2.Any:
    result = any_pb2.Any()
    result.Pack(message)
    return result


@pytest.mark.parametrize("value, type_name", [
    (True, "google.protobuf.BoolValue"),
    (False, "google.protobuf.BoolValue"),
    (0, "google.protobuf.Int64Value"),
    (-(1 << 63), "google.protobuf.Int64Value"),
    (3.5, "google.protobuf.DoubleValue"),
    ("héllo", "google.protobuf.StringValue"),
    (b"\x00\xff", "google.protobuf.BytesValue"),
])
def test_scalars_round_trip_with_their_wrapper_type(value, type_name):
    any_value = values.pack(value)
    assert values.type_name_of(any_value) == type_name
    result = values.unpack(any_value)
    assert result == value and type(result) is type(value)


def test_bool_is_never_mistaken_for_int():
    assert values.unpack(values.pack(True)) is True
    with pytest.raises(PerperTypeError):
        values.unpack(values.pack(True), int)
    with pytest.raises(PerperTypeError):
        values.unpack(values.pack(1), bool)


def test_narrower_wire_types_read_as_int_and_float():
    assert values.unpack(packed(wrappers_pb2.Int32Value(value=-7)), int) == -7
    assert values.unpack(packed(wrappers_pb2.UInt32Value(value=4000000000)), int) == 4000000000
    assert values.unpack(packed(wrappers_pb2.UInt64Value(value=1 << 63)), int) == 1 << 63
    assert values.unpack(packed(wrappers_pb2.FloatValue(value=1.5)), float) == 1.5


def test_null_is_an_empty_any_and_value_null_reads_as_none():
    assert values.pack(None) == any_pb2.Any()
    assert values.unpack(any_pb2.Any()) is None
    assert values.unpack(any_pb2.Any(), int) is None
    assert values.unpack(packed(struct_pb2.Value(null_value=struct_pb2.NULL_VALUE))) is None


def test_mismatch_names_both_types():
    with pytest.raises(PerperTypeError) as error:
        values.unpack(values.pack("text"), int)
    assert "google.protobuf.StringValue" in str(error.value) and "int" in str(error.value)
    with pytest.raises(PerperTypeError) as error:
        values.unpack(values.pack(1), timestamp_pb2.Timestamp)
    assert "Int64Value" in str(error.value) and "google.protobuf.Timestamp" in str(error.value)


def test_unpackable_python_value_is_a_clear_error():
    with pytest.raises(PerperTypeError, match="set"):
        values.pack({1, 2})
    with pytest.raises(PerperTypeError, match="Int64Value"):
        values.pack(1 << 64)


def test_protobuf_messages_travel_as_themselves():
    stamp = timestamp_pb2.Timestamp(seconds=12, nanos=34)
    any_value = values.pack(stamp)
    assert any_value.type_url == "type.googleapis.com/google.protobuf.Timestamp"
    assert values.unpack(any_value) == stamp
    assert values.unpack(any_value, timestamp_pb2.Timestamp) == stamp


def test_model_types_travel_as_model_messages():
    cases = [
        (perper.Agent("Printer", "Run-1"), model_pb2.PerperInstance(instance="Run-1",
                                                                    agent="Printer")),
        (perper.Stream("s", 5, 2), model_pb2.PerperStream(stream="s", start_key=5, stride=2)),
        (perper.Dictionary("d"), model_pb2.PerperDictionary(dictionary="d")),
        (perper.List("l"), model_pb2.PerperList(list="l")),
        (perper.Execution("e"), model_pb2.PerperExecution(execution="e")),
    ]
    for value, message in cases:
        any_value = values.pack(value)
        assert any_value == packed(message)
        assert values.unpack(any_value) == value
        assert values.unpack(any_value, type(value)) == value
        assert values.unpack(any_value, type(message)) == message
    # A message written by another SDK under the model type URL reads as the model type.
    assert values.unpack(packed(model_pb2.PerperStream(stream="x"))) == perper.Stream("x", 0, 0)


def test_several_results_are_several_anys():
    assert values.results_of(None) == []
    assert values.results_of((1, "a")) == [values.pack(1), values.pack("a")]
    assert values.unpack_results([]) is None
    assert values.unpack_results([values.pack(1)]) == 1
    assert values.unpack_results([values.pack(1), values.pack("a")]) == (1, "a")
    assert values.unpack_results([values.pack(1), values.pack("a")], (int, str)) == (1, "a")
    with pytest.raises(PerperTypeError):
        values.unpack_results([values.pack(1), values.pack("a")], (int, int))


def test_values_come_back_from_the_fabric_unchanged(fabric):
    samples = [True, 7, -2.25, "text", b"\x01\x02", None, perper.Stream("s", 3, 1),
               perper.Agent("A", "Run-x"), timestamp_pb2.Timestamp(seconds=99)]

    async def body():
        async with session(fabric.address):
            state = perper.state()
            for i, value in enumerate(samples):
                await state.set(f"k{i}", value)
            for i, value in enumerate(samples):
                assert await state.get(f"k{i}", "absent") == (value if value is not None
                                                             else "absent")
    run(body())


def test_16_mib_values_travel_end_to_end_with_the_default_limits(fabric):
    """PRODUCT.md §5: arguments, results, state values and stream items of 16 MiB each."""
    big = bytes(range(256)) * (16 * 1024 * 1024 // 256)  # 16 MiB

    async def echo(value: bytes) -> bytes:
        return value

    async def body():
        async with session(fabric.address, handlers={"Size": len, "Echo": echo}):
            assert await perper.call("Size", big) == len(big)
            assert await perper.call("Echo", big) == big
            await perper.state().set("big", big)
            assert await perper.state().get("big") == big
            stream = await perper.blank_stream(ephemeral=False)
            await stream.write(big)
            await stream.complete()
            items = [item async for item in stream]
            assert items == [big]
    run(body(), timeout=60)


def test_a_value_over_65_mib_travels_when_the_fabric_allows_it():
    """The SDKs cap no message of their own (STYLE.md): the Fabric's --max-value-size decides, so
    a Fabric that allows 100 MiB values takes and returns a 70 MiB one."""
    fabric = FabricProcess(extra_args=["--max-value-size", str(100 << 20)])
    huge = b"\x5a" * (70 << 20)

    async def body():
        async with session(fabric.address):
            await perper.state().set("huge", huge)
            assert await perper.state().get("huge") == huge
    try:
        run(body(), timeout=60)
    finally:
        fabric.stop()


# Structured values: dict <-> google.protobuf.Struct, list <-> google.protobuf.ListValue.

NESTED = {"name": "sensor", "ok": True, "none": None, "ratio": 0.25, "count": 3,
          "limits": [-(1 << 53), 1 << 53, 1.5, "x", None, False, {"deep": [[], {}]}],
          "empty": {}}


def test_a_dict_travels_as_a_struct_and_comes_back_equal():
    any_value = values.pack(NESTED)
    assert values.type_name_of(any_value) == "google.protobuf.Struct"
    struct = struct_pb2.Struct()
    any_value.Unpack(struct)
    assert struct.fields["count"].number_value == 3.0
    assert struct.fields["limits"].list_value.values[2].number_value == 1.5
    assert struct.fields["none"].WhichOneof("kind") == "null_value"
    result = values.unpack(any_value)
    assert result == NESTED
    # Integers come back as int, other numbers as float, exactly.
    assert type(result["count"]) is int and type(result["ratio"]) is float
    assert [type(v) for v in result["limits"][:3]] == [int, int, float]
    assert values.unpack(any_value, dict) == NESTED
    assert values.unpack(any_value, struct_pb2.Struct) == struct


def test_a_top_level_list_travels_as_a_list_value_and_tuples_inside_as_lists():
    any_value = values.pack([1, "two", (3, 4.5), {"five": [6]}])
    assert values.type_name_of(any_value) == "google.protobuf.ListValue"
    assert values.unpack(any_value) == [1, "two", [3, 4.5], {"five": [6]}]
    assert values.unpack(any_value, list) == [1, "two", [3, 4.5], {"five": [6]}]
    assert values.unpack(values.pack({"t": (1, 2)})) == {"t": [1, 2]}
    with pytest.raises(PerperTypeError, match="ListValue.*dict"):
        values.unpack(any_value, dict)


def test_a_top_level_tuple_is_still_several_results_not_a_value():
    assert values.results_of((1, [2, 3])) == [values.pack(1), values.pack([2, 3])]
    with pytest.raises(PerperTypeError, match="several results"):
        values.pack((1, 2))


def test_a_top_level_int_stays_an_int64_value_even_beyond_2_53():
    big = (1 << 62) + 1
    assert values.type_name_of(values.pack(big)) == "google.protobuf.Int64Value"
    assert values.unpack(values.pack(big)) == big


def test_an_int_beyond_2_53_inside_a_struct_is_refused_with_its_key_path():
    assert values.unpack(values.pack({"n": -(1 << 53)})) == {"n": -(1 << 53)}
    with pytest.raises(ValueError, match=r"'outer\.inner\[1\]'") as error:
        values.pack({"outer": {"inner": [0, (1 << 53) + 1]}})
    assert isinstance(error.value, perper.PerperValueError)
    assert str((1 << 53) + 1) in str(error.value)
    with pytest.raises(ValueError, match=r"'\[0\]\.k'"):
        values.pack([{"k": -(1 << 60)}])


def test_what_a_struct_cannot_hold_is_a_clear_error():
    with pytest.raises(PerperTypeError, match="key of Python type int"):
        values.pack({1: "a"})
    with pytest.raises(PerperTypeError, match=r"bytes.*'a\.b'"):
        values.pack({"a": {"b": b"raw"}})
    with pytest.raises(PerperTypeError, match=r"Stream.*'\[0\]'"):
        values.pack([perper.Stream("s")])


def test_numbers_read_as_int_only_when_integral_and_exact():
    message = struct_pb2.Struct()
    message.update({"a": 2.0, "b": 2.5, "c": float(1 << 60), "d": float("inf")})
    result = values.unpack(packed(message))
    assert result["a"] == 2 and type(result["a"]) is int
    assert type(result["b"]) is float
    assert type(result["c"]) is float  # beyond 2**53: not known to be exact
    assert result["d"] == float("inf")


def test_a_value_holding_a_struct_reads_as_a_dict():
    # What `perper call` (the CLI) sends for a JSON object or array.
    message = struct_pb2.Value()
    message.struct_value.update({"n": 7, "list": [1, "x"]})
    assert values.unpack(packed(message)) == {"n": 7, "list": [1, "x"]}
    number = packed(struct_pb2.Value(number_value=4.0))
    assert values.unpack(number) == 4 and values.unpack(number, float) == 4.0
    assert type(values.unpack(number, float)) is float
    with pytest.raises(PerperTypeError):
        values.unpack(packed(struct_pb2.Value(bool_value=True)), int)


def test_structured_values_come_back_from_the_fabric_in_state_and_streams(fabric):
    async def produce():
        yield NESTED
        yield [1, [2, {"three": 3}]]

    async def body():
        async with session(fabric.address, handlers={"Produce": produce,
                                                     "Echo": lambda value: value}):
            state = perper.state()
            await state.set("nested", NESTED)
            assert await state.get("nested") == NESTED
            assert await state.get("nested", type=dict) == NESTED
            # A dict is a key too (compared on its packed bytes).
            await state.set({"k": 1}, [1, 2])
            assert await state.get({"k": 1}) == [1, 2]
            assert await state.compare_and_set("nested", NESTED, {"replaced": True})
            assert await state.get("nested") == {"replaced": True}
            stream = await perper.stream("Produce")
            assert [item async for item in stream] == [NESTED, [1, [2, {"three": 3}]]]
            assert await perper.call("Echo", NESTED) == NESTED
    run(body())


def test_equal_dicts_pack_to_equal_bytes_whatever_their_insertion_order():
    first = values.pack({"b": 1, "a": {"y": 2, "x": 3}})
    second = values.pack({"a": {"x": 3, "y": 2}, "b": 1})
    assert first.SerializeToString() == second.SerializeToString()
