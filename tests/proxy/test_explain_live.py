"""`pymesh explain --admin` against a running proxy: it compiles the proxy's own /mesh_config view
and reads /clusters, and what it predicts is what the proxy then does (curl as the client)."""

from __future__ import annotations

import json
import subprocess

import pytest

from proxy_harness import Reply, curl, free_port, pymesh_command
from tests.routing.explain_mesh import mesh_yaml, sidecar_yaml

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def live(upstreams, proxies):
    """A proxy in front of reviews v1 (200) and v2 (always 503, ejected after one), ratings."""
    v1, ratings = upstreams("v1"), upstreams("ratings")
    v2 = upstreams("v2", lambda req: Reply(503, body=b"v2 down"))
    port = free_port()
    proxy = proxies(mesh_yaml({"v1": v1.port, "v2": v2.port}, ratings.port, port, eject_on_5xx=True)
                    + "---" + sidecar_yaml(port))
    proxy.port, proxy.v1, proxy.v2 = port, v1, v2
    return proxy


def explain_answer(proxy, *args: str) -> dict:
    done = subprocess.run(pymesh_command() + ["explain", "--admin", f"127.0.0.1:{proxy.admin_port}", "--json", *args],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def explain(proxy, *args: str) -> dict:
    return explain_answer(proxy, *args)["explanation"]


def test_matched_route_then_the_proxy_does_it(live):
    e = explain(live, f"http://reviews:{live.port}/reviews/1")
    assert e["route"]["name"] == "default" and e["route"]["virtual_service"] == "default/reviews"
    assert [m["name"] for m in e["misses"]] == ["jason", "canary"]
    assert [d["percent"] for d in e["destinations"]] == [90.0, 10.0]
    assert e["destinations"][0]["endpoints"] == [{"address": f"127.0.0.1:{live.v1.port}", "health": "healthy",
                                                  "labels": {"version": "v1"}, "locality": "", "weight": 1}]


def test_no_route_then_the_proxy_answers_404_nr(live):
    e = explain(live, f"http://reviwes:{live.port}/")
    assert (e["outcome"]["status"], e["outcome"]["flag"]) == (404, "NR")
    assert e["closest_hosts"][0] == f"reviews:{live.port}"
    assert curl(live.port, "/", host=f"reviwes:{live.port}").status == 404


def test_ejected_endpoint_is_uh_after_the_proxy_ejects_it(live):
    url_args = ("-H", "end-user: jason", f"http://reviews:{live.port}/")
    assert explain(live, *url_args)["outcome"]["reason"].startswith("forwarded to outbound")
    assert curl(live.port, "/", "-H", "end-user: jason", host=f"reviews:{live.port}").status == 503
    e = explain(live, *url_args)
    assert (e["outcome"]["status"], e["outcome"]["flag"]) == (503, "UH")
    assert e["destinations"][0]["endpoints"][0]["health"] == "outlier-ejected"


def test_mesh_config_view_redacts_header_values(upstreams, proxies):
    port = free_port()
    app = upstreams("app")
    vs = """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: secretive, namespace: default}
spec:
  hosts: [secretive.example.com]
  http:
  - headers:
      request:
        set: {authorization: "Bearer very-secret"}
    route: [{destination: {host: ratings}}]
"""
    proxy = proxies(mesh_yaml({"v1": app.port}, app.port, port) + vs + "---" + sidecar_yaml(port))
    status, _, body = proxy.admin("/mesh_config")
    assert status == 200 and b"very-secret" not in body and b"[redacted]" in body
    e = explain(proxy, f"http://secretive.example.com:{port}/")
    assert e["route"]["virtual_service"] == "default/secretive"


def test_request_id_is_looked_up_in_the_proxys_recent_access_log(live):
    assert curl(live.port, "/x", "-H", "x-request-id: explain-me-1", "-H", "end-user: jason",
                host=f"reviews:{live.port}").status == 503
    answer = explain_answer(live, "--request-id", "explain-me-1")
    assert answer["log"]["status"] == 503 and answer["log"]["request_id"] == "explain-me-1"
    assert answer["log"]["upstream_cluster"] == f"outbound|{live.port}|v2|reviews.default.svc.cluster.local"
    # the log has no headers: without them the request falls to the default route, and explain says so
    assert any("the log records route 'jason', explain matched 'default'" in n for n in answer["explanation"]["notes"])
    # with them, the request it records, explained against the proxy's configuration now: v2 is ejected
    with_headers = explain_answer(live, "--request-id", "explain-me-1", "-H", "end-user: jason")
    assert with_headers["explanation"]["outcome"]["flag"] == "UH"
    missing = subprocess.run(pymesh_command() + ["explain", "--admin", f"127.0.0.1:{live.admin_port}",
                                                 "--request-id", "never-sent"], capture_output=True, text=True, timeout=30)
    assert missing.returncode == 2 and "'never-sent' is not among the proxy's 512 most recent records" in missing.stderr


def test_a_running_gateway_explains_its_gateway_bound_route(upstreams, proxies):
    v1, v2 = upstreams("v1"), upstreams("v2")
    service_port, gateway_port = free_port(), free_port()
    gateway = proxies(mesh_yaml({"v1": v1.port, "v2": v2.port}, v1.port, service_port, gateway_port=gateway_port),
                      subcommand="gateway")
    e = explain(gateway, f"http://bookinfo.example.com:{gateway_port}/productpage")
    assert e["proxy"]["kind"] == "router" and e["listener"]["direction"] == "gateway"
    assert e["route"]["virtual_service"] == "default/bookinfo"
    assert curl(gateway_port, "/productpage", host="bookinfo.example.com").status == 200
    miss = explain(gateway, f"http://bookinfo.example.com:{gateway_port}/login")
    assert (miss["outcome"]["status"], miss["outcome"]["flag"]) == (404, "NR")
    assert miss["misses"][0]["reasons"] == ["match[0]: path '/login' does not match uri exact '/productpage'"]
    assert curl(gateway_port, "/login", host="bookinfo.example.com").status == 404
