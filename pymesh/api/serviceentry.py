"""ServiceEntry and WorkloadEntry: the services and workload addresses pymesh knows about."""

from __future__ import annotations

from functools import partial

from pymesh.api import checks, common, model, shapes
from pymesh.api.reader import PORT, Reader, choice, distinct, integer, message, text

LOCATION = choice("location", ("MESH_EXTERNAL", "MESH_INTERNAL"))
RESOLUTION = choice("resolution", ("STATIC", "DNS"), not_yet=("NONE", "DNS_ROUND_ROBIN"))
# Ports on which several hosts can be told apart: by Host/:authority, or by SNI for TLS.
DISTINGUISHING_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "HTTPS", "TLS"})


def service_entry(metadata: model.Metadata, r: Reader) -> model.ServiceEntry:
    resolution = r.get("resolution", RESOLUTION, "STATIC")
    has_endpoints = r.has("endpoints")
    port = message(shapes.SERVICE_PORT, common.service_port)
    port = distinct(port, lambda p: p.number, "port number")
    port = distinct(port, lambda p: p.name or None, "port name")  # unnamed ports are not compared
    ports = r.get_list("ports", port)
    host = partial(_host, dns_names_only=resolution == "DNS" and not has_endpoints)
    hosts = r.get_list("hosts", distinct(text(host)), required=True)
    addresses = r.get_list("addresses", distinct(text(checks.ip_or_cidr)))
    if resolution == "DNS" and any("/" in address for address in addresses):
        r.error("addresses", "CIDR addresses are only allowed with STATIC resolution")
    if len(hosts) > 1 and any(port.protocol not in DISTINGUISHING_PROTOCOLS for port in ports):
        r.error("hosts", "several hosts need HTTP, HTTP2, GRPC, HTTPS or TLS ports (a TCP port cannot tell them apart)")
    if has_endpoints and r.has("workloadSelector"):
        r.error("workloadSelector", "only one of workloadSelector or endpoints may be set")
    port_names = {port.name for port in ports if port.name}
    endpoint = partial(workload_entry_spec, resolution=resolution, port_names=port_names)
    return model.ServiceEntry(
        metadata=metadata,
        hosts=hosts,
        addresses=addresses,
        ports=ports,
        location=r.get("location", LOCATION, "MESH_EXTERNAL"),
        resolution=resolution,
        endpoints=r.get_list("endpoints", message(shapes.WORKLOAD_ENTRY, endpoint)),
        workload_selector=common.workload_selector(r),
        export_to=common.export_to(r, allow_none=True),
        subject_alt_names=r.get_list("subjectAltNames", text(checks.not_empty)),
    )


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


def _host(value: str, *, dns_names_only: bool) -> str | None:
    if value == "*":
        return 'host "*" is not allowed in a ServiceEntry'
    if problem := checks.wildcard_domain(value):
        return problem
    if dns_names_only and checks.fqdn(value):
        return f"host {value!r} must be a DNS name (no wildcard) when resolution is DNS without endpoints"
    return None


def _address(value: str, *, resolution: str | None) -> str | None:
    if value.startswith(checks.UNIX_PREFIX):
        return checks.unix_path(value[len(checks.UNIX_PREFIX):])
    if checks.ip_address(value) is None:
        return None
    if resolution == "STATIC":
        return f"address {value!r} is not an IP address (resolution is STATIC)"
    if checks.fqdn(value):
        return f"address {value!r} is not an IP address or a DNS name"
    return None


def _port_name(name: str, *, known: set[str] | None) -> str | None:
    if problem := checks.dns_label(name):
        return problem
    if known is not None and name not in known:
        return f"port name {name!r} is not one of the ServiceEntry's ports"
    return None
