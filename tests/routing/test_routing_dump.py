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
