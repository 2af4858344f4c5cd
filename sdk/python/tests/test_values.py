"""The value table (PRODUCT.md §2.3): packing, unpacking, widening, null, model types."""

from __future__ import annotations

import pytest
from google.protobuf import any_pb2, struct_pb2, timestamp_pb2, wrappers_pb2

import perper
from perper import values
from perper.errors import PerperTypeError
from perper.grpc2 import model_pb2

from conftest import run, session


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
