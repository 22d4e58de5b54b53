"""AuthorizationPolicy on captured inbound traffic, in the network-namespace test bed: a plain
client pod calls a meshed server pod by its address; the server's sidecar (inbound capture,
sniffing) decides. What only this bed shows: the destination port a policy sees is the one the
client dialled (the original destination of the redirected connection, not 15006), for HTTP and
for sniffed TCP alike, and `ipBlocks` see the client pod's real address."""

from __future__ import annotations

import sys

from sidecar_helpers import (APP_UID, APPS, HTTP_PORT, NAMESPACE, UNDECLARED_PORT, app_curl, mesh_yaml,
                             requires_tools, sidecar_pod, start_app, write_config)

pytestmark = requires_tools

QUICK = 3  # seconds


def policy(spec: str) -> str:
    return f"""\
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: policy, namespace: {NAMESPACE}}}
spec:
{spec}"""


def status(client, server, path: str) -> str:
    done = app_curl(client, f"http://{server.ip}:{HTTP_PORT}{path}", "-o", "/dev/null", "-w", "%{http_code}",
                    check=False, max_time=QUICK)
    return done.stdout


def banner_answers(client, server) -> bool:
    """The server-first TCP app on an undeclared port (sniffed, then proxied as TCP) answers."""
    done = client.run(sys.executable, APPS, "call-banner", server.ip, UNDECLARED_PORT, "ping", QUICK,
                      uid=APP_UID, check=False, timeout=QUICK + 5)
    return done.returncode == 0 and "HELLO from server" in done.stdout


def serve(testbed, tmp_path, spec: str):
    bed = testbed("client", "server")
    client, server = bed["client"], bed["server"]
    mesh = mesh_yaml(server_ip=server.ip, v1_ip=server.ip, v2_ip=server.ip)
    config = write_config(tmp_path, mesh + policy(spec.replace("{client}", client.ip)))
    sidecar = sidecar_pod(server, config, "reviews-v1", {"app": "reviews", "version": "v1"})
    start_app(server, "http", "v1", HTTP_PORT)
    start_app(server, "banner", "server", "127.0.0.1", UNDECLARED_PORT)
    return client, server, sidecar


def test_an_allow_by_path_denies_other_paths_and_all_tcp(testbed, tmp_path):
    client, server, sidecar = serve(testbed, tmp_path, """\
  selector: {matchLabels: {app: reviews}}
  rules:
  - to: [{operation: {paths: ["/allowed"], ports: ["%d"]}}]
""" % HTTP_PORT)
    assert status(client, server, "/allowed") == "200"
    assert status(client, server, "/other") == "403"
    assert not banner_answers(client, server)  # a rule with paths never matches TCP
    assert sidecar.stats().get("tcp.rbac.denied") == 1


def test_the_port_a_policy_sees_is_the_one_dialled(testbed, tmp_path):
    client, server, _ = serve(testbed, tmp_path, """\
  rules:
  - to: [{operation: {ports: ["%d"]}}]
""" % UNDECLARED_PORT)
    assert banner_answers(client, server)
    assert status(client, server, "/") == "403"


def test_ip_blocks_see_the_client_pod(testbed, tmp_path):
    client, server, _ = serve(testbed, tmp_path, """\
  action: DENY
  rules:
  - from: [{source: {ipBlocks: ["{client}/32"]}}]
""")
    assert status(client, server, "/") == "403"
    assert not banner_answers(client, server)
