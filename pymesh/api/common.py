"""Readers for the pieces several kinds share: metadata, labels and selectors, exportTo, ports,
string matches, destinations, header operations and route weights."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

from pymesh.api import checks, hosts, model, shapes
from pymesh.api.header_value import HeaderValueError, literal_value
from pymesh.api.reader import PORT, Convert, describe, Reader, Sink, Slot, choice, distinct, integer, message, number, text

# Istio's protocol.Parse, case-insensitive. HTTP_PROXY (a sidecar egress forward proxy) is not
# built; MONGO, MYSQL and REDIS are proxied as TCP (Istio does the same unless a filter for them
# is switched on) and UDP ports are left out (Istio's proxy has no UDP either), with a warning.
PROTOCOL = choice(
    "protocol",
    ("HTTP", "HTTP2", "GRPC", "GRPC-WEB", "TCP", "HTTPS", "TLS", "MONGO", "MYSQL", "REDIS", "UDP"),
    not_yet=("HTTP_PROXY",),
    fold_case=True,
)
AS_TCP = frozenset({"MONGO", "MYSQL", "REDIS"})
SNIFFED = ""  # a port whose protocol is unset: detected per connection (HTTP or not), as Istio
CAPTURE_MODE = choice("captureMode", ("DEFAULT", "IPTABLES", "NONE"))
# Istio's validateWeight: any int32 >= 0. Weights need not add up to 100 (recent Istio dropped that
# rule): each destination gets weight/total of the traffic (pymesh.routing.pick).
WEIGHT = integer(0, 2**31 - 1)
# Annotations that change what a resource does; the others are type-checked and dropped.
KNOWN_ANNOTATIONS = frozenset({"istio.io/dry-run"})


def metadata(r: Reader, source: model.Source) -> model.Metadata:
    annotations = r.get_map("annotations", text())
    return model.Metadata(
        annotations={k: v for k, v in annotations.items() if k in KNOWN_ANNOTATIONS},
        name=r.get("name", text(checks.dns_subdomain), "", required=True),
        namespace=r.get("namespace", text(checks.dns_label), "default"),
        labels=labels(r, "labels"),
        source=source,
        creation_timestamp=r.get("creationTimestamp", timestamp),
    )


def timestamp(sink: Sink, slot: Slot) -> float | None:
    """An RFC 3339 time (Kubernetes' creationTimestamp) as POSIX seconds. YAML reads an unquoted
    one as a datetime already; a quoted one (JSON, kubectl -o json) is parsed here. A time without
    a zone is taken as UTC, as Kubernetes writes them."""
    value = slot.value
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            value = None
    if not isinstance(value, datetime):
        sink.at(slot, f"expected an RFC 3339 time such as 2024-05-01T12:00:00Z, got {describe(slot.value)}")
        return None
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()


def labels(r: Reader, key: str) -> dict[str, str]:
    return r.get_map(key, text(checks.label_value), check_key=checks.label_key)


def workload_selector(r: Reader, key: str = "workloadSelector") -> dict[str, str] | None:
    """`workloadSelector: {labels: {...}}` as its labels; None when absent (selects nothing
    in particular: the whole namespace for a Sidecar). Without labels it selects every workload
    of the namespace, which Istio warns about."""
    selected = r.get(key, message(shapes.WORKLOAD_SELECTOR, lambda s: labels(s, "labels")))
    if selected == {} and set(r.data[key]) <= {"labels"}:  # not a misspelt field: really no labels
        r.warn(key, "workload selector specified without labels, will be applied to all services in namespace")
    return selected


def export_to(r: Reader, namespace: str = "", *, allow_none: bool = False, own_only: bool = False) -> tuple[str, ...]:
    """`exportTo` (Istio's validateExportTo): "." (own namespace), "*" (all), namespace names,
    and "~" (nobody) where `allow_none` (ServiceEntry only). "*" and "~" exclude other entries;
    "." and the resource's own `namespace` are one entry; `own_only` (a DestinationRule with a
    workloadSelector): nothing beyond the own namespace."""
    specials = (".", "*", "~") if allow_none else (".", "*")

    def check(value: str) -> str | None:
        return None if value in specials else hosts.istio_label(value)

    values = r.get_list("exportTo", distinct(text(check)))
    for exclusive in ("*", "~"):
        if exclusive in values and len(values) > 1:
            r.error("exportTo", f'"{exclusive}" cannot be combined with other entries')
    if namespace and "." in values and namespace in values:
        r.error("exportTo", f"duplicate entries in exportTo: . and current namespace {namespace}")
    if own_only and values:
        if not set(values) <= {".", namespace}:
            r.error("exportTo", "destination rule with workload selector cannot have exportTo beyond current namespace")
        elif len(values) > 1:
            r.error("exportTo", "destination rule with workload selector cannot have multiple entries in exportTo")
    return values


def service_port(r: Reader, *, target_port: bool = True) -> model.ServicePort:
    """A ServiceEntry port (its name is required, as in Istio's proto; an unset protocol is
    sniffed) or a Sidecar port (name optional, targetPort has no effect, unset protocol is TCP)."""
    if not target_port and r.has("targetPort"):
        r.error("targetPort", "targetPort has no effect on a Sidecar port")
    protocol = r.get("protocol", PROTOCOL, SNIFFED if target_port else "TCP")
    if protocol in AS_TCP:
        r.warn("protocol", f"protocol {protocol} is proxied as TCP by pymesh (no {protocol}-aware filter)")
    elif protocol == "UDP":
        r.warn("protocol", "UDP is not proxied (pymesh, like Istio's proxy, handles TCP only): this port is left out")
    return model.ServicePort(
        number=r.get("number", PORT, required=True),
        protocol=protocol,
        name=r.get("name", text(hosts.istio_label), "", required=target_port),
        target_port=r.get("targetPort", PORT) if target_port else None,
    )


# --- string matches -----------------------------------------------------------------------

_MATCH_KINDS = ("exact", "prefix", "regex")


def string_match(r: Reader, *, empty_means_present: bool = False) -> model.StringMatch | None:
    """Istio's StringMatch: exactly one of exact, prefix, regex. For header matches Istio reads
    `{}` as "header present", which is `prefix: ""` (every present value has that prefix)."""
    if empty_means_present and not r.data:
        return model.StringMatch("prefix", "")
    kind = r.one_of(_MATCH_KINDS, required=True)
    if kind is None:
        return None
    value = r.get(kind, text(checks.regex if kind == "regex" else None))
    return None if value is None else model.StringMatch(kind, value)


STRING_MATCH: Convert = message(shapes.STRING_MATCH, string_match)
HEADER_MATCH: Convert = message(shapes.STRING_MATCH, lambda r: string_match(r, empty_means_present=True))


# --- destinations and weights ---------------------------------------------------------------


def _destination_host(value: str) -> str | None:
    return 'destination host "*" is not valid' if value == "*" else hosts.wildcard_domain(value)


PORT_SELECTOR: Convert = message(shapes.PORT_SELECTOR, lambda p: p.get("number", PORT, required=True))


def destination(r: Reader) -> model.Destination:
    return model.Destination(
        host=r.get("host", hosts.read_host(_destination_host), "", required=True),
        subset=r.get("subset", text(hosts.istio_label), ""),
        port=r.get("port", PORT_SELECTOR),
    )


DESTINATION: Convert = message(shapes.DESTINATION, destination)
# Istio's Percent message: {value: 0..100}, a double
PERCENT_VALUE = number(0, 100)
PERCENT: Convert = message(shapes.PERCENT, lambda p: p.get("value", PERCENT_VALUE, 0.0))


def check_weights(r: Reader, key: str, routes: tuple) -> None:
    """Istio's validateHTTPRouteDestinations / validateRouteDestinations: several destinations
    must not all weigh 0 (a lone destination takes all traffic whatever its weight)."""
    if len(routes) > 1 and sum(route.weight for route in routes) == 0:
        r.error(key, "total destination weight = 0 (with several destinations at least one needs a weight)")


# --- header operations --------------------------------------------------------------------


def _header_value(sink: Sink, slot: Slot) -> str | None:
    """Istio's ValidateHTTPHeaderValue, read as the literal text Envoy would send ("%%" is "%")."""
    value = text(checks.header_value)(sink, slot)
    if value is None:
        return None
    try:
        return literal_value(value)
    except HeaderValueError as exc:
        sink.at(slot, f"header value {value!r}: {exc}")
        return None


def _header_operations(write_check: Callable[[str], str | None]) -> Convert:
    def build(r: Reader) -> model.HeaderOperations:
        value = _header_value
        return model.HeaderOperations(
            set=_authority_as_host(r.get_map("set", value, check_key=write_check)),
            add=_authority_as_host(r.get_map("add", value, check_key=write_check)),
            remove=r.get_list("remove", text(checks.header_to_modify)),
        )

    return message(shapes.HEADER_OPERATIONS, build)


def _authority_as_host(values: dict[str, str]) -> dict[str, str]:
    """":authority" and "Host" name one thing: the request's authority (Host on HTTP/1.1)."""
    return {"host" if name.lower() == ":authority" else name: value for name, value in values.items()}


def authority_writes(rewrite_authority: str, headers: model.Headers) -> list[str]:
    """Every value a route gives the authority: rewrite.authority and Host set or added
    (Istio's validateAuthorityRewrite allows one)."""
    request = headers.request
    return ([rewrite_authority] if rewrite_authority else []) + [
        value for ops in (request.set, request.add) for name, value in ops.items() if name.lower() == "host"]


_REQUEST_OPERATIONS = _header_operations(checks.request_header_to_write)
_RESPONSE_OPERATIONS = _header_operations(checks.header_to_modify)


def headers(r: Reader, key: str = "headers") -> model.Headers:
    def build(h: Reader) -> model.Headers:
        return model.Headers(
            request=h.get("request", _REQUEST_OPERATIONS, model.HeaderOperations()),
            response=h.get("response", _RESPONSE_OPERATIONS, model.HeaderOperations()),
        )

    return r.get(key, message(shapes.HEADERS, build), model.Headers())

