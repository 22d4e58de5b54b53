"""CPU per request of one side of an HTTP/2 connection: pymesh's codec (pymesh.http.h2) against `h2`.

Server side: a request's HEADERS in, HEADERS + DATA out. Client side, the mirror: the request's
HEADERS out, the response's HEADERS + DATA in (acknowledged). The peer, outside the timed part,
is `h2` (as Envoy's nghttp2 would be: it Huffman-codes and indexes everything) or pymesh's codec
(the other sidecar of a pymesh mesh: per-request values go as raw unindexed literals). Requests
carry a fresh x-request-id each, as a mesh's do. Figures are process CPU time
(time.process_time_ns) per request, median of the rounds.
"""

from __future__ import annotations

import statistics
import time

import h2.config
import h2.connection
import h2.events

from pymesh.http import h2 as codec
from pymesh.http.message import RequestHead, ResponseHead

BATCH = 100
AUTHORITY = b"reviews.default.svc.cluster.local:9080"
BODY = b"x" * 128
RESPONSE = [(b"content-type", b"application/json"), (b"server", b"istio-envoy"),
            (b"date", b"Mon, 01 Jan 2024 00:00:00 GMT"), (b"content-length", b"128")]


def _request_fields(index: int) -> list:
    return [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", AUTHORITY),
            (b":path", b"/reviews/%d" % (index % 50)), (b"user-agent", b"Go-http-client/2.0"),
            (b"accept", b"*/*"), (b"x-request-id", b"%032x" % (index * 2654435761)),
            (b"x-forwarded-proto", b"http")]


def _h2(client: bool) -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=client, header_encoding=None))
    conn.initiate_connection()
    return conn


def _h2_acknowledge(conn, events) -> None:
    for event in events:
        if isinstance(event, h2.events.DataReceived):
            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)


class H2Server:
    def __init__(self) -> None:
        self.conn = _h2(False)
        self.head = [(b":status", b"200")] + RESPONSE

    def handle(self, data: bytes) -> bytes:
        conn = self.conn
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                conn.send_headers(event.stream_id, self.head)
                conn.send_data(event.stream_id, BODY, end_stream=True)
        return conn.data_to_send()


class CodecServer:
    def __init__(self) -> None:
        self.conn = codec.Connection(client=False)

    def handle(self, data: bytes) -> bytes:
        conn = self.conn
        for event in conn.feed(data):
            if event[0] == codec.HEAD:
                head = ResponseHead(200, RESPONSE[:3])
                head.content_length = len(BODY)
                conn.send_headers(event[1], head)
                conn.send_data(event[1], BODY, True)
        return conn.data_to_send()


class H2Client:
    def __init__(self) -> None:
        self.conn = _h2(True)

    def request(self, index: int) -> bytes:
        conn = self.conn
        conn.send_headers(conn.get_next_available_stream_id(), _request_fields(index), end_stream=True)
        return conn.data_to_send()

    def response(self, data: bytes) -> bytes:
        _h2_acknowledge(self.conn, self.conn.receive_data(data))
        return self.conn.data_to_send()


class CodecClient:
    def __init__(self) -> None:
        self.conn = codec.Connection(client=True)

    def request(self, index: int) -> bytes:
        fields = _request_fields(index)
        head = RequestHead("GET", fields[3][1].decode(), fields[4:])
        head.authority = AUTHORITY.decode()
        conn = self.conn
        conn.send_headers(conn.new_stream_id(), head, True)
        return conn.data_to_send()

    def response(self, data: bytes) -> bytes:
        conn = self.conn
        for event in conn.feed(data):
            if event[0] == codec.DATA:
                conn.acknowledge_received(event[1], len(event[2]))
        return conn.data_to_send()


def _handshake(a, b) -> None:
    for _ in range(10):
        ab, ba = a.conn.data_to_send(), b.conn.data_to_send()
        if not ab and not ba:
            return
        if ab:
            b.handle(ab) if hasattr(b, "handle") else b.response(ab)
        if ba:
            a.handle(ba) if hasattr(a, "handle") else a.response(ba)


def server_side(server_class, client_class, requests: int) -> float:
    """µs of CPU per request for the server: HEADERS in, HEADERS + DATA out."""
    client, server = client_class(), server_class()
    _handshake(client, server)
    spent = 0
    for start in range(0, requests, BATCH):
        wire = [client.request(index) for index in range(start, start + BATCH)]
        begin = time.process_time_ns()
        answers = [server.handle(data) for data in wire]
        spent += time.process_time_ns() - begin
        for answer in answers:
            server.handle(client.response(answer))  # window updates: outside the timed part
    return spent / requests / 1000


def client_side(client_class, server_class, requests: int) -> float:
    """µs of CPU per request for the client: HEADERS out, HEADERS + DATA in."""
    client, server = client_class(), server_class()
    _handshake(client, server)
    spent = 0
    for start in range(0, requests, BATCH):
        begin = time.process_time_ns()
        wire = [client.request(index) for index in range(start, start + BATCH)]
        spent += time.process_time_ns() - begin
        answers = [server.handle(data) for data in wire]
        begin = time.process_time_ns()
        updates = [client.response(answer) for answer in answers]
        spent += time.process_time_ns() - begin
        for update in updates:
            server.handle(update)
    return spent / requests / 1000


def run(args) -> int:
    requests = 2000 if args.smoke else args.requests
    rounds = 1 if args.smoke else args.rounds
    peers = {"h2": (H2Client, H2Server), "pymesh": (CodecClient, CodecServer)}
    figures: dict[tuple[str, str, str], list[float]] = {}
    for _ in range(rounds):  # interleaved, so that a noisy moment hits every case alike
        for peer, (peer_client, peer_server) in peers.items():
            for name, (client, server) in peers.items():
                figures.setdefault(("server", peer, name), []).append(server_side(server, peer_client, requests))
                figures.setdefault(("client", peer, name), []).append(client_side(client, peer_server, requests))
    print(f"CPU µs per request, one side, median of {rounds} rounds x {requests} requests")
    print("| side | its peer | h2 | pymesh | pymesh / h2 |")
    print("|---|---|---|---|---|")
    for side in ("server", "client"):
        for peer in peers:
            reference = statistics.median(figures[(side, peer, "h2")])
            ours = statistics.median(figures[(side, peer, "pymesh")])
            print(f"| {side} | {peer} | {reference:.1f} | {ours:.1f} | {ours / reference:.2f} |")
    return 0
