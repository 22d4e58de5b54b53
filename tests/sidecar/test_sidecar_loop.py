"""No capture loop: the connections the proxy itself opens are let out, not captured again.

The client pod's app calls a virtual address that only the mesh knows (reviews' VIP); its proxy
routes the call to pod c. The init step exempts the proxy's uid (1337), so the proxy's connection
to c leaves through the `-m owner --uid-owner 1337 -j RETURN` rule. The nat table sees only a
connection's first packet, so its rule counters are connection counts: one app call must be one
connection redirected to the proxy and one connection the proxy sent out.

The control test gives the init step the wrong uid: then the proxy's own connection is redirected
to itself, again and again (bounded by the proxy's open-file limit), which the same counters show.
"""

from __future__ import annotations

import json

from sidecar_helpers import (APP_UID, CURL_MAX_TIME, HTTP_PORT, PROXY_UID, app_curl, mesh_yaml, nat_connections,
                             requires_tools, sidecar_pod, start_app, wait_until, write_config)

pytestmark = requires_tools

VIP = "198.18.0.200"  # reviews' virtual address: no pod has it, only the mesh configuration
WRONG_UID = 4242
CAPTURED = "PYMESH_OUTPUT -j PYMESH_REDIRECT"  # the last rule: everything not exempted goes to 15001
OUTBOUND_LISTENER_CONNECTIONS = f"listener.outbound|0.0.0.0|{HTTP_PORT}.downstream_cx_total"


def let_out(uid: int) -> str:
    """The rule that lets a uid's connections out uncaptured."""
    return f"PYMESH_OUTPUT -m owner --uid-owner {uid} -j RETURN"


def client_calling_v2(testbed, tmp_path, init_uid: int):
    """Pods "client" and "c" (reviews v2), meshed; the client's init step exempts `init_uid`."""
    bed = testbed("client", "c")
    client, c = bed["client"], bed["c"]
    config = write_config(tmp_path, mesh_yaml(server_ip=VIP, v1_ip=c.ip, v2_ip=c.ip))
    sidecar = sidecar_pod(client, config, "client", {"app": "client"}, proxy_uid=init_uid, proxy_gid=init_uid)
    sidecar_pod(c, config, "reviews-v2", {"app": "reviews", "version": "v2"})
    start_app(c, "http", "v2", HTTP_PORT)
    return client, sidecar


def test_the_proxys_own_upstream_connection_is_not_captured_again(testbed, tmp_path):
    client, sidecar = client_calling_v2(testbed, tmp_path, init_uid=PROXY_UID)

    call = app_curl(client, f"http://{VIP}:{HTTP_PORT}/", check=False)

    connections = nat_connections(client)
    assert connections[CAPTURED] == 1, connections  # the app's call, and nothing else
    assert connections[let_out(PROXY_UID)] == 1, connections  # the proxy's call to c, let out
    assert sidecar.stats()[OUTBOUND_LISTENER_CONNECTIONS] == 1  # accepted once, not again
    assert call.returncode == 0 and json.loads(call.stdout)["server"] == "v2", call


def test_control_without_the_uid_exemption_the_proxy_captures_itself(testbed, tmp_path):
    """What the test above guards against: with the wrong uid exempted, the proxy's call to c is
    redirected to the proxy, which calls c again, which is redirected... one app call, many
    captured connections. The loop is cut short by the proxy's open-file limit and teardown."""
    client, _ = client_calling_v2(testbed, tmp_path, init_uid=WRONG_UID)

    client.spawn("curl", "-sS", "--max-time", CURL_MAX_TIME, f"http://{VIP}:{HTTP_PORT}/", uid=APP_UID)

    wait_until(lambda: nat_connections(client)[CAPTURED] > 3, what="the proxy's own connections to be captured")
    assert nat_connections(client)[let_out(WRONG_UID)] == 0
