"""The state one proxy worker shares across its connections: the current snapshot, per-cluster
balancers, upstream pools, telemetry, and the draining flag.

`install()` swaps in a new snapshot in one assignment. Requests in flight keep the route and
cluster objects they already hold, so they finish on the old configuration; the next request
reads the new one. Cluster state (balancer, active-request counts) survives a push when the
cluster did not change.
"""

from __future__ import annotations

import asyncio
import logging
import time

from pymesh.http.message import ConnectionInfo, RequestHead
from pymesh.http import h1
from pymesh.policy.balancer import make_balancer
from pymesh.policy.circuit_breaker import CircuitBreaker
from pymesh.policy.hashkey import cookie_maker, hash_key
from pymesh.policy.outcome import Outcome
from pymesh.policy.outlier import OutlierDetector
from pymesh.policy.retry import RetryPolicy
from pymesh.proxy.filters import chains_for
from pymesh.proxy.jwks import JwksCache
from pymesh.proxy.jwt_authn import JwtAuthn
from pymesh.proxy.downstream_limits import DeadlineSweeper, DownstreamLimits
from pymesh.proxy.pools import Pools
from pymesh.proxy.random_source import RNG
from pymesh.proxy.sockets import learn_from_transport
from pymesh.telemetry.peer_metadata import encode_peer
from pymesh.api.model import ConnectionPoolSettings, LoadBalancerSettings
from pymesh.routing.compile import implicit_inbound
from pymesh.routing.hosts import split_authority
from pymesh.routing.snapshot import Cluster, Endpoint, Listener, Route, Snapshot
from pymesh.proxy.telemetry import Telemetry
from pymesh.proxy.tracing import Tracing
from pymesh.proxy import user_filters
from pymesh.proxy.upstream_tls import TlsEnvironment, origin_for, origins

log = logging.getLogger("pymesh.proxy")
PASSTHROUGH_CACHE = 1024
OVERFLOW_LOG_INTERVAL = 10.0  # seconds between 'listener at its connection limit' warnings


def passthrough_cluster(address: str, port: int) -> Cluster:
    return Cluster(
        name="PassthroughCluster", service_host="", port=port, subset="", protocol="HTTP",
        endpoints=(Endpoint(address=address, port=port),), load_balancer=LoadBalancerSettings(),
        connection_pool=ConnectionPoolSettings(),
    )


class EndpointStats:
    __slots__ = ("rq_total", "rq_error", "cx_connect_fail", "rq_timeout", "rq_active")

    def __init__(self) -> None:
        self.rq_active = 0
        self.rq_total = 0
        self.rq_error = 0
        self.cx_connect_fail = 0
        self.rq_timeout = 0


class ClusterState:
    """A cluster with its balancer, per-endpoint outcome counters (for /clusters), its circuit
    breaker and, when its traffic policy asks for it, an outlier detector whose ejected hosts the
    balancer skips.

    `born`: when endpoints added after the cluster's first version appeared (slow start);
    carried over from the `previous` state of the same cluster on a configuration change.
    """

    def __init__(self, cluster: Cluster, stats: dict[str, int], loop: asyncio.AbstractEventLoop | None = None,
                 previous: ClusterState | None = None, tls_env: TlsEnvironment = TlsEnvironment()) -> None:
        """`loop` runs the outlier sweep (without it, no detection); `previous` is the state this
        one replaces on a config change: its hosts that persist keep their outlier state;
        `tls_env` the certificates upstream TLS uses."""
        self.cluster = cluster
        self.stats = stats  # Envoy's cluster.<name>.* counters, shared with /stats
        self.born = _born(cluster, previous)
        self.breaker = CircuitBreaker(stats, cluster.connection_pool, cluster.retry_budget)
        self.outlier: OutlierDetector | None = None
        self._sweep_timer: asyncio.TimerHandle | None = None
        settings = cluster.outlier_detection
        if settings is not None and loop is not None:
            self._loop = loop
            self.outlier = OutlierDetector(settings, (e.key for e in cluster.endpoints), loop.time, stats,
                                           previous.outlier if previous is not None else None)
            self._sweep_timer = loop.call_later(settings.interval, self._sweep)
        self._rebalance()
        self.consistent_hash = cluster.load_balancer.consistent_hash
        self.passthrough = self.consistent_hash is None and cluster.load_balancer.simple == "PASSTHROUGH"
        self.cookie = cookie_maker(self.consistent_hash)  # generates a missing hash cookie
        pool = cluster.connection_pool
        # HTTP/2 upstream: always for HTTP2/GRPC ports or with h2UpgradePolicy UPGRADE (Istio);
        # with useClientProtocol, for exactly the requests that came in over HTTP/2.
        self.http2_for_http2 = pool.use_client_protocol
        self.http2 = not pool.use_client_protocol and (
            cluster.protocol in ("HTTP2", "GRPC") or pool.h2_upgrade_policy == "UPGRADE")
        self.endpoint_stats: dict[str, EndpointStats] = {e.key: EndpointStats() for e in cluster.endpoints}
        self.tls, self.auto_tls = origins(cluster, tls_env, stats)
        self.originates_tls = self.tls is not None or self.auto_tls is not None  # read per request

    def pool_for(self, pools: Pools, endpoint: Endpoint, head: RequestHead, client_h2: bool, authority: str):
        """The pool a request to `endpoint` goes through: by protocol upstream (`client_h2`: the
        client spoke HTTP/2, for useClientProtocol) and, when the cluster originates TLS to that
        endpoint, by its TLS target (`authority`: the host the request goes upstream with, after
        any rewrite: Envoy's auto SNI). Mesh mTLS always speaks HTTP/2 inside (the server sidecar
        speaks its app's protocol), except for an upgrade."""
        http2 = (self.http2 or (self.http2_for_http2 and client_h2)) and not head.upgrade
        target = None
        if self.originates_tls:
            origin = origin_for(self.tls, self.auto_tls, endpoint)
            if origin is not None:
                http2 = http2 or (origin.mesh and not head.upgrade)
                target = origin.target(authority, True, http2)
        return pools.get(self.cluster, endpoint, self.stats, http2, target)

    def hash_key(self, head: RequestHead) -> bytes | None:
        if self.consistent_hash is None:
            if not self.passthrough:
                return None
            return self._authority_key(head) if self.cluster.dynamic_dns else self.connection_key(head.connection)
        query = head.path.partition("?")[2]
        return hash_key(self.consistent_hash, head.headers, head.connection.source_ip, query)

    def _authority_key(self, head: RequestHead) -> bytes | None:
        """DYNAMIC_DNS: the request's own host on the cluster's port (its endpoints' port)."""
        host = split_authority(head.authority)[0]
        return f"{host}:{self.cluster.port}".encode() if host else None

    def connection_key(self, info: ConnectionInfo) -> bytes | None:
        """What a connection's endpoint is picked by: the source IP for a consistent hash, the
        original destination for PASSTHROUGH (Envoy's ORIGINAL_DST)."""
        if self.passthrough:
            destination = info.original_destination
            return f"{destination[0]}:{destination[1]}".encode() if destination else None
        return info.source_ip.encode() if self.consistent_hash else None

    def record_attempt(self, endpoint: Endpoint | None, outcome: Outcome, status: int | None) -> None:
        if endpoint is None:
            return
        cluster_stats = self.stats
        if outcome is Outcome.RESPONSE:
            cluster_stats["upstream_rq_total"] += 1
            cluster_stats[_STATUS_CLASS.get(status // 100, "upstream_rq_5xx")] += 1  # 6xx-9xx: not valid HTTP
        elif outcome is Outcome.CONNECT_FAILURE:
            cluster_stats["upstream_cx_connect_fail"] += 1
        elif outcome is Outcome.TIMEOUT:
            cluster_stats["upstream_rq_per_try_timeout"] += 1
        stats = self.endpoint_stats.get(endpoint.key)
        if stats is None:
            return
        stats.rq_total += 1
        if outcome is Outcome.CONNECT_FAILURE:
            stats.cx_connect_fail += 1
        elif outcome is Outcome.TIMEOUT:
            stats.rq_timeout += 1
        if outcome is not Outcome.RESPONSE or (status or 0) >= 500:
            stats.rq_error += 1
        if self.outlier is not None:
            kind = self.outlier.record(endpoint.key, outcome, status)
            if kind is not None:
                host = self.outlier.hosts[endpoint.key]
                log.info("outlier detection: ejected %s from %s (%s; ejection %d, for %gs)", endpoint.key,
                         self.cluster.name, kind, host.ejections, self.outlier.ejection_time(host))
                self._rebalance()

    # outlier detection ----------------------------------------------------------------------------

    def _rebalance(self) -> None:
        """A balancer over the hosts not ejected, or over all of them in panic (minHealthPercent)."""
        endpoints = self.cluster.endpoints
        detector = self.outlier
        if detector is not None and detector.ejected and not detector.in_panic():
            endpoints = tuple(e for e in endpoints if e.key not in detector.ejected)
        self.balancer = make_balancer(self.cluster.load_balancer, endpoints, RNG, all_endpoints=self.cluster.endpoints,
                                      born=self.born)

    def _sweep(self) -> None:
        detector = self.outlier
        returned = detector.sweep()
        for key in returned:
            log.info("outlier detection: %s returns to %s", key, self.cluster.name)
        if returned:
            self._rebalance()
        self._sweep_timer = self._loop.call_later(detector.settings.interval, self._sweep)

    def health_flags(self, endpoint: Endpoint) -> str:
        """Envoy's /clusters health_flags: "healthy", or "/failed_outlier_check" when ejected."""
        detector = self.outlier
        return "/failed_outlier_check" if detector is not None and endpoint.key in detector.ejected else "healthy"

    def close(self) -> None:
        """The state is replaced or gone: stop its sweep, drop its ejections from the gauge
        (unless a replacing state took its hosts over), retire its TLS pools."""
        for origin in (self.tls, self.auto_tls):
            if origin is not None:
                origin.closed = True
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
        if self.outlier is not None:
            self.outlier.close()


_STATUS_CLASS = {n: f"upstream_rq_{n}xx" for n in (1, 2, 3, 4, 5)}


def _born(cluster: Cluster, previous: ClusterState | None) -> dict[str, float]:
    """Creation times of endpoints new since the cluster's first version (none at first)."""
    if previous is None:
        return {}
    known = {e.key for e in previous.cluster.endpoints}
    now = time.monotonic()
    return {e.key: previous.born.get(e.key, now) if e.key in known else now
            for e in cluster.endpoints if e.key in previous.born or e.key not in known}


class Runtime:
    def __init__(self, loop: asyncio.AbstractEventLoop, telemetry: Telemetry, limits: h1.Limits,
                 downstream: DownstreamLimits = DownstreamLimits()) -> None:
        self.loop = loop
        self.telemetry = telemetry
        self.limits = limits
        self.downstream = downstream
        self.snapshot: Snapshot | None = None
        self.cluster_states: dict[str, ClusterState] = {}
        self.source_labels: dict[str, str] = {}
        self.pools = Pools(loop)
        self.connections: set = set()
        self.draining = False
        self.all_closed = asyncio.Event()  # set once draining and no connection is left
        self._retry_policies: dict[int, tuple[Route, RetryPolicy]] = {}
        self.listeners: dict = {}
        self.peer_header = b""
        self.filter_chains: dict = {}
        self.filter_budget = user_filters.DEFAULT_BUDGET  # seconds a Python filter's hook may hold the loop
        self.gateway = False  # serving a router snapshot (see install)
        self.jwks = JwksCache(loop)  # the keys of the snapshot's RequestAuthentication jwksUris
        self._inbound: dict[int, Listener] = {}
        self._passthrough: dict[tuple[str, int], ClusterState] = {}
        self.now = 0.0  # a clock good to a deadline tick: what the request path stamps activity with
        self.deadlines = DeadlineSweeper(loop, self, self.connections, downstream)
        # Route and per-try timeouts further away than two sweeps are armed by a sweep
        # (Exchange.arm_due_timers), not at once: see Exchange.route_deadline.
        self.timer_reach = 2 * self.deadlines.interval
        self._overflow_logged = -OVERFLOW_LOG_INTERVAL
        self.tls_env = TlsEnvironment()  # the proxy sets its certificates and credentials here
        self.inbound_tls = None  # pymesh.proxy.inbound_tls.InboundTls, set by the worker
        self.gateway_tls = None  # pymesh.proxy.gateway_tls.GatewayTls, set by the worker
        self.tracing = Tracing(loop, telemetry.metrics)  # the snapshot's trace provider's exporter, if any

    # configuration ------------------------------------------------------------------------------

    def install(self, snapshot: Snapshot) -> None:
        old = self.cluster_states
        states = {}
        for name, cluster in snapshot.clusters.items():
            previous = old.get(name)
            if previous is not None and previous.cluster == cluster:
                states[name] = previous
            else:
                states[name] = self.cluster_state(cluster, previous)
                if previous is not None:
                    previous.close()
        for name, state in old.items():
            if name not in states:
                state.close()
        self.cluster_states = states
        self._retry_policies = {}
        self._inbound = {}
        self._passthrough = {}
        self.source_labels = dict(snapshot.identity.labels)
        self.peer_header = encode_peer(snapshot.identity)
        jwt_authn = JwtAuthn.for_providers(snapshot.request_authn, self.jwks)
        self.gateway = snapshot.identity.kind == "router"  # `pymesh gateway`: its own policies guard every listener
        tracer = self.tracing.tracer_for(snapshot)
        user = user_filters.build(snapshot.python_filters, self.telemetry.metrics.store, self.filter_budget)
        self.filter_chains = chains_for(self.peer_header, RNG, self.loop.time, jwt_authn, snapshot.authz,
                                        gateway=self.gateway,
                                        trace_headers=tracer,
                                        user={d: user_filters.chain_parts(user, d) for d in user})
        self.listeners = {listener.name: listener for listener in snapshot.listeners}
        if self.gateway_tls is not None:  # a gateway's TLS servers: their contexts and listeners
            self.listeners.update(self.gateway_tls.install(snapshot))
        self.snapshot = snapshot
        for warning in snapshot.warnings:
            log.warning("configuration version %s: %s", snapshot.version, warning)
        self.telemetry.configure(snapshot)
        self.pools.retain(snapshot.clusters)

    def cluster_state(self, cluster: Cluster, previous: ClusterState | None = None) -> ClusterState:
        metrics = self.telemetry.metrics
        tls = cluster.tls is not None or cluster.auto_mtls is not None
        stats = (metrics.cluster_stats if cluster.outlier_detection is None else metrics.outlier_stats)(cluster.name, tls)
        return ClusterState(cluster, stats, self.loop, previous, self.tls_env)

    # captured traffic (see pymesh.proxy.capture) ---------------------------------------------

    passthrough_listener = Listener("PassthroughCluster", "outbound", "", 0, "TCP")

    def inbound_listener(self, port: int, address: str) -> Listener:
        """The inbound listener for a captured port, with its app cluster made ready."""
        listener = self._inbound.get(port)
        if listener is None:
            listener, cluster = implicit_inbound(self.snapshot, port, address)
            if cluster.name not in self.cluster_states:
                self.cluster_states[cluster.name] = self.cluster_state(cluster)
            self._inbound[port] = listener
        return listener

    def passthrough(self, destination: tuple[str, int]) -> ClusterState:
        """Captured HTTP for a host no route knows, under ALLOW_ANY: to where it was going."""
        state = self._passthrough.get(destination)
        if state is None:
            if len(self._passthrough) >= PASSTHROUGH_CACHE:
                self._passthrough.clear()
            cluster = passthrough_cluster(*destination)
            state = self._passthrough[destination] = self.cluster_state(cluster)
        return state

    def current(self, listener):
        """The newest configuration of a listener a connection was accepted on."""
        return self.listeners.get(listener.name, listener)

    def retry_policy(self, route: Route) -> RetryPolicy:
        """Compiled once per route per snapshot; keyed by identity, checked against reuse of ids."""
        cached = self._retry_policies.get(id(route))
        if cached is None or cached[0] is not route:
            cached = self._retry_policies[id(route)] = (route, RetryPolicy.from_model(route.retries))
        return cached[1]

    # observation --------------------------------------------------------------------------------

    def observe(self, exchange) -> None:
        self.telemetry.request_done(exchange)
        if exchange.span is not None:
            exchange.span.tracer.finish(exchange)

    def observe_protocol_error(self, connection, status: int, flag: str) -> None:
        self.telemetry.protocol_error(connection, status, flag)

    # connections --------------------------------------------------------------------------------

    def connection_opened(self, connection) -> bool:
        """Admit a new connection, or refuse it (False: the caller aborts it) when its listener
        is at its connection limit; refusals are counted and logged, at most every few seconds."""
        stats = self.listener_stats(connection.listener)
        if stats["downstream_cx_active"] >= self.downstream.max_connections > 0:
            stats["downstream_cx_overflow"] += 1
            if self.loop.time() - self._overflow_logged >= OVERFLOW_LOG_INTERVAL:
                self._overflow_logged = self.loop.time()
                log.warning("listener %s is at its limit of %d connections: refusing new ones "
                            "(downstream_cx_overflow %d)", connection.listener.name,
                            self.downstream.max_connections, stats["downstream_cx_overflow"])
            return False
        self.connections.add(connection)
        stats["downstream_cx_total"] += 1
        stats["downstream_cx_active"] += 1
        return True

    def admit(self, connection, transport) -> bool:
        """An HTTP connection's start: its transport and peer address, then the listener's
        connection limit; one refused is aborted (and False returned)."""
        connection.transport = transport
        learn_from_transport(connection.info, transport)
        if self.connection_opened(connection):
            return True
        connection.closing = True
        transport.abort()  # over the listener's connection limit
        return False

    def replace_connection(self, old, new) -> None:
        """One connection changed protocol (h2c detected): same slot, same counts."""
        self.connections.discard(old)
        self.connections.add(new)

    def connection_closed(self, connection) -> None:
        if connection not in self.connections:
            return  # refused at accept: never counted
        self.connections.discard(connection)
        self.listener_stats(connection.listener)["downstream_cx_active"] -= 1
        if self.draining and not self.connections:
            self.all_closed.set()

    def listener_stats(self, listener) -> dict[str, int]:
        return self.telemetry.metrics.listener_stats(listener.name)

    def tcp_opened(self, proxy) -> bool:
        """A TcpProxy's start; one handed a connection that is already counted (a TLS connection
        after its ClientHello) keeps that slot."""
        if proxy not in self.connections and not self.connection_opened(proxy):
            return False
        self.telemetry.tcp_opened(proxy)
        return True

    def tcp_closed(self, proxy) -> None:
        if proxy in self.connections:
            self.telemetry.tcp_closed(proxy)
        self.connection_closed(proxy)

    def random(self) -> float:
        return RNG.random()

    def close(self) -> None:
        """Stop the runtime's timers and close idle upstream connections (end of drain)."""
        self.deadlines.close()
        self.jwks.close()
        self.tracing.close()
        self.pools.close()
        for state in self.cluster_states.values():
            state.close()

    def start_draining(self) -> None:
        """Stop keep-alive: idle connections close now, busy ones after their current response."""
        self.draining = True
        for connection in list(self.connections):
            connection.close_if_idle()
        if not self.connections:
            self.all_closed.set()
