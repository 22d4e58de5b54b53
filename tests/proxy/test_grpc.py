"""gRPC through a sidecar, with grpcio as both real peers (its own HTTP/2 stack, chttp2): unary and
the three streaming kinds, status codes, grpc-timeout, retries on UNAVAILABLE, and Istio's gRPC
metric labels. Messages are raw bytes (generic handlers, no generated stubs)."""

from __future__ import annotations

import threading

import grpc
import h2.events
import pytest

from grpc_echo import SERVICE, start_server
from h2_upstream import H2Upstream
from proxy_harness import HOST, endpoint, free_port, service_entry, sidecar, virtual_service
from test_http2_downstream import H2Client

pytestmark = pytest.mark.timeout(60)
@pytest.fixture
def echo():
    server, service, service.port = start_server("127.0.0.1:0")
    yield service
    service.released.set()
    server.stop(grace=None)


def grpc_mesh(port: int, echo, http: list[dict] | None = None) -> list[dict]:
    resources = [service_entry(port, [endpoint(echo.port, port_name="grpc")], protocol="GRPC"), sidecar((port, "GRPC"))]
    if http:
        resources.append(virtual_service(http))
    return resources


@pytest.fixture
def channel_to():
    channels = []

    def open_channel(port: int) -> grpc.Channel:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.default_authority", HOST)])
        channels.append(channel)
        return channel

    yield open_channel
    for channel in channels:
        channel.close()


def test_unary_and_the_three_streaming_kinds(echo, proxies, channel_to):
    port = free_port()
    proxy = proxies(grpc_mesh(port, echo))
    channel = channel_to(port)
    assert channel.unary_unary(f"/{SERVICE}/Unary")(b"hi", timeout=10) == b"echo:hi"
    assert list(channel.unary_stream(f"/{SERVICE}/ServerStream")(b"5", timeout=10)) == [b"part-%d" % i for i in range(5)]
    assert channel.stream_unary(f"/{SERVICE}/ClientStream")(iter([b"a", b"b", b"c"]), timeout=10) == b"a+b+c"
    assert list(channel.stream_stream(f"/{SERVICE}/Bidi")(iter([b"x", b"y"]), timeout=10)) == [b"X", b"Y"]
    entry = proxy.wait_log(lambda e: e["path"] == f"/{SERVICE}/Bidi")
    assert entry["protocol"] == "HTTP/2"
    metric = proxy.wait_metric(lambda s: [x for x in s if x.labels.get("request_protocol") == "grpc"])
    assert {x.labels["grpc_response_status"] for x in metric} == {"0"}
    # Istio's message counters: 1+1+3+2 messages sent by the client, 1+5+1+2 by the server
    assert proxy.wait_metric(lambda s: sum(x.value for x in s) == 7 or None, name="istio_request_messages_total")
    assert proxy.wait_metric(lambda s: sum(x.value for x in s) == 9 or None, name="istio_response_messages_total")


def test_a_grpc_error_status_reaches_the_client_and_the_metrics(echo, proxies, channel_to):
    port = free_port()
    proxy = proxies(grpc_mesh(port, echo))
    with pytest.raises(grpc.RpcError) as caught:
        channel_to(port).unary_unary(f"/{SERVICE}/Missing")(b"", timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    proxy.wait_metric(lambda s: [x for x in s if x.labels.get("grpc_response_status") == "5"])


def test_unavailable_twice_then_ok_is_retried_to_success(echo, proxies, channel_to):
    """retryOn unavailable matches the trailers-only UNAVAILABLE answers: retried although the
    call is a POST (pymesh.policy.retry: a gRPC status is the server's word on the whole call)."""
    echo.flaky = 2
    port = free_port()
    route = {"route": [{"destination": {"host": HOST}}], "retries": {"attempts": 3, "retryOn": "unavailable"}}
    proxies(grpc_mesh(port, echo, [route]))
    assert channel_to(port).unary_unary(f"/{SERVICE}/Flaky")(b"", timeout=10) == b"ok"
    assert echo.calls["Flaky"] == 3


def test_without_a_matching_retry_condition_unavailable_reaches_the_client(echo, proxies, channel_to):
    echo.flaky = 1
    port = free_port()
    route = {"route": [{"destination": {"host": HOST}}], "retries": {"attempts": 3, "retryOn": "connect-failure"}}
    proxies(grpc_mesh(port, echo, [route]))
    with pytest.raises(grpc.RpcError) as caught:
        channel_to(port).unary_unary(f"/{SERVICE}/Flaky")(b"", timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert echo.calls["Flaky"] == 1


def test_grpc_timeout_is_honoured_with_a_grpc_deadline_exceeded(proxies):
    """A client that sends grpc-timeout but keeps no deadline of its own: the proxy ends the
    call at the deadline with a trailers-only DEADLINE_EXCEEDED (flag UT)."""
    # An upstream that never answers and keeps no gRPC deadline of its own (a gRPC server would
    # end the call itself at the forwarded grpc-timeout, racing the proxy on a loaded machine).
    silent, hold = H2Upstream(), threading.Event()
    silent.body_progress = lambda received: hold.wait(10)
    port = free_port()
    proxy = proxies(grpc_mesh(port, silent))
    client = H2Client(port)
    try:
        client.conn.send_headers(1, [(":method", "POST"), (":path", f"/{SERVICE}/Hang"), (":scheme", "http"),
                                     (":authority", HOST), ("content-type", "application/grpc"), ("te", "trailers"),
                                     ("grpc-timeout", "300m")])
        client.conn.send_data(1, b"\x00\x00\x00\x00\x00", end_stream=True)  # one empty message
        client.flush()
        events = client.events_until(lambda seen: any(isinstance(e, h2.events.StreamEnded) for e in seen))
    finally:
        client.close()
        hold.set()
        silent.stop()
    response = next(e for e in events if isinstance(e, h2.events.ResponseReceived))
    headers = dict(response.headers)
    assert headers[b":status"] == b"200"
    assert headers[b"grpc-status"] == b"4"
    assert proxy.wait_log(lambda e: e["path"] == f"/{SERVICE}/Hang")["response_flags"] == "UT"


def test_no_route_is_a_grpc_unimplemented(echo, proxies, channel_to):
    port = free_port()
    proxies(grpc_mesh(port, echo, [{"match": [{"uri": {"prefix": "/other"}}], "route": [{"destination": {"host": HOST}}]}]))
    with pytest.raises(grpc.RpcError) as caught:
        channel_to(port).unary_unary(f"/{SERVICE}/Unary")(b"", timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
