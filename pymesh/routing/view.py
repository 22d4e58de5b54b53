"""The part of the mesh configuration one proxy needs: what the control server sends it.

Istio's Sidecar scoping applied to the configuration instead of to the compiled snapshot, so a
proxy receives (and re-receives on every change) only what can affect its routing, and a change
elsewhere in the mesh is not pushed to it at all. The rule the tests hold this to: compiling the
view gives the proxy the same listeners and routes as compiling the whole mesh.

What is kept, in file order:
- ServiceEntries exported to the proxy's namespace whose hosts its Sidecar's egress lets through
  (no Sidecar, or one without egress: all of them), plus the services the kept VirtualServices
  name as hosts or destinations, plus any earlier ServiceEntry that claims a kept one's host
  (the first definition of a host wins, so it must still be there to win);
- VirtualServices bound to the mesh (pymesh.routing.binding), exported to the namespace, with a
  host the egress lets through;
- DestinationRules exported to the namespace whose host is a kept service's (or a wildcard
  covering one);
- the WorkloadEntries that the kept ServiceEntries select;
- the Sidecars of the proxy's namespace (the proxy selects its own from them);
- the RequestAuthentications and AuthorizationPolicies of the proxy's namespace and the root
  namespace (the proxy compiles the ones whose selector or targetRefs pick it);
- every PeerAuthentication (small, no secrets): its own decide what it accepts, the other
  workloads' whether a client may speak mTLS to them;
- the WorkloadGroup the proxy auto-registers with (its probe is the proxy's to run), and the
  ProxyConfigs of its namespace and the root namespace (it picks the one that applies);
- Istio's mesh config and the Telemetries of its namespace and the mesh config's root namespace
  (it merges the ones that apply: pymesh.routing.telemetry), and the PythonFilters of the same
  two namespaces (it compiles the ones whose selector or targetRefs pick it).

A gateway (kind "router") has no Sidecar: it gets the Gateways that select it, the
VirtualServices bound to them, and every service and rule exported to its namespace.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Protocol

from pymesh.api import model
from pymesh.routing import delegation, gateway_api
from pymesh.routing.binding import MESH_ONLY, bound_gateways, gateway_key
from pymesh.routing.hosts import host_matches, is_wildcard
from pymesh.routing.registry import ServiceIndex
from pymesh.routing.telemetry import mesh_config
from pymesh.routing.scope import ALL, ROOT_NAMESPACE, EgressScope, exported_to, select_sidecar, selects

__all__ = ["ProxyLike", "Views", "egress_scope", "proxy_view", "view_key"]


class ProxyLike(Protocol):
    """What scoping reads of a proxy; wire.Node and snapshot.ProxyIdentity both have it."""

    namespace: str
    labels: Mapping[str, str]
    kind: str  # "sidecar" | "router" (a gateway)


def view_key(proxy: ProxyLike) -> tuple[str, frozenset, str, str]:
    """Proxies with equal keys have equal views of the same config (to compute it once)."""
    return proxy.namespace, frozenset(proxy.labels.items()), proxy.kind, _group(proxy)


def _group(proxy: ProxyLike) -> str:
    """The WorkloadGroup a control-server proxy (wire.Node) names; a compiled identity has none."""
    return getattr(proxy, "workload_group", "")


def egress_scope(config: model.MeshConfig, proxy: ProxyLike) -> EgressScope:
    """Every host the proxy's Sidecar egress lists (any listener), or everything."""
    sidecar = select_sidecar(config.sidecars, proxy.namespace, proxy.labels)
    if sidecar is None or not sidecar.egress:
        return ALL
    return EgressScope.parse((h for e in sidecar.egress for h in e.hosts), sidecar.metadata.namespace)


def proxy_view(config: model.MeshConfig, proxy: ProxyLike) -> model.MeshConfig:
    """The configuration `proxy` needs (see the module docstring)."""
    return Views(config).view(proxy)


class Views:
    """Views of one configuration for many proxies: what does not depend on the proxy (which
    workloads each ServiceEntry selects, what each namespace is exported) is worked out once."""

    def __init__(self, config: model.MeshConfig):
        # views hold what the resources translate to, delegate VirtualServices merged into their roots
        self.config = config = delegation.apply(gateway_api.apply(config))
        self._namespaces: dict[str, _Namespace] = {}
        self._selected: dict[int, tuple[int, ...]] = {}  # id(ServiceEntry) -> workload indexes
        self._workloads: dict[str, list[int]] | None = None  # namespace -> workload indexes

    def view(self, proxy: ProxyLike) -> model.MeshConfig:
        config = self.config
        ns = self._namespace(proxy.namespace)
        if proxy.kind == "router":
            return self._router_view(proxy, ns)
        scope = egress_scope(config, proxy)
        virtual_services = tuple(
            vs for vs in ns.virtual_services
            if bound_gateways(vs) & MESH_ONLY
            and any(scope.allows(vs.metadata.namespace, ns.index.canonical(h, vs.metadata.namespace)) for h in vs.hosts)
        )
        hosts = {s.host for s in ns.index.services if scope.allows(s.namespace, s.host)}
        for vs in virtual_services:
            hosts.update(_named_hosts(ns.index, vs))
        kept = _with_shadowing(ns.entries, ns.owners, {id(ns.owners[h]) for h in hosts if h in ns.owners})
        service_entries = tuple(se for se in ns.entries if id(se) in kept)
        kept_hosts = {h.lower() for se in service_entries for h in se.hosts}
        workloads = sorted({i for se in service_entries for i in self._selects(se)})
        return model.MeshConfig(
            service_entries=service_entries,
            workload_entries=tuple(config.workload_entries[i] for i in workloads),
            virtual_services=virtual_services,
            destination_rules=tuple(
                dr for dr in ns.destination_rules if _covers(ns.index.canonical(dr.host, dr.metadata.namespace), kept_hosts)
            ),
            sidecars=tuple(sc for sc in config.sidecars if sc.metadata.namespace == proxy.namespace),
            local_rate_limits=tuple(rl for rl in config.local_rate_limits if rl.metadata.namespace == proxy.namespace),
            authorization_policies=tuple(p for p in config.authorization_policies
                                         if p.metadata.namespace in (proxy.namespace, ROOT_NAMESPACE)),
            request_authentications=tuple(ra for ra in config.request_authentications
                                          if ra.metadata.namespace in (proxy.namespace, ROOT_NAMESPACE)),
            peer_authentications=config.peer_authentications,  # all: a client decides auto mTLS by the server's
            **_proxy_settings(config, proxy),
        )

    def _router_view(self, proxy: ProxyLike, ns: _Namespace) -> model.MeshConfig:
        """A gateway's: the Gateways selecting it, the VirtualServices bound to them, and every
        service, rule and workload exported to its namespace (a gateway has no Sidecar)."""
        config = self.config
        gateways = tuple(g for g in config.gateways if selects(g.selector, proxy.labels))
        keys = frozenset(gateway_key(g) for g in gateways)
        service_entries = tuple(ns.entries)
        workloads = sorted({i for se in service_entries for i in self._selects(se)})
        return model.MeshConfig(
            service_entries=service_entries,
            workload_entries=tuple(config.workload_entries[i] for i in workloads),
            virtual_services=tuple(vs for vs in ns.virtual_services if bound_gateways(vs) & keys),
            destination_rules=ns.destination_rules,
            local_rate_limits=tuple(rl for rl in config.local_rate_limits if rl.metadata.namespace == proxy.namespace),
            authorization_policies=tuple(p for p in config.authorization_policies
                                         if p.metadata.namespace in (proxy.namespace, ROOT_NAMESPACE)),
            request_authentications=tuple(ra for ra in config.request_authentications
                                          if ra.metadata.namespace in (proxy.namespace, ROOT_NAMESPACE)),
            peer_authentications=config.peer_authentications,
            gateways=gateways,
            **_proxy_settings(config, proxy),
        )

    def _namespace(self, namespace: str) -> _Namespace:
        ns = self._namespaces.get(namespace)
        if ns is None:
            ns = self._namespaces[namespace] = _Namespace(self.config, namespace)
        return ns

    def _selects(self, se: model.ServiceEntry) -> tuple[int, ...]:
        """Indexes of the WorkloadEntries `se`'s workloadSelector picks (in its own namespace)."""
        if not se.workload_selector:
            return ()
        found = self._selected.get(id(se))
        if found is None:
            workloads = self.config.workload_entries
            if self._workloads is None:
                self._workloads = {}
                for i, we in enumerate(workloads):
                    self._workloads.setdefault(we.metadata.namespace, []).append(i)
            found = self._selected[id(se)] = tuple(
                i for i in self._workloads.get(se.metadata.namespace, ())
                if selects(se.workload_selector, workloads[i].spec.labels)
            )
        return found


class _Namespace:
    """What is exported to one namespace, and its services by host."""

    def __init__(self, config: model.MeshConfig, namespace: str):
        def exported(resources):
            return tuple(r for r in resources if exported_to(r.export_to, r.metadata.namespace, namespace))

        self.entries = list(exported(config.service_entries))
        self.index = ServiceIndex.from_config(model.MeshConfig(service_entries=tuple(self.entries)), namespace, [])
        self.owners = _owners(self.entries)
        self.virtual_services = exported(config.virtual_services)
        self.destination_rules = exported(config.destination_rules)


def _proxy_settings(config: model.MeshConfig, proxy: ProxyLike) -> dict:
    """The WorkloadGroup the proxy registers with, the ProxyConfigs that may apply to it, the
    mesh config and the Telemetries and PythonFilters of its namespace and the root namespace."""
    root = mesh_config(config).root_namespace
    return {
        "mesh_configs": config.mesh_configs,
        "telemetries": tuple(t for t in config.telemetries if t.metadata.namespace in (proxy.namespace, root)),
        "workload_groups": tuple(g for g in config.workload_groups
                                 if (g.metadata.namespace, g.metadata.name) == (proxy.namespace, _group(proxy))),
        "proxy_configs": tuple(pc for pc in config.proxy_configs
                               if pc.metadata.namespace in (proxy.namespace, ROOT_NAMESPACE)),
        "python_filters": tuple(f for f in config.python_filters if f.metadata.namespace in (proxy.namespace, root)),
    }


def _owners(entries: Iterable[model.ServiceEntry]) -> dict[str, model.ServiceEntry]:
    """Host -> the first ServiceEntry defining it (the one the proxy's registry uses)."""
    out: dict[str, model.ServiceEntry] = {}
    for se in entries:
        for host in se.hosts:
            out.setdefault(host.lower(), se)
    return out


def _with_shadowing(entries: list[model.ServiceEntry], owners: dict, kept: set[int]) -> set[int]:
    """`kept` plus, until nothing changes, the owners of every host a kept entry lists."""
    by_id = {id(se): se for se in entries}
    todo = list(kept)
    while todo:
        for host in by_id[todo.pop()].hosts:
            owner = id(owners[host.lower()])
            if owner not in kept:
                kept.add(owner)
                todo.append(owner)
    return kept


def _named_hosts(index: ServiceIndex, vs: model.VirtualService) -> Iterable[str]:
    """The registered hosts a VirtualService routes for or to."""
    ns = vs.metadata.namespace
    destinations = [d.destination for routes in (vs.http, vs.tcp, vs.tls) for r in routes for d in r.route]
    for host in list(vs.hosts) + [d.host for d in destinations]:
        svc = index.find(host, ns)
        if svc is not None:
            yield svc.host


def _covers(rule_host: str, hosts: set[str]) -> bool:
    if is_wildcard(rule_host):
        return any(host_matches(rule_host, h) for h in hosts)
    return rule_host in hosts
