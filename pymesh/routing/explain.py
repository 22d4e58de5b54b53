"""What the mesh does with one request, and why: `pymesh explain`'s logic, pure.

Given a compiled `Snapshot` (the very object a proxy would run) and a request, walk the request
path as the proxy does: the listener for the port, the virtual host for the authority, the first
route that matches (and why the ones before it did not), its destinations and their endpoints'
health, the policies the route carries, and the outcome with Envoy's response flag. When nothing
matches, say why in the terms users ask about: no virtual host of that name (the closest ones),
a VirtualService bound to a gateway only or not exported here, a subset whose labels select no
endpoint. The CLI (pymesh/explain_command.py) only gathers inputs and formats the result.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace
from typing import Mapping
from urllib.parse import urlsplit

from pymesh.api import model
from pymesh.http.message import ConnectionInfo, RequestHead
from pymesh.policy import flags
from pymesh.policy.fault import MILLION
from pymesh.routing.binding import MESH_ONLY, bound_gateways, gateway_key
from pymesh.routing.compile import implicit_inbound
from pymesh.routing.gateway import intersect, selected_gateways
from pymesh.routing.hosts import fqdn, host_matches, split_authority
from pymesh.routing.match_reasons import failures
from pymesh.routing.python_filters import for_listener
from pymesh.routing.scope import EgressScope, exported_to, select_sidecar
from pymesh.routing.sni import ServerNames
from pymesh.routing.snapshot import Cluster, Listener, Route, Snapshot, TcpRoute, WeightedCluster

SHOWN_MISSES = 5  # routes that did not match, listed before the one that did
HEALTHY = "healthy"
# Envoy's /clusters health_flags, as explain words them
HEALTH_WORDS = {"/failed_outlier_check": "outlier-ejected", "/failed_active_hc": "unhealthy (active health check)",
                "/failed_eds_health": "unhealthy (EDS)"}
# Istio's default retry policy (a route without `retries`)
ISTIO_DEFAULT_RETRIES = "2 attempts on connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes (Istio's default)"


@dataclass(frozen=True)
class Request:
    method: str
    scheme: str
    authority: str
    path: str  # with the query
    port: int
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    # inbound: who sends it (authorization): the verified peer's SPIFFE URI ("" plaintext), its address
    source_principal: str = ""
    source_ip: str = "127.0.0.1"

    @classmethod
    def from_url(cls, url: str, method: str = "GET", headers: Mapping[str, str] | None = None,
                 source_principal: str = "", source_ip: str = "127.0.0.1") -> Request:
        """A curl-like URL; a `Host` header overrides the authority, as curl sends it."""
        if "://" not in url:
            url = "http://" + url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
        heads = {k.lower(): v for k, v in (headers or {}).items()}
        authority = heads.pop("host", parts.netloc)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(method.upper(), parts.scheme, authority, path, port, heads, source_principal, source_ip)


@dataclass
class Explanation:
    request: dict
    proxy: dict
    listener: dict | None = None
    virtual_host: str | None = None
    route: dict | None = None
    misses: list[dict] = field(default_factory=list)  # routes before the match that did not match
    destinations: list[dict] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)
    filters: list[dict] = field(default_factory=list)  # the PythonFilters the request passes, in order
    notes: list[str] = field(default_factory=list)
    closest_hosts: list[str] = field(default_factory=list)
    outcome: dict = field(default_factory=dict)  # status, flag, reason
    alternatives: list[dict] = field(default_factory=list)  # other outcomes and their chance (percent)

    def result(self, status: int | None, flag: str, reason: str) -> Explanation:
        self.outcome = {"status": status, "flag": flag, "reason": reason}
        return self

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class _View:
    """A Request as route matching reads it (pymesh.routing.snapshot.RequestView)."""

    request: Request
    source_labels: Mapping[str, str]

    def __getattr__(self, name: str):
        return getattr(self.request, name)


def explain(snapshot: Snapshot, request: Request, health: Mapping[str, Mapping[str, str]] | None = None,
            inbound: bool = False) -> Explanation:
    """`health`: cluster name -> endpoint "address:port" -> Envoy health_flags (a live proxy's
    /clusters); without it every endpoint counts as healthy, as a fresh proxy sees them."""
    ident = snapshot.identity
    out = Explanation(
        request={"method": request.method, "scheme": request.scheme, "authority": request.authority,
                 "path": request.path, "port": request.port, "headers": dict(request.headers)},
        proxy={"kind": ident.kind, "workload": ident.workload, "namespace": ident.namespace,
               "labels": dict(ident.labels)},
    )
    listener = find_listener(snapshot, request.port, inbound)
    if listener is None and inbound:  # captured inbound traffic to a port no Sidecar ingress names
        listener, cluster = implicit_inbound(snapshot, request.port, "127.0.0.1")
        snapshot = replace(snapshot, clusters={**snapshot.clusters, cluster.name: cluster})
    if listener is None:
        return _no_listener(snapshot, request, out, inbound)
    out.listener = {"name": listener.name, "direction": "gateway" if ident.kind == "router" else listener.direction,
                    "port": listener.port, "protocol": listener.protocol}
    table, tcp = listener.route_table, None
    sni = split_authority(request.authority.lower())[0] if request.scheme == "https" else None
    if listener.tls_servers:
        chain = tls_server(listener, sni)
        if chain is None and listener.sni_routes is None:
            names = sorted({n for c in listener.tls_servers for n in c.server_names})
            return out.result(None, flags.NONE, f"TLS handshake refused: no server on port {request.port} for SNI "
                                                f"{sni!r} (server names: {', '.join(names)})")
        if chain is not None:
            out.listener["tls"] = {"mode": chain.tls.mode, "server_names": list(chain.server_names)}
            table, tcp = chain.route_table, chain.tcp_route
    if table is None:
        return _tcp_outcome(snapshot, listener, tcp, sni, health or {}, out)
    _python_filters(snapshot, listener, out)
    vh = table.virtual_host(request.authority)
    if vh is None:
        return _no_virtual_host(snapshot, listener, table, request, out)
    out.virtual_host = vh.name
    route = _walk_routes(vh, request, snapshot, out)
    matched = table.match(_View(request, snapshot.identity.labels))  # the proxy's own answer decides
    if (matched[0] if matched else None) is not route:
        out.notes.append("explain's reading of the matches differs from the route table's (a pymesh bug): "
                         f"the proxy takes {matched[0].name if matched else 'no route'!r}")
        route = matched[0] if matched else None
        index = next((i for i, r in enumerate(vh.routes) if r.route is route), None)
        out.route = None if route is None else {"name": route.name, "virtual_service": route.virtual_service,
                                                "index": index, "match": None}
    _not_applied_here(snapshot, request, out, vh_routes={r.route.virtual_service for r in vh.routes})
    if route is None:
        return out.result(404, flags.NR, f"virtual host {vh.name} has no route matching the request")
    return _route_outcome(snapshot, route, request, health or {}, out, inbound or listener.direction == "inbound")


# where each PythonFilter phase runs among the built-in filters (pymesh.proxy.filters.chains_for,
# as Istio places Wasm plugins)
PHASE_PLACES = {"AUTHN": "before the JWT check", "AUTHZ": "after the JWT check, before authorization",
                "STATS": "after authorization and the route's CORS, fault and rate limit",
                "UNSPECIFIED_PHASE": "last, before the route's header operations"}


def _python_filters(snapshot: Snapshot, listener: Listener, out: Explanation) -> None:
    """The user filters of the listener's chain, in the order they run."""
    specs = for_listener(snapshot.python_filters, listener.direction, listener.port)
    out.filters = [{"name": s.name, "module": s.module, "phase": s.phase, "place": PHASE_PLACES[s.phase],
                    "priority": s.priority, "fail_strategy": s.fail_strategy} for s in specs]
    if specs:
        out.notes.append("the outcome assumes every PythonFilter lets the request through")


def find_listener(snapshot: Snapshot, port: int, inbound: bool = False) -> Listener | None:
    """The listener a request to `port` meets: an inbound one (`inbound`), else an egress or
    gateway listener on that port (a gateway's route table is keyed by the server's port, its
    socket may listen on the target port), else the one for traffic captured to that port."""
    for listener in snapshot.listeners:
        if (listener.direction == "inbound") != inbound:
            continue
        tables = (listener.route_table, *(chain.route_table for chain in listener.tls_servers))
        if port == listener.port or any(getattr(table, "port", None) == port for table in tables):
            return listener
    return None if inbound else snapshot.captured_outbound.get(port)


def _no_listener(snapshot: Snapshot, request: Request, out: Explanation, inbound: bool) -> Explanation:
    ports = sorted({l.port for l in snapshot.listeners} | set(snapshot.captured_outbound))
    where = "inbound" if inbound else "outbound"
    if not inbound and snapshot.identity.kind != "router":
        policy = snapshot.outbound_traffic_policy
        fate = ("passes through to its original destination (PassthroughCluster)" if policy == "ALLOW_ANY"
                else "is refused (BlackHoleCluster)")
        out.notes.append(f"captured traffic to a port no service uses {fate}: outboundTrafficPolicy {policy}")
    return out.result(None, flags.NONE, f"no {where} listener on port {request.port} (listeners: {ports})")


def _all_domains(table) -> list[str]:
    return [d for vh in table.virtual_hosts for d in vh.domains]


def _no_virtual_host(snapshot: Snapshot, listener: Listener, table, request: Request, out: Explanation) -> Explanation:
    host, _ = split_authority(request.authority.lower())
    domains = _all_domains(table)
    out.closest_hosts = difflib.get_close_matches(request.authority.lower(), domains, n=3, cutoff=0.5) or \
        difflib.get_close_matches(host, domains, n=3, cutoff=0.5)
    _not_applied_here(snapshot, request, out, vh_routes=set())
    _host_not_visible(snapshot, host, request.port, out)
    for listener in (*snapshot.listeners, *snapshot.captured_outbound.values()):
        other = listener.route_table
        if other is not None and other is not table and other.virtual_host(host) is not None:
            out.notes.append(f"{host} is routed on port {getattr(other, 'port', listener.port)}, not {request.port}")
            break
    captured = listener not in snapshot.listeners
    if captured and snapshot.identity.kind != "router" and snapshot.outbound_traffic_policy == "ALLOW_ANY":
        out.notes.append("traffic captured by iptables to an unknown host passes through to its original "
                         "destination (outboundTrafficPolicy ALLOW_ANY); a request sent to the proxy itself is 404 NR")
    return out.result(404, flags.NR, f"no virtual host for authority {request.authority!r} on port {request.port}")


def _not_applied_here(snapshot: Snapshot, request: Request, out: Explanation, vh_routes: set[str]) -> None:
    """Notes on VirtualServices for this host that the proxy does not use, and why: bound to
    gateways only (or, on a gateway, not to its gateways), or not exported to its namespace."""
    ident = snapshot.identity
    host, _ = split_authority(request.authority.lower())
    names = MESH_ONLY if ident.kind != "router" else _served_gateways(snapshot)
    for vs in snapshot.config.virtual_services:
        key = f"{vs.metadata.namespace}/{vs.metadata.name}"
        if key in vh_routes or not _names_host(vs, host, ident.namespace):
            continue
        bound = bound_gateways(vs)
        if not bound & names:
            only = ", ".join(sorted(bound))
            out.notes.append(f"VirtualService {key} names this host but is bound to {only}, not "
                             + ("mesh (sidecars)" if ident.kind != "router" else f"this gateway ({', '.join(sorted(names)) or 'none'})"))
        elif not exported_to(vs.export_to, vs.metadata.namespace, ident.namespace):
            out.notes.append(f"VirtualService {key} names this host but is not exported to namespace "
                             f"{ident.namespace} (exportTo {list(vs.export_to)})")
        elif not vh_routes:
            out.notes.append(f"VirtualService {key} names this host but has no route on port {request.port}")


def _served_gateways(snapshot: Snapshot) -> frozenset[str]:
    """The Gateways (namespace/name) whose selector picks this router."""
    return frozenset(gateway_key(g) for g in selected_gateways(snapshot.config, snapshot.identity))


def _host_not_visible(snapshot: Snapshot, host: str, port: int, out: Explanation) -> None:
    """Notes for a host the proxy has no virtual host for although the config names it: a
    gateway's servers on the port do not accept it; a ServiceEntry not exported to the proxy's
    namespace; a Sidecar whose egress hosts leave it out."""
    ident = snapshot.identity
    if ident.kind == "router":
        servers = [(gateway_key(g), h.rpartition("/")[2]) for g in selected_gateways(snapshot.config, ident)
                   for srv in g.servers if srv.port.number == port for h in srv.hosts]
        if servers and not any(intersect(h, host) for _, h in servers):
            accepted = ", ".join(sorted({f"{g}: {h}" for g, h in servers}))
            out.notes.append(f"no Gateway server on port {port} accepts host {host} (servers' hosts: {accepted})")
        return
    sidecar = select_sidecar(snapshot.config.sidecars, ident.namespace, ident.labels)
    for entry in snapshot.config.service_entries:
        ns = entry.metadata.namespace
        if not any(host_matches(fqdn(h, ns), fqdn(host, ident.namespace)) for h in entry.hosts):
            continue
        key = f"ServiceEntry {ns}/{entry.metadata.name}"
        if not exported_to(entry.export_to, ns, ident.namespace):
            out.notes.append(f"{key} names this host but is not exported to namespace {ident.namespace} "
                             f"(exportTo {list(entry.export_to)})")
        elif sidecar is not None and sidecar.egress:
            hosts = [h for e in sidecar.egress if e.port is None or e.port.number == port for h in e.hosts]
            if not EgressScope.parse(hosts, sidecar.metadata.namespace).allows(ns, fqdn(host, ident.namespace)):
                out.notes.append(f"{key} names this host but Sidecar {sidecar.metadata.namespace}/"
                                 f"{sidecar.metadata.name}'s egress hosts for port {port} ({', '.join(hosts)}) leave it out")


def _names_host(vs: model.VirtualService, host: str, namespace: str) -> bool:
    ns = vs.metadata.namespace
    candidates = {host, fqdn(host, namespace)}
    return any(host_matches(fqdn(h, ns), c) for h in vs.hosts for c in candidates)


def _walk_routes(vh, request: Request, snapshot: Snapshot, out: Explanation) -> Route | None:
    """The first route whose matches the request passes, recording the first SHOWN_MISSES
    routes before it with every condition they failed (and how many more there were)."""
    labels = snapshot.identity.labels
    hidden = 0
    found = None
    for index, compiled in enumerate(vh.routes):
        reasons = []
        for m_index, m in enumerate(compiled.matches or (None,)):
            failed = [] if m is None else failures(m, request.method, request.path, request.authority,
                                                   request.scheme, request.headers, labels)
            if not failed:
                found = (index, m_index if m is not None else None)
                break
            reasons.append(f"match[{m_index}]" + (f" {m.name!r}" if m.name else "") + ": " + "; ".join(failed))
        if found:
            break
        if len(out.misses) < SHOWN_MISSES:
            out.misses.append({"name": compiled.route.name, "virtual_service": compiled.route.virtual_service,
                               "index": index, "reasons": reasons})
        else:
            hidden += 1
    if hidden:
        out.notes.append(f"{hidden} more routes before it did not match either")
    if found is None:
        return None
    route = vh.routes[found[0]].route
    out.route = {"name": route.name, "virtual_service": route.virtual_service, "index": found[0], "match": found[1]}
    return route


def _route_outcome(snapshot: Snapshot, route: Route, request: Request, health: Mapping[str, Mapping[str, str]],
                   out: Explanation, inbound: bool) -> Explanation:
    _policies(snapshot, route, out, inbound)
    if inbound and snapshot.authz is not None:
        denied = _authorization(snapshot.authz, request, bool(snapshot.request_authn))
        if denied:
            return out.result(403, flags.NONE, denied)
    if route.direct_response is not None:
        return out.result(route.direct_response.status, flags.NONE, "the route answers directly (directResponse)")
    if route.redirect is not None:
        r = route.redirect
        authority = r.authority or request.authority
        if r.port is not None:
            authority = f"{split_authority(authority)[0]}:{r.port}"
        to = f"{r.scheme or request.scheme}://{authority}{r.uri or request.path}"
        return out.result(r.redirect_code, flags.NONE, f"the route redirects to {to}")
    fault = route.fault
    if fault is not None and fault.abort_per_million:
        percent = 100 * fault.abort_per_million / MILLION
        what = f"fault injection aborts with HTTP {fault.abort_status}" + \
            (f" (grpc-status {fault.abort_grpc_status})" if fault.abort_grpc_status is not None else "")
        if fault.abort_per_million >= MILLION:
            return out.result(fault.abort_status, flags.FI, f"{what} for every request")
        out.alternatives.append({"status": fault.abort_status, "flag": flags.FI, "percent": percent,
                                 "reason": f"{what} for {percent:g}% of requests"})
    return _forward(snapshot, route.clusters, route.total_weight, health, out)


def tls_server(listener: Listener, sni: str | None):
    """The terminating Gateway server a ClientHello with `sni` reaches (Envoy's filter chain
    match by server name, as the gateway picks it), or None."""
    names = ServerNames()
    for chain in listener.tls_servers:
        names.add(chain.server_names, chain)
    return names.match(sni)


def _tcp_outcome(snapshot: Snapshot, listener: Listener, tcp: TcpRoute | None, sni: str | None,
                 health: Mapping[str, Mapping[str, str]], out: Explanation) -> Explanation:
    """A listener that proxies bytes: the terminated server's TCP route, else the SNI chain of a
    TLS passthrough (an https:// URL sends its host as SNI), else the port's TCP route."""
    if tcp is None and listener.sni_routes is not None:
        tcp = listener.sni_routes.match(sni)
        if tcp is not None:
            out.notes.append(f"TLS passed through by SNI {sni!r}" if sni else "routed by the chain for any server name")
    tcp = tcp or listener.tcp_route
    if tcp is None:
        why = f"no TLS route for SNI {sni!r}" if listener.sni_routes is not None else "no TCP route on this port"
        return out.result(None, flags.NONE, f"{listener.protocol} listener: {why}: the connection is closed")
    out.notes.append(f"{listener.protocol} listener: the connection is proxied as bytes (no HTTP routing)")
    return _forward(snapshot, tcp.clusters, tcp.total_weight, health, out)


def _forward(snapshot: Snapshot, clusters: tuple[WeightedCluster, ...], total_weight: int,
             health: Mapping[str, Mapping[str, str]], out: Explanation) -> Explanation:
    """The destinations and the outcome: 503 UH when no destination with traffic has a
    healthy endpoint; those without one among several are alternatives with their share."""
    _destinations(snapshot, clusters, total_weight, health, out)
    carrying = [d for d in out.destinations if d["percent"] > 0]
    live = [d["cluster"] for d in carrying if not d["problem"]]
    if not live:
        return out.result(503, flags.UH, carrying[0]["problem"] if carrying else "the route has no destination")
    for d in carrying:
        if d["problem"]:
            out.alternatives.append({"status": 503, "flag": flags.UH, "percent": d["percent"],
                                     "reason": f"{d['cluster']}: {d['problem']}"})
    return out.result(None, flags.NONE, f"forwarded to {', '.join(live)}")


def _destinations(snapshot: Snapshot, clusters: tuple[WeightedCluster, ...], total_weight: int,
                  health: Mapping[str, Mapping[str, str]], out: Explanation) -> None:
    n = len(clusters)
    for wc in clusters:
        percent = (100.0 * wc.weight / total_weight) if total_weight > 0 else 100.0 / n
        cluster = snapshot.clusters.get(wc.cluster)
        entry: dict = {"cluster": wc.cluster, "percent": round(percent, 4), "subset": "", "endpoints": [], "problem": ""}
        out.destinations.append(entry)
        if percent == 0:  # a 0-weight destination gets no traffic: nothing to fail
            continue
        if cluster is None:
            entry["problem"] = "cluster not found: the destination names no known service, port or subset"
            continue
        entry["subset"] = cluster.subset
        states = health.get(cluster.name, {})
        for e in cluster.endpoints:
            flag = states.get(e.key, HEALTHY)
            state = HEALTHY if flag == HEALTHY else HEALTH_WORDS.get(flag, f"unhealthy ({flag})")
            if state == HEALTHY and e.weight == 0:
                state = "zero weight"
            entry["endpoints"].append({"address": e.key, "health": state, "labels": dict(e.labels),
                                       "locality": e.locality, "weight": e.weight})
        if not cluster.endpoints:
            entry["problem"] = _why_empty(snapshot, cluster)
        elif not any(ep["health"] == HEALTHY for ep in entry["endpoints"]):
            states = sorted({ep["health"] for ep in entry["endpoints"]})
            entry["problem"] = f"no healthy endpoint: all {len(cluster.endpoints)} are {', '.join(states)}"


def _why_empty(snapshot: Snapshot, cluster: Cluster) -> str:
    """A cluster without endpoints: the service has none, or the subset's labels select none."""
    if not cluster.subset:
        return f"no endpoint: service {cluster.service_host} port {cluster.port} has no endpoints"
    base = snapshot.clusters.get(f"outbound|{cluster.port}||{cluster.service_host}")
    labels = _subset_labels(snapshot.config, cluster)
    seen = sorted({", ".join(f"{k}={v}" for k, v in sorted(e.labels.items())) for e in (base.endpoints if base else ())})
    return (f"no endpoint: DestinationRule subset {cluster.subset!r} (labels {labels}) selects none of "
            f"{cluster.service_host}'s endpoints (their labels: {'; '.join(seen) or 'none'})")


def _subset_labels(config: model.MeshConfig, cluster: Cluster) -> dict:
    for dr in config.destination_rules:
        if fqdn(dr.host, dr.metadata.namespace) == cluster.service_host or dr.host == cluster.service_host:
            for s in dr.subsets:
                if s.name == cluster.subset:
                    return dict(s.labels)
    return {}


def _policies(snapshot: Snapshot, route: Route, out: Explanation, inbound: bool) -> None:
    add = out.policies.append
    if route.timeout is not None:
        add(f"timeout {route.timeout:g}s" if route.timeout else "timeout disabled (0s)")
    elif not inbound:
        add("timeout none (Istio's default: disabled)")
    if route.retries is not None:
        r = route.retries
        if r.attempts == 0:
            add("retries disabled")
        else:
            per_try = f", perTryTimeout {r.per_try_timeout:g}s" if r.per_try_timeout else ""
            add(f"retries {r.attempts} attempts on {','.join(r.retry_on) or 'Istio default conditions'}{per_try}")
    elif not inbound and route.clusters:
        add(f"retries {ISTIO_DEFAULT_RETRIES}")
    fault = route.fault
    if fault is not None:
        if fault.delay is not None and fault.delay_per_million:
            add(f"fault delay {fault.delay:g}s for {100 * fault.delay_per_million / MILLION:g}% of requests (DI)")
        if fault.abort_status is not None and fault.abort_per_million:
            add(f"fault abort HTTP {fault.abort_status} for {100 * fault.abort_per_million / MILLION:g}% of requests (FI)")
    for m in route.mirrors:
        add(f"mirror to {m.cluster} for {100 * m.per_million / MILLION:g}% of requests")
    if route.rate_limit is not None:
        rl = route.rate_limit
        add(f"local rate limit {rl.name}: {rl.max_tokens} tokens, {rl.tokens_per_fill} per {rl.fill_interval:g}s (RL, 429)")
    if route.cors is not None:
        add("CORS allowed origins: " + ", ".join(f"{o.kind} {o.value!r}" for o in route.cors.origins))
    if route.rewrite is not None:
        rw = route.rewrite
        add("rewrite " + ", ".join(f"{k} {v!r}" for k, v in (("uri", rw.uri), ("authority", rw.authority)) if v))
    if inbound:
        _inbound_policies(snapshot, out)


def _authorization(authz, request: Request, jwt_rules: bool) -> str:
    """Why the workload's AuthorizationPolicies deny the request ("" when they allow it)."""
    head = RequestHead(request.method, request.path,
                       [(k.encode("latin-1"), v.encode("latin-1")) for k, v in request.headers.items()],
                       scheme=request.scheme)
    head.authority = request.authority
    info = ConnectionInfo(request.source_ip, 0, local_port=request.port)
    if request.source_principal:
        info.tls, info.peer_identity = True, request.source_principal
    head.connection = info
    verdict = authz.check(head, info, None)
    if verdict.allowed:
        return ""
    unverified = " (JWT claims are not verified by explain: requestPrincipals never match)" if jwt_rules else ""
    if verdict.policy != "none":
        return f"RBAC: access denied: matched {verdict.policy}{unverified}"
    return (f"RBAC: access denied: no rule of the ALLOW policies ({', '.join(authz.names)}) matches"
            + (" (no peer identity: give --source-principal for an mTLS caller)" if not request.source_principal else "")
            + unverified)


def _inbound_policies(snapshot: Snapshot, out: Explanation) -> None:
    if snapshot.authz is not None:
        out.policies.append("authorization policies: " + ", ".join(snapshot.authz.names))
    for provider in snapshot.request_authn:
        out.policies.append(f"JWT from issuer {provider.issuer} validated if present (RequestAuthentication)")
