"""The headers a gateway writes on a request (ProxyHeaders at the edge, Envoy's
use_remote_address): internal or external by the client's address and x-forwarded-for."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pymesh.http.message import ConnectionInfo, RequestHead
from pymesh.proxy.filters import ProxyHeaders

PEER = (b"x-envoy-peer-metadata", b"gw")


def run(source_ip: str, sent: list[tuple[bytes, bytes]], scheme: str = "http") -> list[tuple[bytes, bytes]]:
    head = RequestHead("GET", "/", list(sent), scheme=scheme)
    head.connection = ConnectionInfo(source_ip=source_ip)
    headers = list(sent)
    exchange = SimpleNamespace(head=head, response_header_ops=())
    ProxyHeaders(PEER, edge=True).on_request(exchange, SimpleNamespace(headers=headers))
    assert [ops.set for ops in exchange.response_header_ops] == [(("server", "istio-envoy"),)]
    return [(n, v) for n, v in headers if n != b"x-request-id"]


@pytest.mark.parametrize("source_ip, internal", [
    ("127.0.0.1", True), ("10.1.2.3", True), ("172.31.0.1", True), ("192.168.1.1", True), ("::1", True),
    ("fd00::5", True), ("172.32.0.1", False), ("203.0.113.7", False), ("2001:db8::1", False),
])
def test_internal_or_external_by_address(source_ip, internal):
    headers = dict(run(source_ip, [(b"x-envoy-internal", b"spoofed"), (b"x-envoy-retry-on", b"5xx")]))
    assert headers[b"x-forwarded-for"] == source_ip.encode()
    assert headers[b"x-forwarded-proto"] == b"http"
    assert headers[PEER[0]] == PEER[1]
    if internal:
        assert headers[b"x-envoy-internal"] == b"true" and b"x-envoy-external-address" not in headers
        assert headers[b"x-envoy-retry-on"] == b"5xx"  # an internal caller's own headers pass, as Envoy's
    else:
        assert headers[b"x-envoy-external-address"] == source_ip.encode()
        assert b"x-envoy-internal" not in headers and b"x-envoy-retry-on" not in headers


def test_a_forwarded_request_from_an_internal_address_is_external():
    headers = run("10.0.0.1", [(b"x-forwarded-for", b"198.51.100.1"), (b"x-forwarded-proto", b"https"),
                               (b"x-envoy-external-address", b"1.1.1.1")], scheme="http")
    assert headers.count((b"x-forwarded-for", b"198.51.100.1, 10.0.0.1")) == 1
    assert [v for n, v in headers if n == b"x-forwarded-proto"] == [b"http"]  # the client's scheme, not its word
    assert [v for n, v in headers if n == b"x-envoy-external-address"] == [b"10.0.0.1"]
