"""The rows of the benchmark table. Adding one is a few lines: a name, its hops, the port the load
goes to. A hop is a peer (see peers.py) and its config parameters; every process a row's hops
start (and their children) counts as "proxy" for CPU and memory. Hops start last-first so each
one's upstream is up before it.

Ports are the defaults Istio uses where there is one; --port-offset shifts every *_port value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmarks import peers
from benchmarks.peers import Peer

UPSTREAM_PORT = 18080  # nginx, the app behind every row
GRPC_APP_PORT = 18081  # the same nginx as the gRPC rows' app (h2c, see configs/nginx-upstream.conf)
HOST = "upstream.bench"  # the Host header every request carries (pymesh routes on it)


@dataclass(frozen=True)
class Hop:
    name: str
    peer: Peer
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    name: str
    description: str
    load_port: int
    hops: tuple[Hop, ...] = ()
    load: str = "http1"  # "http1": loadgen.c and wrk; "h2c", "grpc": h2load (see h2load.py)


def _pymesh(name: str, peer: Peer, listen: int, upstream: int, n: int, protocol: str = "HTTP") -> Hop:
    return Hop(name, peer, {"listen_port": listen, "upstream_port": upstream, "admin_port": 15000 + n,
                            "stats_port": 15090 + n, "health_port": 15021 + n * 10, "protocol": protocol})


def _envoy(name: str, listen: int, upstream: int, n: int, protocol: str = "http_protocol_options",
           peer: Peer = peers.ENVOY) -> Hop:
    return Hop(name, peer, {"listen_port": listen, "upstream_port": upstream, "admin_port": 19000 + n,
                            "upstream_protocol": protocol})


def _mtls(hop: Hop, identity: str, peer_identity: str) -> Hop:
    """The hop with its own mesh identity (certificates made for the run, benchmarks/mesh_certs.py)
    and the identity it requires of the other sidecar."""
    return Hop(hop.name, hop.peer, {**hop.params, "identity": identity, "peer_identity": peer_identity})


H2 = "http2_protocol_options"


ROWS: tuple[Row, ...] = (
    Row("direct", "no proxy: the load goes straight to nginx", UPSTREAM_PORT),
    Row("pymesh-1hop", "pymesh sidecar, explicit egress listener -> nginx", 15080,
        (_pymesh("pymesh", peers.PYMESH_EGRESS, 15080, UPSTREAM_PORT, 0),)),
    Row("pymesh-1hop-traced", "pymesh-1hop with tracing at 1% (OTLP to a local sink) and the access log on", 15080,
        (_pymesh("pymesh", peers.PYMESH_TRACED, 15080, UPSTREAM_PORT, 0),)),
    Row("pymesh-1hop-filter", "pymesh-1hop with one no-op PythonFilter (a request and a response hook)", 15080,
        (_pymesh("pymesh", peers.PYMESH_FILTER, 15080, UPSTREAM_PORT, 0),)),
    Row("pymesh-resilient-1hop", "pymesh-1hop with every resilience feature configured, none firing", 15080,
        (_pymesh("pymesh", peers.PYMESH_RESILIENT, 15080, UPSTREAM_PORT, 0),)),
    Row("pymesh-2hop", "pymesh egress -> pymesh ingress -> nginx (sidecar to sidecar)", 15080,
        (_pymesh("pymesh-a", peers.PYMESH_EGRESS, 15080, 15081, 0),
         _pymesh("pymesh-b", peers.PYMESH_INGRESS, 15081, UPSTREAM_PORT, 1))),
    Row("envoy-1hop", "Envoy, one listener and a static cluster -> nginx", 15080,
        (_envoy("envoy", 15080, UPSTREAM_PORT, 0),)),
    Row("envoy-2hop", "Envoy -> Envoy -> nginx", 15080,
        (_envoy("envoy-a", 15080, 15081, 0), _envoy("envoy-b", 15081, UPSTREAM_PORT, 1))),
    Row("pymesh-mtls-2hop", "pymesh-2hop with Istio mTLS between the sidecars (ISTIO_MUTUAL, STRICT), HTTP/2 inside",
        15080, (_mtls(_pymesh("pymesh-a", peers.PYMESH_MTLS_EGRESS, 15080, 15081, 0), "client", "server"),
                _mtls(_pymesh("pymesh-b", peers.PYMESH_MTLS_INGRESS, 15081, UPSTREAM_PORT, 1), "server", "client"))),
    Row("envoy-mtls-2hop", "envoy-2hop with mTLS between the hops (same certificates, ALPN istio-h2, HTTP/2 inside)",
        15080, (_mtls(_envoy("envoy-a", 15080, 15081, 0, peer=peers.ENVOY_MTLS_CLIENT), "client", "server"),
                _mtls(_envoy("envoy-b", 15081, UPSTREAM_PORT, 1, peer=peers.ENVOY_MTLS_SERVER), "server", "client"))),
    Row("pymesh-h2c-1hop", "h2c client (h2load) -> pymesh egress listener -> HTTP/1.1 to nginx", 15080,
        (_pymesh("pymesh", peers.PYMESH_EGRESS, 15080, UPSTREAM_PORT, 0),), load="h2c"),
    Row("envoy-h2c-1hop", "h2c client (h2load) -> Envoy (codec AUTO) -> HTTP/1.1 to nginx", 15080,
        (_envoy("envoy", 15080, UPSTREAM_PORT, 0),), load="h2c"),
    Row("pymesh-grpc-1hop", "gRPC unary (h2load) -> pymesh egress, port protocol GRPC -> HTTP/2 to nginx (gRPC)",
        15080, (_pymesh("pymesh", peers.PYMESH_EGRESS, 15080, GRPC_APP_PORT, 0, "GRPC"),), load="grpc"),
    Row("envoy-grpc-1hop", "gRPC unary (h2load) -> Envoy, HTTP/2 cluster -> nginx (gRPC)", 15080,
        (_envoy("envoy", 15080, GRPC_APP_PORT, 0, H2),), load="grpc"),
    Row("pymesh-grpc-2hop", "gRPC unary -> pymesh egress -> HTTP/2 -> pymesh ingress -> HTTP/2 to nginx (gRPC)", 15080,
        (_pymesh("pymesh-a", peers.PYMESH_EGRESS, 15080, 15081, 0, "GRPC"),
         _pymesh("pymesh-b", peers.PYMESH_INGRESS, 15081, GRPC_APP_PORT, 1, "GRPC")), load="grpc"),
    Row("envoy-grpc-2hop", "gRPC unary -> Envoy -> HTTP/2 -> Envoy -> HTTP/2 to nginx (gRPC)", 15080,
        (_envoy("envoy-a", 15080, 15081, 0, H2), _envoy("envoy-b", 15081, GRPC_APP_PORT, 1, H2)),
        load="grpc"),
    Row("haproxy-1hop", "HAProxy, one thread, keep-alive -> nginx", 15080,
        (Hop("haproxy", peers.HAPROXY, {"listen_port": 15080, "upstream_port": UPSTREAM_PORT}),)),
    Row("nginx-1hop", "nginx reverse proxy, upstream keepalive pool -> nginx", 15080,
        (Hop("nginx-proxy", peers.NGINX_PROXY, {"listen_port": 15080, "upstream_port": UPSTREAM_PORT}),)),
)

BY_NAME = {row.name: row for row in ROWS}


def select(names: str | None) -> list[Row]:
    """Rows named in a comma-separated list (all when None); "direct" is always included first,
    since every added-latency figure is measured against it."""
    if not names:
        return list(ROWS)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in BY_NAME]
    if unknown:
        raise ValueError(f"unknown rows {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    if "direct" not in wanted:
        wanted.insert(0, "direct")
    return [BY_NAME[n] for n in dict.fromkeys(wanted)]


def shifted(params: dict, offset: int) -> dict:
    return {k: v + offset if k.endswith("_port") else v for k, v in params.items()}
