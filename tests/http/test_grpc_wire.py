"""pymesh.http.grpc on hostile and edge values: grpc-timeout, grpc-status, message counting."""

from __future__ import annotations

import pytest

from pymesh.http import grpc
from pymesh.http.message import RequestHead


def head(*headers: tuple[bytes, bytes], version: str = "2") -> RequestHead:
    return RequestHead("POST", "/svc/M", [(b"content-type", b"application/grpc"), *headers], http_version=version)


@pytest.mark.parametrize("value,seconds", [
    (b"1S", 1.0), (b"300m", 0.3), (b"2M", 120.0), (b"1H", 3600.0), (b"5u", 5e-6), (b"7n", 7e-9),
    (b"99999999S", 99999999.0),
])
def test_grpc_timeout_units(value, seconds):
    assert grpc.timeout(head((b"grpc-timeout", value))) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [b"", b"S", b"1", b"1s", b"-1S", b"+1S", b" 1S", b"1.5S", b"123456789S", b"1SS",
                                   b"\xd9\xa1S"])
def test_invalid_grpc_timeout_is_ignored(value):
    """At most 8 ASCII digits and one unit (gRPC's PROTOCOL-HTTP2.md); anything else: no deadline."""
    assert grpc.timeout(head((b"grpc-timeout", value))) is None


def test_grpc_needs_http2_and_the_content_type():
    assert grpc.is_grpc(head())
    assert grpc.is_grpc(head(version="2")) and not grpc.is_grpc(head(version="1.1"))
    assert not grpc.is_grpc(RequestHead("POST", "/", [(b"content-type", b"application/json")], http_version="2"))


@pytest.mark.parametrize("value,status", [(b"0", 0), (b"14", 14), (b"abc", grpc.UNKNOWN), (b"1234", grpc.UNKNOWN),
                                          (b"", grpc.UNKNOWN)])
def test_grpc_status_values(value, status):
    assert grpc.status([(b"grpc-status", value)]) == status


def test_no_grpc_status_is_none():
    assert grpc.status([(b"grpc-message", b"x")]) is None


def test_local_replies_map_as_envoy_does():
    assert grpc.local_reply_status(404, False) == grpc.UNIMPLEMENTED
    assert grpc.local_reply_status(503, False) == grpc.UNAVAILABLE
    assert grpc.local_reply_status(504, True) == grpc.DEADLINE_EXCEEDED
    assert grpc.local_reply_status(418, False) == grpc.UNKNOWN


def messages(*payloads: bytes) -> bytes:
    return b"".join(b"\x00" + len(p).to_bytes(4, "big") + p for p in payloads)


@pytest.mark.parametrize("step", [1, 2, 3, 5, 7, 1000])
def test_message_counter_is_independent_of_how_the_bytes_are_split(step):
    data = messages(b"a", b"", b"hello" * 100, b"z")
    counter = grpc.MessageCounter()
    for i in range(0, len(data), step):
        counter.feed(data[i:i + step])
    assert counter.count == 4


def test_a_message_claiming_4_gib_counts_once_and_costs_nothing_more():
    counter = grpc.MessageCounter()
    counter.feed(b"\x00\xff\xff\xff\xff" + b"x" * 1000)
    counter.feed(b"y" * 1000)
    assert counter.count == 1
