"""Sidecar.outboundTrafficPolicy REGISTRY_ONLY: captured traffic to a destination the mesh does
not know is refused at the client's proxy (Istio's BlackHoleCluster), while declared services
still work. Under the default ALLOW_ANY the same call passes through
(test_sidecar_mesh.test_server_first_tcp_works_through_both_proxies[undeclared-passthrough])."""

from __future__ import annotations

import sys

from sidecar_helpers import (APP_UID, HTTP_PORT, REGISTRY_ONLY, TCP_PORT, UNDECLARED_PORT, call_banner, get_json,
                             mesh_yaml, requires_tools, sidecar_pod, start_app, write_config)

pytestmark = requires_tools

# What the app sees of a TCP connection: the first bytes the other end sends, "" when it is
# closed without a word (the proxy refusing it), within a bounded wait.
FIRST_BYTES = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as sock:
    try:
        print(repr(sock.recv(64).decode()))
    except ConnectionResetError:
        print(repr(""))
"""


def test_unknown_destination_is_refused_and_known_ones_work(testbed, tmp_path):
    bed = testbed("client", "b")
    client, b = bed["client"], bed["b"]
    config = write_config(tmp_path, mesh_yaml(server_ip=b.ip, v1_ip=b.ip, v2_ip=b.ip) + REGISTRY_ONLY)
    sidecar_pod(client, config, "client", {"app": "client"})
    sidecar_pod(b, config, "reviews-v1", {"app": "reviews", "version": "v1"})
    start_app(b, "http", "v2", HTTP_PORT)
    start_app(b, "banner", "b", "0.0.0.0", TCP_PORT, UNDECLARED_PORT)

    assert get_json(client, f"http://{b.ip}:{HTTP_PORT}/")["server"] == "v2"  # declared HTTP service
    assert call_banner(client, b.ip, TCP_PORT, "ping")["echo"]  # declared TCP service

    refused = client.run(sys.executable, "-c", FIRST_BYTES, b.ip, UNDECLARED_PORT, uid=APP_UID)
    assert refused.stdout.strip() == "''", refused.stdout  # closed by the proxy: no banner
    # The same server answers when reached past the proxy: the refusal is the policy's.
    direct = b.run(sys.executable, "-c", FIRST_BYTES, "127.0.0.1", UNDECLARED_PORT, uid=APP_UID)
    assert direct.stdout.strip() != "''", direct.stdout
