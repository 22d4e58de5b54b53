"""`pymesh proxy`: run the sidecar from static configuration files."""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys

from pymesh.http import h1
from pymesh.kube.downward import MAX_BYTES as MAX_LABELS_BYTES, parse_labels_file
from pymesh.proxy.capture import CaptureSettings
from pymesh.proxy.downstream_limits import DownstreamLimits
from pymesh.api import limits as input_limits, wire
from pymesh.proxy.server import ControlOptions, ProxyOptions
from pymesh.routing.snapshot import ProxyIdentity
from pymesh.security.jointoken import PREFIX, JoinToken, TokenRefused
from pymesh.security.sa_token import DEFAULT_PATH as DEFAULT_SA_TOKEN, ServiceAccountToken


PROXY_DESCRIPTION = (
    "Run the pymesh sidecar proxy from Istio-shaped YAML resources (static mode: no control "
    "server). Listeners come from the Sidecar resource that selects this proxy (--namespace, "
    "--labels), plus the capture listeners with --capture. The files are watched: a change, or "
    "SIGHUP, reloads them atomically; a configuration with errors is rejected and the old one "
    "stays in force. SIGTERM drains and exits 0."
)


def register(subparsers) -> None:
    parser = subparsers.add_parser("proxy", help="run the sidecar proxy", description=PROXY_DESCRIPTION)
    add_proxy_arguments(parser)
    parser.set_defaults(func=run)


def add_proxy_arguments(parser: argparse.ArgumentParser) -> None:
    """The proxy's options; `pymesh run` accepts the same ones."""
    source = parser.add_mutually_exclusive_group()  # one is needed; --control may come from the environment
    source.add_argument("--config", "-c", action="append", metavar="PATH",
                        help="YAML file or directory of resources (repeatable): static mode")
    source.add_argument("--control", metavar="HOST:PORT", default=os.environ.get("PYMESH_CONTROL") or None,
                        help="get configuration from this control server instead [$PYMESH_CONTROL]")
    parser.add_argument("--workload", default=os.environ.get("PYMESH_WORKLOAD", "unknown"),
                        help="this workload's name, for metrics and Sidecar selection [$PYMESH_WORKLOAD]")
    parser.add_argument("--namespace", default=os.environ.get("PYMESH_NAMESPACE"),
                        help="this workload's namespace (default: the join token's, else default) [$PYMESH_NAMESPACE]")
    parser.add_argument("--labels", default=os.environ.get("PYMESH_LABELS", ""),
                        help="this workload's labels, k=v,k=v (selects the Sidecar, sourceLabels) [$PYMESH_LABELS; "
                        "else $ISTIO_METAJSON_LABELS, the JSON object Istio's VM cluster.env gives]")
    parser.add_argument("--labels-file", metavar="FILE", default=os.environ.get("PYMESH_LABELS_FILE") or None,
                        help="read the labels from this downward-API file (key=\"value\" lines, as a pod's "
                        "metadata.labels volume item); --labels wins [$PYMESH_LABELS_FILE]")
    parser.add_argument("--service-account", default=os.environ.get("PYMESH_SERVICE_ACCOUNT"),
                        help="this workload's service account (default: the join token's, else default) "
                        "[$PYMESH_SERVICE_ACCOUNT]")
    parser.add_argument("--locality", default=os.environ.get("PYMESH_LOCALITY", ""), metavar="REGION/ZONE/SUBZONE",
                        help="where this proxy runs, for locality load balancing (default: from the labels "
                        "topology.kubernetes.io/region, topology.kubernetes.io/zone, topology.istio.io/subzone) "
                        "[$PYMESH_LOCALITY]")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="worker processes sharing the listeners with SO_REUSEPORT; 0: one per CPU (default: "
                        "the ProxyConfig that selects this proxy, else 1)")
    parser.add_argument("--admin-address", default="127.0.0.1",
                        help="address of the admin, stats and health endpoints (default 127.0.0.1)")
    parser.add_argument("--admin-port", type=int, default=15000, help="admin port, 0 disables (default 15000)")
    parser.add_argument("--stats-port", type=int, default=15090,
                        help="Prometheus /stats/prometheus port, 0 disables (default 15090)")
    parser.add_argument("--health-port", type=int, default=15021,
                        help="/healthz/ready port, 0 disables (default 15021); it also answers the app probes "
                        "kube-inject rewrote, /app-health/<container>/livez|readyz|startupz, from "
                        "$PYMESH_KUBE_APP_PROBERS")
    parser.add_argument("--health-address", default="", metavar="ADDRESS",
                        help="address of the health port (default: --admin-address; in a pod 0.0.0.0, for the kubelet)")
    parser.add_argument("--stats-address", default="", metavar="ADDRESS",
                        help="address of the Prometheus port (default: --admin-address)")
    parser.add_argument("--mesh-config", default="", metavar="FILE",
                        help="Istio's MeshConfig YAML (istiod's /etc/istio/config/mesh: extensionProviders, "
                        "defaultProviders, accessLogFile...), in force instead of an istio ConfigMap in --config")
    parser.add_argument("--access-log", default="/dev/stdout", metavar="PATH|off",
                        help="where JSON access-log lines go (default stdout), or 'off'")
    parser.add_argument("--filter-budget-ms", type=float, default=50.0,
                        help="a PythonFilter hook that holds the event loop longer is logged and counted "
                             "(pymesh_python_filter_loop_blocked_total; default 50)")
    parser.add_argument("--drain-timeout", type=float, default=5.0,
                        help="seconds in-flight requests get to finish on SIGTERM (default 5)")
    parser.add_argument("--max-request-headers-kb", type=int, default=60,
                        help="request header size limit; larger requests get 431 (default 60, Envoy's)")
    parser.add_argument("--max-request-line-kb", type=int, default=16,
                        help="request line (method and URL) limit; longer get 431 (default 16)")
    parser.add_argument("--request-headers-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="a client must send a request head within this (408 otherwise; 0 off; default 10)")
    parser.add_argument("--idle-timeout", type=float, default=3600.0, metavar="SECONDS",
                        help="close a keep-alive connection idle this long (0 off; default 3600, Istio's)")
    parser.add_argument("--stream-idle-timeout", type=float, default=300.0, metavar="SECONDS",
                        help="end a request on which nothing moved this long (408/504, flag SI; 0 off; "
                        "default 300, Envoy's)")
    parser.add_argument("--max-connections", type=int, default=0,
                        help="client connections per listener and worker; more are refused and counted "
                        "(default: half the file-descriptor limit, which is raised to its maximum)")
    seed = os.environ.get("PYMESH_RANDOM_SEED")
    parser.add_argument("--random-seed", type=int, default=int(seed) if seed else None, metavar="N",
                        help="seed the proxy's random choices (weights, jitter, fault percentages) for a "
                        "reproducible run; $PYMESH_RANDOM_SEED (default: random)")
    parser.add_argument("--cert-dir", default=os.environ.get("PYMESH_CERT_DIR") or None, metavar="DIR",
                        help="this workload's certificate in Istio's file-mounted layout (cert-chain.pem, key.pem, "
                        "root-cert.pem; `pymesh ca issue` writes them), reloaded when the files change: new "
                        "connections get the new certificate [$PYMESH_CERT_DIR]")
    parser.add_argument("--credentials-dir", default=os.environ.get("PYMESH_CREDENTIALS_DIR") or None, metavar="DIR",
                        help="where DestinationRule tls.credentialName is found: one folder per name holding "
                        "tls.crt, tls.key, ca.crt, as a Kubernetes TLS secret mounts [$PYMESH_CREDENTIALS_DIR]")
    control = parser.add_argument_group("with a control server (--control)")
    control.add_argument("--data-dir", default=os.environ.get("PYMESH_DATA_DIR"),
                         help="keep the last good snapshot here, to serve it after a restart while the "
                         "control server is away [$PYMESH_DATA_DIR]")
    control.add_argument("--accept-filter-code", action="store_true",
                         help="run PythonFilter code the control server ships with the configuration (its "
                         "--ship-filter-code): whoever can write the mesh's configuration can then run code in "
                         "this proxy. Without it such a configuration is refused (NACKed); installed modules "
                         "are always imported")
    control.add_argument("--address", action="append", default=_env_list("PYMESH_ADDRESSES"),
                         help="an address other proxies reach this workload at (repeatable) [$PYMESH_ADDRESSES]")
    control.add_argument("--port", action="append", default=_env_list("PYMESH_PORTS"), metavar="NAME=NUMBER",
                         help="a port this workload serves, by ServiceEntry port name (repeatable) [$PYMESH_PORTS]")
    control.add_argument("--workload-group", metavar="NAME",
                         default=os.environ.get("ISTIO_META_AUTO_REGISTER_GROUP") or os.environ.get("PYMESH_WORKLOAD_GROUP"),
                         help="auto-register as this WorkloadGroup of the namespace (a VM): the control server makes the "
                         "WorkloadEntry <group>-<first --address> from its template, and this proxy runs the group's "
                         "probe [$ISTIO_META_AUTO_REGISTER_GROUP, $PYMESH_WORKLOAD_GROUP]")
    control.add_argument("--node-id", default=os.environ.get("PYMESH_NODE_ID"),
                         help="this proxy's unique name at the control server (default workload-host-pid.namespace)")
    control.add_argument("--token-file", metavar="PATH", default=os.environ.get("PYMESH_TOKEN_FILE") or None,
                         help="join token (from `pymesh control token create`), or in a Kubernetes pod its projected "
                         f"ServiceAccount token ({DEFAULT_SA_TOKEN}, audience pymesh-ca, for a server run with "
                         "--kubernetes): get a certificate for its identity and talk to the control server over mTLS "
                         "[$PYMESH_TOKEN_FILE; or the token itself in $PYMESH_TOKEN]. Without one the channel is "
                         "plaintext, for a server run with --insecure")
    control.add_argument("--ca-root", metavar="FILE", default=os.environ.get("PYMESH_CA_ROOT") or None,
                         help="the mesh root(s) to verify the control server by (default: the join token's pinned "
                         "root; needed with a ServiceAccount token) [$PYMESH_CA_ROOT]")
    control.add_argument("--trust-domain", default=os.environ.get("PYMESH_TRUST_DOMAIN") or "cluster.local",
                         help="the mesh's trust domain, for the certificate a ServiceAccount token asks for (a join "
                         "token names its own) [$PYMESH_TRUST_DOMAIN, default cluster.local]")
    control.add_argument("--renew-fraction", type=_fraction, default=0.5, metavar="F",
                         help="renew the certificate this far through its lifetime, with jitter (default 0.5)")
    capture = parser.add_argument_group("traffic capture (with `pymesh iptables`)")
    capture.add_argument("--capture", action="store_true", default=os.environ.get("PYMESH_CAPTURE") == "1",
                         help="open the capture listeners that iptables redirects to [$PYMESH_CAPTURE=1]")
    capture.add_argument("--outbound-capture-port", type=int, default=15001, help="outbound capture port (default 15001)")
    capture.add_argument("--inbound-capture-port", type=int, default=15006, help="inbound capture port (default 15006)")
    capture.add_argument("--capture-mode", choices=("REDIRECT", "TPROXY"), default="REDIRECT",
                         help="how iptables captured the traffic (default REDIRECT)")
    capture.add_argument("--inbound-address", default="127.0.0.1",
                         help="address the app is reached at for captured inbound traffic (default 127.0.0.1)")
    input_limits.add_arguments(parser)
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def _env_list(name: str) -> list[str]:
    return [item for item in os.environ.get(name, "").split(",") if item]


def parse_ports(items: list[str]) -> dict[str, int]:
    ports = {}
    for item in items:
        name, sep, number = item.partition("=")
        if not sep or not name or not number.isdigit() or not 0 < int(number) < 65536:
            raise argparse.ArgumentTypeError(f"--port: expected NAME=NUMBER, got {item!r}")
        ports[name] = int(number)
    return ports


def parse_host_port(text: str, flag: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{flag}: expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _fraction(value: str) -> float:
    try:
        fraction = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not 0.05 <= fraction <= 0.95:
        raise argparse.ArgumentTypeError("must be between 0.05 and 0.95")
    return fraction


def join_token(args) -> JoinToken | ServiceAccountToken | None:
    """The token from --token-file or $PYMESH_TOKEN (never from the command line: it would show
    in `ps`): a join token (pm1.), else a ServiceAccount token (a JWT)."""
    if not args.control:
        return None
    text = os.environ.get("PYMESH_TOKEN", "")
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as stream:
                text = stream.read()
        except OSError as error:
            raise argparse.ArgumentTypeError(f"--token-file: {error}") from None
    if not text.strip():
        return None
    try:
        if text.strip().startswith(PREFIX + "."):
            return JoinToken.parse(text)
        return ServiceAccountToken.parse(text, args.trust_domain, args.token_file)
    except TokenRefused as error:
        raise argparse.ArgumentTypeError(f"join token: {error}") from None


def resolve_identity(args, token: JoinToken | ServiceAccountToken | None) -> tuple[str, str]:
    """(namespace, service account): the token's, which the certificate will carry; a
    different one given explicitly is an error, not a silent override."""
    if token is None:
        return args.namespace or "default", args.service_account or "default"
    for flag, given, own in (("--namespace", args.namespace, token.namespace),
                             ("--service-account", args.service_account, token.service_account)):
        if given and given != own:
            raise argparse.ArgumentTypeError(f"{flag} {given} differs from the token's {own}")
    return token.namespace, token.service_account


def control_options(args, identity: ProxyIdentity, token: JoinToken | ServiceAccountToken | None) -> ControlOptions | None:
    if not args.control:
        return None
    host, port = parse_host_port(args.control, "--control")
    node_id = args.node_id or f"{identity.workload}-{socket.gethostname()}-{os.getpid()}.{identity.namespace}"
    node = wire.Node(
        id=node_id, workload=identity.workload, namespace=identity.namespace,
        service_account=identity.service_account, labels=dict(identity.labels),
        addresses=tuple(args.address), ports=parse_ports(args.port), workload_group=args.workload_group or "",
        stats_address=f"{_stats_host(args)}:{args.stats_port}" if args.stats_port else "",
    )
    if args.workload_group and not args.address:
        raise argparse.ArgumentTypeError("--workload-group needs --address: the WorkloadEntry's address and name")
    ca_root = None
    if args.ca_root and token is None:
        raise argparse.ArgumentTypeError("--ca-root verifies the control server for a proxy with a join token "
                                         "(--token-file or $PYMESH_TOKEN)")
    if token is not None and token.ca_pin is None and not args.ca_root:
        raise argparse.ArgumentTypeError("a ServiceAccount token pins no mesh root: give --ca-root (in a pod, the "
                                         "mounted pymesh-ca-root-cert ConfigMap) to verify the control server by")
    if args.ca_root:
        try:
            with open(args.ca_root, "rb") as stream:
                ca_root = stream.read()
        except OSError as error:
            raise argparse.ArgumentTypeError(f"--ca-root: {error}") from None
    return ControlOptions(host=host, port=port, node=node, data_dir=args.data_dir, token=token, ca_root=ca_root,
                          renew_fraction=args.renew_fraction, accept_filter_code=args.accept_filter_code)


def _stats_host(args) -> str:
    """Where the control server scrapes this proxy: its stats address, or with a wildcard one
    (a pod's 0.0.0.0) the workload's first address."""
    host = args.stats_address or args.admin_address
    return args.address[0] if host in ("0.0.0.0", "::") and args.address else host


def parse_labels(text: str) -> dict[str, str]:
    labels = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--labels: expected k=v, got {item!r}")
        labels[key] = value
    return labels


def istio_json_labels() -> dict[str, str]:
    """$ISTIO_METAJSON_LABELS (`istioctl x workload entry configure` writes the WorkloadGroup's
    labels there in a VM's cluster.env), or none."""
    text = os.environ.get("ISTIO_METAJSON_LABELS", "")
    if not text.strip():
        return {}
    try:
        labels = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"$ISTIO_METAJSON_LABELS is not JSON: {error}") from None
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise argparse.ArgumentTypeError('$ISTIO_METAJSON_LABELS: expected an object of strings, {"app": "x"}')
    return labels


def labels_file(path: str) -> dict[str, str]:
    try:
        with open(path, encoding="utf-8") as stream:
            return parse_labels_file(stream.read(MAX_LABELS_BYTES + 1))
    except (OSError, ValueError) as error:
        raise argparse.ArgumentTypeError(f"--labels-file {path}: {error}") from None


def env_app_probers() -> dict:
    """$PYMESH_KUBE_APP_PROBERS (kube-inject writes it): the app probes the health port runs."""
    from pymesh.kube import app_probes
    from pymesh.proxy import app_probers  # with the gRPC health client: only for the proxy, not every command

    try:
        return app_probers.parse(os.environ.get(app_probes.PROBERS_ENV, ""))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def options_from_args(args) -> ProxyOptions:
    if bool(args.config) == bool(args.control):
        raise argparse.ArgumentTypeError("give one of --config PATH or --control HOST:PORT (or $PYMESH_CONTROL)")
    if args.workload_group and not args.control:
        raise argparse.ArgumentTypeError("--workload-group registers with a control server: it needs --control")
    token = join_token(args)
    if token is not None and args.cert_dir:
        raise argparse.ArgumentTypeError("--cert-dir and a join token would both give the workload certificate: "
                                         "give one")
    namespace, service_account = resolve_identity(args, token)
    identity = ProxyIdentity(
        workload=args.workload,
        namespace=namespace,
        labels=parse_labels(args.labels) if args.labels else labels_file(args.labels_file) if args.labels_file
        else istio_json_labels(),
        service_account=service_account,
        locality=args.locality,
        ip=args.address[0] if args.address else "",  # which ServiceEntry endpoints are this proxy
    )
    return ProxyOptions(
        config_paths=args.config or [],
        identity=identity,
        control=control_options(args, identity, token),
        admin_address=args.admin_address,
        admin_port=args.admin_port,
        stats_port=args.stats_port,
        health_port=args.health_port,
        health_address=args.health_address,
        stats_address=args.stats_address,
        app_probers=env_app_probers(),
        access_log=args.access_log,
        mesh_config=args.mesh_config,
        drain_timeout=args.drain_timeout,
        concurrency=None if args.concurrency is None else max(0, args.concurrency),
        capture=CaptureSettings(
            outbound_port=args.outbound_capture_port,
            inbound_port=args.inbound_capture_port,
            tproxy=args.capture_mode == "TPROXY",
            inbound_address=args.inbound_address,
        ) if args.capture else None,
        config_limits=input_limits.from_args(args),
        random_seed=args.random_seed,
        filter_budget=max(0.0, args.filter_budget_ms) / 1000,
        cert_dir=args.cert_dir,
        credentials_dir=args.credentials_dir,
        limits=h1.Limits(
            max_request_line=args.max_request_line_kb * 1024,
            max_header_bytes=args.max_request_headers_kb * 1024,
        ),
        downstream=DownstreamLimits(
            request_headers_timeout=args.request_headers_timeout,
            idle_timeout=args.idle_timeout,
            stream_idle_timeout=args.stream_idle_timeout,
            max_connections=max(0, args.max_connections),
        ),
    )


def configure_logging(args) -> None:
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
    )


def run(args) -> int:
    return start(args, options_from_args, "pymesh proxy")


def start(args, build_options, command_name: str) -> int:
    """Run the proxy with the options `build_options(args)` makes (`pymesh proxy` and
    `pymesh gateway` differ only there); bad options exit 2 with the reason."""
    configure_logging(args)
    try:
        options = build_options(args)
    except argparse.ArgumentTypeError as error:
        print(f"{command_name}: {error}", file=sys.stderr)
        return 2
    from pymesh.proxy.main import main

    return main(options)
