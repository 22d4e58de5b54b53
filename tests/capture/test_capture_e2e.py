"""Capture end to end: real connections between two pods, one of them with pymesh's rules.

Pod "app" (198.18.0.1) gets the default rules and a probe standing in for the proxy (uid 1337) on
the capture ports 15001 and 15006, on the proxy port 15021, and for the app on 8080. Pod "peer"
(198.18.0.2) has no rules and a probe on port 80. Each probe answers with the port the
connection reached and its original destination (SO_ORIGINAL_DST), so a reply says where the
connection was sent and where the client meant it to go.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from netns import TestBed, unavailable_reason
from pymesh.capture.apply import apply
from pymesh.capture.settings import CaptureSettings

PROBE = Path(__file__).with_name("capture_probe.py")
PROXY_UID = 1337
APP_UID = 1000


@pytest.fixture(scope="module")
def pods():
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with TestBed() as bed:
        app, peer = bed.add_pod("app"), bed.add_pod("peer")
        apply(CaptureSettings(proxy_uid=PROXY_UID, proxy_gid=PROXY_UID), netns=app.netns)
        app.spawn(sys.executable, "-u", PROBE, "serve", 15001, 15006, 15021, 8080, uid=PROXY_UID).wait_for_line("ready")
        peer.spawn(sys.executable, "-u", PROBE, "serve", 80).wait_for_line("ready")
        yield bed


CASES = [
    # (case, from pod, to (pod name or address), port, as uid, reply)
    ("app-outbound-goes-to-15001", "app", "peer", 80, APP_UID, "port=15001 orig=198.18.0.2:80"),
    ("root-outbound-goes-to-15001", "app", "peer", 80, None, "port=15001 orig=198.18.0.2:80"),
    ("proxy-outbound-is-not-captured", "app", "peer", 80, PROXY_UID, "port=80 orig=198.18.0.2:80"),
    ("inbound-goes-to-15006", "peer", "app", 8080, None, "port=15006 orig=198.18.0.1:8080"),
    ("inbound-to-a-proxy-port-is-not-captured", "peer", "app", 15021, None, "port=15021 orig=198.18.0.1:15021"),
    ("proxy-to-own-pod-address-goes-inbound", "app", "app", 8080, PROXY_UID, "port=15006 orig=198.18.0.1:8080"),
    ("app-to-own-pod-address-is-direct", "app", "app", 8080, APP_UID, "port=8080 orig=198.18.0.1:8080"),
    ("app-to-localhost-is-direct", "app", "127.0.0.1", 8080, APP_UID, "port=8080 orig=127.0.0.1:8080"),
]


@pytest.mark.parametrize("source, target, port, uid, reply", [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_where_a_connection_lands(pods, source, target, port, uid, reply):
    address = pods.pods[target].ip if target in pods.pods else target
    result = pods[source].run(sys.executable, PROBE, "call", address, port, uid=uid)
    assert result.stdout.strip() == reply
