"""Model dataclasses <-> JSON-able values, for the control protocol.

The control server sends the mesh configuration as JSON and the proxy rebuilds the very same
frozen dataclasses from it, so both sides share one schema: the type hints of `pymesh.api.model`.
Decoding is strict (unknown keys and wrong types are errors naming the field path) because a
proxy must reject a config it does not fully understand instead of half-applying it.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, Callable, TypeVar

__all__ = ["encode", "decode"]

T = TypeVar("T")
Decoder = Callable[[Any, str], Any]


def encode(obj: Any) -> Any:
    """A JSON-able value: dataclasses -> dict of every field, mappings -> dict, tuples and
    lists -> lists, primitives as they are."""
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        defaults = _defaults(type(obj))
        out = {}
        for name in _field_names(type(obj)):
            value = getattr(obj, name)
            if name not in defaults or value != defaults[name]:
                out[name] = encode(value)
        return out
    if isinstance(obj, Mapping):
        return {_key(k): encode(v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return [encode(item) for item in obj]
    raise TypeError(f"cannot encode {type(obj).__name__}")


def decode(cls: type[T], data: Any, path: str = "") -> T:
    """`cls` rebuilt from `encode`'s output; ValueError naming the field path ("hosts[1]",
    "metadata.labels[app]") on an unknown key, a missing required field or a wrong type."""
    return _decoder(cls)(data, path)


# --- encoding helpers ------------------------------------------------------------------------


@functools.cache
def _defaults(cls: type) -> dict:
    """Field name -> default value. Fields equal to their default are left out of the encoding
    (decode fills them in): snapshots are half the size, and a large push is what limits how
    fast the control server converges."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"cannot encode mapping key {key!r}: keys must be strings")
    return key


# --- decoders, built once per type -----------------------------------------------------------


def _where(path: str) -> str:
    return path or "<root>"


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _fail(path: str, expected: str, value: Any) -> typing.NoReturn:
    raise ValueError(f"{_where(path)}: expected {expected}, got {_kind(value)}")


@functools.cache
def _decoder(tp: Any) -> Decoder:
    """A function (value, path) -> decoded value for the type `tp`."""
    if tp is typing.Any:
        return lambda value, path: value
    if dataclasses.is_dataclass(tp):
        return _dataclass_decoder(tp)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _optional_decoder(tp, args)
    if origin is tuple:
        return _tuple_decoder(tp, args)
    if origin in (Mapping, dict, typing.Mapping):
        return _mapping_decoder(args)
    if tp in _PRIMITIVES:
        return _PRIMITIVES[tp]
    raise TypeError(f"the codec does not support the type {tp!r}")


def _decode_str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        _fail(path, "string", value)
    return value


def _decode_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        _fail(path, "boolean", value)
    return value


def _decode_int(value: Any, path: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        _fail(path, "integer", value)
    return value


def _decode_float(value: Any, path: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        _fail(path, "number", value)
    return float(value)


_PRIMITIVES: dict[Any, Decoder] = {str: _decode_str, bool: _decode_bool, int: _decode_int, float: _decode_float}


def _optional_decoder(tp: Any, args: tuple) -> Decoder:
    others = [a for a in args if a is not type(None)]
    if len(others) != 1 or len(args) != 2:
        raise TypeError(f"the codec supports only Optional unions, not {tp!r}")
    inner = _decoder(others[0])
    return lambda value, path: None if value is None else inner(value, path)


def _tuple_decoder(tp: Any, args: tuple) -> Decoder:
    """tuple[X, ...] (any length) or a fixed tuple[A, B, ...] (exactly that many items)."""
    if not args or Ellipsis in args[:-1] or (args[-1] is Ellipsis and len(args) != 2):
        raise TypeError(f"the codec supports tuple[X, ...] and fixed tuples, not {tp!r}")
    variable = args[-1] is Ellipsis
    items = [_decoder(a) for a in (args[:1] if variable else args)]

    def decode_tuple(value: Any, path: str) -> tuple:
        if not isinstance(value, (list, tuple)):
            _fail(path, "array", value)
        if variable:
            return tuple(items[0](v, f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(items):
            _fail(path, f"array of {len(items)}", value)
        return tuple(decode(v, f"{path}[{i}]") for i, (decode, v) in enumerate(zip(items, value)))

    return decode_tuple


def _mapping_decoder(args: tuple) -> Decoder:
    if args and args[0] is not str:
        raise TypeError(f"the codec supports only string keys, not {args[0]!r}")
    item = _decoder(args[1]) if args else _decoder(typing.Any)

    def decode_mapping(value: Any, path: str) -> dict:
        if not isinstance(value, dict):
            _fail(path, "object", value)
        out = {}
        for key, v in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{_where(path)}: keys must be strings, got {_kind(key)}")
            out[key] = item(v, f"{path}[{key}]")
        return out

    return decode_mapping


def _dataclass_decoder(cls: type) -> Decoder:
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = frozenset(f.name for f in fields)
    required = frozenset(
        f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    # decoders are looked up lazily: a field's type may be the class being built (recursion)
    decoders: dict[str, Decoder] = {}

    def decode_dataclass(value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            _fail(path, f"object ({cls.__name__})", value)
        kwargs = {}
        for name, v in value.items():
            sub = f"{path}.{name}" if path else str(name)
            if name not in names:
                raise ValueError(f"{sub}: unknown field for {cls.__name__}")
            decoder = decoders.get(name)
            if decoder is None:
                decoder = decoders[name] = _decoder(hints[name])
            kwargs[name] = decoder(v, sub)
        missing = sorted(required - kwargs.keys())
        if missing:
            raise ValueError(f"{_where(path)}: missing required field {missing[0]!r} of {cls.__name__}")
        return cls(**kwargs)

    return decode_dataclass
