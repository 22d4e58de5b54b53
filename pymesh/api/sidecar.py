"""Sidecar: which ports a proxy listens on for its workload (ingress) and which services it can
reach (egress)."""

from __future__ import annotations

from functools import partial

from pymesh.api import checks, common, hosts, model, shapes
from pymesh.api.gateway import server_tls
from pymesh.api.reader import Reader, choice, distinct, message, text

OUTBOUND_MODE = choice("mode", ("ALLOW_ANY", "REGISTRY_ONLY"))
_EGRESS_HOST = hosts.read_host(partial(hosts.namespace_host, gateway=False), hosts.normalize_namespace_host)
SIDECAR_PORT = message(shapes.SERVICE_PORT, partial(common.service_port, target_port=False))
EGRESS_PROXY = message(shapes.DESTINATION, lambda d: model.Destination(
    host=d.get("host", text(hosts.fqdn), "", required=True),
    subset=d.get("subset", text(checks.dns_label), ""),
    port=d.get("port", common.PORT_SELECTOR, required=True),
))


def sidecar(metadata: model.Metadata, r: Reader) -> model.Sidecar:
    if not _configured(r):
        r.error_here("sidecar must set at least one of ingress, egress or outboundTrafficPolicy")
    ingress = distinct(message(shapes.INGRESS_LISTENER, _ingress), _port_number, "port")
    namespace = metadata.namespace if metadata else ""
    egress = distinct(message(shapes.EGRESS_LISTENER, partial(_egress, namespace=namespace)), _port_number, "port")
    egress_listeners = r.get_list("egress", egress)
    mode, egress_proxy = r.get("outboundTrafficPolicy", OUTBOUND_TRAFFIC_POLICY, (model.Sidecar.outbound_traffic_policy, None))
    if any(listener.port is None for listener in egress_listeners[:-1]):
        r.error("egress", "only the last egress listener may leave out port (it catches all other ports)")
    return model.Sidecar(
        metadata=metadata,
        workload_selector=common.workload_selector(r),
        ingress=r.get_list("ingress", ingress),
        egress=egress_listeners,
        outbound_traffic_policy=mode,
        egress_proxy=egress_proxy,
    )


def _overlapping_hosts(r: Reader, egress_hosts: tuple[str, ...], namespace: str) -> None:
    """Istio's ValidateSidecar warnings: a host another entry of the list already selects."""
    by_namespace: dict[str, set[str]] = {}
    for host in egress_hosts:
        ns, _, name = host.partition("/")
        names = by_namespace.setdefault(namespace if ns == "." else ns, set())
        if (name != "*" and (name in names or "*" in names)) or (name == "*" and names):
            r.warn("hosts", f"duplicated egress host: {host}")
        names.add(name)
    if "*" in by_namespace.get("*", ()) and len(by_namespace) != 1:
        r.warn("hosts", "`*/*` host select all resources, no other hosts can be added")


def _configured(r: Reader) -> bool:
    """Istio's "sidecar: empty configuration provided": empty ingress and egress lists count as
    unset, a present outboundTrafficPolicy or inboundConnectionPool (even `{}`) as set."""
    return any(r.has(key) and r.data[key] != [] for key in ("ingress", "egress")) or any(
        r.has(key) for key in ("outboundTrafficPolicy", "inboundConnectionPool"))


def _outbound_traffic_policy(r: Reader) -> tuple[str, model.Destination | None]:
    """Istio: a Sidecar's policy replaces the mesh's whole, so `{}` is REGISTRY_ONLY (the enum's
    zero value). egressProxy takes effect under ALLOW_ANY only and needs a FQDN and a port."""
    mode = r.get("mode", OUTBOUND_MODE, None if r.has("mode") else "REGISTRY_ONLY")  # None: not valid
    egress_proxy = r.get("egressProxy", EGRESS_PROXY)
    if egress_proxy is not None and mode == "REGISTRY_ONLY":
        r.error("egressProxy", "egressProxy must be set only with mode ALLOW_ANY")
    return mode or "REGISTRY_ONLY", egress_proxy


OUTBOUND_TRAFFIC_POLICY = message(shapes.OUTBOUND_TRAFFIC_POLICY, _outbound_traffic_policy)


def _port_number(listener: model.IngressListener | model.EgressListener) -> int | None:
    return listener.port.number if listener.port else None


def _ingress(r: Reader) -> model.IngressListener:
    return model.IngressListener(
        port=r.get("port", SIDECAR_PORT, required=True),
        bind=r.get("bind", text(checks.ip_address), ""),
        capture_mode=r.get("captureMode", common.CAPTURE_MODE, "DEFAULT"),
        default_endpoint=r.get("defaultEndpoint", text(checks.default_endpoint), ""),
        tls=r.get("tls", message(shapes.SERVER_TLS_SETTINGS, _ingress_tls)),
    )


def _ingress_tls(r: Reader) -> model.ServerTLSSettings:
    """A Gateway server's TLS settings, for clients outside the mesh: the sidecar's own
    certificate (SIMPLE) and, MUTUAL, their CA; the mesh's modes make no sense there."""
    settings = server_tls(r)
    if settings.mode not in INGRESS_TLS_MODES:
        r.error("mode", f"configuration is invalid: cannot set mode to {settings.mode} in sidecar ingress tls")
    return settings


INGRESS_TLS_MODES = ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL")


def _egress(r: Reader, namespace: str) -> model.EgressListener:
    egress_hosts = r.get_list("hosts", distinct(_EGRESS_HOST), required=True)
    _overlapping_hosts(r, egress_hosts, namespace)
    return model.EgressListener(
        hosts=egress_hosts,
        port=r.get("port", SIDECAR_PORT),
        bind=r.get("bind", text(checks.ip_address), ""),
        capture_mode=r.get("captureMode", common.CAPTURE_MODE, "DEFAULT"),
    )
