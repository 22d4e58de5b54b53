"""The Gateway API's conformance manifests run without Kubernetes (see PROVENANCE.md).

Documents of the gateway.networking.k8s.io group are mesh configuration and go to pymesh as
written; a Service becomes a ServiceEntry for its cluster name, whose endpoints are the local
echo servers standing in for the pods its selector picks; Namespaces and Deployments are
Kubernetes objects, not mesh configuration, and are skipped (the validate work decides what
the loader itself does with such kinds)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import yaml

CONFORMANCE = Path(__file__).parent / "conformance"
GATEWAY_GROUP = "gateway.networking.k8s.io"
# Istio's protocol from a Service port: appProtocol, else the name's prefix; a port with
# neither is sniffed by Istio, which finds HTTP for these echo servers
_PROTOCOLS = {"http": "HTTP", "http2": "HTTP2", "grpc": "GRPC", "https": "HTTPS", "tls": "TLS", "tcp": "TCP",
              "kubernetes.io/h2c": "HTTP2", "kubernetes.io/ws": "HTTP", "udp": "UDP"}


def documents(*names: str, gateway_class: str = "pymesh") -> list[dict]:
    """The documents of the files, with the suite's {GATEWAY_CLASS_NAME} placeholder filled
    in (as the conformance suite does before applying them)."""
    out = []
    for name in names:
        text = (CONFORMANCE / name).read_text().replace("{GATEWAY_CLASS_NAME}", gateway_class)
        out += [d for d in yaml.safe_load_all(text) if d]
    return out


def gateway_service(gateway: str, namespace: str, listen: dict[int, int]) -> dict:
    """The Service Istio deploys for a Gateway API Gateway (`<name>-<class>`, selecting the pod
    labelled gateway.networking.k8s.io/gateway-name): each listener port -> the local port the
    `pymesh gateway` listens on (targetPort)."""
    return {
        "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
        "metadata": {"name": f"{gateway}-pymesh", "namespace": namespace},
        "spec": {"hosts": [f"{gateway}-pymesh.{namespace}.svc.cluster.local"], "location": "MESH_INTERNAL",
                 "resolution": "STATIC", "workloadSelector": {"labels": {"gateway.networking.k8s.io/gateway-name": gateway}},
                 "ports": [{"number": n, "targetPort": t, "name": f"port-{n}", "protocol": "TCP"} for n, t in listen.items()]},
    }


def gateway_api(docs: list[dict]) -> list[dict]:
    return [d for d in docs if str(d.get("apiVersion", "")).split("/")[0] == GATEWAY_GROUP]


def services(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d.get("apiVersion") == "v1" and d.get("kind") == "Service"]


def protocol(port: dict) -> str:
    name = port.get("appProtocol") or port.get("name", "").split("-")[0]
    return _PROTOCOLS.get(str(name).lower(), "TCP" if port.get("protocol") == "UDP" else "HTTP")


def port_name(port: dict) -> str:
    return port.get("name") or f"port-{port['port']}"


def service_entry(service: dict, pods: list[tuple[dict, dict[str, int]]], only: tuple[str, ...] = ("HTTP",)) -> dict:
    """The ServiceEntry standing in for `service`: its ports of the `only` protocols, and an
    endpoint per (labels, {port name: local port}) pod the selector picks."""
    meta, spec = service["metadata"], service["spec"]
    selector = spec.get("selector", {})
    ports = [p for p in spec["ports"] if protocol(p) in only]
    endpoints = []
    for labels, local_ports in pods:
        if all(labels.get(k) == v for k, v in selector.items()):
            endpoints.append({"address": "127.0.0.1", "labels": dict(labels),
                              "ports": {port_name(p): local_ports[port_name(p)] for p in ports if port_name(p) in local_ports}})
    return {
        "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "spec": {"hosts": [f"{meta['name']}.{meta['namespace']}.svc.cluster.local"], "location": "MESH_INTERNAL",
                 "resolution": "STATIC", "endpoints": endpoints,
                 "ports": [{"number": p["port"], "name": port_name(p), "protocol": protocol(p)} for p in ports]},
    }


def client_sidecar(namespace: str, bind: str, *ports: int) -> dict:
    """The client pod's Sidecar: egress listeners on the services' own ports, on `bind`."""
    return {"apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
            "metadata": {"name": "client", "namespace": namespace},
            "spec": {"egress": [{"port": {"number": port, "protocol": "HTTP", "name": f"http-{port}"}, "bind": bind,
                                 "captureMode": "NONE", "hosts": ["*/*"]} for port in ports]}}


def loopback_with_port(port: int, tries: int = 50) -> str:
    """A 127.x.y.z address where `port` is free: the services' own low ports (80) are bound
    per test on an address nobody else uses."""
    import random
    import socket

    for _ in range(tries):
        address = f"127.{random.randrange(1, 255)}.{random.randrange(0, 255)}.{random.randrange(2, 255)}"
        with socket.socket() as sock:
            try:
                sock.bind((address, port))
            except OSError:
                continue
        return address
    raise RuntimeError(f"no loopback address with port {port} free after {tries} tries")


@contextmanager
def running(proxy, servers):
    """The proxy started; it and the backend servers stopped at the end, whatever happens."""
    try:
        proxy.start()
        yield
    finally:
        proxy.stop()
        for server in servers:
            server.stop()
