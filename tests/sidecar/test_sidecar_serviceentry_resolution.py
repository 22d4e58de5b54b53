"""ServiceEntry resolution and unset protocols, end to end through a capturing sidecar, as Istio
documents them:

- a port without a protocol is sniffed per connection: HTTP is routed by the VirtualService's
  http route (which adds a header), anything else (a server-first banner) by its tcp route
  (which sends it to c);
- resolution NONE (the default) sends each connection where the app sent it (Envoy's
  ORIGINAL_DST cluster): the app's own destination answers;
- resolution DYNAMIC_DNS resolves the request's own host: the app connects to c's address with
  `Host: api.dyn.test`, which the client pod's resolver maps to b, and b answers.

Pods: client 198.18.0.1 (the proxy); b and c run HTTP and banner servers naming themselves.
"""

from __future__ import annotations

import json

from sidecar_helpers import NAMESPACE, app_curl, call_banner, requires_tools, sidecar_pod, start_app, write_config

pytestmark = requires_tools

SNIFFED_HTTP, SNIFFED_TCP, DYNAMIC = 8080, 9000, 8081


def config(b_ip: str, c_ip: str) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: external, namespace: {NAMESPACE}}}
spec:
  hosts: [external.example.com]
  addresses: [{b_ip}]
  ports:
  - {{number: {SNIFFED_HTTP}, name: web}}
  - {{number: {SNIFFED_TCP}, name: banner}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: external, namespace: {NAMESPACE}}}
spec:
  hosts: [external.example.com]
  http:
  - headers:
      request:
        set: {{x-sniffed: http}}
    route:
    - destination: {{host: external.example.com}}
  tcp:
  - route:
    - destination: {{host: banner-c.example.com}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: banner-c, namespace: {NAMESPACE}}}
spec:
  hosts: [banner-c.example.com]
  resolution: STATIC
  ports:
  - {{number: {SNIFFED_TCP}, name: banner, protocol: TCP}}
  endpoints:
  - {{address: {c_ip}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: dynamic, namespace: {NAMESPACE}}}
spec:
  hosts: ["*.dyn.test"]
  resolution: DYNAMIC_DNS
  ports:
  - {{number: {DYNAMIC}, name: http, protocol: HTTP}}
"""


def test_sniffed_ports_none_and_dynamic_dns(testbed, tmp_path):
    bed = testbed("client", "b", "c")
    client, b, c = bed["client"], bed["b"], bed["c"]
    client.set_hosts({"api.dyn.test": b.ip})
    sidecar_pod(client, write_config(tmp_path, config(b.ip, c.ip)), "client", {"app": "client"})
    for pod in (b, c):
        start_app(pod, "http", pod.name, SNIFFED_HTTP)
        start_app(pod, "http", pod.name, DYNAMIC)
    start_app(b, "banner", "b", "0.0.0.0", SNIFFED_TCP)
    start_app(c, "banner", "c", "0.0.0.0", SNIFFED_TCP)

    # sniffed as HTTP: the VirtualService applies; NONE: on to where the app was going (b)
    answer = json.loads(app_curl(client, f"http://{b.ip}:{SNIFFED_HTTP}/", "-H", "Host: external.example.com").stdout)
    assert (answer["server"], answer["headers"].get("x-sniffed")) == ("b", "http"), answer
    # sniffed as not HTTP (the server speaks first): the port's TCP route, which sends it to c
    assert call_banner(client, b.ip, SNIFFED_TCP, "ping") == {"banner": "HELLO from c\n", "echo": "ECHO ping\n"}

    # DYNAMIC_DNS: the request's host decides, not the address the app connected to
    answer = json.loads(app_curl(client, f"http://{c.ip}:{DYNAMIC}/", "-H", "Host: api.dyn.test").stdout)
    assert answer["server"] == "b", answer
    # a host of no ServiceEntry on that port is not resolved by the proxy: it passes through (ALLOW_ANY)
    answer = json.loads(app_curl(client, f"http://{c.ip}:{DYNAMIC}/", "-H", "Host: other.test").stdout)
    assert answer["server"] == "c", answer
