"""A shadow's lifetime against fakes of the pool contract: what it sends, what it holds while it
cannot send, when it gives up, and what it counts. (The end-to-end behaviour is test_mirror.py.)"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pymesh.http.message import Trailers, UpstreamRequest
from pymesh.policy.outcome import Outcome
from pymesh.proxy import mirror
from pymesh.proxy.mirror import HOLD_LIMIT, Shadow, shadow_authority
from pymesh.telemetry.stats import CLUSTER_STATS, FILTER_STATS


@pytest.mark.parametrize("authority, shadow", [
    ("svc", "svc-shadow"),
    ("svc.ns.svc.cluster.local:8080", "svc.ns.svc.cluster.local-shadow:8080"),
    ("10.0.0.1:80", "10.0.0.1-shadow:80"),
    ("[::1]:80", "[::1]-shadow:80"),
    ("[::1]", "[::1]-shadow"),
])
def test_shadow_authority_is_envoys(authority, shadow):
    assert shadow_authority(authority) == shadow


class Conn:
    """An upstream connection that records what it is asked, and reports itself full
    (pause_request_body on its exchange) once `room` bytes went out."""

    reused = received = False

    def __init__(self, room: int = 1 << 30) -> None:
        self.room = room
        self.sent: list = []
        self.exchange = None
        self.ended = None  # "released" (reusable or not) or "aborted"

    def bind(self, exchange, expect_body):
        self.exchange = exchange

    def send_request(self, request, body=(), complete=False):
        self.sent.append(("head", request.method, request.target, request.authority))
        for piece in body:
            self.send_end(piece.headers) if piece.__class__ is Trailers else self.send_data(piece)

    def send_data(self, data):
        self.sent.append(data)
        self.room -= len(data)
        if self.room <= 0:
            self.exchange.pause_request_body()

    def send_end(self, trailers):
        self.sent.append(("end", tuple(trailers)))

    def release(self, reusable):
        self.ended = f"released reusable={reusable}"

    def abort(self):
        self.ended = "aborted"


class Pool:
    def __init__(self, idle=None, pending_full=False) -> None:
        self.idle, self.pending_full, self.waiter = idle, pending_full, None

    def take_idle(self):
        return self.idle

    def connect(self, on_done):
        if self.pending_full:
            return None
        self.waiter = on_done
        return lambda: setattr(self, "waiter", None)


class Breaker:
    def __init__(self, allowed=True) -> None:
        self.allowed = allowed

    def request_allowed(self):
        return self.allowed


class Balancer:
    def __init__(self, endpoint="10.0.0.9:80") -> None:
        self.endpoint, self.active = endpoint, 0

    def pick(self, key):
        return self.endpoint

    def on_request_start(self, endpoint):
        self.active += 1

    def on_request_end(self, endpoint):
        self.active -= 1


def cluster_state(**kw):
    state = SimpleNamespace(stats=dict.fromkeys(CLUSTER_STATS, 0), breaker=Breaker(kw.get("allowed", True)),
                            balancer=Balancer(kw.get("endpoint", "10.0.0.9:80")), http2=False, http2_for_http2=False,
                            cluster=None, attempts=[])
    state.hash_key = lambda head: None
    state.pool_for = lambda pools, endpoint, head, client_h2, authority: pools.get(None, endpoint, state.stats)
    state.record_attempt = lambda endpoint, outcome, status: state.attempts.append((outcome, status))
    return state


def head(method="POST"):
    """What a shadow reads of the client's request head."""
    return SimpleNamespace(method=method, http_version="1.1", upgrade=False, authority="svc:80")


def shadow_for(pool: Pool, method="POST", timeout=None) -> tuple[Shadow, dict]:
    stats = dict.fromkeys(FILTER_STATS["mirror"], 0)
    runtime = SimpleNamespace(pools=SimpleNamespace(get=lambda *a: pool), loop=None)
    primary = UpstreamRequest(method, "/p", "svc:80", [(b"x-a", b"1")], None, method != "GET")
    return Shadow(runtime, stats, head(method), primary, timeout), stats


def response(status=200, keep_alive=True, length=0):
    return SimpleNamespace(status=status, keep_alive=keep_alive, content_length=length, streamed=False)


def test_an_idle_connection_gets_the_head_the_body_so_far_then_the_rest():
    conn = Conn()
    shadow, stats = shadow_for(Pool(idle=conn))
    state = cluster_state()
    assert shadow.start(state, [b"ab"], request_done=False)
    shadow.send_data(b"cd")
    shadow.send_end([(b"x-t", b"1")])
    assert conn.sent == [("head", "POST", "/p", "svc-shadow:80"), b"ab", b"cd", ("end", ((b"x-t", b"1"),))]
    assert (stats["shadows_started"], stats["shadows_active"], state.stats["upstream_rq_active"]) == (1, 1, 1)
    shadow.on_response_head(conn, response(200))
    shadow.on_response_end(conn, [])
    assert conn.ended == "released reusable=True" and state.attempts == [(Outcome.RESPONSE, 200)]
    assert (stats["shadows_active"], state.stats["upstream_rq_active"], state.balancer.active) == (0, 0, 0)


def test_body_waits_for_the_connection_and_goes_out_when_it_opens():
    pool = Pool()
    shadow, _ = shadow_for(pool)
    assert shadow.start(cluster_state(), [], request_done=False)
    shadow.send_data(b"early")
    shadow.send_end([])
    conn = Conn()
    pool.waiter(conn, None)
    assert conn.sent == [("head", "POST", "/p", "svc-shadow:80"), b"early", ("end", ())]


def test_a_full_connection_makes_it_hold_then_flush_in_order_on_resume():
    conn = Conn(room=1)
    shadow, _ = shadow_for(Pool(idle=conn))
    shadow.start(cluster_state(), [b"a"], request_done=False)  # fills it: paused
    shadow.send_data(b"b")
    shadow.send_end([])
    assert conn.sent == [("head", "POST", "/p", "svc-shadow:80"), b"a"]
    conn.room = 1 << 30
    shadow.resume_request_body()
    assert conn.sent[2:] == [b"b", ("end", ())]


def test_more_than_the_hold_limit_abandons_the_copy_and_counts_it():
    conn = Conn(room=1)
    shadow, stats = shadow_for(Pool(idle=conn))
    state = cluster_state()
    shadow.start(state, [b"a"], request_done=False)
    shadow.send_data(b"x" * HOLD_LIMIT)
    shadow.send_data(b"y")
    assert conn.ended == "aborted" and shadow.done
    assert (stats["shadows_dropped_slow"], stats["shadows_active"], state.stats["upstream_rq_active"]) == (1, 0, 0)
    shadow.send_data(b"z")  # the client's body goes on; the copy takes no more of it
    assert conn.sent[-1] == b"a"


def test_no_room_or_no_host_drops_it_before_anything_is_sent():
    shadow, stats = shadow_for(Pool(idle=Conn()))
    assert not shadow.start(cluster_state(allowed=False), [], request_done=True)
    shadow, stats2 = shadow_for(Pool(pending_full=True))
    assert not shadow.start(cluster_state(), [], request_done=True)
    shadow, stats3 = shadow_for(Pool())
    assert not shadow.start(cluster_state(endpoint=None), [], request_done=True)
    assert not shadow_for(Pool())[0].start(None, [], request_done=True)  # the cluster is gone
    assert (stats["shadows_dropped_overflow"], stats2["shadows_dropped_overflow"], stats3["shadows_dropped_no_upstream"]) == (1, 1, 1)
    assert stats2["shadows_active"] == 0


def test_the_in_flight_cap_drops_copies_beyond_it(monkeypatch):
    monkeypatch.setattr(mirror, "MAX_IN_FLIGHT", 1)
    shadow, stats = shadow_for(Pool(idle=Conn()))
    stats["shadows_active"] = 1
    assert not shadow.start(cluster_state(), [], request_done=True)
    assert stats["shadows_dropped_overflow"] == 1


def test_an_early_answer_ends_the_copy_without_reusing_the_connection():
    conn = Conn()
    shadow, stats = shadow_for(Pool(idle=conn))
    shadow.start(cluster_state(), [b"part"], request_done=False)
    shadow.on_response_head(conn, response(413))
    shadow.on_response_end(conn, [])
    assert conn.ended == "aborted" and stats["shadows_active"] == 0
    shadow.send_data(b"more")
    assert conn.sent[-1] == b"part"


def test_failures_are_recorded_once_in_the_mirror_cluster():
    pool = Pool()
    shadow, _ = shadow_for(pool)
    state = cluster_state()
    shadow.start(state, [], request_done=True)
    pool.waiter(None, ConnectionRefusedError())
    conn = Conn()
    lost, _ = shadow_for(Pool(idle=conn))
    lost.start(state, [], request_done=True)
    lost.on_upstream_lost(conn)
    assert state.attempts == [(Outcome.CONNECT_FAILURE, None), (Outcome.RESET, None)]
    assert state.stats["upstream_rq_active"] == 0 and state.balancer.active == 0


def test_a_cancelled_copy_stops_waiting_for_its_connection():
    pool = Pool()
    shadow, stats = shadow_for(pool)
    shadow.start(cluster_state(), [], request_done=False)
    shadow.cancel()
    assert pool.waiter is None and stats["shadows_active"] == 0
