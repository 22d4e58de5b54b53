"""One request's trip through the proxy: route, pick an endpoint, call it with retries and
timeouts, and relay the response. Protocol-neutral: the downstream side is any `Downstream`
(HTTP/1.1 now, HTTP/2 later); the upstream side is a pooled `UpstreamConnection`.

Callbacks, not coroutines: a request costs no task and no future on the common path. The order of
upstream policy follows Envoy's router: route timeout -> retry -> per-try timeout -> load balancer
-> pool. Each attempt's end is classified once (`pymesh.policy.outcome`) and that one result
decides the retry and feeds metrics and the access log.

The request body streams to the upstream as it arrives. Up to `REPLAY_LIMIT` bytes of it are kept
so that a retry can resend it (linkerd2-proxy's replay body); past that, a request that has
already sent bytes upstream is no longer retried.
"""

from __future__ import annotations

from dataclasses import replace

from pymesh.http import grpc
from pymesh.http.errors import ProtocolError
from pymesh.http.message import (IDEMPOTENT_METHODS, Header, RequestHead, ResponseHead, Trailers, UpstreamRequest,
                                 end_to_end)
from pymesh.policy import flags
from pymesh.policy.outcome import Outcome, classify
from pymesh.policy.retry import RETRIABLE_HEADER_NAMES, header_names
from pymesh.policy.retry_hosts import retry_host
from pymesh.proxy.filters import GATEWAY_SERVER
from pymesh.proxy.headers import apply_header_ops
from pymesh.proxy.interfaces import PAUSE, Downstream, UpstreamConnection
from pymesh.proxy.local_reply import LocalReply, local_reply_for, redirect_reply
from pymesh.proxy.mirror import start_shadows
from pymesh.proxy.random_source import RNG as _rng
from pymesh.proxy.upstream_tls import TlsFailure
from pymesh.routing.pick import pick_weighted
from pymesh.routing.snapshot import NO_RETRIES, Route, WeightedCluster
from pymesh.telemetry.peer_metadata import HEADER as PEER_HEADER

REPLAY_LIMIT = 64 * 1024
BODY_HIGH_WATER = 256 * 1024  # pause the downstream while this much body waits for a connection
UPGRADE_TAIL_LIMIT = 64 * 1024  # bytes after an Upgrade request held until the 101
# Request headers the proxy writes itself upstream: Host (the authority), the peer metadata
# header (never trusted from a client), and Expect (pymesh answers 100-continue itself); and
# x-envoy-retriable-header-names, which Envoy's router consumes (retriable-headers reads it).
_REPLACED = frozenset({b"host", PEER_HEADER, b"expect", RETRIABLE_HEADER_NAMES})
# Outbound, each attempt carries its number, as Istio's include_request_attempt_count asks
# (Envoy replaces the client's); inbound the caller's sidecar's value passes through.
ATTEMPT_COUNT = b"x-envoy-attempt-count"
_REPLACED_OUTBOUND = _REPLACED | {ATTEMPT_COUNT}

PASSTHROUGH_ROUTE = Route(
    name="allow_any", virtual_service="",
    clusters=(WeightedCluster(cluster="PassthroughCluster", weight=100),), total_weight=100, retries=NO_RETRIES,
)


class Exchange:
    __slots__ = (
        "runtime", "listener", "downstream", "head", "start", "route", "cluster_state", "policy",
        "retries", "flags", "status", "upstream_request", "chunks", "chunks_bytes",
        "request_done", "request_bytes", "response_bytes", "conn", "conn_reused", "endpoint",
        "cancel_connect", "try_timer", "route_timer", "try_deadline", "route_deadline", "committed", "done", "expect_body",
        "upstream_reusable", "close_delimited", "request_id", "hash_key", "response_header_ops",
        "upgrade_tail", "stale_retry_used", "attempt_id", "paused_downstream", "paused_upstream", "last_endpoint",
        "active_at",
        "weighted", "matched_prefix", "filters", "filter_index", "grpc", "grpc_status", "grpc_messages", "retry_held",
        "shadows",
        "tried", "request_principal", "logged_path", "span",
        "user_stream",  # set only when the chain has user filters (pymesh.proxy.user_filters.Enter)
        "__weakref__",  # what a user filter's stream holds (pymesh.proxy.user_filters.ProxyStream)
    )

    def __init__(self, runtime, listener, downstream: Downstream, head: RequestHead) -> None:
        self.runtime = runtime
        self.listener = listener
        self.downstream = downstream
        self.head = head
        self.start = runtime.loop.time()
        self.route = None
        self.cluster_state = None
        self.policy = None
        self.retries = 0
        self.flags = flags.NONE
        self.status = 0
        self.upstream_request: UpstreamRequest | None = None
        self.chunks: list | None = []  # request body kept for (re)sending; None once too big
        self.chunks_bytes = 0
        self.request_done = False
        self.request_bytes = 0
        self.response_bytes = 0
        self.conn: UpstreamConnection | None = None
        self.conn_reused = False
        self.endpoint = None
        self.cancel_connect = None
        self.try_timer = None
        self.route_timer = None
        # Deadlines (loop time; 0: none). Their loop timers are armed at once only when near;
        # a far one is armed by the connection's sweep once it comes within reach
        # (arm_due_timers), so the many requests that end long before never pay for a timer.
        self.try_deadline = 0.0
        self.route_deadline = 0.0
        self.committed = False  # a response head went downstream: no more retries
        self.done = False
        self.expect_body = head.method != "HEAD"
        self.upstream_reusable = False
        self.close_delimited = False
        self.request_id = ""
        self.hash_key = None
        self.response_header_ops = ()
        self.upgrade_tail = b""
        self.stale_retry_used = False
        self.attempt_id = 0
        self.paused_downstream = False
        self.paused_upstream = False  # the response is not being read: the client is slow
        self.last_endpoint = None  # the endpoint of the latest attempt, for telemetry
        self.active_at = runtime.now  # when bytes last moved either way (stream idle timeout)
        self.weighted = None  # the destination chosen among the route's
        self.matched_prefix = None  # what a prefix match matched (the rewrite replaces it)
        self.filters = ()
        self.filter_index = 0  # the filter that paused the chain
        self.grpc = head.http_version == "2" and grpc.is_grpc(head)  # gRPC needs HTTP/2: no call for HTTP/1.1
        self.grpc_status: int | None = None  # from the response's trailers (or trailers-only head)
        # (request, response) message counters of a gRPC call, for Istio's message metrics
        self.grpc_messages = (grpc.MessageCounter(), grpc.MessageCounter()) if self.grpc else None
        self.retry_held = None  # the ClusterState whose retry limit this request's retry counts in
        self.shadows = None  # the mirrored copies of this request (pymesh.proxy.mirror), if any
        self.tried: list | None = None  # endpoints of the failed attempts, once there is a retry
        self.request_principal = None  # a verified JWT (pymesh.security.principal), set by JwtAuthn
        self.logged_path: str | None = None  # the path for the access log when it differs (a token redacted)
        self.span = None  # a sampled request's pymesh.proxy.tracing.ActiveSpan, when the snapshot traces

    # --- request side (called by the downstream protocol) -------------------------------------

    def begin(self) -> None:
        """Route the request and start the first attempt, or answer locally."""
        runtime = self.runtime
        head = self.head
        table = self.listener.route_table
        matched = table.match(head) if table is not None else None
        if matched is None:
            return self._no_route()
        route, prefix = matched
        self.route = route
        if route.direct_response is not None:
            response = route.direct_response
            return self.reply(LocalReply(response.status, flags.NONE, response.body.encode()))
        if route.redirect is not None:
            return self.reply(redirect_reply(route.redirect, head, prefix))
        clusters = route.clusters
        weighted = clusters[0] if len(clusters) == 1 else pick_weighted(clusters, route.total_weight, _rng.random())
        state = runtime.cluster_states.get(weighted.cluster)
        if state is None:
            return self.reply(local_reply_for(flags.UH, route.missing_cluster_status, b"cluster not found"))
        self.cluster_state = state
        self.weighted = weighted
        self.matched_prefix = prefix
        self.policy = runtime.retry_policy(route)
        self.response_header_ops = (weighted.response_headers, route.response_headers)
        self.hash_key = state.hash_key(head)
        if self.hash_key is None and state.cookie is not None:  # Envoy generates the missing cookie
            info = head.connection
            self.hash_key, set_cookie = state.cookie.make(info.source_ip, info.source_port, info.local_port)
            self.response_header_ops += (set_cookie,)
        self.upstream_request = self._upstream_request()
        self.filters = runtime.filter_chains[self.listener.direction][route.filter_set]
        self.resume_filters(0)

    def resume_filters(self, start: int | None = None) -> None:
        """Run the filters from `start` (a paused filter resumes with None: the one after it).
        A request that ended meanwhile (the client left during a pause) goes no further."""
        if self.done:
            return
        filters = self.filters
        index = self.filter_index + 1 if start is None else start
        while index < len(filters):
            result = filters[index].on_request(self, self.upstream_request)
            if result is not None:
                if result is PAUSE:
                    self.filter_index = index
                    return
                return self.reply(result)
            index += 1
        if self.head.expect_continue and not self.request_done:
            self.downstream.send_continue()
        timeout = self.route.timeout
        if self.grpc:  # grpc-timeout shortens the route's timeout, never lengthens it (Envoy)
            deadline = grpc.timeout(self.head)
            if deadline is not None and (not timeout or deadline < timeout):
                timeout = deadline
        if timeout:
            self.route_deadline = self.runtime.loop.time() + timeout
            if timeout <= self.runtime.timer_reach:
                self.route_timer = self.runtime.loop.call_at(self.route_deadline, self._on_route_timeout)
        if self.route.mirrors:
            self.shadows = start_shadows(self)
        self._attempt()

    def _no_route(self) -> None:
        """404 NR; but captured traffic for an unknown host goes where it was going (ALLOW_ANY),
        unless the Sidecar has an egressProxy: its catch-all virtual host took every unknown host."""
        destination = self.downstream.info.original_destination
        snapshot = self.runtime.snapshot
        if destination is None or snapshot.outbound_traffic_policy != "ALLOW_ANY" or snapshot.egress_proxy is not None:
            return self.reply(local_reply_for(flags.NR))
        self.cluster_state = self.runtime.passthrough(destination)
        self.route = PASSTHROUGH_ROUTE
        self.weighted = PASSTHROUGH_ROUTE.clusters[0]
        self.policy = self.runtime.retry_policy(PASSTHROUGH_ROUTE)
        self.upstream_request = self._upstream_request()
        self.filters = self.runtime.filter_chains[self.listener.direction][0]
        self.resume_filters(0)

    def on_request_data(self, data: bytes) -> None:
        self.request_bytes += len(data)
        if self.shadows is not None:
            self._mirror_data(data)
        self.active_at = self.runtime.now
        if self.grpc_messages is not None:
            self.grpc_messages[0].feed(data)
        chunks = self.chunks
        conn = self.conn
        if conn is not None:
            conn.send_data(data)
            if chunks is not None:
                if self.chunks_bytes + len(data) > REPLAY_LIMIT:
                    self.chunks = None  # too big to replay: no retry once bytes went out
                else:
                    chunks.append(data)
                    self.chunks_bytes += len(data)
            return
        if chunks is None:
            return  # no connection and no replay buffer: the exchange is failing anyway
        chunks.append(data)
        self.chunks_bytes += len(data)
        if self.chunks_bytes > BODY_HIGH_WATER:
            self.pause_request_body()

    def on_request_end(self, trailers: list[Header]) -> None:
        self.request_done = True
        if self.shadows is not None:
            self._mirror_end(trailers)
        if self.conn is not None:
            self.conn.send_end(trailers)
        if self.chunks is not None and self.head.streamed:
            self.chunks.append(Trailers(trailers))  # a streamed body's end is framed on replay too

    def _mirror_data(self, data: bytes) -> None:
        for shadow in self.shadows:
            shadow.send_data(data)

    def _mirror_end(self, trailers: list[Header]) -> None:
        for shadow in self.shadows:
            shadow.send_end(trailers)

    def _mirror_cancel(self) -> None:
        """The exchange ended before the client's request did: its copies stay incomplete."""
        shadows, self.shadows = self.shadows, None
        for shadow in shadows:
            shadow.cancel()

    def on_upgrade_data(self, tail: bytes) -> None:
        """Bytes the client sent after an Upgrade request's head, before the 101 arrived.

        They are the new protocol's, so they go upstream only once the upstream switched; if it
        refuses, they are dropped with the connection (sent as HTTP they could be parsed as a
        request nobody routed). Past `UPGRADE_TAIL_LIMIT` the client is paused until then.
        """
        self.upgrade_tail += tail
        if len(self.upgrade_tail) > UPGRADE_TAIL_LIMIT:
            self.pause_request_body()

    def on_downstream_lost(self) -> None:
        if self.done:
            return
        self.flags = flags.join(self.flags, flags.DC)
        self._end_attempt()
        self._drop_upstream()
        self._finish()

    def pause_request_body(self) -> None:
        if not self.paused_downstream:
            self.paused_downstream = True
            self.runtime.listener_stats(self.listener)["downstream_flow_control_paused_reading_total"] += 1
            self.downstream.pause_reading()

    def resume_request_body(self) -> None:
        if self.paused_downstream:
            self.paused_downstream = False
            self.runtime.listener_stats(self.listener)["downstream_flow_control_resumed_reading_total"] += 1
            self.downstream.resume_reading()

    def pause_response(self) -> None:
        """The downstream cannot take more of the response now: stop reading it upstream."""
        if self.conn is not None and not self.paused_upstream:
            self.paused_upstream = True
            self.cluster_state.stats["upstream_flow_control_paused_reading_total"] += 1
            self.conn.pause_reading()

    def resume_response(self) -> None:
        if self.conn is not None and self.paused_upstream:
            self.paused_upstream = False
            self.cluster_state.stats["upstream_flow_control_resumed_reading_total"] += 1
            self.conn.resume_reading()

    # --- attempts --------------------------------------------------------------------------------

    def _attempt(self) -> None:
        if self.done:
            return
        state = self.cluster_state
        if not state.breaker.request_allowed():
            return self._overflow()
        if self.tried is None:
            endpoint = state.balancer.pick(self.hash_key)
        else:
            policy = self.policy
            endpoint = retry_host(state.balancer, self.hash_key, self.tried,
                                  policy.avoids_previous_hosts(state.consistent_hash is not None), policy.remote_localities)
        if endpoint is None:
            return self.reply(local_reply_for(flags.UH))
        self.endpoint = self.last_endpoint = endpoint
        self.attempt_id += 1
        if self.attempt_id > 1 and self.listener.direction == "outbound":
            self._count_attempt()
        state.balancer.on_request_start(endpoint)
        state.stats["upstream_rq_active"] += 1
        if (host := state.endpoint_stats.get(endpoint.key)) is not None:
            host.rq_active += 1
        client_h2 = self.head.http_version == "2" and (self.grpc or not self.head.connection.mesh_h2)
        pool = state.pool_for(self.runtime.pools, endpoint, self.head, client_h2, self.upstream_request.authority)
        conn = pool.take_idle()
        if conn is not None:
            self._bind(conn)
        else:
            attempt_id = self.attempt_id
            self.cancel_connect = pool.connect(lambda conn, error: self._on_connected(attempt_id, conn, error))
            if self.cancel_connect is None:
                return self._overflow()
        self._start_try_timer()

    def _overflow(self) -> None:
        """The cluster's circuit breaker is full (requests in flight or waiting for a
        connection): 503 UO at once, never retried (Envoy's router does not retry an overflow)."""
        self.reply(local_reply_for(flags.UO))

    def _on_connected(self, attempt_id: int, conn, error) -> None:
        if attempt_id != self.attempt_id or self.done:
            if conn is not None:
                conn.release(reusable=True)
            return
        self.cancel_connect = None
        if conn is None:
            if isinstance(error, ProtocolError):  # it connected, then spoke no HTTP/2
                return self.on_upstream_error(None, error)
            return self._attempt_failed(Outcome.CONNECT_FAILURE, why=error.reason if isinstance(error, TlsFailure) else "")
        self._bind(conn)

    def _bind(self, conn) -> None:
        self.conn = conn
        conn.bind(self, self.expect_body)
        self.conn_reused = conn.reused
        conn.send_request(self.upstream_request, self.chunks or (), self.request_done)
        if self.chunks is not None and self.chunks_bytes > REPLAY_LIMIT:
            self.chunks = None
        self.resume_request_body()

    def _start_try_timer(self) -> None:
        per_try = self.policy.per_try_timeout
        if per_try:
            self.try_deadline = self.runtime.loop.time() + per_try
            if per_try <= self.runtime.timer_reach:
                self.try_timer = self.runtime.loop.call_at(self.try_deadline, self._on_try_timeout, self.attempt_id)

    def arm_due_timers(self, now: float) -> None:
        """The connection's periodic sweep: arm the loop timer of a deadline now within reach."""
        if self.done:
            return
        reach = now + self.runtime.timer_reach
        loop = self.runtime.loop
        if self.route_deadline and self.route_timer is None and self.route_deadline <= reach:
            self.route_timer = loop.call_at(self.route_deadline, self._on_route_timeout)
        if self.try_deadline and self.try_timer is None and self.try_deadline <= reach:
            self.try_timer = loop.call_at(self.try_deadline, self._on_try_timeout, self.attempt_id)

    def _on_try_timeout(self, attempt_id: int) -> None:
        if attempt_id == self.attempt_id and not self.committed and not self.done:
            self.try_timer = None
            self.try_deadline = 0.0
            self._attempt_failed(Outcome.TIMEOUT)

    def _cancel_try_timer(self) -> None:
        self.try_deadline = 0.0
        if self.try_timer is not None:
            self.try_timer.cancel()
            self.try_timer = None

    def _end_attempt(self) -> None:
        self._cancel_try_timer()
        if self.endpoint is not None:
            state = self.cluster_state
            state.balancer.on_request_end(self.endpoint)
            state.stats["upstream_rq_active"] -= 1
            if (host := state.endpoint_stats.get(self.endpoint.key)) is not None:
                host.rq_active -= 1
            self.endpoint = None

    def _drop_upstream(self) -> None:
        if self.cancel_connect is not None:
            self.cancel_connect()
            self.cancel_connect = None
        conn = self.conn
        if conn is not None:
            self.conn = None
            conn.abort()

    def _attempt_failed(self, outcome: Outcome, status: int | None = None, why: str = "") -> None:
        """An attempt ended without a usable response: retry, or answer with a local reply
        (`why`: Envoy's transport failure reason, for a TLS failure)."""
        endpoint = self.endpoint
        # bytes went upstream unless it never connected (reset-before-request needs to know)
        sent = outcome is not Outcome.CONNECT_FAILURE and (outcome is not Outcome.TIMEOUT or self.conn is not None)
        self._end_attempt()
        self._drop_upstream()
        self.cluster_state.record_attempt(endpoint, outcome, status)
        if outcome is Outcome.RESET and self._stale_connection_retry():
            return
        if self._retried(outcome, status, sent=sent):
            return
        result = classify(outcome, status)
        self.reply(local_reply_for(result.flags, status=result.status,
                                   detail=f"transport failure reason: {why}".encode() if why else b""))

    def _stale_connection_retry(self) -> bool:
        """A pooled connection the upstream had already closed: the request never reached it.

        Try once more on a fresh connection, outside the retry budget, as most HTTP clients
        do; only for requests that are safe to resend.
        """
        safe = self.head.method in IDEMPOTENT_METHODS or self._has_idempotency_key()
        if self.conn_reused and safe and not self.stale_retry_used and self._replayable():
            self.stale_retry_used = True
            self._attempt()
            return True
        return False

    def _replayable(self) -> bool:
        return self.chunks is not None and not self.head.upgrade

    def _retried(self, outcome: Outcome, status: int | None, grpc_status: int | None = None, *,
                 sent: bool = True, headers=()) -> bool:
        """Envoy's RetryStateImpl::shouldRetry for the attempt that just ended: True when a retry
        is scheduled. Otherwise the outcome stands, flagged URX when the retry limit was reached
        and UO when the cluster's retry limit (maxRetries or the retry budget) had no room; a
        retried request whose latest outcome is not retryable counts as a retry success.

        A retry is in flight, for the cluster's limit, from its scheduling until its own
        outcome is known or the request ends (as Envoy counts it).
        """
        self._release_retry()
        policy = self.policy
        if not policy.attempts or not self._replayable():
            return False
        stats = self.cluster_state.stats
        head = self.head
        names = header_names(head.header(RETRIABLE_HEADER_NAMES)) if policy.wants_header_names else frozenset()
        if not policy.retryable(outcome, status, head.method, self._has_idempotency_key(), grpc_status,
                                sent=sent, headers=headers, header_names=names):
            if self.retries:
                stats["upstream_rq_retry_success"] += 1
            return False
        if self.retries >= policy.attempts:
            stats["upstream_rq_retry_limit_exceeded"] += 1
            self.flags = flags.join(self.flags, flags.URX)
            return False
        if not self.cluster_state.breaker.retry_allowed():
            self.flags = flags.join(self.flags, flags.UO)
            return False
        self._schedule_retry()
        return True

    def _schedule_retry(self) -> None:
        state = self.cluster_state
        self.retry_held = state
        state.stats["upstream_rq_retry_active"] += 1
        self.retries += 1
        state.stats["upstream_rq_retry"] += 1
        state.stats["upstream_rq_retry_backoff_exponential"] += 1
        if self.tried is None:
            self.tried = []
        self.tried.append(self.last_endpoint)
        self.runtime.loop.call_later(self.policy.backoff(self.retries, _rng), self._attempt)

    def _count_attempt(self) -> None:
        """Replace the x-envoy-attempt-count this request's upstream head carries (a retry:
        rare, so a scan of the headers is fine)."""
        headers = self.upstream_request.headers
        value = b"%d" % self.attempt_id
        for i in range(len(headers) - 1, -1, -1):
            if headers[i][0] == ATTEMPT_COUNT:
                headers[i] = (ATTEMPT_COUNT, value)
                return
        headers.append((ATTEMPT_COUNT, value))

    def _release_retry(self) -> None:
        if self.retry_held is not None:
            self.retry_held.stats["upstream_rq_retry_active"] -= 1
            self.retry_held = None

    def _has_idempotency_key(self) -> bool:
        """Looked up only when a failure makes it matter, never on the common path."""
        return self.head.header(b"idempotency-key") is not None

    # --- response side (called by the upstream connection) -------------------------------------

    def on_response_head(self, conn, head: ResponseHead) -> None:
        status = head.status
        self.active_at = self.runtime.now
        if status == 101 and not self.head.upgrade:
            return self.on_upstream_error(conn, ProtocolError(502, "101 answers no upgrade request"))
        grpc_status = grpc.status(head.raw_headers) if self.grpc else None  # a trailers-only answer
        if not self.committed and (status >= 400 or grpc_status or self.retries or self.policy.any_status):
            # the common 2xx/3xx answer to a first attempt skips the retry decision
            if self._retried(Outcome.RESPONSE, status, grpc_status, headers=head.raw_headers):
                endpoint = self.endpoint
                self._end_attempt()
                self._drop_upstream()
                self.cluster_state.record_attempt(endpoint, Outcome.RESPONSE, status)
                return
        self.grpc_status = grpc_status
        self._cancel_try_timer()
        self.cluster_state.record_attempt(self.endpoint, Outcome.RESPONSE, status)
        self.committed = True
        self.status = status
        has_body = self.expect_body and status >= 200 and status not in (204, 304)
        self.close_delimited = has_body and head.content_length is None and not head.streamed
        # A head-only response (HEAD) ends where llhttp was stopped, which cannot tell whether
        # more bytes followed it: that connection is not trusted again.
        self.upstream_reusable = head.keep_alive and not self.close_delimited and self.expect_body
        headers = end_to_end(head.raw_headers, head.nominated)
        for ops in self.response_header_ops:
            if not ops.empty:
                headers = apply_header_ops(headers, ops)
        if status == 101:
            headers.append((b"connection", b"upgrade"))
            for name, value in head.raw_headers:
                if name == b"upgrade":
                    headers.append((name, value))
        self.downstream.send_response_head(status, headers, head.content_length, has_body)

    def flush_response(self) -> None:
        """The upstream's read ended after the response head: let the downstream send it."""
        if not self.done:
            self.downstream.flush_response()

    def on_response_data(self, data: bytes) -> None:
        self.response_bytes += len(data)
        self.active_at = self.runtime.now
        if self.grpc_messages is not None:
            self.grpc_messages[1].feed(data)
        self.downstream.send_data(data)

    def on_response_end(self, conn, trailers: list[Header]) -> None:
        if self.grpc and trailers:
            self.grpc_status = grpc.status(trailers)
        self._end_attempt()
        self.conn = None
        conn.release(reusable=self.upstream_reusable and self.request_done)
        self.downstream.send_end(trailers)
        self._finish()

    def on_response_upgrade(self, conn, tail: bytes) -> None:
        """101 Switching Protocols: both connections become one byte tunnel."""
        self._end_attempt()
        self.conn = None
        if self.upgrade_tail:
            conn.send_raw(self.upgrade_tail)
            self.upgrade_tail = b""
        self.downstream.start_tunnel(conn, tail)
        self._finish()

    def on_upstream_lost(self, conn, outcome: Outcome = Outcome.RESET) -> None:
        """The upstream closed or reset the connection (or, HTTP/2, reset the stream:
        STREAM_RESET, Envoy's UR) while this exchange used it."""
        self.conn = None
        if not self.committed:
            if conn.received:
                self.conn_reused = False  # it answered something: not a stale pooled connection
            return self._attempt_failed(outcome)
        self._end_attempt()
        if self.close_delimited:
            self.downstream.send_end([])
            self._finish()
        else:
            self._abort_response(flags.UR if outcome is Outcome.STREAM_RESET else flags.UC)

    def on_upstream_refused(self, conn) -> None:
        """HTTP/2 REFUSED_STREAM (or a GOAWAY left the stream unprocessed): the upstream
        provably did not act on it, so even a POST may be retried (Envoy's refused-stream)."""
        self.conn = None
        if not self.committed:
            return self._attempt_failed(Outcome.REFUSED_STREAM)
        self._end_attempt()
        self._abort_response(flags.UR)

    def on_upstream_error(self, conn, error: ProtocolError) -> None:
        """The upstream sent something that is not HTTP/1.1: Envoy's 502 before a response
        started, a reset after."""
        self._end_attempt()
        self._drop_upstream()
        if self.committed:
            self._abort_response(flags.UPE)
        else:
            self.reply(LocalReply(502, flags.UPE, b"upstream sent an invalid HTTP response"))

    # --- timeouts and local replies --------------------------------------------------------------

    def _on_route_timeout(self) -> None:
        self.route_timer = None
        self.route_deadline = 0.0
        if self.done:
            return
        self.cluster_state.stats["upstream_rq_timeout"] += 1
        self._end_attempt()
        self._drop_upstream()
        if self.committed:
            self._abort_response(flags.UT)
        else:
            self.reply(local_reply_for(flags.UT))

    def on_stream_idle(self) -> None:
        """Nothing moved for the stream idle timeout: Envoy's 408 while the client was still
        sending, 504 when the upstream never answered, a reset once the response started."""
        self.runtime.listener_stats(self.listener)["downstream_rq_idle_timeout"] += 1
        self._end_attempt()
        self._drop_upstream()
        if self.committed:
            self._abort_response(flags.SI)
        else:
            self.reply(LocalReply(504 if self.request_done else 408, flags.SI, b"stream timeout", close=not self.request_done))

    def _abort_response(self, flag: str) -> None:
        """The response already started and cannot be completed: the client must see a reset,
        not a response that merely looks short."""
        self.flags = flags.join(self.flags, flag)
        self.downstream.abort()
        self._finish()

    def reply(self, reply: LocalReply) -> None:
        """Answer from the proxy itself (no route, no upstream, timeout, ...); to a gRPC client
        as a trailers-only gRPC error, which is what it can read (Envoy does the same)."""
        if self.done:
            return
        if self.grpc:
            reply = self._grpc_reply(reply)
        if self.runtime.gateway:  # a gateway's own answers say who sent them, as Istio's (server: istio-envoy)
            reply = replace(reply, headers=reply.headers + (GATEWAY_SERVER,))
        self._end_attempt()
        self._drop_upstream()
        self.flags = flags.join(self.flags, reply.flags)
        self.status = reply.status
        self.committed = True
        self.response_bytes += len(reply.body)
        self.downstream.send_local_reply(reply, self.expect_body)
        self._finish()

    def _grpc_reply(self, reply: LocalReply) -> LocalReply:
        self.grpc_status = reply.grpc_status if reply.grpc_status is not None else grpc.local_reply_status(reply.status, flags.UT in reply.flags)
        headers = reply.headers + ((b"content-type", b"application/grpc"),
                                   (b"grpc-status", b"%d" % self.grpc_status),
                                   (b"grpc-message", reply.body or b"%d" % reply.status))
        return LocalReply(200, reply.flags, b"", headers, reply.close)

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        self._release_retry()
        if self.shadows is not None and not self.request_done:
            self._mirror_cancel()
        if self.route_timer is not None:
            self.route_timer.cancel()
        self.resume_request_body()  # never leave the connection paused for the next request
        self.runtime.observe(self)
        self.downstream.exchange_done(self)

    # --- the upstream request's head ----------------------------------------------------------

    def _upstream_request(self) -> UpstreamRequest:
        """The client's end-to-end headers, without framing (the upstream codec writes its own)
        and without what the proxy writes itself (`_REPLACED`): the filters add the rest."""
        head = self.head
        outbound = self.listener.direction == "outbound"
        replaced = _REPLACED_OUTBOUND if outbound else _REPLACED
        headers = [(n, v) for n, v in end_to_end(head.raw_headers, head.nominated) if n not in replaced]
        if outbound:
            headers.append((ATTEMPT_COUNT, b"1"))
        authority = head.authority or self.cluster_state.cluster.service_host
        if head.streamed:
            length, has_body = None, True
        else:
            length, has_body = head.content_length, head.content_length is not None
        upgrade = head.header(b"upgrade") if head.upgrade else None
        return UpstreamRequest(head.method, head.path, authority, headers, length, has_body, upgrade)
