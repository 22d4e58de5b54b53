"""Sidecar outboundTrafficPolicy.egressProxy: the cluster that outbound traffic for unknown
destinations takes under ALLOW_ANY, as Istio builds it (pilot's buildCatchAllVirtualHost and the
virtualOutbound catch-all filter chain use GetDestinationCluster(egressProxy) instead of
PassthroughCluster): `outbound|<port>|<subset>|<host>`, a route without a timeout for HTTP.

Istio's note holds in part: the egress proxy's host must be a service exported to the sidecar's
namespace, with that port (and subset), or the cluster does not exist and such traffic fails
(503 for HTTP, a closed connection for TCP); the compile warning says so. (Istio also wants it
among the Sidecar's egress hosts; pymesh's clusters are not scoped by them.)
"""

from __future__ import annotations

from typing import Mapping

from pymesh.api import model
from pymesh.routing.clusters import outbound_name
from pymesh.routing.registry import ServiceIndex
from pymesh.routing.snapshot import NO_RETRIES, Cluster, EgressProxy, Listener, Route, TcpRoute, WeightedCluster

ROUTE_NAME = "allow_any"  # Istio's util.PassthroughRouteName: the catch-all route keeps its name
LISTENER_NAME = "virtualOutbound"  # the capture listener whose catch-all chain this is


def compile_egress_proxy(sidecar: model.Sidecar | None, services: ServiceIndex, clusters: Mapping[str, Cluster],
                         warnings: list[str]) -> EgressProxy | None:
    if sidecar is None or sidecar.egress_proxy is None or sidecar.outbound_traffic_policy != "ALLOW_ANY":
        return None
    dest = sidecar.egress_proxy
    namespace = sidecar.metadata.namespace
    name = outbound_name(dest.port, dest.subset, services.canonical(dest.host, namespace))
    if name not in clusters:
        warnings.append(f"Sidecar {namespace}/{sidecar.metadata.name}: outboundTrafficPolicy.egressProxy: cluster "
                        f"{name} does not exist (the host must be a service this proxy sees, with that port and "
                        "subset); traffic to unknown destinations fails")
    to = (WeightedCluster(cluster=name, weight=100),)
    return EgressProxy(
        route=Route(name=ROUTE_NAME, virtual_service="", clusters=to, total_weight=100, retries=NO_RETRIES),
        listener=Listener(LISTENER_NAME, "outbound", "", 0, "TCP", tcp_route=TcpRoute(to, 100)),
    )
