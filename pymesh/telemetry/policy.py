"""What one proxy's telemetry does, compiled from Istio's mesh config (extensionProviders,
defaultProviders, defaultConfig.tracing) and the Telemetry resources that select it.

Pure frozen data in the snapshot (`Snapshot.telemetry`): the Telemetry API's compiler
(pymesh.routing.telemetry) produces it, the proxy's tracer, access log and metrics read it.
The default is what a mesh without any of that configuration does in Istio: metrics on, no
access log beyond the proxy's own --access-log, tracing off.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TraceProvider:
    """An extensionProvider that receives spans: `opentelemetry` (OTLP/HTTP protobuf) or
    `zipkin` (Zipkin v2 JSON)."""

    name: str
    kind: str  # "opentelemetry" | "zipkin"
    service: str  # host name or address of the collector
    port: int
    path: str = ""  # "" : the kind's default (/v1/traces, /api/v2/spans)
    max_tag_length: int = 256  # Istio's default
    headers: tuple[tuple[str, str], ...] = ()  # opentelemetry http.headers (literal values)
    timeout: float = 5.0  # seconds per export request
    # opentelemetry only: "grpc" (OTLP/gRPC, Istio's default when the provider has no `http`
    # block) or "http" (OTLP/HTTP protobuf to `path`)
    transport: str = "http"


@dataclass(frozen=True)
class CustomTag:
    """A span tag from a literal, a request header or an environment variable (Telemetry
    tracing.customTags)."""

    name: str
    kind: str  # "literal" | "header" | "environment"
    value: str  # the literal, the header name (lower-case) or the variable's name
    default: str = ""  # header and environment: when absent


@dataclass(frozen=True)
class TracingPolicy:
    provider: TraceProvider | None = None  # None: no spans are made or propagated as sampled
    sampling_percent: float = 1.0  # randomSamplingPercentage (Istio's default 1%)
    custom_tags: tuple[CustomTag, ...] = ()
    disable_span_reporting: bool = False
    use_request_id_for_trace_sampling: bool = True


@dataclass(frozen=True)
class AccessLogProvider:
    """envoyFileAccessLog: a file (or /dev/stdout) in text or JSON (labels) format."""

    name: str
    path: str = "/dev/stdout"
    text_format: str = ""  # Envoy command operators; "" with no labels: Istio's default text format
    labels: tuple[tuple[str, str], ...] = ()  # JSON format: key -> command operator


@dataclass(frozen=True)
class AccessLogPolicy:
    providers: tuple[AccessLogProvider, ...] = ()  # empty: only the proxy's --access-log
    filter: str = ""  # a CEL expression of the common forms (see pymesh.routing.telemetry)
    disabled: bool = False


@dataclass(frozen=True)
class MetricOverride:
    """One metrics override: `metric` an Istio metric name (REQUEST_COUNT, ...) or "ALL_METRICS",
    `mode` CLIENT / SERVER / CLIENT_AND_SERVER."""

    metric: str
    mode: str = "CLIENT_AND_SERVER"
    disabled: bool = False
    tags_removed: tuple[str, ...] = ()
    tags_set: tuple[tuple[str, str], ...] = ()  # tag -> value expression (the common CEL forms)


@dataclass(frozen=True)
class MetricsPolicy:
    overrides: tuple[MetricOverride, ...] = ()
    disabled: bool = False  # the prometheus provider is disabled for this workload


@dataclass(frozen=True)
class TelemetryPolicy:
    tracing: TracingPolicy = field(default_factory=TracingPolicy)
    access_logging: AccessLogPolicy = field(default_factory=AccessLogPolicy)  # outbound (and a gateway's)
    # inbound, when a Telemetry's match mode (CLIENT / SERVER) makes it differ; None: as access_logging
    inbound_access_logging: AccessLogPolicy | None = None
    metrics: MetricsPolicy = field(default_factory=MetricsPolicy)


DEFAULT = TelemetryPolicy()
