"""The Gateway API's mesh (GAMMA) conformance manifests, routed by a real sidecar.

An HTTPRoute whose parentRef is the Service `echo` becomes a VirtualService bound to `mesh`
for echo.gateway-conformance-mesh.svc.cluster.local; the client pod's `pymesh proxy` applies
it, and curl, as the client app, sees what the conformance Go tests expect (cited per table).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from conformance_kit import client_sidecar, documents, gateway_api, loopback_with_port, running, service_entry, services
from proxy_harness import Proxy, Upstream, curl, dump_yaml

pytestmark = pytest.mark.timeout(120)
NS = "gateway-conformance-mesh"
ROUTES = ("mesh/httproute-redirect-path.yaml", "mesh/httproute-redirect-host-and-status.yaml",
          "mesh/httproute-redirect-port.yaml", "mesh/httproute-redirect-scheme.yaml")


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    """echo-v1 and echo-v2 pods as local servers, the client pod's sidecar with every route."""
    pods = {"echo-v1": Upstream("echo-v1"), "echo-v2": Upstream("echo-v2")}
    address = loopback_with_port(80)
    docs = documents("mesh/manifests.yaml", *ROUTES)
    pod_ports = [({"app": "echo", "version": name[-2:]}, {"http": s.port, "http-alt": s.port}) for name, s in pods.items()]
    config = [service_entry(svc, pod_ports) for svc in services(docs)] + gateway_api(docs)
    config.append(client_sidecar(NS, address, 80))
    proxy = Proxy(tmp_path_factory.mktemp("gamma"), dump_yaml(config), labels="app=echo,version=v1",
                  extra_args=["--namespace", NS])
    with running(proxy, pods.values()):
        yield address, pods


def get(address: str, path: str, host: str = "echo"):
    return curl(80, path, "--connect-to", f"127.0.0.1:80:{address}:80", host=host)


# (path, status, expected Location parts: scheme, host, port, path); None: the request's own.
# From conformance/tests/mesh/httproute-redirect-{path,host-and-status,port,scheme}.go.
REDIRECTS = [
    ("/original-prefix/lemon", 302, {"path": "/replacement-prefix/lemon"}),
    ("/full/path/original", 302, {"path": "/full-path-replacement"}),
    ("/path-and-host", 302, {"host": "example.org", "path": "/replacement-prefix"}),
    ("/path-and-status", 301, {"path": "/replacement-prefix"}),
    ("/full-path-and-host", 302, {"host": "example.org", "path": "/replacement-full"}),
    ("/full-path-and-status", 301, {"path": "/replacement-full"}),
    ("/hostname-redirect", 302, {"host": "example.org"}),
    ("/host-and-status", 301, {"host": "example.org"}),
    ("/port", 302, {"port": 8083}),
    ("/port-and-host", 302, {"host": "example.org", "port": 8083}),
    ("/port-and-status", 301, {"port": 8083}),
    ("/port-and-host-and-status", 302, {"port": 8083, "host": "example.org"}),
    ("/scheme", 302, {"scheme": "https"}),
    ("/scheme-and-host", 302, {"host": "example.org", "scheme": "https"}),
    ("/scheme-and-status", 301, {"scheme": "https"}),
    ("/scheme-and-host-and-status", 302, {"scheme": "https", "host": "example.org"}),
    # the statuses the API added in v1.4 (the manifests have them; their Go tests do not check them yet)
    ("/path-and-temporary", 307, {"path": "/replacement-prefix"}),
    ("/full-path-and-permanent", 308, {"path": "/replacement-full"}),
    ("/scheme-and-temporary", 307, {"scheme": "https"}),
]


@pytest.mark.parametrize("path, status, want", REDIRECTS, ids=[r[0] for r in REDIRECTS])
def test_mesh_redirects(mesh, path: str, status: int, want: dict) -> None:
    address, pods = mesh
    result = get(address, path)
    assert result.status == status, (result.status, result.stderr)
    location = urlsplit(result.header("location") or "")
    scheme = want.get("scheme", "http")
    assert location.scheme == scheme
    assert location.hostname == want.get("host", "echo")
    # no port given: the scheme's own (written or not) when the scheme changes, else the request's (none)
    assert location.port in ((want["port"],) if "port" in want else (None, 443 if scheme == "https" else 80))
    assert location.path == want.get("path", path)
    assert not any(s.requests for s in pods.values()), "a redirect is answered by the sidecar itself"


def test_an_element_wise_prefix_is_not_a_string_prefix(mesh) -> None:
    """PathPrefix /port matches /port and /port/..., never /portal (Istio's string prefix would)."""
    address, _ = mesh
    assert get(address, "/port/x").status == 302
    other = get(address, "/portal")
    assert other.status != 302 or urlsplit(other.header("location") or "").port != 8083
