"""TLS through a capturing sidecar, as in Istio's "Accessing External Services" task with HTTPS
ServiceEntries: an app (curl) calls https://a.example.com and https://b.example.com on port 443,
its proxy captures the connections, reads only the ClientHello and sends each by SNI to its own
server (on another port of another pod: the original destination is not where they end); the
app verifies each server's certificate itself. A name no ServiceEntry declares passes through to
where the app was going under ALLOW_ANY, and is closed under REGISTRY_ONLY."""

from __future__ import annotations

import json

import pytest

from sidecar_helpers import NAMESPACE, REGISTRY_ONLY, app_curl, requires_tools, sidecar_pod, start_app, write_config
from throwaway_ca import ThrowawayCA

pytestmark = requires_tools

NAMES = {"a.example.com": 8443, "b.example.com": 9443}  # server name -> the port its server listens on
DIRECT = "c.example.com"  # undeclared: the app's own destination, port 443


def https_entries(server_ip: str) -> str:
    return "".join(f"""
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name.split('.')[0]}, namespace: {NAMESPACE}}}
spec:
  hosts: [{name}]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports:
  - {{number: 443, name: https, protocol: HTTPS}}
  endpoints:
  - {{address: {server_ip}, ports: {{https: {port}}}}}
""" for name, port in NAMES.items())


@pytest.mark.parametrize("policy", ["ALLOW_ANY", "REGISTRY_ONLY"])
def test_captured_tls_is_routed_by_sni_and_verified_by_the_app(testbed, tmp_path, policy):
    bed = testbed("client", "ext")
    client, ext = bed["client"], bed["ext"]
    ca = ThrowawayCA(tmp_path / "pki")
    ca.ca_path.chmod(0o644)
    tmp_path.chmod(0o755)
    (tmp_path / "pki").chmod(0o755)
    for name, port in {**NAMES, DIRECT: 443}.items():
        cert = ca.issue(name.split(".")[0], name)
        start_app(ext, "https", name, "0.0.0.0", port, cert.cert, cert.key, uid=None)  # root: reads the 0600 key
    config = write_config(tmp_path, https_entries(ext.ip).lstrip("\n-") + (REGISTRY_ONLY if policy == "REGISTRY_ONLY" else ""))
    proxy = sidecar_pod(client, config, "client", {"app": "client"})

    def call(name: str):
        # the app dials ext:443 for every name; only c.example.com is really served there
        return app_curl(client, f"https://{name}/", "--cacert", str(ca.ca_path), "--resolve", f"{name}:443:{ext.ip}",
                        check=False)

    for name in NAMES:
        done = call(name)
        answer = json.loads(done.stdout)
        assert (answer["server"], answer["sni"]) == (name, name), done.stderr
    done = call(DIRECT)
    if policy == "ALLOW_ANY":  # Istio's PassthroughCluster: on to where the app was going
        answer = json.loads(done.stdout)
        assert (answer["server"], answer["sni"]) == (DIRECT, DIRECT), done.stderr
    else:  # BlackHoleCluster: closed before any byte reaches a server
        assert done.returncode != 0 and done.stdout == ""
    for name in NAMES:
        proxy.wait_for_metric("istio_tcp_connections_opened_total", destination_service=name)
