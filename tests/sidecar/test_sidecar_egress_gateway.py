"""Istio's egress gateway tasks (istio.io docs/tasks/traffic-management/egress/egress-gateway and
egress-gateway-tls-origination), their YAML unchanged (tests/api/data/istio_samples/istio.io,
egress-gateway-*.yaml; provenance in that folder's README), through real processes:

    sleep          198.18.0.1  curl as the app, its sidecar (`pymesh proxy --capture`)
    egressgateway  198.18.0.2  `pymesh gateway --labels istio=egressgateway` on ports 80 and 443
    external       198.18.0.3  edition.cnn.com: http on 80 answers 301 to https (as cnn does),
                               https on 443 with a certificate for edition.cnn.com from a test CA

What the tests add to the task's YAML, because there is no Kubernetes here: a ServiceEntry for
istio-egressgateway.istio-system.svc.cluster.local (Kubernetes' Service of the egress gateway,
with Istio's port names: http2 80, https 443) whose endpoint is the gateway pod; and the pods'
/etc/hosts, where edition.cnn.com is the external pod (the task's `resolution: DNS`, resolved
inside the test bed: nothing leaves 198.18.0.0/24). The gateway's system roots are the test CA
(SSL_CERT_FILE), as the DestinationRule of the task has no caCertificates: verification stays on
and an untrusted CA fails (the `untrusted` case).

Each test checks where the request really went: the gateway's own stats for the cluster it
sends to edition.cnn.com, and what the external server saw (SNI, Host, path).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from yaml import safe_dump_all, safe_load_all

pytest.importorskip("pymesh.routing.gateway", reason="`pymesh gateway` is not in this tree yet")

from mesh_pki import MeshPki, uri  # noqa: E402
from sidecar_helpers import (WAIT, app_curl, kubernetes_service, requires_tools, sidecar_pod,  # noqa: E402
                             start_app, start_gateway, wait_until, write_config)
from throwaway_ca import ThrowawayCA  # noqa: E402

pytestmark = [requires_tools, pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")]

SAMPLES = Path(__file__).parents[1] / "api" / "data" / "istio_samples" / "istio.io"
GATEWAY_HOST = "istio-egressgateway.istio-system.svc.cluster.local"
GATEWAY_SA = "istio-egressgateway-service-account"  # Istio's egress gateway's service account
CNN = "edition.cnn.com"
SLEEP_NS = "default"  # the tasks run sleep in the default namespace
CONTROL_PORT, CONTROL_ADMIN = 15012, 15014  # istiod's xDS port; the admin API stays on the pod's loopback


def task_yaml(*names: str) -> str:
    return "\n---\n".join((SAMPLES / f"egress-gateway-{name}.yaml").read_text() for name in names)


def gateway_service(gateway_ip: str) -> str:
    """Kubernetes' istio-egressgateway Service (Istio's port names), as a ServiceEntry."""
    return kubernetes_service("istio-egressgateway", "istio-system",
                              "{number: 80, name: http2, protocol: HTTP2}, {number: 443, name: https, protocol: HTTPS}",
                              gateway_ip, "labels: {istio: egressgateway}, serviceAccount: " + GATEWAY_SA)


@pytest.fixture
def pods(testbed, tmp_path):
    """The three pods, with edition.cnn.com served by the external one."""
    bed = testbed("sleep", "egressgateway", "external")
    ca = ThrowawayCA(tmp_path / "pki")
    cert = ca.issue("cnn", CNN)
    for pod in ("sleep", "egressgateway"):
        bed[pod].set_hosts({CNN: bed["external"].ip})
    external = bed["external"]
    bed.cnn_http = start_app(external, "redirect", "cnn-http", 80, f"https://{CNN}", uid=0)
    bed.cnn_https = start_app(external, "https", "cnn", "0.0.0.0", 443, cert.cert, cert.key, uid=0)
    bed.ca = ca
    return bed


def start(bed, tmp_path, yaml: str, roots: Path, mesh: MeshPki | None = None, gateway_args: tuple[str, ...] = ()):
    """The sleep pod's sidecar and the egress gateway, both reading `yaml`."""
    config = write_config(tmp_path, yaml + gateway_service(bed["egressgateway"].ip))
    sleep_extra, gateway_extra = (), gateway_args
    if mesh is not None:
        sleep_extra = ("--cert-dir", str(mesh.issue(SLEEP_NS, "sleep")), "--service-account", "sleep")
        gateway_extra += ("--cert-dir", str(mesh.issue("istio-system", GATEWAY_SA)), "--service-account", GATEWAY_SA)
    gateway = start_gateway(bed["egressgateway"], config, "istio=egressgateway", extra=gateway_extra,
                            env=dict(os.environ, SSL_CERT_FILE=str(roots)))
    sidecar = sidecar_pod(bed["sleep"], config, "sleep", {"app": "sleep"}, extra=sleep_extra, namespace=SLEEP_NS)
    return sidecar, gateway


def start_under_control(bed, tmp_path, yaml: str, roots: Path):
    """The same two proxies with their configuration and mesh certificates from a secure control
    server (`pymesh control serve`) in a pod of its own, each bootstrapped by a join token."""
    istiod = bed.add_pod("istiod")
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    write_config(config_dir, yaml + gateway_service(bed["egressgateway"].ip))
    control = istiod.spawn(sys.executable, "-m", "pymesh", "control", "serve", "--config-dir", config_dir,
                           "--listen", f"{istiod.ip}:{CONTROL_PORT}", "--admin", f"127.0.0.1:{CONTROL_ADMIN}",
                           "--grace", "0.2", "--data-dir", tmp_path / "control-data")
    control.wait_for_line("pymesh control: serving on", timeout=WAIT)

    def joining(namespace: str, account: str) -> tuple[str, ...]:
        token = istiod.run(sys.executable, "-m", "pymesh", "control", "token", "create", "--server",
                           f"127.0.0.1:{CONTROL_ADMIN}", "--namespace", namespace, "--service-account", account,
                           "--ttl", "1h").stdout.strip()
        path = tmp_path / f"{account}.token"
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as stream:
            stream.write(token + "\n")
        return ("--control", f"{istiod.ip}:{CONTROL_PORT}", "--token-file", str(path))

    gateway = start_gateway(bed["egressgateway"], None, "istio=egressgateway",
                            extra=joining("istio-system", GATEWAY_SA), env=dict(os.environ, SSL_CERT_FILE=str(roots)))
    sidecar = sidecar_pod(bed["sleep"], None, "sleep", {"app": "sleep"}, extra=joining(SLEEP_NS, "sleep"),
                          namespace=SLEEP_NS)
    # "ready" comes with the listeners; the configuration follows from the server: wait for it
    for proxy, cluster in ((gateway, f"outbound|443||{CNN}"), (sidecar, f"outbound|80|cnn|{GATEWAY_HOST}")):
        wait_until(lambda: cluster in proxy.get(15000, "/config_dump"), what=f"{cluster} in {proxy.pod.name}'s config")
    return sidecar, gateway


def heads(curl_stdout: str) -> list[list[str]]:
    """`curl -D - -o /dev/null` output (text mode: "\\n" line ends): the response heads in
    order, each as its lines."""
    return [block.split("\n") for block in curl_stdout.split("\n\n") if block.strip()]


def body(curl_stdout: str) -> dict:
    """The JSON body after the one head of `curl -D -` output."""
    return json.loads(curl_stdout.split("\n\n", 1)[1])


def test_http_through_the_egress_gateway(pods, tmp_path):
    """egress-gateway, "Egress gateway for HTTP traffic": the sidecar sends http://edition.cnn.com
    to the gateway (subset cnn, port 80), the gateway to edition.cnn.com:80, whose 301 curl
    follows to https, which goes straight out (the task routes only port 80 through the gateway)."""
    yaml = task_yaml("http-serviceentry", "http-gateway", "http-virtualservice")
    sidecar, gateway = start(pods, tmp_path, yaml, pods.ca.ca_path)
    done = app_curl(pods["sleep"], f"http://{CNN}/politics", "-sSL", "-o", "/dev/null", "-D", "-",
                    "--cacert", str(pods.ca.ca_path), check=False)
    got = heads(done.stdout)
    assert [h[0] for h in got] == ["HTTP/1.1 301 Moved Permanently", "HTTP/1.1 200 OK"], (
        done.stdout, done.stderr, gateway.process.output()[-3000:])
    assert f"location: https://{CNN}/politics" in [line.lower() for line in got[0]]
    assert gateway.stats()[f"cluster.outbound|80||{CNN}.upstream_rq_3xx"] == 1
    assert sidecar.stats()[f"cluster.outbound|80|cnn|{GATEWAY_HOST}.upstream_rq_3xx"] == 1
    assert "cnn-http: GET /politics edition.cnn.com" in pods.cnn_http.output()
    # The gateway's access log, as the task reads it: "GET /politics HTTP/2" 301 ... outbound|80||edition.cnn.com
    # (the sidecar speaks HTTP/2 to it: the gateway Service's port is named http2)
    line = json.loads(gateway.process.wait_for_line('"/politics"'))
    assert (line["method"], line["protocol"], line["response_code"], line["upstream_cluster"]) == (
        "GET", "HTTP/2", 301, f"outbound|80||{CNN}"), line


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "untrusted"])
def test_tls_origination_at_the_egress_gateway(pods, tmp_path, trusted):
    """egress-gateway-tls-origination: the app asks http://edition.cnn.com, the gateway sends it
    over HTTPS to edition.cnn.com:443 (DestinationRule tls SIMPLE), SNI and certificate
    verification for edition.cnn.com."""
    yaml = task_yaml("tls-origination-serviceentry", "tls-origination-gateway", "tls-origination-virtualservice")
    roots = pods.ca.ca_path if trusted else ThrowawayCA(tmp_path / "other").ca_path
    sidecar, gateway = start(pods, tmp_path, yaml, roots)
    done = app_curl(pods["sleep"], f"http://{CNN}/politics", "-sS", "-D", "-", check=False)
    status = heads(done.stdout)[0][0] if done.stdout else ""
    stats = gateway.stats()
    if not trusted:
        assert status.startswith("HTTP/1.1 503"), done.stdout
        assert stats[f"cluster.outbound|443||{CNN}.ssl.fail_verify_error"] >= 1
        return
    assert status == "HTTP/1.1 200 OK", (done.stdout, done.stderr, gateway.process.output()[-3000:])
    answer = body(done.stdout)
    assert answer["server"] == "cnn" and answer["sni"] == CNN and answer["headers"]["host"] == CNN
    assert stats[f"cluster.outbound|443||{CNN}.ssl.handshake"] >= 1
    assert sidecar.stats()[f"cluster.outbound|80|cnn|{GATEWAY_HOST}.upstream_rq_2xx"] == 1


@pytest.mark.parametrize("mode", ["static", "control"])
def test_tls_origination_with_istio_mutual_to_the_gateway(pods, tmp_path, mode):
    """The task's other version: the sidecar talks ISTIO_MUTUAL to the gateway's port 80 (an
    HTTPS server, tls ISTIO_MUTUAL; DestinationRule subset cnn with sni edition.cnn.com), with
    mesh certificates for sleep and the gateway from one mesh CA (static: files from a test CA;
    control: issued by the control server, which also serves the configuration); the gateway
    originates TLS."""
    yaml = task_yaml("tls-origination-serviceentry", "tls-origination-istio-mutual-gateway",
                     "tls-origination-virtualservice")
    if mode == "static":
        sidecar, gateway = start(pods, tmp_path, yaml, pods.ca.ca_path, MeshPki(tmp_path / "mesh"))
    else:
        sidecar, gateway = start_under_control(pods, tmp_path, yaml, pods.ca.ca_path)
    done = app_curl(pods["sleep"], f"http://{CNN}/politics", "-sS", "-D", "-", check=False)
    assert done.stdout.startswith("HTTP/1.1 200 OK"), (done.stdout, done.stderr, gateway.process.output()[-3000:])
    answer = body(done.stdout)
    assert answer["sni"] == CNN and answer["headers"]["host"] == CNN
    # The gateway verified sleep's mesh certificate (Istio's gateways SANITIZE_SET the XFCC header)
    xfcc = answer["headers"]["x-forwarded-client-cert"]
    assert xfcc.startswith(f"By={uri('istio-system', GATEWAY_SA)};") and xfcc.endswith(f"URI={uri(SLEEP_NS, 'sleep')}")
    sidecar_stats = sidecar.stats()
    assert sidecar_stats[f"cluster.outbound|80|cnn|{GATEWAY_HOST}.ssl.handshake"] >= 1
    assert gateway.stats()[f"cluster.outbound|443||{CNN}.ssl.handshake"] >= 1
    # The gateway's port 80 takes mesh mTLS only: plaintext from the sleep pod (uid 1337 is not
    # captured, so it leaves without its sidecar) gets no answer.
    plain = pods["sleep"].run("curl", "-sS", "--max-time", "5", "-H", f"Host: {CNN}",
                              f"http://{pods['egressgateway'].ip}/politics", uid=1337, check=False)
    assert plain.returncode != 0, plain.stdout


NGINX = "my-nginx.mesh-external.svc.cluster.local"


def nginx_service(nginx_ip: str) -> str:
    """The task's Kubernetes Service my-nginx (port 443) and its pod, as a ServiceEntry."""
    return kubernetes_service("my-nginx", "mesh-external", "{number: 443, name: https, protocol: HTTPS}", nginx_ip,
                              "labels: {run: my-nginx}")


def in_namespace(text: str, namespace: str) -> str:
    """What `kubectl apply -n NAMESPACE` does to documents that name no namespace."""
    docs = [doc for doc in safe_load_all(text) if doc]
    for doc in docs:
        doc["metadata"].setdefault("namespace", namespace)
    return safe_dump_all(docs, sort_keys=False)


def credential(directory: Path, name: str, ca: Path, cert=None) -> Path:
    """A Kubernetes generic Secret (ca.crt, and tls.crt and tls.key when `cert` is given), as the
    tasks create them, in the --credentials-dir layout (a folder per Secret)."""
    folder = directory / name
    folder.mkdir(parents=True)
    shutil.copy(ca, folder / "ca.crt")
    if cert is not None:
        shutil.copy(cert.cert, folder / "tls.crt")
        with open(os.open(folder / "tls.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as key:
            key.write(Path(cert.key).read_bytes())
    return directory


@pytest.mark.parametrize("origination", ["mutual", "simple"])
def test_tls_origination_to_my_nginx_with_a_credential(pods, tmp_path, origination):
    """egress-gateway-tls-origination, "Perform mutual TLS origination with an egress gateway"
    (mutual), and egress-gateway-tls-origination-sds's SIMPLE part (simple): sleep's
    http://my-nginx... goes ISTIO_MUTUAL to the gateway's 443 (subset nginx, sni my-nginx...), and
    the gateway originates TLS to nginx with the task's Secret (DestinationRule credentialName
    client-credential): MUTUAL with client-credential's certificate, which nginx requires from
    the task's example.com CA (ssl_verify_client on); SIMPLE verifying nginx against the CA of
    client-credential-cacert alone, nginx asking no certificate."""
    example = ThrowawayCA(tmp_path / "example.com")
    server = example.issue("my-nginx", NGINX)
    nginx = pods.add_pod("nginx")
    pods["sleep"].set_hosts({CNN: pods["external"].ip, NGINX: nginx.ip})
    client_ca = (example.ca_path,) if origination == "mutual" else ()
    start_app(nginx, "https", "nginx", "0.0.0.0", 443, server.cert, server.key, *client_ca, uid=0)
    rule = "mtls-origination-destinationrule" if origination == "mutual" else "sds-simple-destinationrule"
    config = (task_yaml("mtls-origination-gateway", "mtls-origination-virtualservice") + "\n---\n"
              + in_namespace(task_yaml(rule), "istio-system") + nginx_service(nginx.ip))
    if origination == "mutual":
        client = example.issue("client", common_name="client.example.com")
        credentials = credential(tmp_path / "credentials", "client-credential", example.ca_path, client)
    else:
        credentials = credential(tmp_path / "credentials", "client-credential-cacert", example.ca_path)
    sidecar, gateway = start(pods, tmp_path, config, example.ca_path, MeshPki(tmp_path / "mesh"),
                             gateway_args=("--credentials-dir", str(credentials)))
    done = app_curl(pods["sleep"], f"http://{NGINX}", "-sS", "-D", "-", check=False)
    assert done.stdout.startswith("HTTP/1.1 200 OK"), (done.stdout, done.stderr, gateway.process.output()[-3000:])
    answer = body(done.stdout)
    assert (answer["server"], answer["sni"]) == ("nginx", NGINX)
    assert answer["client"] == ("client.example.com" if origination == "mutual" else None)
    assert sidecar.stats()[f"cluster.outbound|443|nginx|{GATEWAY_HOST}.ssl.handshake"] >= 1
    assert gateway.stats()[f"cluster.outbound|443||{NGINX}.ssl.handshake"] >= 1


def test_tls_passthrough_through_the_egress_gateway(pods, tmp_path):
    """egress-gateway, "Egress gateway for HTTPS traffic": the app's own TLS to edition.cnn.com
    goes through the gateway untouched (Gateway PASSTHROUGH on 443, VirtualService tls routes by
    SNI on both sides); the app verifies the external server's certificate itself."""
    yaml = task_yaml("https-serviceentry", "https-passthrough")
    sidecar, gateway = start(pods, tmp_path, yaml, pods.ca.ca_path)
    done = app_curl(pods["sleep"], f"https://{CNN}/politics", "-sSL", "-D", "-", "--cacert", str(pods.ca.ca_path),
                    check=False)
    assert done.stdout.startswith("HTTP/1.1 200 OK"), (done.stdout, done.stderr, gateway.process.output()[-3000:])
    answer = body(done.stdout)
    assert answer["server"] == "cnn" and answer["sni"] == CNN
    assert gateway.stats()[f"cluster.outbound|443||{CNN}.upstream_cx_total"] == 1
    assert sidecar.stats()[f"cluster.outbound|443|cnn|{GATEWAY_HOST}.upstream_cx_total"] == 1


def egress_proxy_yaml() -> str:
    """Not a task: the gateway alone knows edition.cnn.com (its ServiceEntry, Gateway and
    VirtualService live in istio-system, exported there only), and sleep's Sidecar sends what it
    does not know to the gateway (outboundTrafficPolicy.egressProxy), which routes it by Host."""
    return f"""\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: cnn, namespace: istio-system}}
spec:
  hosts: [{CNN}]
  exportTo: ["."]
  ports:
  - {{number: 80, name: http-port, protocol: HTTP}}
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: istio-egressgateway, namespace: istio-system}}
spec:
  selector: {{istio: egressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["./{CNN}"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: cnn, namespace: istio-system}}
spec:
  hosts: [{CNN}]
  exportTo: ["."]
  gateways: [istio-egressgateway]
  http:
  - route:
    - destination: {{host: {CNN}, port: {{number: 80}}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: {SLEEP_NS}}}
spec:
  outboundTrafficPolicy:
    mode: ALLOW_ANY
    egressProxy:
      host: {GATEWAY_HOST}
      port: {{number: 80}}
"""


def test_sidecar_egress_proxy_to_the_egress_gateway(pods, tmp_path):
    sidecar, gateway = start(pods, tmp_path, egress_proxy_yaml(), pods.ca.ca_path)
    done = app_curl(pods["sleep"], f"http://{CNN}/politics", "-sS", "-o", "/dev/null", "-D", "-", check=False)
    assert done.stdout.startswith("HTTP/1.1 301"), (done.stdout, done.stderr, sidecar.process.output()[-3000:])
    assert sidecar.stats()[f"cluster.outbound|80||{GATEWAY_HOST}.upstream_rq_3xx"] == 1
    assert gateway.stats()[f"cluster.outbound|80||{CNN}.upstream_rq_3xx"] == 1
    assert "cnn-http: GET /politics edition.cnn.com" in pods.cnn_http.output()


def test_wildcard_hosts_through_the_egress_gateway(pods, tmp_path):
    """wildcard-egress-hosts, "Configure egress gateway traffic to a wildcard host": TLS for any
    *.wikipedia.org goes through the gateway (PASSTHROUGH, sniHosts "*.wikipedia.org" on both
    sides) to the one server www.wikipedia.org, whose certificate covers *.wikipedia.org. In the
    sleep pod en. and de.wikipedia.org resolve to an address where nothing listens: only the
    gateway's route reaches a server. The task's own check: the gateway's cluster for
    www.wikipedia.org made two connections. (The task runs the mesh REGISTRY_ONLY, a mesh
    config setting pymesh has no file for; the route does not depend on it.)"""
    wikipedia = ThrowawayCA(tmp_path / "wikipedia").issue("wikipedia", "*.wikipedia.org", "www.wikipedia.org")
    www = pods.add_pod("www")
    start_app(www, "https", "wikipedia", "0.0.0.0", 443, wikipedia.cert, wikipedia.key, uid=0)
    nowhere = "198.18.0.250"  # in the bed's subnet, no pod
    pods["sleep"].set_hosts({"en.wikipedia.org": nowhere, "de.wikipedia.org": nowhere})
    pods["egressgateway"].set_hosts({"www.wikipedia.org": www.ip})
    config = task_yaml("wildcard-gateway", "wildcard-www-serviceentry")
    sidecar, gateway = start(pods, tmp_path, config, pods.ca.ca_path)
    roots = str(Path(wikipedia.cert).with_name("ca.pem"))
    for site, path in (("en", "/wiki/Main_Page"), ("de", "/wiki/Wikipedia:Hauptseite")):
        done = app_curl(pods["sleep"], f"https://{site}.wikipedia.org{path}", "-sS", "-D", "-", "--cacert", roots,
                        check=False)
        assert done.stdout.startswith("HTTP/1.1 200 OK"), (done.stdout, done.stderr, gateway.process.output()[-3000:])
        assert body(done.stdout)["sni"] == f"{site}.wikipedia.org"
    # The task reads /clusters (outbound|443||www.wikipedia.org::<its IP>:443::cx_total::2); pymesh's
    # /clusters names a DNS host by its name and keeps no per-host cx_total: the cluster's stat says it
    assert gateway.stats()["cluster.outbound|443||www.wikipedia.org.upstream_cx_total"] == 2
    assert sidecar.stats()[f"cluster.outbound|443|wikipedia|{GATEWAY_HOST}.upstream_cx_total"] == 2
