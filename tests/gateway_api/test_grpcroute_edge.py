"""GRPCRoute at the edge with grpcio as both peers: `pymesh gateway` labelled
gateway.networking.k8s.io/gateway-name=grpc, an HTTP listener (h2c), method and service
matches translated to paths as Istio writes them, each picking its backend."""

from __future__ import annotations

import grpc
import pytest

from conformance_kit import gateway_service, running
from ports import free_port
from proxy_harness import LOCALHOST, Proxy, dump_yaml, endpoint, service_entry

pytestmark = pytest.mark.timeout(120)
NS = "infra"


class GrpcBackend:
    """A grpc_echo server standing in for a Service's pod."""

    def __init__(self) -> None:
        from grpc_echo import start_server

        self.server, self.echo, self.port = start_server("127.0.0.1:0")

    def stop(self) -> None:
        self.echo.released.set()
        self.server.stop(grace=None)


def resources(backends: dict[str, GrpcBackend], listen: int, service: str) -> list[dict]:
    out = [service_entry(7070, [endpoint(b.port, port_name="grpc")], host=f"{name}.{NS}.svc.cluster.local",
                         protocol="GRPC", name=name) for name, b in backends.items()]
    for entry in out:
        entry["metadata"]["namespace"] = NS
    gateway = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "grpc", "namespace": NS},
               "spec": {"gatewayClassName": "pymesh", "listeners": [{"name": "h2c", "port": 80, "protocol": "HTTP"}]}}
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute", "metadata": {"name": "echo", "namespace": NS},
             "spec": {"parentRefs": [{"name": "grpc"}], "hostnames": ["grpc.example.com"], "rules": [
                 {"matches": [{"method": {"service": service}}], "backendRefs": [{"name": "echo-v2", "port": 7070}]},
                 {"matches": [{"method": {"service": service, "method": "Unary"}}],
                  "backendRefs": [{"name": "echo-v1", "port": 7070}]},
             ]}}
    return out + [gateway, route, gateway_service("grpc", NS, {80: listen})]


def test_grpc_methods_pick_their_backends(tmp_path) -> None:
    from grpc_echo import SERVICE

    backends = {"echo-v1": GrpcBackend(), "echo-v2": GrpcBackend()}
    listen = free_port()
    gateway = Proxy(tmp_path, dump_yaml(resources(backends, listen, SERVICE)), subcommand="gateway", name="gateway",
                    labels="gateway.networking.k8s.io/gateway-name=grpc", extra_args=["--namespace", NS])
    with running(gateway, backends.values()):
        options = [("grpc.default_authority", "grpc.example.com")]
        with grpc.insecure_channel(f"{LOCALHOST}:{listen}", options=options) as channel:
            assert channel.unary_unary(f"/{SERVICE}/Unary")(b"hi", timeout=10) == b"echo:hi"
            assert list(channel.stream_stream(f"/{SERVICE}/Bidi")(iter([b"x"]), timeout=10)) == [b"X"]
            assert channel.unary_unary(f"/{SERVICE}/Flaky")(b"", timeout=10) == b"ok"
            with pytest.raises(grpc.RpcError) as caught:
                channel.unary_unary("/other.Service/Call")(b"", timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED  # no route
        # the exact method match wins over the earlier rule's service match (the spec's precedence)
        assert backends["echo-v1"].echo.calls == {"Unary": 1}
        assert backends["echo-v2"].echo.calls == {"Flaky": 1}  # (and the Bidi call, which echo does not count)
