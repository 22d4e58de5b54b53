"""The pure parts of the control server's defences, table-driven: hello node validation, escaping
of client text, the connection gate, the registry's cap, NACK error truncation and the decoder's
smaller first-frame limit."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from pymesh.api.wire import MAX_ERROR, FrameDecoder, Hello, Nack, Node, WireError, encode_message
from pymesh.control.admission import check_node
from pymesh.control.bounds import ConnectionLimits, Gate
from pymesh.control.escape import visible
from pymesh.control.registry import Registry
from pymesh.control.status import format_status

GOOD = Node(id="reviews-v1-7f3a.default", workload="reviews-v1", namespace="default", service_account="bookinfo-reviews",
            labels={"app": "reviews", "version": "v1", "security.istio.io/tlsMode": "istio"},
            addresses=("10.1.0.1", "fd00::1"), ports={"http": 9080, "grpc-admin": 15000})


NAME_RULE = "(letters, digits, '.', '_', ':', '~' and '-', at most 253)"


@pytest.mark.parametrize("change, problem", [
    ({}, None),
    ({"id": "sidecar:10.1.0.1:reviews_v1.default"}, None),
    ({"labels": {"app": ""}}, None),
    ({"id": ""}, "node.id must not be empty"),
    ({"id": "sidecar~10.1.0.1~reviews-v1-7f3a.default~default.svc.cluster.local"}, None),  # Istio's form
    ({"id": "evil\x1b[31m"}, f"node.id: 'evil\\x1b[31m' is not a valid name {NAME_RULE}"),
    ({"id": "a\nb"}, f"node.id: 'a\\nb' is not a valid name {NAME_RULE}"),
    ({"id": "a/b"}, f"node.id: 'a/b' is not a valid name {NAME_RULE}"),
    ({"id": "x" * 254}, f"node.id: {'x' * 64!r}... (190 more characters) is not a valid name {NAME_RULE}"),
    ({"workload": "rev iews"}, f"node.workload: 'rev iews' is not a valid name {NAME_RULE}"),
    ({"namespace": "Payments"}, "node.namespace: 'Payments' is not a valid name (lower-case letters, digits and '-', "
                                "at most 63)"),
    ({"namespace": "n" * 1000}, f"node.namespace: {'n' * 64!r}... (936 more characters) is not a valid name"),
    ({"service_account": "sa/../x"}, "node.service_account: 'sa/../x' is not a valid name (lower-case DNS name: "
                                     "letters, digits, '-' and '.')"),
    ({"labels": {f"k{i}": "v" for i in range(65)}}, "node.labels: 65 labels, more than 64"),
    ({"labels": {"app\n": "x"}}, "node.labels['app\\n']: label key 'app\\n' is invalid (letters, digits, '-', '_' and "
                                 "'.', at most 63)"),
    ({"labels": {"app": "a" * 64}}, "node.labels['app']: label value is longer than 63 characters"),
    ({"labels": {"k" * 400: "v"}}, f"node.labels[{'k' * 64!r}... (336 more characters)]: label key is longer than "
                                   "317 characters"),
    ({"addresses": ("10.0.0.1",) * 17}, "node.addresses: 17 addresses, more than 16"),
    ({"addresses": ("reviews.example",)}, "node.addresses[0]: 'reviews.example' is not an IP address"),
    ({"ports": {"http": 0}}, "node.ports[http]: 0 is not a port number (1 to 65535)"),
    ({"ports": {"http": 70000}}, "node.ports[http]: 70000 is not a port number (1 to 65535)"),
    ({"ports": {"ht tp": 80}}, "node.ports: 'ht tp' is not a valid port name"),
    ({"ports": {f"p{i}": 80 for i in range(65)}}, "node.ports: 65 ports, more than 64"),
    ({"kind": "router"}, None),  # `pymesh gateway`
    ({"kind": "waypoint\n"}, "node.kind: 'waypoint\\n' is not sidecar or router"),
    ({"stats_address": "127.0.0.1:15090"}, None),
    ({"stats_address": "0.0.0.0:15090"}, None),
    ({"stats_address": "10.1.0.1:15090"}, None),  # one of its addresses
    ({"stats_address": "[fd00::1]:15090"}, None),
    ({"stats_address": "10.9.9.9:15090"}, "node.stats_address: 10.9.9.9 is neither loopback nor one of node.addresses"),
    ({"stats_address": "127.0.0.1:0"}, "node.stats_address: '127.0.0.1:0' is not IP:port"),
    ({"stats_address": "metadata.internal:80"}, "node.stats_address: 'metadata.internal:80' is not IP:port"),
    ({"stats_address": "127.0.0.1"}, "node.stats_address: '127.0.0.1' is not IP:port"),
    ({"stats_address": "127.0.0.1:²"}, "node.stats_address: '127.0.0.1:²' is not IP:port"),  # int() raised
    ({"stats_address": "127.0.0.1:١٥٠٩٠"}, "node.stats_address: '127.0.0.1:١٥٠٩٠' is not IP:port"),
])
def test_check_node(change, problem) -> None:
    assert check_node(replace(GOOD, **change)) == problem


@pytest.mark.parametrize("text, shown", [
    ("reviews-v1.default", "reviews-v1.default"),
    ("naïve 日本", "naïve 日本"),
    ("\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred"),
    ("row\nfake-row   default", "row\\nfake-row   default"),
    ("a\rb\tc", "a\\rb\\tc"),
    ("back\\slash", "back\\\\slash"),
    ("\x9b31m", "\\x9b31m"),  # the C1 CSI
    ("user\u202egnp.exe", "user\\u202egnp.exe"),  # right-to-left override
    ("zero\u200bwidth", "zero\\u200bwidth"),
    ("line\u2028sep", "line\\u2028sep"),
    ("nb\u00a0space", "nb\\xa0space"),
    ("\U000e0041tag", "\\U000e0041tag"),
])
def test_visible(text, shown) -> None:
    assert visible(text) == shown


def test_visible_cuts_long_text_and_says_so() -> None:
    assert visible("x" * 30, 10) == "xxxxxxxxxx... (20 more characters)"


def test_status_table_cannot_be_forged() -> None:
    status = {"version": "7\x1b[2J", "proxies": [
        {"id": "evil\x1b[2K\rreviews-v1.default", "namespace": "default\n", "addresses": ["10.0.0.1\u202e"],
         "connected": True, "pushed_version": "7", "acked_version": "7", "state": "NACKED",
         "error": "boom\nratings-v1.default   default   10.0.0.9   7   7   SYNCED"},
    ], "rejected": [{"file": "x\x1b.yaml", "errors": ["x.yaml:3 bad\nFAKE"]}]}
    out = format_status(status)
    assert "\x1b" not in out and "\r" not in out and "\u202e" not in out
    assert out.splitlines() == [
        "config version 7\\x1b[2J, 1 proxies",
        "NAME                              NAMESPACE   ADDRESS          PUSHED   ACKED   STATE",
        "evil\\x1b[2K\\rreviews-v1.default   default\\n   10.0.0.1\\u202e   7        7       "
        "NACKED: boom\\nratings-v1.default   default   10.0.0.9   7   7   SYNCED",
        "",
        "REJECTED FILES (their last good version stays in force):",
        "  x\\x1b.yaml",
        "    x.yaml:3 bad\\nFAKE",
    ]


def test_gate_caps_total_and_per_source_and_releases() -> None:
    counted = []
    gate = Gate(ConnectionLimits(max_connections=3, max_connections_per_source=2), counted.append)
    assert [gate.admit("10.0.0.1"), gate.admit("10.0.0.1")] == [None, None]
    assert gate.admit("10.0.0.1") == "too many connections from 10.0.0.1 (the limit is 2)"
    assert gate.admit("10.0.0.2") is None
    assert gate.admit("10.0.0.3") == "too many connections (the limit is 3)"
    assert counted == ["too_many_from_source", "too_many_connections"]
    gate.release("10.0.0.1")
    assert (gate.total, gate.from_source("10.0.0.1")) == (2, 1)
    assert gate.admit("10.0.0.3") is None
    for source in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        gate.release(source)
    assert (gate.total, gate.from_source("10.0.0.1")) == (0, 0)


def test_registry_makes_room_by_letting_the_first_due_disconnected_proxy_go() -> None:
    async def body():
        expired = []
        registry = Registry(60.0, on_change=lambda: None, on_expire=expired.append, max_nodes=2)
        a, b, c = (Node(id=name) for name in "abc")
        registry.connect(a)
        registry.connect(b)
        assert not registry.has_room("c")  # both connected: nothing to let go
        assert registry.has_room("a")  # a known id always has room
        registry.disconnect("a")
        registry.disconnect("b")
        assert registry.has_room("c")
        registry.connect(c)
        assert [n.id for n in registry.nodes()] == ["b", "c"] and expired == ["a"]
        registry.restore([Node(id=f"r{i}") for i in range(5)])  # saved state never overfills it
        assert len(registry.nodes()) == 2
        registry.close()

    asyncio.run(body())


def test_nack_errors_are_cut() -> None:
    long = Nack("1", "n", "e" * (MAX_ERROR + 10))
    assert long.error == "e" * MAX_ERROR + "... (10 more characters)"
    assert Nack("1", "n", "short").error == "short"


def test_the_first_frame_may_have_its_own_smaller_limit() -> None:
    hello = encode_message(Hello(GOOD))
    decoder = FrameDecoder(1000, max_first=len(hello) - 4)
    assert decoder.feed(hello)[0] == Hello(GOOD) and decoder.decoded == 1
    decoder.feed(b"\x00\x00\x03\xe8")  # 1000 bytes: fine after the first
    with pytest.raises(WireError, match="frame of 3000 bytes is over the 1000-byte limit"):
        FrameDecoder(1000).feed(b"\x00\x00\x0b\xb8")
    with pytest.raises(WireError, match=f"frame of {len(hello) - 4} bytes is over the 10-byte limit"):
        FrameDecoder(1000, max_first=10).feed(hello)


def test_log_throttle_allows_one_line_per_kind_a_second_and_counts_the_rest() -> None:
    from pymesh.control.bounds import LogThrottle

    throttle = LogThrottle(1.0)
    assert [throttle.allow("a", t) for t in (0.0, 0.1, 0.5)] == [0, None, None]
    assert throttle.allow("b", 0.5) == 0  # kinds are apart
    assert throttle.allow("a", 1.0) == 2  # two were left out
    assert throttle.allow("a", 2.5) == 0
