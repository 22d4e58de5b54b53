"""The /config_dump view is plain JSON and shows what the proxy will do."""

from __future__ import annotations

import json

from pymesh.api import model as m
from pymesh.routing.dump import dump_snapshot, plain
from routing_helpers import compile_, dest, ep, http, meta, se, vs


def test_dump_is_json_and_complete():
    ing = m.IngressListener(port=m.ServicePort(9080, "HTTP", "http"), default_endpoint="127.0.0.1:8080")
    sc = m.Sidecar(meta("sc"), ingress=(ing,), egress=(m.EgressListener(hosts=("*/*",), port=m.ServicePort(5432, "TCP", "pg")), m.EgressListener(hosts=("./*",))))
    match = m.HTTPMatchRequest(uri=m.StringMatch("regex", "/a.*"), headers={"x": m.StringMatch("exact", "1")})
    snap = compile_(
        [se("reviews.default.svc.cluster.local", endpoints=[ep("10.0.0.1", version="v1")]), se("db.example.com", m.ServicePort(5432, "TCP", "pg"))],
        [vs("r", "reviews", http(dest("reviews", "v9"), match=[match], name="r1", retries=m.HTTPRetry(2, 0.5, ("5xx",))))],
        sidecars=[sc],
    )
    out = json.loads(json.dumps(dump_snapshot(snap)))
    assert out == json.loads(json.dumps(snap.dump()))
    assert out["version"] == "v1" and out["identity"]["workload"] == "me"
    names = [l["name"] for l in out["listeners"]]
    assert names == ["egress|127.0.0.1|5432", "ingress|0.0.0.0|9080", "outbound|0.0.0.0|9080"]
    assert out["captured_outbound"] == {"5432": "egress|127.0.0.1|5432", "9080": "outbound|0.0.0.0|9080"}
    (vh,) = out["listeners"][2]["route_table"]["virtual_hosts"]
    (route,) = vh["routes"]
    assert route["name"] == "r1" and route["match"][0]["uri"] == {"kind": "regex", "value": "/a.*"}
    assert route["clusters"][0]["cluster"] == "outbound|9080|v9|reviews.default.svc.cluster.local"
    assert out["listeners"][0]["tcp_route"]["clusters"][0]["cluster"] == "outbound|5432||db.example.com"
    assert [c["name"] for c in out["clusters"]] == sorted(snap.clusters)
    assert out["warnings"] and "v9" in out["warnings"][0]


def test_plain_handles_unknown_objects():
    assert plain({1: (object,)})["1"][0].startswith("<class")


# --- secrets are redacted unless asked for --------------------------------------------------------

import dataclasses  # noqa: E402

import pytest  # noqa: E402

from pymesh.routing.dump import REDACTED, secret_field  # noqa: E402


@pytest.mark.parametrize("name, secret", [
    ("privateKey", True), ("private_key", True), ("key_pem", True), ("private_key_pem", True),
    ("X-API-Key", True), ("apiKey", True), ("password", True), ("client_secret", True), ("bearerToken", True),
    ("token", True), ("id-token", True), ("passphrase", True),
    ("max_tokens", False), ("tokens_per_fill", False), ("credentialName", False), ("secret_name", False),
    ("cert_pem", False), ("caCertificates", False), ("key", False), ("hash_key", False), ("name", False),
])
def test_secret_field_names(name, secret):
    assert secret_field(name) is secret


def test_header_values_set_by_a_virtual_service_are_redacted_unless_asked_for():
    headers = m.Headers(request=m.HeaderOperations(set={"authorization": "Bearer s3cr3t"}, add={"x-api": "k3y"},
                                                   remove=("cookie",)),
                        response=m.HeaderOperations(set={"x-served-by": "node-7f3a"}))
    route = http(dataclasses.replace(dest("reviews", "v1"), headers=headers), name="r1", headers=headers)
    snap = compile_([se("reviews.default.svc.cluster.local", endpoints=[ep("10.0.0.1", version="v1")])],
                    [vs("r", "reviews", route)])
    text = json.dumps(dump_snapshot(snap))
    assert "s3cr3t" not in text and "k3y" not in text and "node-7f3a" not in text
    assert '"authorization"' in text and '"x-api"' in text and '"cookie"' in text  # what is done stays visible
    assert REDACTED in text
    shown = json.dumps(dump_snapshot(snap, include_secrets=True))
    assert "Bearer s3cr3t" in shown and "k3y" in shown


@dataclasses.dataclass(frozen=True)
class _FutureTls:  # a field another part may add later: covered by the rule, not by a list
    mode: str
    private_key: str
    key_pem: bytes
    ca_certificates: str


def test_fields_added_later_are_redacted_by_name():
    tls = _FutureTls("MUTUAL", "/etc/certs/key.pem", b"-----BEGIN PRIVATE KEY-----", "/etc/certs/root.pem")
    assert plain({"tls": tls}, redact=True) == {"tls": {"mode": "MUTUAL", "private_key": REDACTED,
                                                        "key_pem": REDACTED, "ca_certificates": "/etc/certs/root.pem"}}
    assert plain({"tls": tls})["tls"]["private_key"] == "/etc/certs/key.pem"
