"""A local mesh with a control server: three sidecars get their configuration pushed, the reviews
workloads register themselves as endpoints, and a canary is shifted live by editing a file while
traffic flows, with no restart and no failed request.

The control channel is the secure one: the demo makes a join token per service account
(`pymesh control token create`), each sidecar gets its certificate with it and talks mTLS to
the control server; the two reviews replicas share one token, as a workload's replicas do.

    python examples/canary/run.py          # run, print what happened, stop everything
    python examples/canary/run.py --keep   # leave the mesh running to explore (Ctrl-C): it
                                           # prints where to look (the mesh page, its traces)
"""

from __future__ import annotations

import argparse
import collections
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from common import wait_for_stop, wait_ready  # noqa: E402  (examples/common.py)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # the checkout's pymesh, installed or not
from pymesh.control.dashboard import DASHBOARDS, prometheus_argv  # noqa: E402
APP = os.path.join(HERE, "..", "app.py")
CONTROL, CONTROL_ADMIN = "127.0.0.1:15010", "127.0.0.1:15014"
PROMETHEUS = "127.0.0.1:9090"  # --keep starts one when the prometheus binary is installed
EGRESS = ("127.0.0.1", 9080)
WORKLOADS = {  # name: (labels, ingress port the sidecar registers, app port, admin port base)
    "productpage": ("app=productpage,version=v1", None, None, 15200),
    "reviews-v1": ("app=reviews,version=v1", 15101, 9101, 15210),
    "reviews-v2": ("app=reviews,version=v2", 15102, 9102, 15220),
}


def service_account(workload: str) -> str:
    return workload.split("-")[0]  # reviews-v1 and reviews-v2 run as "reviews"
ROUTE = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: demo
spec:
  hosts: [reviews.demo]
  http:
  - name: canary
    route:
    - {{destination: {{host: reviews.demo, subset: v1}}, weight: {v1}}}
    - {{destination: {{host: reviews.demo, subset: v2}}, weight: {v2}}}
"""
STEPS = ((80, 20), (0, 100))
OBSERVE = 2.0  # seconds of traffic watched after each edit


class Mesh:
    """Every process the demo starts, stopped together however the demo ends."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen] = []
        self.workdir = tempfile.mkdtemp(prefix="pymesh-canary-")

    def start(self, *argv: str, stderr=None) -> subprocess.Popen:
        process = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL, stderr=stderr)
        self.processes.append(process)
        return process

    def stop(self) -> None:
        """Newest first: sidecars and apps, then the control server they talk to."""
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


class Traffic(threading.Thread):
    """Keep-alive requests through productpage's sidecar, recording which version answered."""

    def __init__(self, pause: float = 0.002) -> None:
        super().__init__(daemon=True)
        self.pause = pause  # 0.002: ~400 req/s, plenty to see a switch, gentle on a laptop
        self.lock = threading.Lock()
        self.log: list[tuple[float, str]] = []  # (time, version or "error: ...")
        self.stopping = threading.Event()

    def run(self) -> None:
        connection = http.client.HTTPConnection(*EGRESS, timeout=5)
        for _ in range(200_000):  # bounded; the demo stops it long before
            if self.stopping.is_set():
                break
            try:
                connection.request("GET", "/reviews/1", headers={"Host": "reviews.demo"})
                response = connection.getresponse()
                body = response.read().decode().strip()
                result = body if response.status == 200 else f"error: {response.status} {body}"
            except (OSError, http.client.HTTPException) as error:
                result = f"error: {error}"
                connection.close()
                connection = http.client.HTTPConnection(*EGRESS, timeout=5)
            with self.lock:
                self.log.append((time.monotonic(), result))
            time.sleep(self.pause)

    def since(self, start: float) -> list[tuple[float, str]]:
        with self.lock:
            return [entry for entry in self.log if entry[0] >= start]


def share(results: list[tuple[float, str]]) -> str:
    counts = collections.Counter(version for _, version in results)
    total = sum(counts.values()) or 1
    return "  ".join(f"{version}: {100 * n / total:5.1f}%" for version, n in sorted(counts.items()))


def switch_time(results: list[tuple[float, str]], start: float, v1: int, v2: int) -> float | None:
    """Seconds from the edit until the new weights were in force: the last answer from a version
    whose weight went to 0, else the first answer from the version that gained traffic."""
    if v1 == 0 or v2 == 0:
        gone = "reviews-v1" if v1 == 0 else "reviews-v2"
        last = max((moment for moment, version in results if version == gone), default=start)
        return last - start
    first = min((moment for moment, version in results if version == "reviews-v2"), default=None)
    return None if first is None else first - start


def join_token(pymesh: tuple[str, ...], workdir: str, account: str) -> str:
    """A token for demo/<account> in a 0600 file (the sidecar reads it with --token-file)."""
    done = subprocess.run([*pymesh, "control", "token", "create", "--server", CONTROL_ADMIN, "--namespace", "demo",
                           "--service-account", account, "--ttl", "1h"], capture_output=True, text=True, check=True)
    path = os.path.join(workdir, f"{account}.token")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as stream:
        stream.write(done.stdout)
    return path


def start_prometheus(mesh: Mesh) -> str:
    """Prometheus scraping the control server and every sidecar (the prometheus.yml of `pymesh
    dashboard prometheus-config`), if installed: where to look, or why it is not there."""
    argv = prometheus_argv(mesh.workdir, CONTROL_ADMIN, PROMETHEUS)
    if argv is None:
        return "not installed (apt-get install prometheus), or run it with `pymesh dashboard prometheus-config`"
    with open(os.path.join(mesh.workdir, "prometheus.log"), "w") as log_file:
        mesh.start(*argv, stderr=log_file)
    wait_ready(f"http://{PROMETHEUS}/-/ready", timeout=30)
    query = urllib.parse.quote('sum(rate(istio_requests_total{reporter="source"}[1m])) by (destination_workload)')
    return f"http://{PROMETHEUS}/graph?g0.expr={query}\n                  (Grafana dashboards to import: {DASHBOARDS})"


def tour(config_dir: str, prometheus: str) -> str:
    """Where to look while the mesh keeps running."""
    admin = f"http://{CONTROL_ADMIN}"
    return "\n".join([
        f"\nThe mesh keeps running, with ~20 requests/s through productpage's sidecar (config in {config_dir}):",
        f"  mesh page       {admin}/mesh   (service graph with rates and mTLS, proxies, rejected files;",
        "                  click a service for its routes as compiled)",
        f"  graph as JSON   {admin}/mesh/graph.json",
        f"  traces          {admin}/mesh (Recent traces): Zipkin v2 spans POSTed to {admin}/api/v2/spans",
        f"  proxy status    pymesh control status --server {CONTROL_ADMIN}",
        f"  metrics         http://127.0.0.1:{WORKLOADS['productpage'][3] + 1}/stats/prometheus (productpage's sidecar)",
        f"  Prometheus      {prometheus}",
        f"  edit a route    {os.path.join(config_dir, 'reviews-route.yaml')} (the page shows a bad edit as rejected)",
        "Ctrl-C stops everything.",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep the mesh running after the demo")
    args = parser.parse_args()
    mesh = Mesh()
    try:
        config_dir = os.path.join(mesh.workdir, "config")
        shutil.copytree(os.path.join(HERE, "config"), config_dir)
        pymesh = (sys.executable, "-m", "pymesh")
        control_log = os.path.join(mesh.workdir, "control.log")
        with open(control_log, "w") as log_file:
            mesh.start(*pymesh, "control", "serve", "--config-dir", config_dir, "--listen", CONTROL,
                       "--admin", CONTROL_ADMIN, "--data-dir", os.path.join(mesh.workdir, "control"),
                       "--mesh-config", os.path.join(HERE, "mesh.yaml"), stderr=log_file)
        wait_ready(f"http://{CONTROL_ADMIN}/ready")
        tokens = {account: join_token(pymesh, mesh.workdir, account)
                  for account in sorted({service_account(name) for name in WORKLOADS})}
        for name, (labels, ingress, app_port, admin) in WORKLOADS.items():
            if app_port:
                mesh.start(sys.executable, APP, name, str(app_port))
            registration = ("--address", "127.0.0.1", "--port", f"http={ingress}") if ingress else ()
            mesh.start(*pymesh, "proxy", "--control", CONTROL, "--workload", name, "--namespace", "demo",
                       "--labels", labels, "--node-id", f"{name}.demo", *registration,
                       "--token-file", tokens[service_account(name)],
                       "--data-dir", os.path.join(mesh.workdir, name),
                       "--admin-port", str(admin), "--stats-port", str(admin + 1), "--health-port", str(admin + 2),
                       "--access-log", "off", "--log-level", "warning")
        for name, (_, _, _, admin) in WORKLOADS.items():
            wait_ready(f"http://127.0.0.1:{admin}/ready")
        print("pymesh canary demo: a control server and three sidecars on 127.0.0.1, control channel over mTLS")
        print(f"  control server {CONTROL} watching {config_dir}")
        print(f"  productpage -> sidecar egress http://{EGRESS[0]}:{EGRESS[1]} -> reviews v1 / v2 (registered by their sidecars)\n")
        status = subprocess.run([*pymesh, "control", "status", "--server", CONTROL_ADMIN], capture_output=True, text=True)
        print("pymesh control status:\n" + "\n".join("  " + line for line in status.stdout.splitlines()))

        traffic = Traffic()
        traffic.start()
        start = time.monotonic()
        time.sleep(OBSERVE)
        print(f"\nweights v1=100 v2=0   {share(traffic.since(start))}")
        route_file = os.path.join(config_dir, "reviews-route.yaml")
        for v1, v2 in STEPS:
            with open(route_file, "w", encoding="utf-8") as handle:
                handle.write(ROUTE.format(v1=v1, v2=v2))
            edited = time.monotonic()
            time.sleep(OBSERVE)
            results = traffic.since(edited)
            took = switch_time(results, edited, v1, v2)
            seen = f"in force {took:.2f} s after the edit" if took is not None else "NOT applied"
            after = [entry for entry in results if entry[0] > edited + (took or OBSERVE)]
            print(f"weights v1={v1:<3} v2={v2:<3} {share(after)}   ({seen}: {os.path.basename(route_file)} edited live)")
        traffic.stopping.set()
        traffic.join()
        failures = [result for _, result in traffic.log if result.startswith("error")]
        print(f"\n{len(traffic.log)} requests in all during the shifts, {len(failures)} failed")
        if args.keep:
            Traffic(pause=0.05).start()  # ~20 req/s, so the graph's rates stay live
            wait_for_stop(tour(config_dir, start_prometheus(mesh)))
        return 1 if failures else 0
    finally:
        mesh.stop()


if __name__ == "__main__":
    sys.exit(main())
