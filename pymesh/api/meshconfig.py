"""Istio's MeshConfig: the telemetry providers and defaults, from the `istio` ConfigMap in
istio-system (its data.mesh is MeshConfig's YAML, as a real installation holds it) or from a
file (`--mesh-config`, istiod's /etc/istio/config/mesh).

Istio parses the text with protobuf's JSON rules, so a field may be written under its JSON
(camelCase) or proto (snake_case) name; both are read here (Istio's own samples use
`resource_detectors`). Fields pymesh does not use are accepted and listed in `no_effect`, which
the compiler turns into warnings; a field Istio does not have is an error, as everywhere.
"""

from __future__ import annotations

import json
from dataclasses import replace
import os
import re
from typing import Any, Callable

from pymesh.api import model, shapes
from pymesh.api import limits as input_limits
from pymesh.api.errors import ConfigError, ConfigInvalid
from pymesh.api.limits import LimitExceeded
from pymesh.api.reader import (PORT, Convert, Reader, Sink, Slot, boolean, choice, describe, duration, integer,
                               message, number, text)
from pymesh.api.shapes import Shape
from pymesh.api.yamltree import LineMap, YAMLSyntaxError, read_documents
from pymesh.telemetry import access_format

MESH_CONFIG_MAP = ("istio-system", "istio")  # the ConfigMap istiod reads (namespace, name)
TRACE_KINDS = ("zipkin", "opentelemetry")
RUN_KINDS = TRACE_KINDS + ("envoyFileAccessLog", "prometheus")  # the provider kinds pymesh runs
_SNAKE = re.compile(r"_([a-z0-9])")


def proto_message(shape: Shape, build: Callable[[Reader], Any], *, extra: frozenset[str] = frozenset()) -> Convert:
    """`message`, with each key also accepted under its proto (snake_case) name; `extra` names
    fields accepted without being read (they are reported as having no effect)."""
    if extra:
        shape = Shape(shape.name, shape.fields | extra, shape.unsupported)

    def convert(sink: Sink, slot: Slot) -> Any:
        if isinstance(slot.value, LineMap):
            slot = Slot(_camel_keys(slot.value), slot.line, slot.path)
        return message(shape, build)(sink, slot)

    return convert


def _camel_keys(data: LineMap) -> LineMap:
    out = LineMap(data.line)
    for key, value in data.items():
        name = _SNAKE.sub(lambda m: m.group(1).upper(), key) if isinstance(key, str) else key
        out[name] = value
        out.key_lines[name] = data.key_lines[key]
    return out


def read_mesh_config(sink: Sink, slot: Slot, source: model.Source) -> model.IstioMeshConfig | None:
    """MeshConfig from a parsed mapping (data.mesh's text, or a --mesh-config file)."""

    def build(r: Reader) -> model.IstioMeshConfig:
        no_effect = [name for name in sorted(shapes.MESH_CONFIG_NO_EFFECT) if r.has(name)]
        defaults = r.get("defaultProviders", proto_message(shapes.DEFAULT_PROVIDERS, _default_providers),
                         model.IstioMeshConfig())
        tracing, proxy_no_effect = r.get("defaultConfig", _default_config(), (model.IstioMeshConfig(), ()))
        return model.IstioMeshConfig(
            source=source,
            extension_providers=_providers(r),
            default_tracing=defaults.default_tracing,
            default_metrics=defaults.default_metrics,
            default_access_logging=defaults.default_access_logging,
            enable_tracing=r.get("enableTracing", boolean, True),
            access_log_file=r.get("accessLogFile", text(), ""),
            access_log_encoding=r.get("accessLogEncoding", choice("accessLogEncoding", ("TEXT", "JSON")), "TEXT"),
            access_log_format=_access_log_format(r),
            root_namespace=r.get("rootNamespace", text(), "") or "istio-system",
            sampling=tracing.sampling,
            zipkin_address=tracing.zipkin_address,
            max_path_tag_length=tracing.max_path_tag_length,
            no_effect=tuple(no_effect) + proxy_no_effect,
        )

    return proto_message(shapes.MESH_CONFIG, build, extra=shapes.MESH_CONFIG_NO_EFFECT)(sink, slot)


def _access_log_format(r: Reader) -> str:
    """accessLogFormat: command operators for TEXT, a JSON object of them for JSON."""
    value = r.get("accessLogFormat", text(access_format.check), "")
    if value and r.get("accessLogEncoding", text(), "TEXT") == "JSON":
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            r.error("accessLogFormat", f"with accessLogEncoding JSON this must be a JSON object: {exc}")
            return ""
        if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
            r.error("accessLogFormat", "with accessLogEncoding JSON this must be a JSON object of strings")
            return ""
    return value


def _default_providers(r: Reader) -> model.IstioMeshConfig:
    def names(key: str) -> tuple[str, ...]:
        return r.get_list(key, text())

    # Istio merges the file onto its defaults: metrics stays [prometheus] unless given
    metrics = names("metrics") if r.has("metrics") else model.IstioMeshConfig.default_metrics
    return model.IstioMeshConfig(default_tracing=names("tracing"), default_metrics=metrics,
                                 default_access_logging=names("accessLogging"))


def _default_config() -> Convert:
    """defaultConfig (a ProxyConfig): its tracing is read; every other field has no effect."""

    def convert(sink: Sink, slot: Slot) -> tuple[model.IstioMeshConfig, tuple[str, ...]]:
        if not isinstance(slot.value, LineMap):
            sink.at(slot, f"expected a mapping, got {describe(slot.value)}")
            return model.IstioMeshConfig(), ()
        data = _camel_keys(slot.value)
        others = tuple(f"defaultConfig.{key}" for key in data if key != "tracing")
        tracing = data.get("tracing")
        if tracing is None:
            return model.IstioMeshConfig(), others
        read = proto_message(shapes.PROXY_TRACING, _proxy_tracing)
        found = read(sink, Slot(tracing, data.key_lines["tracing"], f"{slot.path}.tracing")) or model.IstioMeshConfig()
        return found, others + found.no_effect

    return convert


def _proxy_tracing(r: Reader) -> model.IstioMeshConfig:
    zipkin = r.get("zipkin", proto_message(shapes.ZIPKIN_ADDRESS, lambda z: z.get("address", text(_address), "")), "")
    others = ("customTags", "lightstep", "datadog", "stackdriver", "openCensusAgent", "tlsSettings")
    return model.IstioMeshConfig(sampling=r.get("sampling", number(0.0, 100.0)), zipkin_address=zipkin,
                                 max_path_tag_length=r.get("maxPathTagLength", integer(0, 2**32 - 1), 0),
                                 no_effect=tuple(f"defaultConfig.tracing.{k}" for k in others if r.slot(k)))


def _address(value: str) -> str | None:
    """host:port, as Istio's ValidateProxyAddress (a port that int() could not read raised in the
    compiler, one over 65535 was used)."""
    host, _, port = value.rpartition(":")
    if not host or not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        return f"{value[:100]!r} is not host:port (a port from 1 to 65535)"
    return None


def _providers(r: Reader) -> tuple[model.ExtensionProvider, ...]:
    providers = r.get_list("extensionProviders", proto_message(shapes.MESH_EXTENSION_PROVIDER, _provider))
    seen: set[str] = set()
    for index, provider in enumerate(providers):
        if provider.name in seen:
            r.sink.add(r.line_of("extensionProviders"), f"{r.path_of('extensionProviders')}[{index}].name",
                       f"duplicate extension provider name {provider.name!r}")
        seen.add(provider.name)
    return providers


def _provider(r: Reader) -> model.ExtensionProvider:
    name = r.get("name", text(), "", required=True)
    kinds = sorted(shapes.MESH_EXTENSION_PROVIDER.fields - {"name"})
    kind = r.one_of(tuple(kinds), required=True) or ""
    if kind == "zipkin":
        return r.get(kind, proto_message(shapes.ZIPKIN_PROVIDER, lambda p: _zipkin(name, p)),
                     model.ExtensionProvider(name, kind))
    if kind == "opentelemetry":
        return r.get(kind, proto_message(shapes.OPENTELEMETRY_PROVIDER, lambda p: _opentelemetry(name, p)),
                     model.ExtensionProvider(name, kind))
    if kind == "envoyFileAccessLog":
        return r.get(kind, proto_message(shapes.FILE_ACCESS_LOG_PROVIDER, lambda p: _file_log(name, p)),
                     model.ExtensionProvider(name, kind, path="/dev/stdout"))
    if kind == "prometheus" and r.has(kind):
        body = r.slot(kind)
        if not isinstance(body.value, LineMap) or body.value:  # PrometheusMetricsProvider has no fields
            r.error(kind, "expected an empty mapping ({}): the prometheus provider has no fields")
    return model.ExtensionProvider(name, kind)  # the kinds pymesh does not run are kept by name


def _service(r: Reader) -> tuple[str, int]:
    return r.get("service", text(_non_empty), "", required=True), r.get("port", PORT, 0, required=True)


def _non_empty(value: str) -> str | None:
    return "must not be empty" if not value else None


def _zipkin(name: str, r: Reader) -> model.ExtensionProvider:
    service, port = _service(r)
    return model.ExtensionProvider(
        name, "zipkin", service=service, port=port, path=r.get("path", text(), ""),
        max_tag_length=r.get("maxTagLength", integer(0, 2**32 - 1), 0),
        timeout=r.get("timeout", duration(positive=True)), headers=_headers(r),
    )


def _opentelemetry(name: str, r: Reader) -> model.ExtensionProvider:
    service, port = _service(r)
    if r.has("http") and r.has("grpc"):
        r.error("grpc", "only one of http or grpc may be set")
    http = r.get("http", proto_message(shapes.OTEL_HTTP, lambda h: h), None)
    path, timeout, headers = "", None, ()
    if http is not None:
        path = http.get("path", text(), "")
        timeout = http.get("timeout", duration(positive=True))
        headers = _headers(http)
    # without http, Istio exports OTLP/gRPC (pymesh.proxy.otlp_grpc): its timeout and
    # initialMetadata are the call's
    grpc = r.get("grpc", proto_message(shapes.OTEL_GRPC, lambda g: (g.get("timeout", duration(positive=True)),
                                                                   _headers(g, "initialMetadata"))), (None, ()))
    return model.ExtensionProvider(
        name, "opentelemetry", service=service, port=port, path=path,
        max_tag_length=r.get("maxTagLength", integer(0, 2**32 - 1), 0),
        timeout=timeout if timeout is not None else grpc[0], headers=headers or grpc[1], otlp_http=http is not None,
    )


def _headers(r: Reader, key: str = "headers") -> tuple[tuple[str, str], ...]:
    return r.get_list(key, proto_message(shapes.HTTP_HEADER_VALUE, _header))


def _header(r: Reader) -> tuple[str, str]:
    name = r.get("name", text(_non_empty), "", required=True)
    if r.has("value") and r.has("envName"):
        r.error("envName", "only one of value or envName may be set")
    if r.has("envName"):  # read from istiod's environment in Istio: the control server's here
        return name, os.environ.get(r.get("envName", text(), ""), "")
    return name, r.get("value", text(), "")


def _file_log(name: str, r: Reader) -> model.ExtensionProvider:
    fmt = r.get("logFormat", proto_message(shapes.LOG_FORMAT, _log_format), ("", ()))
    return model.ExtensionProvider(name, "envoyFileAccessLog", path=r.get("path", text(), "") or "/dev/stdout",
                                   log_text=fmt[0], log_labels=fmt[1])


def _log_format(r: Reader) -> tuple[str, tuple[tuple[str, str], ...]]:
    if r.has("text") and r.has("labels"):
        r.error("labels", "only one of text or labels may be set")
    labels = r.get_map("labels", text(access_format.check))
    return r.get("text", text(access_format.check), ""), tuple(labels.items())


# --- the ConfigMap and the file ----------------------------------------------------------------


class _OffsetSink(Sink):
    """Errors inside data.mesh, at their line in the ConfigMap's file."""

    def __init__(self, outer: Sink, offset: int, prefix: str):
        super().__init__(outer.file)
        self.errors = outer.errors
        self.offset = offset
        self.prefix = prefix

    def add(self, line: int, path: str, message: str) -> None:
        full = f"{self.prefix}.{path}" if path else self.prefix
        super().add(line + self.offset, full, message)


def config_map(metadata: model.Metadata, r: Reader) -> model.IstioMeshConfig | None:
    """The istio ConfigMap's data: `mesh` is MeshConfig's YAML text (meshNetworks: no effect)."""
    source = metadata.source
    mesh_text = r.get("mesh", text(), "")
    offset = r.line_of("mesh")
    mesh = parse_text(_OffsetSink(r.sink, offset, r.path_of("mesh")), mesh_text, source) if mesh_text else \
        model.IstioMeshConfig(source=source)
    unused = tuple(f"data.{key}" for key in ("meshNetworks", "values") if r.slot(key) is not None)
    return replace(mesh, no_effect=mesh.no_effect + unused) if mesh is not None and unused else mesh


def parse_text(sink: Sink, body: str, source: model.Source) -> model.IstioMeshConfig | None:
    try:
        documents = read_documents(body)
    except (YAMLSyntaxError, LimitExceeded) as exc:
        sink.add(exc.line, "", exc.message)
        return None
    if not documents:
        return model.IstioMeshConfig(source=source)
    if len(documents) > 1:
        sink.add(documents[1].line, "", "MeshConfig is one YAML document, found several")
    for problem in documents[0].problems:  # duplicate keys, tags, values YAML cannot make
        sink.add(problem.line, problem.path, problem.message)
    root = documents[0].root
    return read_mesh_config(sink, Slot(root, getattr(root, "line", 1), ""), source)


def with_mesh_config(config: model.MeshConfig, path: str) -> model.MeshConfig:
    """`config` with the --mesh-config file at `path` in force instead of any ConfigMap's ("":
    unchanged). Raises ConfigInvalid or OSError as load_file."""
    return replace(config, mesh_configs=(load_file(path),)) if path else config


def load_file(path: str) -> model.IstioMeshConfig:
    """A --mesh-config file (MeshConfig's YAML, as istiod's /etc/istio/config/mesh); raises
    ConfigInvalid with every problem, OSError when it cannot be read."""
    with open(path, "rb") as stream:
        data = stream.read(input_limits.DEFAULT.max_file_bytes + 1)
    if len(data) > input_limits.DEFAULT.max_file_bytes:
        raise ConfigInvalid([ConfigError(path, 0, "", "file is over the size limit")])
    sink = Sink(path)
    mesh = parse_text(sink, data.decode("utf-8-sig", errors="replace"), model.Source(path, 1))
    if sink.errors or mesh is None:
        raise ConfigInvalid(sink.errors or [ConfigError(path, 0, "", "not a MeshConfig")])
    return mesh
