"""Clusters (Envoy's word for "an upstream"): one per service port, one per DestinationRule subset
of it, and one per Sidecar ingress entry; each with its endpoints and traffic policy resolved.
"""

from __future__ import annotations

from pymesh.api import model
from pymesh.routing import locality
from pymesh.routing.hosts import host_matches, is_wildcard, parse_host_port
from pymesh.routing.registry import Service, ServiceIndex
from pymesh.routing.scope import exported_to, selects
from pymesh.routing.snapshot import Cluster, Endpoint, ProxyIdentity


def outbound_name(port: int, subset: str, host: str) -> str:
    return f"outbound|{port}|{subset}|{host}"


def inbound_name(port: int) -> str:
    return f"inbound|{port}||"


def policy_layers(rule: model.DestinationRule | None, subset: model.Subset | None) -> list[model.TrafficPolicy]:
    """The traffic policies that apply to a cluster, the most specific first."""
    return [p for p in (subset and subset.traffic_policy, rule and rule.traffic_policy) if p]


def effective_policy(
    rule: model.DestinationRule | None, subset: model.Subset | None
) -> tuple[model.LoadBalancerSettings, model.ConnectionPoolSettings]:
    """Istio's merge: each field the subset's trafficPolicy sets replaces the rule's whole field."""
    layers = policy_layers(rule, subset)
    lb = next((p.load_balancer for p in layers if p.load_balancer), None)
    pool = next((p.connection_pool for p in layers if p.connection_pool), None)
    return lb or model.LoadBalancerSettings(), pool or model.ConnectionPoolSettings()


def effective_outlier(rule: model.DestinationRule | None, subset: model.Subset | None) -> model.OutlierDetection | None:
    """The most specific outlierDetection, whole (Istio does not merge its fields); None: off."""
    return next((p.outlier_detection for p in policy_layers(rule, subset) if p.outlier_detection), None)


def effective_retry_budget(rule: model.DestinationRule | None, subset: model.Subset | None) -> model.RetryBudget | None:
    """The most specific retryBudget, whole; a subset without one keeps the rule's (Istio 1.30)."""
    return next((p.retry_budget for p in policy_layers(rule, subset) if p.retry_budget), None)


class RuleIndex:
    """DestinationRules by the service host they apply to: an exact host beats a wildcard, a
    narrower wildcard beats a broader one, and among equals the proxy's own namespace wins."""

    def __init__(self, config: model.MeshConfig, services: ServiceIndex, proxy_namespace: str, warnings: list[str]):
        self._exact: dict[str, model.DestinationRule] = {}
        self._wild: list[tuple[str, model.DestinationRule]] = []
        rules = [r for r in config.destination_rules if exported_to(r.export_to, r.metadata.namespace, proxy_namespace)]
        rules.sort(key=lambda r: r.metadata.namespace != proxy_namespace)  # stable: file order otherwise
        for rule in rules:
            host = services.canonical(rule.host, rule.metadata.namespace)
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


def failover_enabled(rule: model.DestinationRule | None, subset: model.Subset | None) -> bool:
    """Istio applies locality failover only to clusters with outlier detection."""
    return effective_outlier(rule, subset) is not None


def _cluster(name: str, svc: Service, port: model.ServicePort, subset: model.Subset | None,
             rule: model.DestinationRule | None, endpoints: tuple[Endpoint, ...], proxy: ProxyIdentity) -> Cluster:
    lb, pool = effective_policy(rule, subset)
    where = locality.proxy_locality(proxy.locality, proxy.labels)
    endpoints = locality.apply(endpoints, lb.locality_lb, where, proxy.labels, failover_enabled(rule, subset))
    return Cluster(
        name=name,
        service_host=svc.host,
        port=port.number,
        subset=subset.name if subset else "",
        protocol=port.protocol.upper(),
        endpoints=endpoints,
        load_balancer=lb,
        connection_pool=pool,
        namespace=svc.namespace,
        outlier_detection=effective_outlier(rule, subset),
        retry_budget=effective_retry_budget(rule, subset),
    )


def outbound_clusters(services: ServiceIndex, rules: RuleIndex, proxy: ProxyIdentity = ProxyIdentity()) -> dict[str, Cluster]:
    out: dict[str, Cluster] = {}
    for svc in services.services:
        rule = rules.for_host(svc.host)
        for port in svc.ports:
            endpoints = svc.endpoints(port)
            name = outbound_name(port.number, "", svc.host)
            out[name] = _cluster(name, svc, port, None, rule, endpoints, proxy)
            for subset in rule.subsets if rule else ():
                name = outbound_name(port.number, subset.name, svc.host)
                chosen = tuple(ep for ep in endpoints if selects(subset.labels, ep.labels))
                out[name] = _cluster(name, svc, port, subset, rule, chosen, proxy)
    return out


def inbound_cluster(ingress: model.IngressListener, namespace: str, warnings: list[str]) -> Cluster:
    """The local application behind a Sidecar ingress entry; without a usable defaultEndpoint the
    app is assumed on 127.0.0.1 at the port's targetPort (or number)."""
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
        namespace=namespace,
    )
