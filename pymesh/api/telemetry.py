"""Telemetry (telemetry.istio.io v1, v1alpha1): tracing, access logging and metrics per scope.

Validated as Istio's ValidateTelemetry with the CRD schema: selector and targetRef(s) are
exclusive, randomSamplingPercentage is within [0, 100], a custom tag is exactly one of literal,
environment and header, a metrics match is one of metric and customMetric, a tag override's
value is given for UPSERT and only then. CEL expressions (accessLogging filter, tag values)
must be in the subset pymesh evaluates (pymesh.telemetry.cel): anything else is refused here
with the expression named, rather than logging or labelling wrongly at run time.
"""

from __future__ import annotations

import re

from pymesh.api import model, shapes
from pymesh.api.reader import Reader, boolean, choice, duration, message, number, text
from pymesh.api.request_authentication import match_labels_selector, target_refs
from pymesh.telemetry import cel

METRICS = ("ALL_METRICS", "REQUEST_COUNT", "REQUEST_DURATION", "REQUEST_SIZE", "RESPONSE_SIZE",
           "TCP_OPENED_CONNECTIONS", "TCP_CLOSED_CONNECTIONS", "TCP_SENT_BYTES", "TCP_RECEIVED_BYTES",
           "GRPC_REQUEST_MESSAGES", "GRPC_RESPONSE_MESSAGES")
MODE = choice("mode", model.WORKLOAD_MODES)
TAG_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")  # a Prometheus label name


def telemetry(metadata: model.Metadata, r: Reader) -> model.Telemetry:
    return model.Telemetry(
        metadata=metadata,
        selector=match_labels_selector(r),
        target_refs=target_refs(r, metadata.namespace),
        tracing=r.get_list("tracing", message(shapes.TRACING, _tracing)),
        access_logging=r.get_list("accessLogging", message(shapes.ACCESS_LOGGING, _access_logging)),
        metrics=r.get_list("metrics", message(shapes.METRICS, _metrics)),
    )


def _mode(r: Reader) -> str:
    return r.get("match", message(shapes.WORKLOAD_MODE_SELECTOR, lambda m: m.get("mode", MODE, "CLIENT_AND_SERVER")),
                 "CLIENT_AND_SERVER")


def _providers(r: Reader) -> tuple[str, ...]:
    return r.get_list("providers", message(shapes.PROVIDER_REF, lambda p: p.get("name", text(_non_empty), "",
                                                                               required=True)))


def _non_empty(value: str) -> str | None:
    return "must not be empty" if not value else None


def _tracing(r: Reader) -> model.TelemetryTracing:
    tags = [model.TracingCustomTag(name, *tag)
            for name, tag in r.get_map("customTags", message(shapes.CUSTOM_TAG, _custom_tag)).items()]
    return model.TelemetryTracing(
        mode=_mode(r),
        providers=_providers(r),
        random_sampling_percentage=r.get("randomSamplingPercentage", number(0.0, 100.0)),
        disable_span_reporting=r.get("disableSpanReporting", boolean),
        custom_tags=tuple(tags),
        use_request_id_for_trace_sampling=r.get("useRequestIdForTraceSampling", boolean),
    )


def _custom_tag(r: Reader) -> tuple[str, str, str]:
    kind = r.one_of(("literal", "environment", "header"), required=True)
    if kind == "literal":
        return kind, r.get(kind, message(shapes.TAG_LITERAL, lambda t: t.get("value", text(), "")), ""), ""
    if kind is None:
        return "literal", "", ""
    shape = shapes.TAG_ENVIRONMENT if kind == "environment" else shapes.TAG_HEADER

    def named(t: Reader) -> tuple[str, str]:
        name = t.get("name", text(_non_empty), "", required=True)
        return (name.lower() if kind == "header" else name), t.get("defaultValue", text(), "")

    name, default = r.get(kind, message(shape, named), ("", ""))
    return kind, name, default


def _access_logging(r: Reader) -> model.TelemetryAccessLogging:
    return model.TelemetryAccessLogging(
        mode=_mode(r),
        providers=_providers(r),
        disabled=r.get("disabled", boolean),
        filter=r.get("filter", message(shapes.ACCESS_LOGGING_FILTER,
                                       lambda f: f.get("expression", text(cel.check), "", required=True))),
    )


def _metrics(r: Reader) -> model.TelemetryMetrics:
    return model.TelemetryMetrics(
        providers=_providers(r),
        overrides=r.get_list("overrides", message(shapes.METRICS_OVERRIDES, _override)),
        reporting_interval=r.get("reportingInterval", duration(positive=True)),
    )


def _override(r: Reader) -> model.TelemetryMetricOverride:
    metric, custom, mode = r.get("match", message(shapes.METRIC_SELECTOR, _metric_selector),
                                 ("ALL_METRICS", False, "CLIENT_AND_SERVER"))
    tags = r.get_map("tagOverrides", message(shapes.TAG_OVERRIDE, _tag_override), check_key=_tag_name)
    return model.TelemetryMetricOverride(
        metric=metric, custom=custom, mode=mode, disabled=r.get("disabled", boolean),
        tag_overrides=tuple(model.MetricTagOverride(name, *tag) for name, tag in tags.items()),
    )


def _metric_selector(r: Reader) -> tuple[str, bool, str]:
    which = r.one_of(("metric", "customMetric"), required=False)
    mode = r.get("mode", MODE, "CLIENT_AND_SERVER")
    if which == "customMetric":
        return r.get("customMetric", text(_non_empty), ""), True, mode
    return r.get("metric", choice("metric", METRICS), "ALL_METRICS"), False, mode


def _tag_name(name: str) -> str | None:
    return None if TAG_NAME.match(name) else f"tag name {name!r} is not a valid metric label name"


def _tag_override(r: Reader) -> tuple[str, str]:
    operation = r.get("operation", choice("operation", ("UPSERT", "REMOVE")), "UPSERT")
    value = r.get("value", text(cel.check), "")
    if operation == "UPSERT" and not r.has("value"):
        r.error("value", "must be set when operation is UPSERT")
    if operation == "REMOVE" and r.has("value"):
        r.error("value", "must not be set when operation is REMOVE")
    return operation, value
