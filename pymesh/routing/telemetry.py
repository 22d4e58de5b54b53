"""Mesh config + Telemetry resources -> one proxy's TelemetryPolicy, as Istio merges them
(pilot/pkg/model/telemetry.go).

Which Telemetries apply (applicableTelemetries): the root namespace's first selector-less one,
then the proxy's namespace's first selector-less one, then the first one in the proxy's
namespace whose selector matches its labels (or whose targetRef names its Gateway), oldest
first; later ones override earlier ones:
- tracing: the default provider (defaultProviders.tracing[0]), then each tracing entry in order
  sets what it sets (providers: its first; customTags replace the whole set); nothing at all
  falls back to the legacy enableTracing + defaultConfig.tracing.zipkin.address;
- access logging (mergeLogs, per mode: inbound is SERVER, outbound and gateways CLIENT): the
  last entry naming providers decides which are in scope, each entry then enables (with its
  filter) or disables (`disabled: true`) its providers; nothing at all falls back to the legacy
  accessLogFile;
- metrics (mergeMetrics): overrides merged per metric and mode, tag overrides per tag; disabling
  ALL_METRICS drops the provider; the in-scope providers are the last ones named.
Pure: the result is frozen data in the snapshot, so the proxy does no merging per request.
"""

from __future__ import annotations

import json
from typing import Iterable

from pymesh.api import model
from pymesh.api.meshconfig import RUN_KINDS
from pymesh.api.telemetry import METRICS
from pymesh.routing.scope import selects
from pymesh.routing.snapshot import ProxyIdentity
from pymesh.telemetry.access_format import ISTIO_JSON_LABELS
from pymesh.telemetry.policy import (DEFAULT, AccessLogPolicy, AccessLogProvider, CustomTag, MetricOverride,
                                     MetricsPolicy, TelemetryPolicy, TraceProvider, TracingPolicy)

# Istio's built-in providers (pkg/config/mesh DefaultMeshConfig): kept unless redefined by name
BUILTIN_PROVIDERS = (
    model.ExtensionProvider("prometheus", "prometheus"),
    model.ExtensionProvider("envoy", "envoyFileAccessLog", path="/dev/stdout"),
)
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
DEFAULT_SAMPLING = 1.0  # percent: Istio's PILOT_TRACE_SAMPLING default
DEFAULT_MAX_TAG_LENGTH = 256
CLIENT, SERVER = "CLIENT", "SERVER"
ISTIO_METRICS = tuple(m for m in METRICS if m != "ALL_METRICS")


def mesh_config(config: model.MeshConfig) -> model.IstioMeshConfig:
    """The mesh config in force: the istio ConfigMap's, or the --mesh-config file's that replaced
    it (pymesh.api.meshconfig.with_mesh_config), or Istio's defaults."""
    return config.mesh_configs[0] if config.mesh_configs else model.IstioMeshConfig()


def compile_telemetry(config: model.MeshConfig, identity: ProxyIdentity, warnings: list[str]) -> TelemetryPolicy:
    mesh = mesh_config(config)
    if config.mesh_configs:
        warnings.extend(f"mesh config: {name} has no effect in pymesh" for name in mesh.no_effect)
    providers = _provider_table(mesh)
    applicable = applicable_telemetries(config.telemetries, mesh.root_namespace, identity)
    if not applicable and not config.mesh_configs:
        return DEFAULT
    gateway = identity.kind == "router"
    client = _access_logging(applicable, mesh, providers, CLIENT, warnings)
    server = client if gateway else _access_logging(applicable, mesh, providers, SERVER, warnings)
    return TelemetryPolicy(
        tracing=_tracing(applicable, mesh, providers, warnings),
        access_logging=client,
        inbound_access_logging=None if server == client else server,
        metrics=_metrics(applicable, mesh, providers, warnings),
    )


def applicable_telemetries(telemetries: Iterable[model.Telemetry], root: str,
                           identity: ProxyIdentity) -> tuple[model.Telemetry, ...]:
    """Root namespace-wide, namespace-wide, workload: at most one of each, in that order."""
    ordered = sorted(telemetries, key=_age)
    out = []
    for namespace in dict.fromkeys((root, identity.namespace)):
        wide = next((t for t in ordered if t.metadata.namespace == namespace and _namespace_wide(t)), None)
        if wide is not None:
            out.append(wide)
    workload = next((t for t in ordered if t.metadata.namespace == identity.namespace and not _namespace_wide(t)
                     and _selects(t, identity)), None)
    if workload is not None:
        out.append(workload)
    return tuple(out)


def _age(t: model.Telemetry) -> tuple:
    """Istio's order: oldest first, then by namespace and name (files without timestamps: by name)."""
    return t.metadata.creation_timestamp or 0.0, t.metadata.namespace, t.metadata.name


def _namespace_wide(t: model.Telemetry) -> bool:
    return not t.selector and not t.target_refs


def _selects(t: model.Telemetry, identity: ProxyIdentity) -> bool:
    if t.selector:
        return selects(t.selector, identity.labels)
    return any(ref.kind == "Gateway" and identity.labels.get(GATEWAY_NAME_LABEL) == ref.name for ref in t.target_refs)


def _provider_table(mesh: model.IstioMeshConfig) -> dict[str, model.ExtensionProvider]:
    """Providers by lower-case name (Istio's fetchProvider compares names case-insensitively)."""
    table = {p.name.lower(): p for p in BUILTIN_PROVIDERS}
    table.update((p.name.lower(), p) for p in mesh.extension_providers)
    return table


def _known(name: str, providers: dict, kinds: tuple[str, ...], what: str, warnings: list[str]):
    provider = providers.get(name.lower())
    if provider is None:
        warnings.append(f"Telemetry: {what} provider {name!r} is not defined in the mesh config's extensionProviders")
        return None
    if provider.kind not in kinds:
        runs = "is not a {} provider".format(what) if provider.kind in RUN_KINDS else "is not supported by pymesh"
        warnings.append(f"Telemetry: {what} provider {name!r} ({provider.kind}) {runs}")
        return None
    return provider


# --- tracing ----------------------------------------------------------------------------------


def _tracing(applicable: tuple[model.Telemetry, ...], mesh: model.IstioMeshConfig, providers: dict,
             warnings: list[str]) -> TracingPolicy:
    entries = [e for t in applicable for e in t.tracing]
    if not entries and not mesh.default_tracing:
        return _legacy_tracing(mesh)
    specs = {CLIENT: _TracingSpec(mesh), SERVER: _TracingSpec(mesh)}
    if mesh.default_tracing:
        for spec in specs.values():
            spec.provider = mesh.default_tracing[0]
    for entry in entries:
        for mode in _modes(entry.mode):
            spec = specs[mode]
            if entry.providers:
                spec.provider = entry.providers[0]
            if entry.disable_span_reporting is not None:
                spec.disabled = entry.disable_span_reporting
            if entry.custom_tags:
                spec.custom_tags = entry.custom_tags
            if entry.random_sampling_percentage is not None:
                spec.sampling = entry.random_sampling_percentage
            if entry.use_request_id_for_trace_sampling is not None:
                spec.use_request_id = entry.use_request_id_for_trace_sampling
    client, server = (specs[m].policy(providers, warnings) for m in (CLIENT, SERVER))
    if client != server:
        warnings.append("Telemetry: tracing differs between CLIENT and SERVER mode; pymesh traces both "
                        "directions with the SERVER mode's settings")
    return server


class _TracingSpec:
    def __init__(self, mesh: model.IstioMeshConfig):
        self.provider = ""
        self.disabled = False
        self.custom_tags: tuple[model.TracingCustomTag, ...] = ()
        self.sampling = mesh.sampling if mesh.sampling is not None else DEFAULT_SAMPLING
        self.use_request_id = True

    def policy(self, providers: dict, warnings: list[str]) -> TracingPolicy:
        found = _known(self.provider, providers, ("zipkin", "opentelemetry"), "tracing", warnings) \
            if self.provider else None
        return TracingPolicy(
            provider=_trace_provider(found) if found is not None else None,
            sampling_percent=self.sampling,
            custom_tags=tuple(CustomTag(t.name, t.kind, t.value, t.default) for t in self.custom_tags),
            disable_span_reporting=self.disabled,
            use_request_id_for_trace_sampling=self.use_request_id,
        )


def _trace_provider(p: model.ExtensionProvider) -> TraceProvider:
    return TraceProvider(name=p.name, kind=p.kind, service=p.service, port=p.port, path=p.path,
                         max_tag_length=p.max_tag_length or DEFAULT_MAX_TAG_LENGTH, headers=p.headers,
                         timeout=p.timeout or TraceProvider.timeout,
                         transport="grpc" if p.kind == "opentelemetry" and not p.otlp_http else "http")


def _legacy_tracing(mesh: model.IstioMeshConfig) -> TracingPolicy:
    """No Telemetry tracing and no default provider: Istio's enableTracing with the proxy's
    defaultConfig.tracing (pymesh: only an explicit zipkin.address turns it on)."""
    if not mesh.enable_tracing or not mesh.zipkin_address:
        return TracingPolicy(sampling_percent=mesh.sampling if mesh.sampling is not None else DEFAULT_SAMPLING)
    host, _, port = mesh.zipkin_address.rpartition(":")
    provider = TraceProvider(name="zipkin", kind="zipkin", service=host or mesh.zipkin_address,
                             port=int(port) if port.isdigit() else 9411,
                             max_tag_length=mesh.max_path_tag_length or DEFAULT_MAX_TAG_LENGTH)
    return TracingPolicy(provider=provider,
                         sampling_percent=mesh.sampling if mesh.sampling is not None else DEFAULT_SAMPLING)


def _modes(mode: str) -> tuple[str, ...]:
    return (mode,) if mode in (CLIENT, SERVER) else (CLIENT, SERVER)


# --- access logging ---------------------------------------------------------------------------


def _access_logging(applicable: tuple[model.Telemetry, ...], mesh: model.IstioMeshConfig, providers: dict,
                    mode: str, warnings: list[str]) -> AccessLogPolicy:
    levels = [t.access_logging for t in applicable if t.access_logging]
    if not levels and not mesh.default_access_logging:
        return _legacy_access_log(mesh)
    chosen = _merge_logs(levels, mesh.default_access_logging, mode)
    out, filters = [], set()
    for name, expression in chosen.items():
        provider = _known(name, providers, ("envoyFileAccessLog",), "access logging", warnings)
        if provider is not None:
            out.append(AccessLogProvider(provider.name, provider.path, provider.log_text, provider.log_labels))
            filters.add(expression)
    if len(filters) > 1:
        warnings.append("Telemetry: access-log providers with different filters: pymesh applies the first "
                        "provider's filter to all of them")
    return AccessLogPolicy(providers=tuple(out), filter=next(iter(chosen.values()), "") if out else "",
                           disabled=not out)


def _merge_logs(levels: list[tuple[model.TelemetryAccessLogging, ...]], defaults: tuple[str, ...],
                mode: str) -> dict[str, str]:
    """Istio's mergeLogs: provider name -> filter expression ("" none), in a stable order."""
    if not levels:
        return dict.fromkeys(defaults, "")
    in_scope, filters = list(defaults), {}
    for entries in levels:
        names = [name for entry in entries for name in entry.providers]
        for entry in entries:
            for name in entry.providers:
                filters[name] = entry.filter or ""
        if names:
            in_scope = list(dict.fromkeys(names))
    chosen: dict[str, str] = {}
    parent = list(defaults)
    for entries in levels:
        for entry in entries:
            names = list(entry.providers) or parent
            parent = names
            for name in names:
                if name not in in_scope or entry.mode not in ("CLIENT_AND_SERVER", mode):
                    continue
                if entry.disabled:
                    chosen.pop(name, None)
                else:
                    chosen[name] = filters.get(name, "")
    return chosen


def _legacy_access_log(mesh: model.IstioMeshConfig) -> AccessLogPolicy:
    """No Telemetry access logging and no default provider: meshConfig.accessLogFile."""
    if not mesh.access_log_file:
        return AccessLogPolicy()
    if mesh.access_log_encoding == "JSON":
        labels = tuple(json.loads(mesh.access_log_format).items()) if mesh.access_log_format else ISTIO_JSON_LABELS
        provider = AccessLogProvider("accessLogFile", mesh.access_log_file, labels=labels)
    else:
        provider = AccessLogProvider("accessLogFile", mesh.access_log_file, text_format=mesh.access_log_format)
    return AccessLogPolicy(providers=(provider,))


# --- metrics ----------------------------------------------------------------------------------


def _metrics(applicable: tuple[model.Telemetry, ...], mesh: model.IstioMeshConfig, providers: dict,
             warnings: list[str]) -> MetricsPolicy:
    entries = [m for t in applicable for m in t.metrics]
    for t in applicable:
        if any(m.reporting_interval is not None for m in t.metrics):
            warnings.append(f"Telemetry {t.metadata.namespace}/{t.metadata.name}: metrics reportingInterval has no "
                            "effect in pymesh (its metrics are current at every scrape)")
    in_scope = list(mesh.default_metrics)
    for entry in entries:
        if entry.providers:
            in_scope = list(entry.providers)
    prometheus = [n for n in in_scope if _known(n, providers, ("prometheus",), "metrics", warnings) is not None]
    if not prometheus:
        return MetricsPolicy(disabled=True)
    # (mode, metric) -> [disabled, {tag: (operation, value)}] for the (first) prometheus provider
    state: dict[tuple[str, str], list] = {}
    all_disabled = False
    parent = list(mesh.default_metrics)
    for entry in entries:
        names = list(entry.providers) or parent
        parent = names
        if prometheus[0] not in names:
            continue
        for override in entry.overrides:
            if override.metric == "ALL_METRICS" and not override.custom and override.disabled:
                all_disabled = True
                continue
            all_disabled = False
            metrics = (override.metric,) if override.custom or override.metric != "ALL_METRICS" else ISTIO_METRICS
            for mode in _modes(override.mode):
                for metric in metrics:
                    current = state.setdefault((mode, metric), [False, {}])
                    if override.disabled is not None:
                        current[0] = override.disabled
                    current[1].update((t.tag, (t.operation, t.value)) for t in override.tag_overrides)
    if all_disabled:
        return MetricsPolicy(disabled=True)
    for (mode, metric), (_, tags) in state.items():
        if metric not in ISTIO_METRICS:
            warnings.append(f"Telemetry: customMetric {metric!r} is not one of Istio's metrics: pymesh reports none")
    return MetricsPolicy(overrides=tuple(
        MetricOverride(metric=metric, mode=mode, disabled=disabled,
                       tags_removed=tuple(sorted(t for t, (op, _) in tags.items() if op == "REMOVE")),
                       tags_set=tuple(sorted((t, v) for t, (op, v) in tags.items() if op == "UPSERT")))
        for (mode, metric), (disabled, tags) in sorted(state.items())
        if metric in ISTIO_METRICS and (disabled or tags)
    ))
