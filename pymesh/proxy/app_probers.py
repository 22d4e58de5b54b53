"""The app probes the kubelet sends to the sidecar's health port after kube-inject pointed them
there (`/app-health/<container>/livez|readyz|startupz`, Istio's agent does the same on 15020):
each path runs the app's original probe from PYMESH_KUBE_APP_PROBERS and answers 200 when it
passed, 503 with the reason when not. The probe's host defaults to the pod's address, as the
kubelet's, reached from 127.0.0.6 as the proxy's inbound passthrough is: the capture rules send
the proxy's other connections to its own pod address back through inbound capture, where
STRICT mTLS would refuse a plaintext probe.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from typing import Any

from pymesh.api import model
from pymesh.kube import app_probes
from pymesh.proxy import grpc_health, health_probe
from pymesh.proxy.upstream import inbound_source

DEFAULT_TIMEOUT = 1  # seconds: Kubernetes' timeoutSeconds default


@dataclass(frozen=True)
class GrpcCheck:
    port: int
    service: str = ""


@dataclass(frozen=True)
class AppProber:
    check: model.ReadinessProbe | GrpcCheck
    timeout: float


def parse(text: str) -> dict[str, AppProber]:
    """The env var's probers by path; ValueError naming the path and field when malformed."""
    out = {}
    for path, prober in app_probes.decode(text).items():
        timeout = prober.get("timeoutSeconds", DEFAULT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
            raise ValueError(f"{app_probes.PROBERS_ENV}[{path}].timeoutSeconds: expected a positive integer")
        out[path] = AppProber(_check(path, prober), float(timeout))
    return out


def _check(path: str, prober: dict) -> model.ReadinessProbe | GrpcCheck:
    where = f"{app_probes.PROBERS_ENV}[{path}]"
    if "grpc" in prober:
        grpc = _mapping(prober["grpc"], f"{where}.grpc")
        return GrpcCheck(_port(grpc, f"{where}.grpc"), _text(grpc, "service", f"{where}.grpc"))
    if "tcpSocket" in prober:
        tcp = _mapping(prober["tcpSocket"], f"{where}.tcpSocket")
        return model.ReadinessProbe(tcp_socket=model.TCPHealthCheck(_port(tcp, f"{where}.tcpSocket"),
                                                                    _text(tcp, "host", f"{where}.tcpSocket")))
    http = _mapping(prober["httpGet"], f"{where}.httpGet")
    scheme = _text(http, "scheme", f"{where}.httpGet") or "HTTP"
    if scheme not in ("HTTP", "HTTPS"):
        raise ValueError(f"{where}.httpGet.scheme: expected HTTP or HTTPS, got {scheme!r}")
    path_ = _text(http, "path", f"{where}.httpGet")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in path_):
        raise ValueError(f"{where}.httpGet.path: spaces or control characters")
    headers = []
    for index, header in enumerate(http.get("httpHeaders") or ()):
        header = _mapping(header, f"{where}.httpGet.httpHeaders[{index}]")
        name, value = _text(header, "name", where), _text(header, "value", where)
        if not name or any(c in name for c in ":\r\n ") or any(c in value for c in "\r\n"):
            raise ValueError(f"{where}.httpGet.httpHeaders[{index}]: not a header")
        headers.append(model.HTTPHeader(name, value))
    return model.ReadinessProbe(http_get=model.HTTPHealthCheck(
        port=_port(http, f"{where}.httpGet"), path=path_, host=_text(http, "host", f"{where}.httpGet"),
        scheme=scheme, headers=tuple(headers)))


def _mapping(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected an object")
    return value


def _port(handler: dict, where: str) -> int:
    port = handler.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"{where}.port: expected a port number, got {port!r}")
    return port


def _text(handler: dict, key: str, where: str) -> str:
    value = handler.get(key, "")
    if not isinstance(value, str):
        raise ValueError(f"{where}.{key}: expected a string")
    return value


async def answer(prober: AppProber, address: str) -> tuple[int, bytes, bytes]:
    """Run one probe against the app at `address` (the pod's); the health port's answer."""
    check = prober.check
    if isinstance(check, model.ReadinessProbe) and check.tcp_socket is not None and not check.tcp_socket.host:
        check = dataclasses.replace(check, tcp_socket=dataclasses.replace(check.tcp_socket, host=address))
    host = address if isinstance(check, GrpcCheck) else (check.http_get or check.tcp_socket).host or address
    local_addr = inbound_source(host) if host == address else None  # else capture sends it back to the proxy
    try:
        if isinstance(check, GrpcCheck):
            problem = await asyncio.wait_for(grpc_health.check(address, check.port, check.service, local_addr),
                                             prober.timeout)
        else:
            problem = await asyncio.wait_for(health_probe.check(check, address, local_addr), prober.timeout)
    except asyncio.TimeoutError:
        problem = f"probe timed out after {prober.timeout:g}s"
    if problem is None:
        return 200, b"text/plain", b"OK\n"
    return 503, b"text/plain", f"{problem}\n".encode("utf-8", "replace")
