"""Framing and message decoding of the control protocol, both directions."""

from __future__ import annotations

import json
import struct

import pytest

from pymesh.api import model
from pymesh.api.wire import (
    MAX_FRAME, Ack, EndpointsMessage, FrameDecoder, Hello, InvalidMessage, Nack, Node, SnapshotMessage,
    WireError, encode_message,
)

CONFIG = model.MeshConfig(
    service_entries=(model.ServiceEntry(model.Metadata("reviews"), hosts=("reviews",), workload_selector={"app": "r"}),),
)
WE = model.WorkloadEntry(model.Metadata("r1"), model.WorkloadEntrySpec("10.0.0.1", labels={"app": "r"}))
MESSAGES = [
    Hello(Node("reviews-v2-7f3a.demo", "reviews-v2", "demo", "reviews", {"app": "reviews"}, ("10.0.0.7",), {"http": 9080}), "17"),
    Hello(Node("n"), None),
    Ack("17", "ab12"),
    Nack("17", "ab12", "stale base: serving 16"),
    SnapshotMessage("18", "cd34", CONFIG),
    EndpointsMessage("19", "ef56", "18", (WE,)),
]


def frame(body) -> bytes:
    data = json.dumps(body).encode() if not isinstance(body, bytes) else body
    return struct.pack(">I", len(data)) + data


def test_frames_are_length_prefixed_json_with_version_and_type() -> None:
    data = encode_message(Ack("3", "n1"))
    (length,) = struct.unpack(">I", data[:4])
    assert length == len(data) - 4
    assert json.loads(data[4:]) == {"v": 1, "type": "ack", "version": "3", "nonce": "n1"}
    hello = json.loads(encode_message(MESSAGES[0])[4:])
    assert hello["type"] == "hello" and hello["last_version"] == "17"
    assert hello["node"] == {"id": "reviews-v2-7f3a.demo", "workload": "reviews-v2", "namespace": "demo",
                             "service_account": "reviews", "labels": {"app": "reviews"}, "addresses": ["10.0.0.7"],
                             "ports": {"http": 9080}}


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(msg) -> None:
    assert FrameDecoder().feed(encode_message(msg)) == [msg]


def test_byte_at_a_time_and_many_per_feed() -> None:
    data = b"".join(encode_message(m) for m in MESSAGES)
    decoder = FrameDecoder()
    out = []
    for i in range(len(data)):
        out += decoder.feed(data[i : i + 1])
    assert out == MESSAGES and decoder.pending == 0
    assert FrameDecoder().feed(data) == MESSAGES


def test_partial_frame_waits_for_the_rest() -> None:
    data = encode_message(MESSAGES[4])
    decoder = FrameDecoder()
    assert decoder.feed(data[:10]) == [] and decoder.pending == 10
    assert decoder.feed(data[10:]) == [MESSAGES[4]]


def test_non_ascii_text_survives() -> None:
    msg = Nack("1", "n", "spec.hosts[0]: ünïcode ✓")
    assert FrameDecoder().feed(encode_message(msg)) == [msg]


@pytest.mark.parametrize("data, error", [
    (struct.pack(">I", MAX_FRAME + 1), "frame of 16777217 bytes is over the 16777216-byte limit"),
    (frame(b"{not json"), "frame is not JSON"),
    (frame(b"\xff\xfe"), "frame is not UTF-8"),
    (frame([1, 2]), "frame is not a JSON object"),
    (frame({"type": "ack", "version": "1", "nonce": "n"}), 'message has no protocol version ("v")'),
    (frame({"v": 2, "type": "ack"}), "unsupported protocol version 2 (this side speaks 1)"),
    (frame({"v": 1, "type": "subscribe"}), "unknown message type 'subscribe'"),
    (frame({"v": 1}), "unknown message type None"),
])
def test_unreadable_frames_are_wire_errors(data, error) -> None:
    with pytest.raises(WireError) as info:
        FrameDecoder().feed(data)
    assert str(info.value).startswith(error)


def test_oversize_is_rejected_from_the_length_alone() -> None:
    with pytest.raises(WireError):
        FrameDecoder(max_frame=100).feed(struct.pack(">I", 101) + b"x")


def test_bad_content_is_an_invalid_message_that_can_be_nacked() -> None:
    body = {"v": 1, "type": "snapshot", "version": "5", "nonce": "n5",
            "config": {"service_entries": [{"metadata": {"name": "a"}, "hosts": "a"}]}}
    decoder = FrameDecoder()
    out = decoder.feed(frame(body) + encode_message(Ack("1", "x")))
    assert out == [
        InvalidMessage("snapshot", "5", "n5", "snapshot: config.service_entries[0].hosts: expected array, got string"),
        Ack("1", "x"),
    ]


def test_unknown_field_in_a_message_is_invalid() -> None:
    [msg] = FrameDecoder().feed(frame({"v": 1, "type": "ack", "version": "1", "nonce": "n", "extra": 1}))
    assert msg == InvalidMessage("ack", "1", "n", "ack: extra: unknown field for Ack")


def test_encoding_over_the_limit_is_refused(monkeypatch) -> None:
    import pymesh.api.wire as wire

    monkeypatch.setattr(wire, "MAX_FRAME", 50)
    with pytest.raises(WireError, match="over the 50-byte frame limit"):
        encode_message(SnapshotMessage("1", "n", CONFIG))


def test_preencoded_fields_give_the_same_message() -> None:
    from pymesh.api.wire import encode_json

    for msg, name in ((MESSAGES[4], "config"), (MESSAGES[5], "workload_entries")):
        data = encode_message(msg, {name: encode_json(getattr(msg, name))})
        assert FrameDecoder().feed(data) == [msg]
        assert json.loads(data[4:]) == json.loads(encode_message(msg)[4:])
