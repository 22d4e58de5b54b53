"""TCPRoute and TLSRoute (v1alpha2, as Istio's TCP traffic shifting and SNI passthrough tasks use
them) through `pymesh gateway`: a TCP listener proxying to an echo server, and a TLS Passthrough
listener routing by SNI to two TLS backends whose own certificates reach the client verified
(the gateway holds no key)."""

from __future__ import annotations

import pytest

from conformance_kit import gateway_service, running
from ports import free_ports
from proxy_harness import Proxy, TcpServer, dump_yaml, endpoint, service_entry
from test_gateway_servers import tcp_exchange  # gwcore's TCP client: send, half-close, read to EOF
from throwaway_ca import ThrowawayCA
from tls_peers import TlsServer, https_get

pytestmark = pytest.mark.timeout(120)
NS = "default"
A, B = "a.example.com", "b.example.com"

GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: l4-gateway
spec:
  gatewayClassName: istio
  listeners:
  - name: tcp-31400
    protocol: TCP
    port: 31400
  - name: tls
    protocol: TLS
    port: 443
    hostname: "*.example.com"
    tls:
      mode: Passthrough
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata:
  name: tcp-echo
spec:
  parentRefs:
  - name: l4-gateway
    sectionName: tcp-31400
  rules:
  - backendRefs:
    - name: tcp-echo
      port: 9000
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata:
  name: a
spec:
  parentRefs:
  - name: l4-gateway
    sectionName: tls
  hostnames: ["a.example.com"]
  rules:
  - backendRefs:
    - name: a
      port: 8443
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata:
  name: b
spec:
  parentRefs:
  - name: l4-gateway
    sectionName: tls
  hostnames: ["b.example.com"]
  rules:
  - backendRefs:
    - name: b
      port: 8443
"""


def test_tcp_and_tls_passthrough_routes(tmp_path) -> None:
    ca = ThrowawayCA(tmp_path / "pki")
    echo = TcpServer("echo")
    backends = {"a": TlsServer("a", ca.issue("a", A)), "b": TlsServer("b", ca.issue("b", B))}
    tcp_port, tls_port = free_ports(2)
    entries = [service_entry(9000, [endpoint(echo, port_name="tcp")], host=f"tcp-echo.{NS}.svc.cluster.local",
                             protocol="TCP", name="tcp-echo")]
    entries += [service_entry(8443, [endpoint(server, port_name="tls")], host=f"{name}.{NS}.svc.cluster.local",
                              protocol="TLS", name=name) for name, server in backends.items()]
    config = dump_yaml(entries + [gateway_service("l4-gateway", NS, {31400: tcp_port, 443: tls_port})]) + "---\n" + GATEWAY
    gateway = Proxy(tmp_path / "gw", config, subcommand="gateway", name="gateway",
                    labels="gateway.networking.k8s.io/gateway-name=l4-gateway", extra_args=["--namespace", NS])
    with running(gateway, [echo, *backends.values()]):
        assert tcp_exchange(tcp_port, b"hello over TCPRoute") == b"hello over TCPRoute"
        assert https_get(tls_port, A, ca.ca_path) == "a sni=a.example.com\n"
        assert https_get(tls_port, B, ca.ca_path) == "b sni=b.example.com\n"
        with pytest.raises(OSError):  # a name no TLSRoute claims: refused, not sent anywhere
            https_get(tls_port, "c.example.com", ca.ca_path)
