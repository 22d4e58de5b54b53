"""A whole local mesh for the end-to-end tests: a real `pymesh control serve` subprocess watching a
config directory, real `pymesh proxy --control` subprocesses, real upstream apps, all on
127.0.0.1 with ports picked per test.

The upstream servers, the raw HTTP client, the YAML builders and the proxy launcher come from
tests/proxy/proxy_harness.py; this module adds the control server, proxies that get their
configuration from it, a timestamped traffic loop, and the `mesh` fixture that owns every process
of a test and kills them all (process groups) at teardown, printing their logs so a failing test
shows them.

Synchronisation is always a bounded poll (the server's /status, a proxy's /ready or /clusters, a
log file) or a wait on a condition variable; nothing sleeps to let time pass.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

_PROXY_TESTS = str(Path(__file__).resolve().parent.parent / "proxy")
if _PROXY_TESTS not in sys.path:  # run on its own, pytest puts only tests/mesh on the path
    sys.path.insert(0, _PROXY_TESTS)

from proxy_harness import (  # noqa: E402
    LOCALHOST, Client, Eof, Proxy, Upstream, destination_rule, dump_yaml, endpoint, free_ports, http_get,
    pymesh_command, service_entry, to_subset, virtual_service, wait_until,
)

READY_TIMEOUT = 20.0
WAIT = 10.0
NAMESPACE = "default"  # proxy_harness's builders put every resource there


# --- YAML ------------------------------------------------------------------------------------------


def write_file(path: Path, text: str) -> float:
    """Replace a file in one step (temporary file, rename), as editors and ConfigMap updates do;
    returns the monotonic time right after the rename, when the new content is on disk."""
    tmp = path.with_name(f".{path.name}.tmp")  # hidden and not *.yaml: the server ignores it
    tmp.write_text(text)
    os.replace(tmp, path)
    return time.monotonic()


def egress_sidecar(name: str, selector: dict, port: int, protocol: str = "HTTP") -> dict:
    """A Sidecar for the workloads matching `selector`: one egress listener on 127.0.0.1:`port`
    (no capture, so no root is needed) for every host in the mesh."""
    return {
        "apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "workloadSelector": {"labels": dict(selector)},
            "egress": [{"port": {"number": port, "protocol": protocol, "name": f"{protocol.lower()}-{port}"},
                        "bind": LOCALHOST, "captureMode": "NONE", "hosts": ["*/*"]}],
        },
    }


def ingress_sidecar(name: str, selector: dict, port: int, app_port: int, protocol: str = "HTTP") -> dict:
    """A Sidecar accepting inbound traffic on 127.0.0.1:`port` and handing it to the local app."""
    return {
        "apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "workloadSelector": {"labels": dict(selector)},
            "ingress": [{"port": {"number": port, "protocol": protocol, "name": protocol.lower()},
                         "bind": LOCALHOST, "captureMode": "NONE", "defaultEndpoint": f"{LOCALHOST}:{app_port}"}],
        },
    }


def selected_service(host: str, port: int, selector: dict, name: str, protocol: str = "HTTP") -> dict:
    """A ServiceEntry with no endpoints of its own: the registered workloads matching
    `selector` are its endpoints (its port is named after the protocol)."""
    resource = service_entry(port, [], host=host, name=name, protocol=protocol)
    del resource["spec"]["endpoints"]
    resource["spec"]["workloadSelector"] = {"labels": dict(selector)}
    return resource


@dataclass
class RegisteredService:
    port: int  # the client sidecar's egress listener for HOST
    ingress: int  # the workload's sidecar ingress listener (what it registers)
    app: Upstream
    labels: dict


def registered_service(mesh: "Mesh", name: str = "reviews") -> RegisteredService:
    """The configuration of a client sidecar (CLIENT labels) calling HOST, whose endpoints are the
    workloads labelled app=<name> that register themselves, each behind its sidecar's ingress."""
    port, ingress = free_ports(2)
    app = mesh.app(name)
    labels = {"app": name}
    mesh.write("service.yaml", [selected_service(HOST, port, labels, name)])
    mesh.write("sidecars.yaml", [egress_sidecar("productpage", CLIENT, port),
                                 ingress_sidecar(name, labels, ingress, app.port)])
    return RegisteredService(port, ingress, app, labels)


def canary_route(v1: int, v2: int, host: str) -> dict:
    return virtual_service([{"name": "canary", "route": [to_subset("v1", host, v1), to_subset("v2", host, v2)]}],
                           host=host)


def versioned_service(host: str, port: int, versions: dict[str, Upstream]) -> list[dict]:
    """A ServiceEntry whose static endpoints are the upstream apps (labelled version=<key>) and a
    DestinationRule with one subset per version."""
    return [service_entry(port, [endpoint(app, {"version": v}) for v, app in versions.items()], host=host),
            destination_rule(host, list(versions))]


# --- the control server ------------------------------------------------------------------------------


class Control:
    """`pymesh control serve` as a subprocess in its own process group, on fixed ports picked
    once, so that a restart comes back where the proxies expect it."""

    def __init__(self, workdir: Path, config_dir: Path, grace: float = 1.0, port: int | None = None,
                 data_dir: Path | None = None, secure: bool = False, extra: tuple[str, ...] = ()) -> None:
        self.config_dir = config_dir
        self.secure = secure  # False: --insecure (plaintext, no identities)
        self.extra = extra
        self.grace = grace
        self.data_dir = data_dir
        ports = free_ports(2)
        self.port = port or ports[0]
        self.admin_port = ports[1]
        self.log_path = workdir / "control.log"
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{LOCALHOST}:{self.port}"

    def command(self) -> list[str]:
        cmd = pymesh_command() + [
            "control", "serve", "--config-dir", str(self.config_dir), "--listen", self.address,
            "--admin", f"{LOCALHOST}:{self.admin_port}", "--grace", str(self.grace),
        ]
        if self.data_dir is not None:
            cmd += ["--data-dir", str(self.data_dir)]
        return cmd + list(self.extra) + ([] if self.secure else ["--insecure"])

    def start(self, wait: bool = True) -> Control:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True)
        if wait:
            self.wait_ready()
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        def ready():
            if not self.running():
                raise AssertionError(f"control server exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                return http_get(self.admin_port, "/ready", timeout=1.0)[0] == 200
            except OSError:
                return False
        wait_until(ready, timeout, 0.05, "the control server's /ready")

    def kill(self, signum: int = signal.SIGKILL) -> None:
        """The whole process group, at once (SIGKILL: no goodbye to the proxies)."""
        if self.proc is None or self.proc.poll() is not None:
            return  # gone and reaped: its id may belong to someone else by now
        try:
            os.killpg(self.proc.pid, signum)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # what it says about the mesh
    def status(self) -> dict:
        code, _, body = http_get(self.admin_port, "/status")
        assert code == 200, body
        return json.loads(body)

    def node(self, node_id: str, status: dict | None = None) -> dict | None:
        status = status if status is not None else self.status()
        return next((p for p in status["proxies"] if p["id"] == node_id), None)

    def wait_status(self, predicate: Callable[[dict], object], what: str, timeout: float = WAIT) -> dict:
        """Poll /status until `predicate(status)` holds; the status it held for."""
        seen: dict = {}

        def check():
            seen["status"] = status = self.status()
            return status if predicate(status) else None
        try:
            return wait_until(check, timeout, 0.02, what)
        except AssertionError as error:
            raise AssertionError(f"{error}; last /status: {json.dumps(seen.get('status'))[:3000]}") from None

    def wait_node(self, node_id: str, predicate: Callable[[dict], object], what: str, timeout: float = WAIT) -> dict:
        status = self.wait_status(lambda s: (n := self.node(node_id, s)) is not None and predicate(n),
                                  f"{node_id}: {what}", timeout)
        return self.node(node_id, status)

    def wait_synced(self, node_id: str, timeout: float = WAIT) -> dict:
        """Until the proxy is connected and has ACKed the server's current version."""
        def synced(status: dict) -> bool:
            node = self.node(node_id, status)
            return (node is not None and node["connected"] and node["state"] == "SYNCED"
                    and node["acked_version"] == status["version"])
        return self.node(node_id, self.wait_status(synced, f"{node_id}: connected and SYNCED at the current version",
                                                   timeout))

    def join_token(self, path: Path, namespace: str = NAMESPACE, service_account: str = "default",
                   ttl: str = "1h") -> Path:
        """`pymesh control token create` into `path` (0600), for a proxy's --token-file."""
        done = subprocess.run(pymesh_command() + [
            "control", "token", "create", "--server", f"{LOCALHOST}:{self.admin_port}", "--namespace", namespace,
            "--service-account", service_account, "--ttl", ttl], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, f"pymesh control token create failed:\n{done.stderr}"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as stream:
            stream.write(done.stdout)
        return path

    def status_text(self) -> str:
        """What `pymesh control status --server ADMIN` prints (it must succeed)."""
        done = subprocess.run(pymesh_command() + ["control", "status", "--server", f"{LOCALHOST}:{self.admin_port}"],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, f"pymesh control status failed ({done.returncode}):\n{done.stderr}"
        return done.stdout


# --- proxies --------------------------------------------------------------------------------------


class MeshProxy(Proxy):
    """`pymesh proxy --control ...` (or `pymesh gateway`): proxy_harness's launcher (ports, logs, readiness, process
    group kill) with its configuration from the control server instead of a file."""

    def __init__(self, workdir: Path, control_port: int, workload: str, labels: dict, *, node_id: str | None = None,
                 address: str | None = None, ports: dict[str, int] | None = None, data_dir: Path | None = None,
                 log_level: str = "info", concurrency: int = 1, token_file: Path | None = None,
                 namespace: str = NAMESPACE, subcommand: str = "proxy", workload_group: str | None = None,
                 extra: tuple[str, ...] = ()) -> None:
        super().__init__(workdir, "", labels=",".join(f"{k}={v}" for k, v in labels.items()), name=workload,
                         concurrency=concurrency, subcommand=subcommand, extra_args=extra)
        self.config_path.unlink()  # the base class writes a config file: this proxy has none
        self.control_port = control_port
        self.workload = workload
        self.namespace = namespace
        self.token_file = token_file  # a join token: mTLS to a secure control server
        self.node_id = node_id or f"{workload}.{namespace}"
        self.address = address
        self.ports = dict(ports or {})
        self.data_dir = data_dir
        self.log_level = log_level
        self.workload_group = workload_group  # --workload-group: a VM's proxy auto-registering

    def command(self) -> list[str]:
        cmd = pymesh_command() + [
            self.subcommand, "--control", f"{LOCALHOST}:{self.control_port}", "--workload", self.workload,
            "--namespace", self.namespace, "--node-id", self.node_id,
            "--admin-port", str(self.admin_port), "--stats-port", str(self.stats_port),
            "--health-port", str(self.health_port), "--access-log", "off", "--log-level", self.log_level,
        ]
        if self.labels:
            cmd += ["--labels", self.labels]
        if self.subcommand == "gateway":
            cmd += ["--listen-address", LOCALHOST]  # tests listen on loopback only
        if self.concurrency != 1:
            cmd += ["--concurrency", str(self.concurrency)]
        if self.workload_group:
            cmd += ["--workload-group", self.workload_group]
        if self.address:
            cmd += ["--address", self.address]
        cmd += [f"--port={name}={number}" for name, number in self.ports.items()]
        if self.data_dir is not None:
            cmd += ["--data-dir", str(self.data_dir)]
        if self.token_file is not None:
            cmd += ["--token-file", str(self.token_file)]
        return cmd + self.extra_args

    def ready_status(self) -> int:
        return self.admin("/ready")[0]

    def clusters(self) -> str:
        code, _, body = self.admin("/clusters")
        assert code == 200, body
        return body.decode()

    def endpoints(self) -> set[str]:
        """Every endpoint address:port in /clusters (Envoy's `cluster::address:port::stat::value`)."""
        return {line.split("::")[1] for line in self.clusters().splitlines() if line.count("::") >= 3}


def get(port: int, host: str, path: str = "/", timeout: float = 5.0):
    """One request through a listener on a fresh connection: the Response."""
    with Client(port, timeout=timeout) as client:
        return client.request("GET", path, host=host)


def answers_from(port: int, host: str, n: int = 10) -> list[tuple[int, str | None]]:
    """(status, x-upstream) of `n` keep-alive requests through a listener."""
    with Client(port, timeout=5.0) as client:
        out = []
        for _ in range(n):
            response = client.request("GET", "/", host=host)
            out.append((response.status, response.header("x-upstream")))
        return out


# --- traffic ---------------------------------------------------------------------------------------


@dataclass
class Answer:
    sent: float  # monotonic time the request was sent
    received: float  # ... and its answer (or error) came
    status: int  # 0: no response
    upstream: str | None  # x-upstream: which app answered
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.error


class Traffic:
    """A client in a thread sending keep-alive GETs through a listener, one at a time, recording
    each answer with its times. Bounded by `max_requests` and `max_seconds`; a failed connection
    is recorded and replaced. Paced (`pause` between requests) so that on a small machine the
    proxies and the control server keep CPU time for the change under test."""

    def __init__(self, port: int, host: str, max_requests: int = 50_000, max_seconds: float = 60.0,
                 pause: float = 0.002) -> None:
        self.port = port
        self.host = host
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.pause = pause
        self.cond = threading.Condition()
        self.answers: list[Answer] = []
        self.finished = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"traffic-{port}", daemon=True)

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def _run(self) -> None:
        client = None
        deadline = time.monotonic() + self.max_seconds
        try:
            for _ in range(self.max_requests):
                if self._stop.is_set() or time.monotonic() > deadline:
                    break
                sent = time.monotonic()
                try:
                    if client is None:
                        client = Client(self.port, timeout=5.0)
                    response = client.request("GET", "/", host=self.host)
                    answer = Answer(sent, time.monotonic(), response.status, response.header("x-upstream"))
                    if response.header("connection") == "close":
                        client.close()
                        client = None
                except (OSError, Eof, ValueError) as error:
                    answer = Answer(sent, time.monotonic(), 0, None, f"{type(error).__name__}: {error}")
                    if client is not None:
                        client.close()
                        client = None
                with self.cond:
                    self.answers.append(answer)
                    self.cond.notify_all()
                self._stop.wait(self.pause)
        finally:
            if client is not None:
                client.close()
            with self.cond:
                self.finished = True
                self.cond.notify_all()

    def wait(self, predicate: Callable[[list[Answer]], object], what: str, timeout: float = WAIT):
        """Block until `predicate(answers)` is truthy (returned); bounded, and it fails at once if
        the loop ended."""
        with self.cond:
            self.cond.wait_for(lambda: predicate(self.answers) or self.finished, timeout)
            value = predicate(self.answers)
            if not value:
                state = "the traffic loop ended" if self.finished else f"timed out after {timeout}s"
                raise AssertionError(f"{state} waiting for {what}; {summary(self.answers)}")
            return value

    def wait_more(self, n: int, what: str = "", timeout: float = WAIT) -> list[Answer]:
        """Wait for `n` more answers than there are now; those answers."""
        with self.cond:
            start = len(self.answers)
        self.wait(lambda answers: len(answers) >= start + n, what or f"{n} more answers", timeout)
        with self.cond:
            return self.answers[start:start + n]

    def snapshot(self) -> list[Answer]:
        with self.cond:
            return list(self.answers)

    def stop(self) -> list[Answer]:
        self._stop.set()
        self._thread.join(15)
        assert not self._thread.is_alive(), "the traffic loop did not stop"
        return self.snapshot()


class TcpTraffic:
    """A client in a thread opening TCP connections through a listener one after another: each
    sends `size` bytes, reads them back (an echo server behind), closes. Bounded like Traffic;
    counts the connections that echoed in full and the ones that failed."""

    def __init__(self, port: int, size: int = 1000, max_connections: int = 5_000, max_seconds: float = 60.0,
                 pause: float = 0.05) -> None:
        self.port, self.size, self.pause = port, size, pause
        self.max_connections, self.max_seconds = max_connections, max_seconds
        self.echoed = self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"tcp-traffic-{port}", daemon=True)

    def start(self) -> TcpTraffic:
        self._thread.start()
        return self

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        payload = b"x" * self.size
        for _ in range(self.max_connections):
            if self._stop.is_set() or time.monotonic() > deadline:
                break
            try:
                with socket.create_connection((LOCALHOST, self.port), timeout=5.0) as sock:
                    sock.sendall(payload)
                    got = b""
                    while len(got) < self.size:
                        data = sock.recv(65536)
                        if not data:
                            break
                        got += data
                    if got != payload:
                        raise OSError(f"{len(got)} of {self.size} bytes echoed")
                self.echoed += 1
            except OSError:
                self.failed += 1
            self._stop.wait(self.pause)


def summary(answers: list[Answer]) -> str:
    counts: dict[str, int] = {}
    for answer in answers:
        key = answer.upstream if answer.ok else (answer.error or f"status {answer.status}")
        counts[key] = counts.get(key, 0) + 1
    return f"{len(answers)} answers: {counts}"


def failures(answers: list[Answer]) -> list[Answer]:
    return [answer for answer in answers if not answer.ok]


# --- logs --------------------------------------------------------------------------------------------

_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")


def log_times(text: str, needle: str) -> list[float]:
    """Seconds (of the day, ms resolution) of the log lines containing `needle`, in order."""
    out = []
    for line in text.splitlines():
        match = _LOG_TIME.match(line)
        if match and needle in line:
            clock = time.strptime(match[1], "%Y-%m-%d %H:%M:%S")
            out.append(time.mktime(clock) + int(match[2]) / 1000)
    return out


# --- the fixture -------------------------------------------------------------------------------------


class Mesh:
    """Everything one test starts, in one place, all killed at teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config_dir = root / "config"
        self.config_dir.mkdir()
        self.controls: list[Control] = []
        self.proxies: list[MeshProxy] = []
        self.apps: list[Upstream] = []
        self.traffics: list[Traffic] = []
        self.sockets: list[socket.socket] = []

    def write(self, name: str, resources: list[dict] | str) -> float:
        """(Re)write `name` in the config directory; the monotonic time it landed."""
        return write_file(self.config_dir / name, dump_yaml(resources))

    def control(self, grace: float = 1.0, port: int | None = None, start: bool = True, **options) -> Control:
        """options: data_dir, secure (mTLS; default --insecure), extra (more arguments)."""
        server = Control(self.root, self.config_dir, grace, port, **options)
        self.controls.append(server)
        return server.start() if start else server

    def proxy(self, control_port: int, workload: str, labels: dict, wait: bool = True, **options) -> MeshProxy:
        proxy = MeshProxy(self.root / workload, control_port, workload, labels, **options)
        self.proxies.append(proxy)
        return proxy.start(wait=wait)

    def app(self, name: str, **options) -> Upstream:
        """options: Upstream's (port, host: another loopback address, handler...)."""
        app = Upstream(name, **options)
        self.apps.append(app)
        return app

    def traffic(self, port: int, host: str, **options) -> Traffic:
        traffic = Traffic(port, host, **options)
        self.traffics.append(traffic)
        return traffic.start()

    def tcp_traffic(self, port: int, **options) -> TcpTraffic:
        traffic = TcpTraffic(port, **options)
        self.traffics.append(traffic)  # stopped like the HTTP loops at teardown
        return traffic.start()

    def hold_port(self) -> int:
        """A port another process (this test) listens on, so a proxy cannot bind it."""
        sock = socket.socket()
        sock.bind((LOCALHOST, 0))
        sock.listen(8)
        self.sockets.append(sock)
        return sock.getsockname()[1]

    def close(self) -> None:
        for traffic in self.traffics:
            traffic._stop.set()
        for proxy in self.proxies:
            proxy.kill()
        for control in self.controls:
            control.kill()
        for app in self.apps:
            app.stop()
        for sock in self.sockets:
            sock.close()
        for traffic in self.traffics:
            traffic._thread.join(10)
        for proxy in self.proxies:
            print(f"--- proxy {proxy.node_id} stderr ---\n{proxy.stderr()[-5000:]}")
        for control in self.controls:
            print(f"--- control server log ---\n{control.log()[-6000:]}")
            break  # restarts append to the same log


@pytest.fixture
def mesh(tmp_path):
    """A Mesh in tmp_path; every process it started is killed at teardown."""
    world = Mesh(tmp_path)
    try:
        yield world
    finally:
        world.close()


# --- the usual mesh: a canary behind one client sidecar ---------------------------------------------

HOST = "reviews.local"
CLIENT = {"app": "productpage"}  # the labels of the client workload (selects its Sidecar)


@dataclass
class Canary:
    """A control server, two app versions as the static endpoints of HOST (subsets v1, v2), a
    VirtualService splitting between them (route.yaml), and one client proxy whose egress listener
    on 127.0.0.1:`port` (the service port) is where test traffic enters the mesh."""

    mesh: Mesh
    control: Control
    client: MeshProxy
    port: int
    apps: dict[str, Upstream]

    def route(self, v1: int, v2: int) -> float:
        """Rewrite route.yaml with these weights; the monotonic time it landed."""
        return self.mesh.write("route.yaml", [canary_route(v1, v2, HOST)])

    def answers(self, n: int = 10) -> list[tuple[int, str | None]]:
        return answers_from(self.port, HOST, n)


def start_canary(mesh: Mesh, v1: int = 100, v2: int = 0, grace: float = 1.0, data_dir: bool = False,
                 **proxy_options) -> Canary:
    port = free_ports(1)[0]
    apps = {"v1": mesh.app("v1"), "v2": mesh.app("v2")}
    mesh.write("service.yaml", versioned_service(HOST, port, apps))
    mesh.write("route.yaml", [canary_route(v1, v2, HOST)])
    mesh.write("sidecar.yaml", [egress_sidecar("productpage", CLIENT, port)])
    control = mesh.control(grace)
    client = mesh.proxy(control.port, "productpage", CLIENT,
                        data_dir=mesh.root / "productpage-data" if data_dir else None, **proxy_options)
    control.wait_synced(client.node_id)
    return Canary(mesh, control, client, port, apps)
