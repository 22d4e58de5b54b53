"""The control server's mesh page against a running mesh, in a real headless Chromium: two sidecars
with join tokens (productpage calling reviews over auto mTLS), traffic through them, a trace
POSTed as Zipkin v2 JSON, and a rejected file whose name and content try to inject markup. The
DOM after the page's script ran must hold the services, the workloads and the mTLS edge between
them, the proxies, the rejected file as text and the trace; a screenshot is saved as an artifact."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from html.parser import HTMLParser

import chromium
from mesh_harness import CLIENT, HOST, LOCALHOST, NAMESPACE, mesh, registered_service, wait_until  # noqa: F401

HOSTILE_FILE = '"><svg onload=document.body.setAttribute(`data-pwned`,1)>.yaml'
HOSTILE_HOST = "<img src=x onerror=document.body.setAttribute('data-pwned',1)>"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPANS = [
    {"traceId": TRACE, "id": "00f067aa0ba902b7", "kind": "CLIENT", "name": "reviews.local:80/*", "timestamp": 1_700_000_000_000_000,
     "duration": 5200, "localEndpoint": {"serviceName": "productpage.default"}, "tags": {"http.status_code": "200"}},
    {"traceId": TRACE, "id": "1111111111111111", "parentId": "00f067aa0ba902b7", "kind": "SERVER", "name": "reviews.local:80/*",
     "timestamp": 1_700_000_000_001_000, "duration": 3100, "localEndpoint": {"serviceName": "reviews.default"}},
]


class Elements(HTMLParser):
    """Every element's tag and attributes, and the page's text, from the dumped DOM."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def having(self, attribute: str) -> list[dict]:
        return [attrs for _, attrs in self.elements if attribute in attrs]


def admin(control, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://{LOCALHOST}:{control.admin_port}{path}", data=body,
                                     headers={"Content-Type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def graph(control) -> dict:
    status, body = admin(control, "/mesh/graph.json")
    assert status == 200, body
    return json.loads(body)


def mtls_edge(data: dict, source: str, target: str) -> dict | None:
    return next((e for e in data["edges"] if (e["source"], e["target"]) == (source, target)
                 and e["mtls"] == "mutual_tls" and e["rps"]), None)


def test_the_mesh_page_shows_the_graph_proxies_rejected_files_and_a_trace_in_chromium(mesh, tmp_path):
    chromium.require()
    service = registered_service(mesh)
    control = mesh.control(1.0, data_dir=mesh.root / "control-data", secure=True)
    client = mesh.proxy(control.port, "productpage", CLIENT,
                        token_file=control.join_token(mesh.root / "pp.token", service_account="productpage"))
    server = mesh.proxy(control.port, "reviews", service.labels, address=LOCALHOST, ports={"http": service.ingress},
                        token_file=control.join_token(mesh.root / "reviews.token", service_account="reviews"))
    wait_until(lambda: f"{LOCALHOST}:{service.ingress}" in client.endpoints(), what="the reviews sidecar as an endpoint")
    traffic = mesh.traffic(service.port, HOST)
    traffic.wait_more(30, "traffic through both sidecars")

    client_node, service_node, server_node = (f"workload:{NAMESPACE}/productpage", f"service:{HOST}",
                                              f"workload:{NAMESPACE}/reviews")
    edge = wait_until(lambda: mtls_edge(graph(control), client_node, service_node), timeout=20,
                      what="a productpage -> reviews edge with a rate and mTLS in /mesh/graph.json")
    assert edge["error_rate"] == 0 and edge["latency_ms"]["p99"] is not None, edge

    assert admin(control, "/api/v2/spans", json.dumps(SPANS).encode())[0] == 202
    assert admin(control, "/api/v2/spans", b'[{"traceId": "nothex"}]')[0] == 400
    (mesh.config_dir / HOSTILE_FILE).write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: evil, namespace: default}\n"
        f"spec:\n  hosts: [\"{HOSTILE_HOST}\"]\n  http: [{{route: [{{destination: {{host: x}}}}]}}]\n")
    control.wait_status(lambda s: any(r["file"].endswith(HOSTILE_FILE) for r in s["rejected"]), "the hostile file rejected")

    url = f"http://{LOCALHOST}:{control.admin_port}/mesh"
    page = Elements(chromium.dom(url))
    body = next(attrs for tag, attrs in page.elements if tag == "body")
    assert body.get("data-ready") == "1", "the page's script did not finish a round"
    assert "data-pwned" not in body, "markup from a file name or a YAML value ran in the page"
    assert not any("onerror" in attrs or "onload" in attrs for _, attrs in page.elements)
    text = "".join(page.text)
    assert HOSTILE_FILE in text, "the rejected file's name should be shown as text"

    drawn = {attrs["data-id"] for attrs in page.having("data-id")}
    assert {client_node, service_node, server_node} <= drawn, drawn
    edges = {(a["data-source"], a["data-target"]): a["data-mtls"] for a in page.having("data-source")}
    assert edges.get((client_node, service_node)) == "mutual_tls", edges
    assert (service_node, server_node) in edges, edges
    assert client.node_id in text and server.node_id in text and "SYNCED" in text
    assert [a["data-trace"] for a in page.having("data-trace")] == [TRACE]

    tree = Elements(chromium.dom(f"{url}#trace={TRACE}")).having("data-span")
    assert [(s["data-span"], s["data-parent"]) for s in tree] == [(SPANS[0]["id"], ""), (SPANS[1]["id"], SPANS[0]["id"])]

    shot = chromium.screenshot(url, chromium.artifact_dir(tmp_path) / "mesh-page.png")
    print(f"mesh page screenshot: {shot}")
    traffic.stop()


def test_a_services_routes_as_compiled_and_a_trace_as_zipkin_returns_it(mesh):
    service = registered_service(mesh)
    control = mesh.control(1.0)
    client = mesh.proxy(control.port, "productpage", CLIENT)
    mesh.proxy(control.port, "reviews", service.labels, address=LOCALHOST, ports={"http": service.ingress})
    wait_until(lambda: f"{LOCALHOST}:{service.ingress}" in client.endpoints(), what="the reviews sidecar as an endpoint")

    status, body = admin(control, f"/mesh/routes.json?host={HOST}")
    assert status == 200, body
    routes = json.loads(body)
    assert routes["proxy"] == client.node_id, "the client's sidecar holds the service's routes"
    assert routes["virtual_hosts"] and all(vh["routes"] for vh in routes["virtual_hosts"]), routes
    endpoints = {f"{e['address']}:{e['port']}" for c in routes["clusters"] for e in c["endpoints"]}
    assert endpoints == {f"{LOCALHOST}:{service.ingress}"}, routes["clusters"]
    assert admin(control, "/mesh/routes.json")[0] == 400
    assert admin(control, f"/mesh/routes.json?host={HOST}&proxy=nobody")[0] == 404

    assert admin(control, "/api/v2/spans", json.dumps(SPANS).encode())[0] == 202
    status, body = admin(control, f"/api/v2/trace?id={TRACE}")
    assert status == 200 and [s["id"] for s in json.loads(body)] == [s["id"] for s in SPANS]
    with socket.create_connection((LOCALHOST, control.admin_port), timeout=10) as sock:  # a head, no body sent
        sock.sendall(b"POST /api/v2/spans HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2000000\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 413 "), "a body over the limit is refused before it is read"
    assert admin(control, "/api/v2/spans")[0] == 405  # a GET
