"""Shared pieces of the sidecar end-to-end tests: pods with the init step, a proxy as uid 1337 with
--capture, apps as uid 1000, the mesh configuration, and bounded ways to read what happened
(Prometheus text, Envoy-style /stats, iptables nat counters).

Everything runs inside the test bed's namespaces (tests/netns.py); the bed stops every process
and deletes every namespace, also when a test fails. Waits are on output lines
(Process.wait_for_line) or polls with a deadline (`wait_until`), never bare sleeps.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from netns import Pod, Process
from pymesh.capture.apply import apply
from pymesh.capture.settings import CaptureSettings

import waiting  # tests/waiting.py

PROXY_UID = 1337  # the sidecar's uid: the init step exempts its traffic from capture
APP_UID = 1000  # the apps' uid: an ordinary process whose traffic is captured
NAMESPACE = "demo"  # the mesh namespace every workload here belongs to
HTTP_PORT = 8080  # reviews, declared HTTP
TCP_PORT = 9000  # banner, declared TCP
UNDECLARED_PORT = 9100  # no service: captured outbound goes through the passthrough
ROUTE_HEADER = ("x-mesh-route", "all-to-v2")  # what the VirtualService adds to each request
REVIEWS = f"reviews.{NAMESPACE}.svc.cluster.local"
BANNER = f"banner.{NAMESPACE}.svc.cluster.local"

APPS = Path(__file__).with_name("sidecar_apps.py")
WAIT = 10.0  # seconds any single wait in these tests may take
CURL_MAX_TIME = 5  # seconds
PROXY_FILE_LIMIT = 256  # open files per proxy: plenty for a test, and a bound on any capture loop

# For the modules that run pods (the `testbed` fixture itself skips without root or netns).
requires_tools = pytest.mark.skipif(
    shutil.which("curl") is None or shutil.which("prlimit") is None,
    reason="the sidecar tests need `curl` (the apps' client) and `prlimit` (util-linux) on PATH")


# --- configuration -----------------------------------------------------------------------------


def mesh_yaml(server_ip: str, v1_ip: str, v2_ip: str) -> str:
    """The one configuration every proxy reads. `reviews` is reached at server_ip (its virtual
    address) and has two versions, v1 on v1_ip and v2 on v2_ip; its VirtualService sends every
    request to v2 and adds ROUTE_HEADER. `banner` (TCP) is at server_ip, served there."""
    header, value = ROUTE_HEADER
    return f"""\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews, namespace: {NAMESPACE}}}
spec:
  hosts: [{REVIEWS}]
  addresses: [{server_ip}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {{number: {HTTP_PORT}, name: http, protocol: HTTP}}
  endpoints:
  - {{address: {v1_ip}, labels: {{app: reviews, version: v1}}}}
  - {{address: {v2_ip}, labels: {{app: reviews, version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: {NAMESPACE}}}
spec:
  host: {REVIEWS}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: {NAMESPACE}}}
spec:
  hosts: [{REVIEWS}]
  http:
  - name: all-to-v2
    headers:
      request:
        set: {{{header}: {value}}}
    route:
    - destination: {{host: {REVIEWS}, subset: v2}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: banner, namespace: {NAMESPACE}}}
spec:
  hosts: [{BANNER}]
  addresses: [{server_ip}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {{number: {TCP_PORT}, name: tcp, protocol: TCP}}
  endpoints:
  - {{address: {server_ip}, labels: {{app: banner}}}}
"""


# Appended to mesh_yaml: the client pod's proxy refuses what the mesh does not declare.
REGISTRY_ONLY = f"""
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: client, namespace: {NAMESPACE}}}
spec:
  workloadSelector: {{labels: {{app: client}}}}
  outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}
"""


def kubernetes_service(name: str, namespace: str, ports: str, address: str, endpoint: str = "") -> str:
    """A Kubernetes Service and its one pod, as the ServiceEntry a test adds in its place (no
    Kubernetes here): host <name>.<namespace>.svc.cluster.local, `ports` as YAML flow items
    ("{number: 80, name: http, protocol: HTTP}", ...), the endpoint at `address` with `endpoint`'s
    extra fields (labels, serviceAccount) as flow YAML."""
    return f"""
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  hosts: [{name}.{namespace}.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ports}]
  endpoints:
  - {{address: {address}{", " + endpoint if endpoint else ""}}}
"""


def write_config(directory: Path, text: str) -> str:
    path = directory / "mesh.yaml"
    path.write_text(text)
    return str(path)


# --- pods: init step, proxy, apps --------------------------------------------------------------


def init_capture(pod: Pod, **settings) -> None:
    """The init step in `pod`: REDIRECT mode and istio-iptables' defaults unless overridden."""
    apply(CaptureSettings(**settings), netns=pod.netns)


@dataclass
class Sidecar:
    """A proxy running in a pod as PROXY_UID; its endpoints are on the pod's own loopback."""

    pod: Pod
    process: Process

    def get(self, port: int, path: str) -> str:
        """GET an admin/stats endpoint from inside the pod (as root: loopback is never captured)."""
        return self.pod.run("curl", "-sS", "--max-time", CURL_MAX_TIME, f"http://127.0.0.1:{port}{path}").stdout

    def prometheus(self) -> str:
        return self.get(15090, "/stats/prometheus")

    def stats(self) -> dict[str, int]:
        """Envoy's /stats as {"scope.name": value}."""
        out = {}
        for line in self.get(15000, "/stats").splitlines():
            name, _, value = line.rpartition(": ")
            if name:
                out[name] = int(value)
        return out

    def wait_for_metric(self, name: str, at_least: float = 1, **labels: str) -> float:
        """Poll /stats/prometheus until the samples of `name` matching `labels` add up to at least
        `at_least` (workers publish about once a second); the sum, or a failure showing them."""
        last = ""

        def enough() -> float | None:
            nonlocal last
            last = self.prometheus()
            total = metric_sum(last, name, **labels)
            return total if total >= at_least else None

        try:
            return wait_until(enough, what=f"{name}{labels} >= {at_least} in {self.pod.name}'s proxy")
        except AssertionError as error:
            shown = "\n".join(line for line in last.splitlines() if line.startswith(name)) or "(no such samples)"
            raise AssertionError(f"{error}; samples:\n{shown}\nproxy output:\n{self.process.output()[-4000:]}") from None


def config_source(config: str | None) -> tuple[str, ...]:
    return ("--config", config) if config is not None else ()


def start_sidecar(pod: Pod, config: str | None, workload: str, labels: Mapping[str, str] = {},
                  extra: tuple[str, ...] = (), limit_files: int = PROXY_FILE_LIMIT,
                  env: Mapping[str, str] | None = None, namespace: str = NAMESPACE) -> Sidecar:
    """`pymesh proxy --capture` in `pod` as PROXY_UID, waited on until it logs "ready"; `config`
    is a --config file, or None when `extra` says where the configuration comes from (--control).

    Its open files are capped (prlimit), so a capture loop, where the proxy's own connections
    come back to it, ends at that many sockets instead of exhausting the machine.
    """
    argv = [sys.executable, "-m", "pymesh", "proxy", *config_source(config), "--capture",
            "--workload", workload, "--namespace", namespace,
            "--labels", ",".join(f"{k}={v}" for k, v in labels.items()), "--drain-timeout", "1", *extra]
    process = pod.spawn("prlimit", f"--nofile={limit_files}", "--", *argv, uid=PROXY_UID,
                        env=None if env is None else dict(env))
    process.wait_for_line("ready:", timeout=WAIT)
    return Sidecar(pod, process)


def start_gateway(pod: Pod, config: str | None, labels: str, workload: str = "istio-egressgateway",
                  namespace: str = "istio-system", extra: tuple[str, ...] = (),
                  env: Mapping[str, str] | None = None) -> Sidecar:
    """`pymesh gateway` in `pod` (as root: it listens on its servers' ports, 80 and 443; no
    capture), waited on until it logs "ready"; read through the same admin endpoints. `config`
    as for start_sidecar."""
    argv = [sys.executable, "-m", "pymesh", "gateway", *config_source(config), "--labels", labels,
            "--workload", workload, "--namespace", namespace, "--drain-timeout", "1", *extra]
    process = pod.spawn("prlimit", f"--nofile={PROXY_FILE_LIMIT}", "--", *argv, env=None if env is None else dict(env))
    process.wait_for_line("ready:", timeout=WAIT)
    return Sidecar(pod, process)


def sidecar_pod(pod: Pod, config: str | None, workload: str, labels: Mapping[str, str] = {},
                extra: tuple[str, ...] = (), env: Mapping[str, str] | None = None, namespace: str = NAMESPACE,
                **capture) -> Sidecar:
    """A meshed pod: the init step (with `capture` settings over the defaults), then its proxy
    (with `env` as its whole environment, when given) in `namespace`."""
    init_capture(pod, **capture)
    return start_sidecar(pod, config, workload, labels, extra, env=env, namespace=namespace)


def start_app(pod: Pod, *args: object, uid: int = APP_UID) -> Process:
    """A sidecar_apps.py server in `pod`, waited on until it listens."""
    process = pod.spawn(sys.executable, "-u", APPS, *args, uid=uid)
    process.wait_for_line("ready", timeout=WAIT)
    return process


def app_curl(pod: Pod, url: str, *options: str, check: bool = True, max_time: float = CURL_MAX_TIME):
    """curl as the app (APP_UID): a client that knows nothing of the mesh."""
    return pod.run("curl", "-sS", "--max-time", max_time, *options, url, uid=APP_UID, check=check,
                   timeout=max_time + 5)


def get_json(pod: Pod, url: str) -> dict:
    return json.loads(app_curl(pod, url).stdout)


def call_banner(pod: Pod, host: str, port: int, line: str, timeout: float = WAIT) -> dict:
    """The server-first client, as the app: {"banner": ..., "echo": ...}."""
    done = pod.run(sys.executable, APPS, "call-banner", host, port, line, timeout, uid=APP_UID, timeout=timeout + 5)
    return json.loads(done.stdout)


# --- reading what happened ---------------------------------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples of metric `name` in Prometheus text: (labels, value) pairs."""
    out = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match.group(1) == name:
            out.append((dict(_LABEL.findall(match.group(2) or "")), float(match.group(3))))
    return out


def metric_sum(text: str, name: str, **labels: str) -> float:
    return sum(value for got, value in samples(text, name) if all(got.get(k) == v for k, v in labels.items()))


def nat_connections(pod: Pod) -> dict[str, int]:
    """{rule as iptables-save writes it, without "-A": packets} for the nat table of `pod`, e.g.
    {"PYMESH_OUTPUT -m owner --uid-owner 1337 -j RETURN": 3, ...}. The nat table sees only the first
    packet of a connection, so a rule's packet count is the number of connections it took."""
    out = {}
    for line in pod.run("iptables-save", "-c", "-t", "nat").stdout.splitlines():
        match = re.match(r"^\[(\d+):\d+\] -A (.*)$", line)
        if match:
            out[match.group(2)] = int(match.group(1))
    return out


def wait_until(predicate: Callable[[], object], timeout: float = WAIT, interval: float = 0.1,
               what: str = "condition"):
    """Poll `predicate` until it returns something truthy (returned) or the deadline passes."""
    return waiting.wait_until(predicate, timeout, interval, what)
