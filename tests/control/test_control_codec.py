"""The codec: every model class survives encode -> JSON -> decode, and bad input is a clear error
naming the field path."""

from __future__ import annotations

import dataclasses
import inspect
import json
import random
import types
import typing
from collections.abc import Mapping
from pathlib import Path

import pytest

from pymesh.api import model
from pymesh.api.codec import decode, encode
from pymesh.api.load import load_paths

MODEL_CLASSES = [
    cls for _, cls in inspect.getmembers(model, inspect.isclass)
    if dataclasses.is_dataclass(cls) and cls.__module__ == model.__name__
]
API_DATA = Path(__file__).parent.parent / "api" / "data"


def arbitrary(tp, rng: random.Random, depth: int = 0):
    """A random value of type `tp` (the model's types only), to drive the round trip."""
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return tp(**{f.name: arbitrary(hints[f.name], rng, depth + 1) for f in dataclasses.fields(tp) if f.init})
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = next(a for a in args if a is not type(None))
        return None if rng.random() < 0.3 else arbitrary(inner, rng, depth)
    size = rng.randint(0, 3 if depth < 4 else 0)
    if origin is tuple and args[-1] is Ellipsis:
        return tuple(arbitrary(args[0], rng, depth + 1) for _ in range(size))
    if origin is tuple:  # fixed: one of each
        return tuple(arbitrary(arg, rng, depth + 1) for arg in args)
    if origin is Mapping:
        return {arbitrary(str, rng): arbitrary(args[1], rng, depth + 1) for _ in range(size)}
    if tp is str:
        return rng.choice(["", "reviews", "ünïcode ✓", 'quote"and\\slash', "a.b.svc.cluster.local"])
    if tp is bool:
        return rng.random() < 0.5
    if tp is int:
        return rng.choice([0, 1, 9080, -1, 2**40])
    if tp is float:
        return rng.choice([0.0, 0.25, 1.5, 1e-3, 3600.0])
    if tp is typing.Any:  # free-form JSON (a PythonFilter's pluginConfig values)
        return rng.choice([None, "x", 1, 0.5, True, [1, "a"], {"k": {"n": [None]}}])
    raise AssertionError(f"no generator for {tp!r}")


@pytest.mark.parametrize("cls", MODEL_CLASSES, ids=lambda c: c.__name__)
def test_round_trip_every_model_class(cls) -> None:
    rng = random.Random(cls.__name__)
    for _ in range(30):
        value = arbitrary(cls, rng)
        wire = json.loads(json.dumps(encode(value)))
        decoded = decode(cls, wire)
        assert decoded == value
        assert encode(decoded) == encode(value)  # fields outside == (Source) survive too
        assert type(decoded) is cls


def test_every_model_class_is_covered() -> None:
    assert model.MeshConfig in MODEL_CLASSES and model.Source in MODEL_CLASSES and len(MODEL_CLASSES) > 30


def test_round_trip_of_loaded_configuration() -> None:
    config = load_paths([str(API_DATA)]).config
    assert config.service_entries and config.virtual_services and config.sidecars
    assert decode(model.MeshConfig, json.loads(json.dumps(encode(config)))) == config


def test_encode_shapes() -> None:
    se = model.ServiceEntry(model.Metadata("a", labels={"app": "a"}), hosts=("a",), workload_selector=None)
    out = encode(se)
    assert out["hosts"] == ["a"] and out["metadata"]["labels"] == {"app": "a"}
    # fields equal to their defaults are left out (smaller pushes); decode fills them back in
    assert "workload_selector" not in out and "source" not in out["metadata"] and "location" not in out
    assert decode(model.ServiceEntry, out) == se


def test_missing_fields_with_defaults_take_them() -> None:
    assert decode(model.Destination, {"host": "x"}) == model.Destination("x")


def test_mappings_decode_to_dicts_and_tuples_from_lists() -> None:
    spec = decode(model.WorkloadEntrySpec, {"address": "10.0.0.1", "ports": {"http": 80}})
    assert spec.ports == {"http": 80} and isinstance(spec.ports, dict)
    assert decode(tuple[int, ...], [1, 2]) == (1, 2)
    assert decode(tuple[str, int], ["a", 1]) == ("a", 1)
    with pytest.raises(ValueError, match="expected array of 2"):
        decode(tuple[str, int], ["a"])


def test_an_int_is_a_valid_float() -> None:
    retry = decode(model.HTTPRetry, {"attempts": 2, "per_try_timeout": 1})
    assert retry.per_try_timeout == 1.0 and isinstance(retry.per_try_timeout, float)


@pytest.mark.parametrize("data, error", [
    ({"service_entries": [{"metadata": {"name": 1}, "hosts": []}]},
     "service_entries[0].metadata.name: expected string, got int"),
    ({"service_entries": [{"metadata": {"name": "a"}, "hosts": ["a"], "colour": "red"}]},
     "service_entries[0].colour: unknown field for ServiceEntry"),
    ({"service_entries": [{"metadata": {"name": "a"}}]},
     "service_entries[0]: missing required field 'hosts' of ServiceEntry"),
    ({"service_entries": {"a": 1}}, "service_entries: expected array, got object"),
    ({"workload_entries": [{"metadata": {"name": "a"}, "spec": {"address": "x", "ports": {"http": "80"}}}]},
     "workload_entries[0].spec.ports[http]: expected integer, got string"),
    ({"workload_entries": [{"metadata": {"name": "a"}, "spec": {"address": "x", "weight": True}}]},
     "workload_entries[0].spec.weight: expected integer, got boolean"),
    ({"virtual_services": [{"metadata": {"name": "a"}, "hosts": ["a"], "http": [{"timeout": "5s"}]}]},
     "virtual_services[0].http[0].timeout: expected number, got string"),
    ({"sidecars": [{"metadata": {"name": "a"}, "ingress": [{"port": None}]}]},
     "sidecars[0].ingress[0].port: expected object (ServicePort), got null"),
    ([], "<root>: expected object (MeshConfig), got array"),
])
def test_strict_errors_name_the_path(data, error) -> None:
    with pytest.raises(ValueError) as info:
        decode(model.MeshConfig, data)
    assert str(info.value) == error


def test_decoded_values_are_frozen() -> None:
    value = decode(model.Destination, {"host": "x"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.host = "y"  # type: ignore[misc]


def test_unsupported_values_are_type_errors() -> None:
    with pytest.raises(TypeError):
        encode(object())
    with pytest.raises(TypeError):
        encode({1: "a"})
    with pytest.raises(TypeError):
        decode(set[int], [1])
