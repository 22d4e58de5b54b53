"""Sidecar: which ports a proxy listens on for its workload (ingress) and which services it can
reach (egress)."""

from __future__ import annotations

from functools import partial

from pymesh.api import checks, common, hosts, model, shapes
from pymesh.api.reader import Reader, choice, distinct, message, text

OUTBOUND_MODE = choice("mode", ("ALLOW_ANY", "REGISTRY_ONLY"))
_EGRESS_HOST = hosts.read_host(partial(hosts.namespace_host, gateway=False), hosts.normalize_namespace_host)
SIDECAR_PORT = message(shapes.SERVICE_PORT, partial(common.service_port, target_port=False))


def sidecar(metadata: model.Metadata, r: Reader) -> model.Sidecar:
    if not any(r.has(key) for key in ("ingress", "egress", "outboundTrafficPolicy", "inboundConnectionPool")):
        r.error_here("sidecar must set at least one of ingress, egress or outboundTrafficPolicy")
    ingress = distinct(message(shapes.INGRESS_LISTENER, _ingress), _port_number, "port")
    egress = distinct(message(shapes.EGRESS_LISTENER, _egress), _port_number, "port")
    egress_listeners = r.get_list("egress", egress)
    if any(listener.port is None for listener in egress_listeners[:-1]):
        r.error("egress", "only the last egress listener may leave out port (it catches all other ports)")
    return model.Sidecar(
        metadata=metadata,
        workload_selector=common.workload_selector(r),
        ingress=r.get_list("ingress", ingress),
        egress=egress_listeners,
        outbound_traffic_policy=r.get(
            "outboundTrafficPolicy",
            message(shapes.OUTBOUND_TRAFFIC_POLICY, lambda o: o.get("mode", OUTBOUND_MODE, "ALLOW_ANY")),
            model.Sidecar.outbound_traffic_policy,
        ),
    )


def _port_number(listener: model.IngressListener | model.EgressListener) -> int | None:
    return listener.port.number if listener.port else None


def _ingress(r: Reader) -> model.IngressListener:
    return model.IngressListener(
        port=r.get("port", SIDECAR_PORT, required=True),
        bind=r.get("bind", text(checks.ip_address), ""),
        capture_mode=r.get("captureMode", common.CAPTURE_MODE, "DEFAULT"),
        default_endpoint=r.get("defaultEndpoint", text(checks.default_endpoint), ""),
    )


def _egress(r: Reader) -> model.EgressListener:
    return model.EgressListener(
        hosts=r.get_list("hosts", distinct(_EGRESS_HOST), required=True),
        port=r.get("port", SIDECAR_PORT),
        bind=r.get("bind", text(checks.ip_address), ""),
        capture_mode=r.get("captureMode", common.CAPTURE_MODE, "DEFAULT"),
    )
