"""Sidecar outboundTrafficPolicy.egressProxy with real capture: what the client's proxy would
pass through under ALLOW_ANY goes to the egress proxy instead (Istio's catch-all route and
filter chain pointing at the egressProxy cluster). The "egress" pod's HTTP server answers with
its name, so each answer says where the connection really went:

- HTTP for a host no route serves, on a declared HTTP port (the catch-all route);
- bytes to a port no service has (the virtualOutbound catch-all chain, proxied as TCP: here an
  HTTP request written by hand, so the same server can answer);
- a declared service still goes to its own endpoints.
"""

from __future__ import annotations

import json
import sys

from sidecar_helpers import (APP_UID, HTTP_PORT, NAMESPACE, UNDECLARED_PORT, app_curl, get_json,
                             kubernetes_service, mesh_yaml, requires_tools, sidecar_pod, start_app, write_config)

pytestmark = requires_tools

EGRESS_PORT = 3128
EGRESS_HOST = "egress-proxy.istio-system.svc.cluster.local"

# An HTTP/1.1 request written on a plain TCP connection by the app: the reply's JSON body.
RAW_GET = """
import json, socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as sock:
    sock.sendall(b"GET /raw HTTP/1.1\\r\\nHost: somewhere.example\\r\\nConnection: close\\r\\n\\r\\n")
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
print(data.partition(b"\\r\\n\\r\\n")[2].decode())
"""


def egress_proxy_yaml(egress_ip: str) -> str:
    return kubernetes_service("egress-proxy", "istio-system", f"{{number: {EGRESS_PORT}, name: http, protocol: HTTP}}",
                              egress_ip) + f"""---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: client, namespace: {NAMESPACE}}}
spec:
  workloadSelector: {{labels: {{app: client}}}}
  outboundTrafficPolicy:
    mode: ALLOW_ANY
    egressProxy:
      host: {EGRESS_HOST}
      port: {{number: {EGRESS_PORT}}}
"""


def test_unknown_destinations_go_to_the_egress_proxy(testbed, tmp_path):
    bed = testbed("client", "b", "egress")
    client, b, egress = bed["client"], bed["b"], bed["egress"]
    config = write_config(tmp_path, mesh_yaml(server_ip=b.ip, v1_ip=b.ip, v2_ip=b.ip) + egress_proxy_yaml(egress.ip))
    sidecar = sidecar_pod(client, config, "client", {"app": "client"})
    start_app(b, "http", "v2", HTTP_PORT)
    start_app(b, "http", "undeclared", UNDECLARED_PORT)
    start_app(egress, "http", "egress", EGRESS_PORT)

    assert get_json(client, f"http://{b.ip}:{HTTP_PORT}/")["server"] == "v2"  # a declared service

    unknown_host = json.loads(app_curl(client, f"http://{b.ip}:{HTTP_PORT}/", "-H", "Host: unknown.example.com").stdout)
    assert unknown_host["server"] == "egress", unknown_host
    assert unknown_host["headers"]["host"] == "unknown.example.com"  # the egress proxy can route on it

    raw = client.run(sys.executable, "-c", RAW_GET, b.ip, UNDECLARED_PORT, uid=APP_UID)
    assert json.loads(raw.stdout)["server"] == "egress", (raw.stdout, sidecar.process.output()[-3000:])

    # Past the proxy the undeclared server is there: it was the policy that sent the bytes elsewhere.
    direct = b.run(sys.executable, "-c", RAW_GET, "127.0.0.1", UNDECLARED_PORT, uid=APP_UID)
    assert json.loads(direct.stdout)["server"] == "undeclared"
    stats = sidecar.stats()
    assert stats[f"cluster.outbound|{EGRESS_PORT}||{EGRESS_HOST}.upstream_rq_2xx"] == 1  # the HTTP request
    assert stats[f"cluster.outbound|{EGRESS_PORT}||{EGRESS_HOST}.upstream_cx_total"] == 2  # its connection, the TCP one
