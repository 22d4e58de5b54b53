"""Captured inbound traffic reaches the app where the app listens: 127.0.0.1 by default, the pod's
own address with `pymesh proxy --inbound-address <pod ip>`.

The server pod has the init step and its proxy; the client pod is plain (no mesh), so what is
tested is only the server side: inbound capture (15006), sniffing, and the proxy's connection to
the app. The app listens on one address only, so it is reached through the proxy or not at all.

When the app is on the pod's address, the proxy's connection to it goes over lo to a non-loopback
address as uid 1337, which the capture rules send to inbound capture again (that rule exists for
app -> VIP -> proxy -> this pod). Istio's answer, which pymesh's rules already expect, is that
the proxy sends such connections from 127.0.0.6 (`-A PYMESH_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN`).
"""

from __future__ import annotations

import json

import pytest

from sidecar_helpers import (HTTP_PORT, PROXY_UID, UNDECLARED_PORT, app_curl, call_banner, mesh_yaml,
                             nat_connections, requires_tools, sidecar_pod, start_app, write_config)

pytestmark = requires_tools

RECAPTURED = f"PYMESH_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --uid-owner {PROXY_UID} -j PYMESH_IN_REDIRECT"
QUICK = 3  # seconds: a working call takes milliseconds; a looping one never ends


@pytest.mark.parametrize("app_on", ["loopback", "pod-address"])
def test_captured_inbound_reaches_an_app_listening_only_on(testbed, tmp_path, app_on):
    bed = testbed("client", "server")
    client, server = bed["client"], bed["server"]
    config = write_config(tmp_path, mesh_yaml(server_ip=server.ip, v1_ip=server.ip, v2_ip=server.ip))
    address, extra = ("127.0.0.1", ()) if app_on == "loopback" else (server.ip, ("--inbound-address", server.ip))
    sidecar_pod(server, config, "reviews-v1", {"app": "reviews", "version": "v1"}, extra=extra)
    start_app(server, "http", "v1", HTTP_PORT, address)
    start_app(server, "banner", "server", address, UNDECLARED_PORT)

    http = app_curl(client, f"http://{server.ip}:{HTTP_PORT}/", check=False, max_time=QUICK)

    loops = nat_connections(server)[RECAPTURED]
    assert loops == 0, f"the proxy's connection to the app at {address} was captured again ({loops} times)"
    assert http.returncode == 0 and json.loads(http.stdout)["server"] == "v1", http
    reply = call_banner(client, server.ip, UNDECLARED_PORT, "ping", timeout=QUICK)  # TCP, after sniffing
    assert reply == {"banner": "HELLO from server\n", "echo": "ECHO ping\n"}
