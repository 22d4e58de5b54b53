"""ServiceEntry and WorkloadEntry: the services and workload addresses pymesh knows about."""

from __future__ import annotations

from functools import partial

from pymesh.api import checks, common, hosts, model, shapes
from pymesh.api.reader import PORT, Reader, choice, distinct, integer, message, text

LOCATION = choice("location", ("MESH_EXTERNAL", "MESH_INTERNAL"))
# Istio's enum; unset is NONE (its zero value), as in Istio.
RESOLUTION = choice("resolution", ("NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"))
DNS_RESOLUTIONS = frozenset({"DNS", "DNS_ROUND_ROBIN"})
# Ports on which several hosts can be told apart: by Host/:authority, or by SNI for TLS.
DISTINGUISHING_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-WEB", "HTTPS", "TLS"})


def service_entry(metadata: model.Metadata, r: Reader) -> model.ServiceEntry:
    """Istio's ValidateServiceEntry and the CRD's rules (x-kubernetes-validations)."""
    resolution = r.get("resolution", RESOLUTION, "NONE")
    location = r.get("location", LOCATION, "MESH_EXTERNAL")
    has_endpoints = r.has("endpoints")
    port = message(shapes.SERVICE_PORT, common.service_port)
    port = distinct(port, lambda p: p.number, "port number")
    port = distinct(port, lambda p: p.name or None, "port name")
    ports = r.get_list("ports", port)
    host = partial(_host, resolution=resolution, has_endpoints=has_endpoints)
    se_hosts = r.get_list("hosts", distinct(_with_partial_wildcard_warning(hosts.read_host(host))), required=True)
    addresses = r.get_list("addresses", distinct(text(checks.ip_or_cidr)))
    if resolution not in ("NONE", "STATIC") and any("/" in address for address in addresses):
        r.error("addresses", "CIDR addresses are allowed only for NONE/STATIC resolution types")
    if resolution != "NONE" and len(se_hosts) > 1 and any(p.protocol not in DISTINGUISHING_PROTOCOLS for p in ports):
        r.error("hosts", "several hosts need HTTP, HTTP2, GRPC, HTTPS or TLS ports (a TCP port cannot tell them "
                "apart), unless resolution is NONE")
    if has_endpoints and r.has("workloadSelector"):
        r.error("workloadSelector", "only one of workloadSelector or endpoints may be set")
    _resolution_rules(r, resolution, location)
    port_names = {port.name for port in ports if port.name}
    endpoint = partial(workload_entry_spec, resolution=resolution, port_names=port_names)
    return model.ServiceEntry(
        metadata=metadata,
        hosts=se_hosts,
        addresses=addresses,
        ports=ports,
        location=location,
        resolution=resolution,
        endpoints=r.get_list("endpoints", message(shapes.WORKLOAD_ENTRY, endpoint)),
        workload_selector=common.workload_selector(r),
        export_to=common.export_to(r, metadata.namespace if metadata else "", allow_none=True),
        subject_alt_names=r.get_list("subjectAltNames", text(checks.not_empty)),
    )


def _resolution_rules(r: Reader, resolution: str, location: str) -> None:
    endpoints = r.data.get("endpoints")
    count = len(endpoints) if isinstance(endpoints, list) else 0
    if resolution == "NONE" and r.has("endpoints"):
        r.error("endpoints", "no endpoints should be provided for resolution type NONE (the connection goes "
                "to the address it was sent to)")
    if resolution == "NONE" and r.has("workloadSelector"):
        r.warn("workloadSelector", "workloadSelector should not be set when resolution mode is NONE")
    if resolution == "DNS_ROUND_ROBIN" and count > 1:
        r.error("endpoints", "there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN")
    if resolution == "DYNAMIC_DNS":
        if location != "MESH_EXTERNAL":
            r.error("resolution", "DYNAMIC_DNS is only supported for MESH_EXTERNAL ServiceEntries")
        if r.has("endpoints"):
            r.warn("endpoints", "endpoints are ignored with resolution DYNAMIC_DNS (the request's host is resolved)")


def _with_partial_wildcard_warning(convert):
    """Istio warns (does not refuse) a ServiceEntry host like "*foo.example.com"."""

    def wrapped(sink, slot):
        value = convert(sink, slot)
        if value is not None and (problem := hosts.partial_wildcard(value)):
            sink.warn(slot.line, slot.path, problem)
        return value

    return wrapped


def workload_entry(metadata: model.Metadata, r: Reader) -> model.WorkloadEntry:
    return model.WorkloadEntry(metadata=metadata, spec=workload_entry_spec(r))


def workload_entry_spec(
    r: Reader, *, resolution: str | None = None, port_names: set[str] | None = None, address_required: bool = True
) -> model.WorkloadEntrySpec:
    """A WorkloadEntry spec or a ServiceEntry endpoint. Inside a ServiceEntry (`port_names` set)
    port names must be the entry's, and STATIC resolution needs IP (or unix://) addresses. A
    WorkloadGroup's template may leave the address out (`address_required`), and so may an
    endpoint with a network (Istio: reached through that network's gateway)."""
    network = r.get("network", text(), "")
    address = r.get("address", text(partial(_address, resolution=resolution)), "",
                    required=address_required and not network)
    if address.startswith(checks.UNIX_PREFIX) and r.has("ports"):
        r.error("ports", "an endpoint with a unix:// address takes no ports")
    return model.WorkloadEntrySpec(
        address=address,
        ports=r.get_map("ports", PORT, check_key=partial(_port_name, known=port_names)),
        labels=common.labels(r, "labels"),
        # Istio's weight is a proto3 uint32, so 0 cannot be told from unset: both mean the default.
        weight=r.get("weight", integer(0), 0) or model.WorkloadEntrySpec.weight,
        service_account=r.get("serviceAccount", text(checks.dns_subdomain), ""),
        locality=r.get("locality", text(), ""),
        network=network,
    )


def _host(value: str, *, resolution: str, has_endpoints: bool) -> str | None:
    if value == "*":
        return 'host "*" is not allowed in a ServiceEntry'
    if problem := hosts.wildcard_domain(value):
        return problem
    if resolution in DNS_RESOLUTIONS and not has_endpoints and hosts.fqdn(value):
        return f"host {value!r} must be a DNS name (no wildcard) when resolution is {resolution} without endpoints"
    if resolution == "DYNAMIC_DNS" and not value.startswith("*"):
        return f"host {value!r} must be a wildcard (\"*.example.com\") with resolution DYNAMIC_DNS"
    return None


def _address(value: str, *, resolution: str | None) -> str | None:
    if value.startswith(checks.UNIX_PREFIX):
        return checks.unix_path(value[len(checks.UNIX_PREFIX):])
    if hosts.is_ip(value):
        return None
    if resolution == "STATIC":
        return f"address {value!r} is not an IP address (resolution is STATIC)"
    if hosts.fqdn(value):
        return f"address {value!r} is not an IP address or a DNS name"
    return None


def _port_name(name: str, *, known: set[str] | None) -> str | None:
    if problem := hosts.istio_label(name):
        return problem
    if known is not None and name not in known:
        return f"port name {name!r} is not one of the ServiceEntry's ports"
    return None
