"""The pymesh quickstart: two versions of an app, each behind a sidecar that accepts only mutual
TLS, a sidecar in front of their client, a 90/10 canary split and a header-based route, an
authorization policy, and what the proxies observed.

    python examples/quickstart/run.py            # run, print what happened, stop everything
    python examples/quickstart/run.py --keep     # leave the mesh running to explore (Ctrl-C)

The mesh's certificates are made with `pymesh ca init` and `pymesh ca issue` in a temporary
directory, removed at the end.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import typing
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from common import wait_for_stop, wait_ready  # noqa: E402  (examples/common.py)
SIDECAR = ("127.0.0.1", 9080)


class Workload(typing.NamedTuple):
    labels: str
    service_account: str
    app_port: int | None  # behind the sidecar's ingress listener (mesh.yaml), if it serves
    admin: int  # the sidecar's admin, stats and health ports
    stats: int
    health: int


WORKLOADS = {  # the client sidecar keeps Istio's ports
    "productpage": Workload("app=productpage,version=v1", "productpage", None, 15000, 15090, 15021),
    "reviews-v1": Workload("app=reviews,version=v1", "reviews", 9181, 15210, 15211, 15212),
    "reviews-v2": Workload("app=reviews,version=v2", "reviews", 9182, 15220, 15221, 15222),
}
REQUESTS = 1000


def start(argv: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(argv, start_new_session=True, **kwargs)


def pymesh(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pymesh", *args], check=True, stdout=subprocess.DEVNULL)


def make_certificates(workdir: str) -> dict[str, str]:
    """A mesh root and one certificate directory per workload (plus 'ratings', a mesh workload
    that reviews does not let in), with the real commands; {name: --cert-dir}."""
    root = os.path.join(workdir, "root")
    pymesh("ca", "init", root)
    accounts = {name: workload.service_account for name, workload in WORKLOADS.items()} | {"ratings": "ratings"}
    for name, account in accounts.items():
        pymesh("ca", "issue", "--ca-dir", root, "--namespace", "demo", "--service-account", account,
               "--out", os.path.join(workdir, name))
    return {name: os.path.join(workdir, name) for name in accounts}


def start_sidecar(name: str, cert_dir: str, access_log: str) -> subprocess.Popen:
    workload = WORKLOADS[name]
    return start(
        [sys.executable, "-m", "pymesh", "proxy", "--config", os.path.join(HERE, "mesh.yaml"),
         "--workload", name, "--namespace", "demo", "--labels", workload.labels,
         "--service-account", workload.service_account, "--cert-dir", cert_dir,
         "--admin-port", str(workload.admin), "--stats-port", str(workload.stats),
         "--health-port", str(workload.health), "--access-log", access_log, "--log-level", "warning"],
    )


def send(count: int, headers: dict[str, str], method: str = "GET") -> tuple[collections.Counter, collections.Counter]:
    """`count` keep-alive requests through the sidecar; tallies of answers (the version) and status codes."""
    versions, statuses = collections.Counter(), collections.Counter()
    connection = http.client.HTTPConnection(*SIDECAR, timeout=5)
    for _ in range(count):
        connection.request(method, "/reviews/1", headers={"Host": "reviews.demo", **headers})
        response = connection.getresponse()
        versions[response.read().decode().strip()] += 1
        statuses[response.status] += 1
    connection.close()
    return versions, statuses


def call_directly(port: int, cert_dir: str | None) -> str:
    """One GET straight to a reviews sidecar's STRICT port, bypassing productpage's sidecar: over
    mTLS with `cert_dir`'s certificate (the server's chain verified against the mesh root; mesh
    certificates name a SPIFFE ID, no host name), or plaintext without one."""
    if cert_dir:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.load_verify_locations(os.path.join(cert_dir, "root-cert.pem"))
        context.load_cert_chain(os.path.join(cert_dir, "cert-chain.pem"), os.path.join(cert_dir, "key.pem"))
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
    else:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/reviews/1", headers={"Host": "reviews.demo"})
        response = connection.getresponse()
        return f"{response.status} {response.read().decode().strip()}"
    except ConnectionResetError:  # http.client's RemoteDisconnected too
        return "connection reset"
    except (OSError, http.client.HTTPException) as error:
        return f"failed: {error}"
    finally:
        connection.close()


def get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return response.read().decode()


def metric_lines(text: str) -> list[str]:
    """istio_requests_total series, shortened to the labels a reader cares about."""
    keep = ("destination_version", "source_principal", "connection_security_policy", "response_code")
    lines = []
    for line in text.splitlines():
        if line.startswith("istio_requests_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            short = ",".join(f'{k}="{labels.get(k, "")}"' for k in keep)
            lines.append(f"istio_requests_total{{{short}}} {line.rsplit(' ', 1)[1]}")
    return sorted(lines)


def identity(certs_json: str) -> str:
    """The workload certificate /certs shows: its SPIFFE ID and when it expires."""
    leaf = json.loads(certs_json)["certificates"][0]["cert_chain"][0]
    uris = [san["uri"] for san in leaf["subject_alt_names"] if "uri" in san]
    return f"{', '.join(uris)} (serial {leaf['serial_number'][:12]}..., expires {leaf['expiration_time']})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep the mesh running after the demo")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="pymesh-quickstart-")
    processes = []
    access_log = os.path.join(os.environ.get("TMPDIR", "/tmp"), "pymesh-quickstart-access.log")
    try:
        cert_dirs = make_certificates(workdir)
        for name, workload in WORKLOADS.items():
            if workload.app_port:
                processes.append(start([sys.executable, os.path.join(HERE, "..", "app.py"), name, str(workload.app_port)]))
        for name in WORKLOADS:
            processes.append(start_sidecar(name, cert_dirs[name], access_log if name == "productpage" else "off"))
        for name in WORKLOADS:
            wait_ready(f"http://127.0.0.1:{WORKLOADS[name].admin}/ready")
        print("pymesh quickstart")
        print(f"  certificates: pymesh ca init + pymesh ca issue, in {workdir} (removed at the end)")
        print("  reviews v1 on 127.0.0.1:9181 and v2 on :9182, each behind its sidecar's STRICT mTLS port 9081 / 9082")
        print(f"  productpage's sidecar: egress listener http://{SIDECAR[0]}:{SIDECAR[1]}, auto mTLS to reviews"
              " (config: examples/quickstart/mesh.yaml)")
        print(f"\n{REQUESTS} requests to http://reviews.demo:9080/reviews/1 through productpage's sidecar:")
        versions, statuses = send(REQUESTS, {})
        for version, count in sorted(versions.items()):
            print(f"  {version}: {count:4d}  ({100 * count / REQUESTS:.1f}%)   VirtualService weight {90 if 'v1' in version else 10}%")
        print(f"  status codes: {dict(statuses)}")
        versions, statuses = send(20, {"end-user": "jason"})
        print(f"\n20 requests with 'end-user: jason' (route jason-sees-v2): {dict(versions)}")
        answers, statuses = send(1, {}, "POST")
        print(f"A POST through the sidecar (reviews-viewer allows productpage only GET): {next(iter(statuses))} {next(iter(answers))}")
        print("\nStraight to reviews-v1's sidecar (127.0.0.1:9081), not through productpage's:")
        ratings = call_directly(9081, cert_dirs["ratings"])
        print(f"  mTLS as spiffe://cluster.local/ns/demo/sa/ratings: {ratings:24} (AuthorizationPolicy reviews-viewer)")
        print(f"  plaintext:                                         {call_directly(9081, None):24} (PeerAuthentication STRICT)")
        print("\nWhat the reviews sidecars report (/stats/prometheus on :15211 and :15221, labels shortened):")
        for name in ("reviews-v1", "reviews-v2"):
            for line in metric_lines(get(WORKLOADS[name].stats, "/stats/prometheus")):
                print(f"  {line}")
        print(f"\nreviews-v1's identity (http://127.0.0.1:15210/certs): {identity(get(WORKLOADS['reviews-v1'].admin, '/certs'))}")
        print(f"\nAccess log of productpage's sidecar (JSON, one line per request): {access_log}")
        print("Admin: http://127.0.0.1:15000/config_dump  /clusters  /certs  /stats")
        if args.keep:
            wait_for_stop("\nThe mesh keeps running; try: curl -H 'Host: reviews.demo' http://127.0.0.1:9080/  (Ctrl-C stops)")
        return 0
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
