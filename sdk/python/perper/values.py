"""The value table shared by every Perper SDK: Python values <-> google.protobuf.Any.

| Python                          | Any written                     | also read                |
|---------------------------------|---------------------------------|--------------------------|
| None                            | empty Any (no type URL)         | google.protobuf.Value null |
| bool                            | BoolValue                       |                          |
| int                             | Int64Value                      | (U)Int32Value, UInt64Value |
| float                           | DoubleValue                     | FloatValue               |
| str                             | StringValue                     |                          |
| bytes / bytearray               | BytesValue                      |                          |
| Agent, Stream, Dictionary, List | perper.grpc2.model.Perper*      |                          |
| Execution                       | perper.grpc2.model.PerperExecution |                       |
| dict (str keys)                 | Struct                          | Value holding a struct   |
| list                            | ListValue                       | Value holding a list     |
| any protobuf message            | the message itself              |                          |

Inside a Struct or ListValue: None, bool, str, float, nested dict and list/tuple, and int only
when |n| <= 2**53 (a number there is a double; a larger int raises PerperValueError naming its
key path). On reading, a number that is integral and within 2**53 becomes int, any other float.
A tuple at the top level is not a value: returned by a handler it is several results (several
Anys, read back as a tuple).
"""

from __future__ import annotations

from typing import Any as AnyType
from typing import Callable, Optional

from google.protobuf import any_pb2, struct_pb2, symbol_database, wrappers_pb2
from google.protobuf.message import Message

from perper._stubs import model_pb2  # noqa: F401  (model descriptors in the pool)
from perper.errors import PerperTypeError, PerperValueError


_INT_TYPES = {
    "google.protobuf.Int64Value": wrappers_pb2.Int64Value,
    "google.protobuf.Int32Value": wrappers_pb2.Int32Value,
    "google.protobuf.UInt32Value": wrappers_pb2.UInt32Value,
    "google.protobuf.UInt64Value": wrappers_pb2.UInt64Value,
}
_FLOAT_TYPES = {
    "google.protobuf.DoubleValue": wrappers_pb2.DoubleValue,
    "google.protobuf.FloatValue": wrappers_pb2.FloatValue,
}
_SCALAR_TYPES = {
    "google.protobuf.BoolValue": (wrappers_pb2.BoolValue, bool),
    "google.protobuf.StringValue": (wrappers_pb2.StringValue, str),
    "google.protobuf.BytesValue": (wrappers_pb2.BytesValue, bytes),
}

# A number inside a Struct or ListValue is a double: integers up to this magnitude are exact.
MAX_EXACT_INT = 1 << 53

# Model wrappers (perper.model) register themselves here: message full name -> (python class,
# from_message). Kept as a registry so values.py does not import model.py.
_MODEL_TYPES: dict[str, tuple[type, Callable[[Message], AnyType]]] = {}


def register_model_type(message_type: type, python_type: type,
                        from_message: Callable[[Message], AnyType]) -> None:
    """Makes unpack() turn messages of `message_type` into `python_type` via `from_message`."""
    _MODEL_TYPES[message_type.DESCRIPTOR.full_name] = (python_type, from_message)


def type_name_of(value: any_pb2.Any) -> str:
    """Returns the full message name of a packed Any ('' for an empty Any)."""
    return value.type_url.rsplit("/", 1)[-1] if value.type_url else ""


def _pack_message(message: Message) -> any_pb2.Any:
    # Deterministic: map entries (a Struct's fields) in key order, so that equal values have
    # equal bytes (dictionary keys and compare_and_set compare bytes).
    result = any_pb2.Any()
    result.Pack(message, deterministic=True)
    return result


def _child_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _to_struct_value(value: AnyType, path: str) -> struct_pb2.Value:
    """Converts a value inside a Struct or ListValue; `path` names it in errors."""
    if value is None:
        return struct_pb2.Value(null_value=struct_pb2.NULL_VALUE)
    if isinstance(value, bool):  # before int: bool is a subclass of int
        return struct_pb2.Value(bool_value=value)
    if isinstance(value, int):
        if abs(value) > MAX_EXACT_INT:
            raise PerperValueError(
                f"int {value} at key path {path!r} is beyond 2**53: a number inside a Struct is "
                "a double and would lose digits (store it outside the dict, or as a str)")
        return struct_pb2.Value(number_value=float(value))
    if isinstance(value, float):
        return struct_pb2.Value(number_value=value)
    if isinstance(value, str):
        return struct_pb2.Value(string_value=value)
    if isinstance(value, dict):
        return struct_pb2.Value(struct_value=_to_struct(value, path))
    if isinstance(value, (list, tuple)):
        return struct_pb2.Value(list_value=_to_list_value(value, path))
    raise PerperTypeError(
        f"cannot put a value of Python type {type(value).__name__} inside a Struct (at key path "
        f"{path!r}): use None, bool, int, float, str, dict or list")


def _to_struct(value: dict, path: str = "") -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    for key, item in value.items():
        if not isinstance(key, str):
            raise PerperTypeError(
                f"cannot pack a dict with a key of Python type {type(key).__name__} (key {key!r}"
                f"{' in ' + repr(path) if path else ''}): a Struct's keys are str")
        result.fields[key].CopyFrom(_to_struct_value(item, _child_path(path, key)))
    return result


def _to_list_value(value: list | tuple, path: str = "") -> struct_pb2.ListValue:
    result = struct_pb2.ListValue()
    for index, item in enumerate(value):
        result.values.append(_to_struct_value(item, f"{path}[{index}]"))
    return result


def pack(value: AnyType) -> any_pb2.Any:
    """Packs a Python value into an Any following the value table. Raises PerperTypeError."""
    if value is None:
        return any_pb2.Any()
    if isinstance(value, any_pb2.Any):
        return value
    if isinstance(value, bool):  # before int: bool is a subclass of int
        return _pack_message(wrappers_pb2.BoolValue(value=value))
    if isinstance(value, int):
        if not -(1 << 63) <= value < (1 << 63):
            raise PerperTypeError(f"int {value} does not fit in google.protobuf.Int64Value")
        return _pack_message(wrappers_pb2.Int64Value(value=value))
    if isinstance(value, float):
        return _pack_message(wrappers_pb2.DoubleValue(value=value))
    if isinstance(value, str):
        return _pack_message(wrappers_pb2.StringValue(value=value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _pack_message(wrappers_pb2.BytesValue(value=bytes(value)))
    if isinstance(value, dict):
        return _pack_message(_to_struct(value))
    if isinstance(value, list):
        return _pack_message(_to_list_value(value))
    to_message = getattr(value, "to_message", None)
    if to_message is not None:
        return _pack_message(to_message())
    if isinstance(value, Message):
        return _pack_message(value)
    if isinstance(value, tuple):
        raise PerperTypeError(
            "cannot pack a tuple: a handler returning a tuple returns several results; pack a "
            "list to send one list (google.protobuf.ListValue)")
    raise PerperTypeError(
        f"cannot pack a value of Python type {type(value).__name__}: use None, bool, int, float, "
        "str, bytes, dict, list, a Perper model object or a protobuf message")


def pack_all(values: tuple | list) -> list[any_pb2.Any]:
    """Packs each value (arguments, results)."""
    return [pack(v) for v in values]


def _describe(expected: AnyType) -> str:
    if expected is None or expected is type(None):
        return "None"
    if isinstance(expected, type):
        descriptor = getattr(expected, "DESCRIPTOR", None)
        if descriptor is not None and hasattr(descriptor, "full_name"):
            return descriptor.full_name
        return expected.__name__
    return repr(expected)


def _mismatch(value: any_pb2.Any, expected: AnyType) -> PerperTypeError:
    return PerperTypeError(
        f"cannot read a value of type {type_name_of(value) or 'null'} as {_describe(expected)}")


def _from_number(number: float) -> AnyType:
    """An integral number within 2**53 reads as int (it was most likely written as one)."""
    if number.is_integer() and abs(number) <= MAX_EXACT_INT:
        return int(number)
    return number


def _from_struct(struct: struct_pb2.Struct) -> dict:
    return {k: _from_struct_value(x) for k, x in struct.fields.items()}


def _from_list_value(list_value: struct_pb2.ListValue) -> list:
    return [_from_struct_value(x) for x in list_value.values]


def _from_struct_value(v: struct_pb2.Value) -> AnyType:
    kind = v.WhichOneof("kind")
    if kind in (None, "null_value"):
        return None
    if kind == "number_value":
        return _from_number(v.number_value)
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "list_value":
        return _from_list_value(v.list_value)
    return _from_struct(v.struct_value)


# Struct and ListValue read as dict and list (the messages themselves when asked for by type).
_STRUCTURED_TYPES = {
    "google.protobuf.Struct": (struct_pb2.Struct, dict, _from_struct),
    "google.protobuf.ListValue": (struct_pb2.ListValue, list, _from_list_value),
}


def is_null(value: any_pb2.Any) -> bool:
    """Tells whether an Any is null: empty type URL, or a google.protobuf.Value holding null."""
    if not value.type_url:
        return True
    if type_name_of(value) == "google.protobuf.Value":
        v = struct_pb2.Value()
        value.Unpack(v)
        return v.WhichOneof("kind") in (None, "null_value")
    return False


def unpack(value: Optional[any_pb2.Any], expected: AnyType = None) -> AnyType:
    """Unpacks an Any into a Python value following the value table.

    `expected` (optional) is the type the caller wants: int, float, bool, str, bytes, a model
    class (Agent, Stream, ...) or a protobuf message class. A value of another type raises
    PerperTypeError naming both types; null is always returned as None. Without `expected`, a
    message type unknown to this process is returned as the Any itself.
    """
    if value is None or is_null(value):
        return None
    name = type_name_of(value)
    if name in _INT_TYPES:
        if expected not in (None, int):
            raise _mismatch(value, expected)
        message = _INT_TYPES[name]()
        value.Unpack(message)
        return message.value
    if name in _FLOAT_TYPES:
        if expected not in (None, float):
            raise _mismatch(value, expected)
        message = _FLOAT_TYPES[name]()
        value.Unpack(message)
        return message.value
    if name in _SCALAR_TYPES:
        message_type, python_type = _SCALAR_TYPES[name]
        if expected not in (None, python_type):
            raise _mismatch(value, expected)
        message = message_type()
        value.Unpack(message)
        return message.value
    if name == "google.protobuf.Value":
        message = struct_pb2.Value()
        value.Unpack(message)
        if expected is struct_pb2.Value:
            return message
        result = _from_struct_value(message)
        if expected is float and type(result) is int:
            return float(result)
        if expected is not None and (not isinstance(result, expected) or (
                expected is int and isinstance(result, bool))):
            raise _mismatch(value, expected)
        return result
    if name in _STRUCTURED_TYPES:
        message_type, python_type, convert = _STRUCTURED_TYPES[name]
        message = message_type()
        value.Unpack(message)
        if expected is message_type:
            return message
        if expected not in (None, python_type):
            raise _mismatch(value, expected)
        return convert(message)
    if name in _MODEL_TYPES:
        python_type, from_message = _MODEL_TYPES[name]
        message_type = symbol_database.Default().GetSymbol(name)
        message = message_type()
        value.Unpack(message)
        if expected is message_type:
            return message
        if expected not in (None, python_type):
            raise _mismatch(value, expected)
        return from_message(message)
    if isinstance(expected, type) and issubclass(expected, Message):
        if expected.DESCRIPTOR.full_name != name:
            raise _mismatch(value, expected)
        message = expected()
        value.Unpack(message)
        return message
    if expected is not None and expected is not any_pb2.Any:
        raise _mismatch(value, expected)
    try:
        message_type = symbol_database.Default().GetSymbol(name)
    except KeyError:
        return value
    message = message_type()
    value.Unpack(message)
    return message


def unpack_results(results, expected: AnyType = None) -> AnyType:
    """Turns the results of an execution into None (none), a value (one) or a tuple (several)."""
    if len(results) == 0:
        return None
    if len(results) == 1:
        return unpack(results[0], expected)
    if isinstance(expected, tuple):
        if len(expected) != len(results):
            raise PerperTypeError(
                f"expected {len(expected)} results, the execution returned {len(results)}")
        return tuple(unpack(r, t) for r, t in zip(results, expected))
    return tuple(unpack(r) for r in results)


def results_of(returned: AnyType) -> list[any_pb2.Any]:
    """Packs what a handler returned: None -> no results, a tuple -> several, else one."""
    if returned is None:
        return []
    if isinstance(returned, tuple):
        return pack_all(returned)
    return [pack(returned)]

