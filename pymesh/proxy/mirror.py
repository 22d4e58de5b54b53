"""Traffic mirroring (Istio's `mirror`/`mirrors`, Envoy's request mirror policies): a
fire-and-forget copy of a request to another cluster.

`start_shadows` picks the route's mirror policies for one request (one draw of the random source
for all of them, as Envoy uses one stable random value per stream) and starts a `Shadow` for
each. A `Shadow` owns one copy's lifetime: a connection or stream from the mirror cluster's pool,
the request head with its authority suffixed "-shadow", the body as the client sends it, and a
response that is read and thrown away. Its outcome counts in the mirror cluster's stats, balancer
and outlier detection (as Envoy's shadow requests do) and nowhere else: not in the access log, not
in Istio's request metrics, never in the primary's status, timing or retries.

A shadow never slows the primary, so it never pauses the client: body it cannot pass on at once
(no connection yet, or the mirror's socket or stream window is full) is held up to `HOLD_LIMIT`
bytes, and past that the copy is abandoned and counted. (Envoy lets a slow shadow push back on
the client instead; pymesh keeps the primary's latency.) Shadows in flight are bounded per
listener and worker (`MAX_IN_FLIGHT`) and by the mirror cluster's circuit breaker; a copy over
either is dropped and counted. Stats: `http.<listener>.mirror.*` (pymesh.telemetry.stats), and
the mirror cluster's own `cluster.<name>.upstream_rq_*`.
"""

from __future__ import annotations

from pymesh.http.message import RequestHead, Trailers, UpstreamRequest
from pymesh.policy.fault import fires
from pymesh.policy.outcome import Outcome
from pymesh.proxy.random_source import RNG

HOLD_LIMIT = 64 * 1024  # body bytes a shadow holds while it cannot send (per shadow)
MAX_IN_FLIGHT = 256  # shadows in flight per listener and worker


def shadow_authority(authority: str) -> str:
    """Envoy's shadowAppendedHost: "foo" -> "foo-shadow", "foo:8080" -> "foo-shadow:8080",
    "[::1]:80" -> "[::1]-shadow:80" (a colon inside an IPv6 literal is not a port's)."""
    colon = authority.rfind(":")
    if colon < 0 or authority.rfind("]") > colon:
        return authority + "-shadow"
    return f"{authority[:colon]}-shadow{authority[colon:]}"


def start_shadows(exchange) -> list[Shadow] | None:
    """The shadows of this request, started; None when the route mirrors nothing of it. Called
    once the request filters let the request through, just before the primary's first attempt:
    a request a filter answered (a fault abort, a rate limit) is not mirrored, as in Envoy."""
    head = exchange.head
    if head.upgrade:
        return None  # a tunnel cannot be copied
    mirrors = exchange.route.mirrors
    draw = RNG.random()  # one draw for all of a route's mirrors, as Envoy
    if len(mirrors) == 1:  # the common case, without building a list
        if not fires(mirrors[0].per_million, draw):
            return None
        policies = mirrors
    else:
        policies = [p for p in mirrors if fires(p.per_million, draw)]
        if not policies:
            return None
    runtime = exchange.runtime
    stats = runtime.telemetry.metrics.filter_stats(exchange.listener.name, "mirror")
    shadows = []
    for policy in policies:
        shadow = Shadow(runtime, stats, head, exchange.upstream_request, exchange.route.timeout)
        if shadow.start(runtime.cluster_states.get(policy.cluster), exchange.chunks or (), exchange.request_done):
            shadows.append(shadow)
    return shadows or None


class Shadow:
    """One mirrored copy: the exchange side of a mirror-cluster connection (the upstream codecs
    call the `ExchangeSide` methods below), fed the client's body by the primary's exchange."""

    __slots__ = ("runtime", "stats", "head", "request", "timeout", "state", "endpoint", "conn", "cancel_connect",
                 "held", "held_bytes", "paused", "request_done", "answered", "reusable", "timer", "done")

    def __init__(self, runtime, stats: dict[str, int], head: RequestHead, primary: UpstreamRequest,
                 timeout: float | None) -> None:
        self.runtime = runtime
        self.stats = stats  # the listener's mirror.* stats
        self.head = head  # the upstream codecs read it (HTTP/2: whether te: trailers goes along)
        self.request = UpstreamRequest(primary.method, primary.target, shadow_authority(primary.authority),
                                       list(primary.headers), primary.length, primary.has_body)
        self.timeout = timeout  # the route's timeout: Envoy gives the shadow the same
        self.state = None
        self.endpoint = None
        self.conn = None
        self.cancel_connect = None
        self.held: list = []  # body (bytes) and its end (Trailers) not sent yet
        self.held_bytes = 0
        self.paused = False  # the connection cannot take more now
        self.request_done = False
        self.answered = False  # the mirror's response head arrived (its outcome is recorded)
        self.reusable = False
        self.timer = None
        self.done = False

    # --- lifetime --------------------------------------------------------------------------------

    def start(self, state, body, request_done: bool) -> bool:
        """Admit and start the copy with the body the client sent so far; False (counted) when
        it is dropped: no such cluster or no healthy host, or no room for it."""
        stats = self.stats
        endpoint = state.balancer.pick(state.hash_key(self.head)) if state is not None else None
        if endpoint is None:
            stats["shadows_dropped_no_upstream"] += 1
            return False
        if stats["shadows_active"] >= MAX_IN_FLIGHT or not state.breaker.request_allowed():
            stats["shadows_dropped_overflow"] += 1
            return False
        self.state, self.endpoint = state, endpoint
        stats["shadows_started"] += 1
        stats["shadows_active"] += 1
        state.balancer.on_request_start(endpoint)
        state.stats["upstream_rq_active"] += 1
        for piece in body:
            self._hold(piece)
        if request_done:
            self.send_end(body[-1].headers if body and body[-1].__class__ is Trailers else [])
        if self.done:  # more body than a shadow holds arrived before it started (a fault delay)
            return False
        # TLS to the mirror is named after the client's host, not the "-shadow" one
        pool = state.pool_for(self.runtime.pools, endpoint, self.head, self.head.http_version == "2",
                              self.head.authority)
        conn = pool.take_idle()
        if conn is not None:
            self._bind(conn)
        else:
            self.cancel_connect = pool.connect(self._on_connected)
            if self.cancel_connect is None:  # the mirror cluster's pending limit: counted there too
                stats["shadows_dropped_overflow"] += 1
                self._end()
                return False
        if self.timeout and not self.done:
            self.timer = self.runtime.loop.call_later(self.timeout, self._on_timeout)
        return True

    def _on_connected(self, conn, error) -> None:
        self.cancel_connect = None
        if self.done:
            if conn is not None:
                conn.release(reusable=True)
            return
        if conn is None:
            self.state.record_attempt(self.endpoint, Outcome.CONNECT_FAILURE, None)
            return self._end()
        self._bind(conn)

    def _bind(self, conn) -> None:
        self.conn = conn
        conn.bind(self, self.head.method != "HEAD")
        held, self.held, self.held_bytes = self.held, [], 0
        conn.send_request(self.request, held)

    def _on_timeout(self) -> None:
        self.timer = None
        self.state.stats["upstream_rq_timeout"] += 1
        self._end()

    def cancel(self) -> None:
        """The client went away before its request ended: the copy could never be complete."""
        self._end()

    def _abandon(self) -> None:
        """The mirror cannot keep up with the client's body: the copy goes, the primary goes on."""
        self.stats["shadows_dropped_slow"] += 1
        self._end()

    def _end(self, reusable: bool = False) -> None:
        if self.done:
            return
        self.done = True
        self.held = []
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.cancel_connect is not None:
            self.cancel_connect()
            self.cancel_connect = None
        conn, self.conn = self.conn, None
        if conn is not None:
            if reusable:
                conn.release(reusable=True)
            else:
                conn.abort()
        self.stats["shadows_active"] -= 1
        state = self.state
        state.balancer.on_request_end(self.endpoint)
        state.stats["upstream_rq_active"] -= 1

    # --- the client's body (from the primary's exchange) --------------------------------------

    def send_data(self, data: bytes) -> None:
        if self.done or not self.request.has_body:
            return
        if self.conn is not None and not self.paused:
            self.conn.send_data(data)
        else:
            self._hold(data)

    def send_end(self, trailers) -> None:
        if self.done or self.request_done:
            return
        self.request_done = True
        if not self.request.has_body:
            return
        if self.conn is not None and not self.paused:
            self.conn.send_end(trailers)
        else:
            self._hold(Trailers(trailers))

    def _hold(self, piece) -> None:
        if piece.__class__ is Trailers:
            self.request_done = True
        else:
            self.held_bytes += len(piece)
            if self.held_bytes > HOLD_LIMIT:
                return self._abandon()
        self.held.append(piece)

    # --- the mirror's side (called by the upstream connection) --------------------------------

    def pause_request_body(self) -> None:
        self.paused = True

    def resume_request_body(self) -> None:
        """Room again: send what was held, until the connection is full again."""
        self.paused = False
        while self.held and not self.paused and self.conn is not None:
            piece = self.held.pop(0)
            if piece.__class__ is Trailers:
                self.conn.send_end(piece.headers)
            else:
                self.held_bytes -= len(piece)
                self.conn.send_data(piece)

    def on_response_head(self, conn, head) -> None:
        if head.status == 101:  # nothing asked for an upgrade
            return self.on_upstream_error(conn, None)
        self.answered = True
        self.state.record_attempt(self.endpoint, Outcome.RESPONSE, head.status)
        has_body = self.head.method != "HEAD" and head.status >= 200 and head.status not in (204, 304)
        close_delimited = has_body and head.content_length is None and not head.streamed
        self.reusable = head.keep_alive and not close_delimited and self.head.method != "HEAD"

    def on_response_data(self, data: bytes) -> None:
        pass  # read and discarded: the mirror's answer goes nowhere

    def on_response_end(self, conn, trailers) -> None:
        self._end(reusable=self.reusable and self.request_done and not self.held)

    def on_response_upgrade(self, conn, tail: bytes) -> None:
        self._end()

    def on_upstream_lost(self, conn, outcome: Outcome = Outcome.RESET) -> None:
        self.conn = None  # the connection is gone already
        if not self.answered:
            self.state.record_attempt(self.endpoint, outcome, None)
        self._end()

    def on_upstream_refused(self, conn) -> None:
        self.conn = None
        self.state.record_attempt(self.endpoint, Outcome.REFUSED_STREAM, None)
        self._end()

    def on_upstream_error(self, conn, error) -> None:
        self._end()
