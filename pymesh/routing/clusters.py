"""Clusters (Envoy's word for "an upstream"): one per service port, one per DestinationRule subset
of it, and one per Sidecar ingress entry; each with its endpoints and traffic policy resolved.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping

from pymesh.api import model
from pymesh.routing import locality
from pymesh.routing.hosts import host_matches, is_wildcard, parse_host_port
from pymesh.routing.policy import duplicate_ports, merged
from pymesh.routing.registry import Service, ServiceIndex
from pymesh.routing.scope import exported_to, selects
from pymesh.routing.service_labels import service_labels
from pymesh.routing.snapshot import Cluster, Endpoint, ProxyIdentity, ServiceLabels
from pymesh.routing.tls import compile_tls


def outbound_name(port: int, subset: str, host: str) -> str:
    return f"outbound|{port}|{subset}|{host}"


def inbound_name(port: int) -> str:
    return f"inbound|{port}||"


class RuleIndex:
    """DestinationRules by the service host they apply to: an exact host beats a wildcard, a
    narrower wildcard beats a broader one, and among equals the proxy's own namespace wins."""

    def __init__(self, config: model.MeshConfig, services: ServiceIndex, proxy_namespace: str, warnings: list[str],
                 proxy_labels: Mapping[str, str] = {}):
        self._exact: dict[str, model.DestinationRule] = {}
        self._wild: list[tuple[str, model.DestinationRule]] = []
        rules = [r for r in config.destination_rules if exported_to(r.export_to, r.metadata.namespace, proxy_namespace)
                 and _selects_proxy(r, proxy_namespace, proxy_labels)]
        # a rule selecting this proxy first, then the proxy's namespace; stable: file order otherwise
        rules.sort(key=lambda r: (r.workload_selector is None, r.metadata.namespace != proxy_namespace))
        for rule in rules:
            host = services.canonical(rule.host, rule.metadata.namespace)
            _warn_duplicate_ports(rule, warnings)
            if is_wildcard(host):
                self._wild.append((host, rule))
            elif host in self._exact:
                continue
            else:
                self._exact[host] = rule
                if services.find(host, rule.metadata.namespace) is None:
                    warnings.append(f"DestinationRule {rule.metadata.namespace}/{rule.metadata.name}: host {host} matches no service")
        self._wild.sort(key=lambda hr: -len(hr[0]))

    def for_host(self, host: str) -> model.DestinationRule | None:
        rule = self._exact.get(host)
        if rule is None:
            rule = next((r for pattern, r in self._wild if host_matches(pattern, host)), None)
        return rule


def _selects_proxy(rule: model.DestinationRule, namespace: str, labels: Mapping[str, str]) -> bool:
    """Istio: a rule's workloadSelector applies in its own namespace only."""
    selector = rule.workload_selector
    return selector is None or (rule.metadata.namespace == namespace and selects(selector, labels))


def _warn_duplicate_ports(rule: model.DestinationRule, warnings: list[str]) -> None:
    """Istio accepts a port named twice in portLevelSettings and silently uses the first."""
    policies = [("trafficPolicy", rule.traffic_policy)]
    policies += [(f"subsets[{s.name}].trafficPolicy", s.traffic_policy) for s in rule.subsets]
    for where, policy in policies:
        for port in duplicate_ports(policy):
            warnings.append(f"DestinationRule {rule.metadata.namespace}/{rule.metadata.name}: {where}.portLevelSettings "
                            f"names port {port} more than once; the first entry applies")


def _cluster(name: str, svc: Service, port: model.ServicePort, subset: model.Subset | None,
             rule: model.DestinationRule | None, endpoints: tuple[Endpoint, ...], proxy: ProxyIdentity,
             service_endpoints: tuple[Endpoint, ...]) -> Cluster:
    policy = merged(rule, subset, port.number)
    tls, auto_mtls = compile_tls(policy.tls, port.number, subset.name if subset else "", svc.host, endpoints,
                                 service_endpoints, svc.subject_alt_names, svc.mesh_external)
    lb = _resolution_lb(svc, policy.load_balancer or model.LoadBalancerSettings())
    where = locality.proxy_locality(proxy.locality, proxy.labels)
    # Istio applies locality failover only to clusters with outlier detection.
    failover = policy.outlier_detection is not None
    endpoints = locality.apply(endpoints, lb.locality_lb, where, proxy.labels, failover)
    return Cluster(
        name=name,
        service_host=svc.host,
        port=port.number,
        subset=subset.name if subset else "",
        protocol=port.protocol.upper(),
        endpoints=endpoints,
        load_balancer=lb,
        connection_pool=policy.connection_pool or model.ConnectionPoolSettings(),
        service_labels=service_labels(svc.host, svc.namespace),
        outlier_detection=policy.outlier_detection,
        retry_budget=policy.retry_budget,
        tls=tls,
        auto_mtls=auto_mtls,
        dynamic_dns=svc.resolution == "DYNAMIC_DNS",
    )


def _resolution_lb(svc: Service, lb: model.LoadBalancerSettings) -> model.LoadBalancerSettings:
    """ServiceEntry resolution NONE (and DYNAMIC_DNS) is Envoy's ORIGINAL_DST cluster, whatever
    the DestinationRule's algorithm: each connection goes where it was sent (the request's host
    for DYNAMIC_DNS), which is pymesh's PASSTHROUGH balancer."""
    if svc.resolution not in ("NONE", "DYNAMIC_DNS"):
        return lb
    return replace(lb, simple="PASSTHROUGH", consistent_hash=None)


def outbound_clusters(services: ServiceIndex, rules: RuleIndex, proxy: ProxyIdentity = ProxyIdentity()) -> dict[str, Cluster]:
    out: dict[str, Cluster] = {}
    for svc in services.services:
        rule = rules.for_host(svc.host)
        for port in svc.ports:
            endpoints = svc.endpoints(port)
            name = outbound_name(port.number, "", svc.host)
            out[name] = _cluster(name, svc, port, None, rule, endpoints, proxy, endpoints)
            for subset in rule.subsets if rule else ():
                name = outbound_name(port.number, subset.name, svc.host)
                chosen = tuple(ep for ep in endpoints if selects(subset.labels, ep.labels))
                out[name] = _cluster(name, svc, port, subset, rule, chosen, proxy, endpoints)
    return out


def inbound_cluster(ingress: model.IngressListener, namespace: str, warnings: list[str],
                    service: ServiceLabels = ServiceLabels()) -> Cluster:
    """The local application behind a Sidecar ingress entry; without a usable defaultEndpoint the
    app is assumed on 127.0.0.1 at the port's targetPort (or number). `service`: the one its
    metrics name (pymesh.routing.service_labels.inbound_service)."""
    port = ingress.port
    target = port.target_port if port.target_port is not None else port.number
    address, app_port = "127.0.0.1", target
    if ingress.default_endpoint:
        try:
            address, app_port = parse_host_port(ingress.default_endpoint)
        except ValueError as e:
            warnings.append(f"Sidecar ingress port {port.number}: defaultEndpoint: {e}; using 127.0.0.1:{target}")
    return Cluster(
        name=inbound_name(port.number),
        service_host="",
        port=port.number,
        subset="",
        protocol=port.protocol.upper(),
        endpoints=(Endpoint(address=address, port=app_port, namespace=namespace),),
        load_balancer=model.LoadBalancerSettings(),
        connection_pool=model.ConnectionPoolSettings(),
        service_labels=service,
    )
