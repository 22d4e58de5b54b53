"""`pymesh control serve` and `pymesh control status`."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import logging
import os
import signal
import sys

from datetime import timedelta

from pymesh.api import limits as input_limits
from pymesh.control import bounds
from pymesh.control.ca_command import duration_arg
from pymesh.routing.hosts import parse_host_port
from pymesh.api.errors import ConfigInvalid
from pymesh.api.meshconfig import load_file as load_mesh_config


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "control",
        help="run the control server, or show the proxies it serves",
        description="The control server: watches a directory of Istio-shaped YAML resources, knows "
        "the registered proxies, and pushes each proxy its view of the mesh over HTTP/2.",
    )
    commands = parser.add_subparsers(dest="control_command", metavar="COMMAND")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)

    serve = commands.add_parser("serve", help="run the control server", description=(
        "Serve the configuration in --config-dir to proxies. A file that fails validation is rejected "
        "(see /status) and its last good version stays in force."))
    serve.add_argument("--config-dir", metavar="DIR",
                       help="directory of *.yaml resources, watched (required unless --kubernetes)")
    serve.add_argument("--mesh-config", metavar="FILE",
                       help="Istio's MeshConfig YAML (istiod's /etc/istio/config/mesh: extensionProviders, "
                       "defaultProviders, accessLogFile...), in force instead of an istio ConfigMap in --config-dir")
    kube = serve.add_argument_group("Kubernetes (docs/kubernetes.md)")
    kube.add_argument("--kubernetes", action="store_true",
                      help="discover Services, EndpointSlices, Pods and Namespaces from the API server (the "
                      "services <name>.<namespace>.svc.cluster.local and their ready endpoints), read Istio's "
                      "and the Gateway API's custom resources as a second config source (each object validated "
                      "on its own, its last good version kept), publish the mesh root as the pymesh-ca-root-cert "
                      "ConfigMap in every namespace, and let proxies bootstrap with their projected ServiceAccount "
                      "token (audience --token-audience), proven by a TokenReview before a certificate is signed "
                      "for exactly that namespace and account; proxies are served once the first lists are in")
    kube.add_argument("--namespace", dest="namespaces", action="append", default=[], metavar="NS",
                      help="discover only in this namespace (repeat for more; default: every namespace)")
    kube.add_argument("--kubeconfig", metavar="FILE",
                      help="the API server's kubeconfig (default: in the cluster, else KUBECONFIG or ~/.kube/config)")
    kube.add_argument("--kube-context", metavar="NAME", help="the kubeconfig's context (default: its current one)")
    kube.add_argument("--token-audience", default="pymesh-ca", metavar="AUD",
                      help="the audience projected tokens must be for (default pymesh-ca)")
    kube.add_argument("--token-review-timeout", type=_seconds, default=5.0, metavar="SECONDS",
                      help="a TokenReview not answered in time refuses the request (default 5)")
    kube.add_argument("--root-cert-resync", type=_seconds, default=60.0, metavar="SECONDS",
                      help="how often every namespace's pymesh-ca-root-cert ConfigMap (the mesh root that injected "
                      "pods mount) is checked and repaired; new namespaces get it at once (default 60)")
    serve.add_argument("--listen", type=_address, default=("127.0.0.1", 15010), metavar="ADDR:PORT",
                       help="where proxies connect (default 127.0.0.1:15010)")
    serve.add_argument("--admin", type=_address, default=("127.0.0.1", 15014), metavar="ADDR:PORT",
                       help="/status, /metrics and /ready (default 127.0.0.1:15014)")
    serve.add_argument("--data-dir", metavar="DIR",
                       help="keep the version counter and the registered proxies across restarts")
    serve.add_argument("--debounce", type=_seconds, default=0.1, metavar="SECONDS",
                       help="apply changes after this long without another (default 0.1)")
    serve.add_argument("--max-debounce", type=_seconds, default=1.0, metavar="SECONDS",
                       help="but no later than this after the first (default 1.0)")
    serve.add_argument("--grace", type=_seconds, default=5.0, metavar="SECONDS",
                       help="a disconnected proxy stays an endpoint this long (default 5.0)")
    serve.add_argument("--workload-entry-grace", type=duration_arg,
                       default=os.environ.get("PILOT_WORKLOAD_ENTRY_GRACE_PERIOD") or "10s", metavar="DURATION",
                       help="an auto-registered WorkloadEntry (a proxy started with --workload-group) outlives "
                       "its proxy's disconnection this long [$PILOT_WORKLOAD_ENTRY_GRACE_PERIOD, default 10s]")
    security = serve.add_argument_group("identity and mTLS (docs/control-security.md)")
    security.add_argument("--insecure", action="store_true",
                          help="plaintext, no certificates, no authentication: any client can register as any "
                          "workload and read any namespace's configuration. Local demos only: refused unless "
                          "--listen is a loopback address")
    security.add_argument("--trust-domain", default="cluster.local", help="SPIFFE trust domain (default cluster.local)")
    security.add_argument("--cert-ttl", type=duration_arg, default=timedelta(hours=24), metavar="DURATION",
                          help="lifetime of the workload certificates it signs (default 24h)")
    security.add_argument("--max-cert-ttl", type=duration_arg, default=timedelta(days=90), metavar="DURATION",
                          help="the most a proxy may ask for (default 2160h = 90 days, Istio's)")
    security.add_argument("--ca-cert", metavar="FILE", help="plug-in CA: signing certificate (Istio's ca-cert.pem); "
                          "default: a root made in --data-dir/ca")
    security.add_argument("--ca-key", metavar="FILE", help="plug-in CA: its key (ca-key.pem)")
    security.add_argument("--ca-chain", metavar="FILE", help="plug-in CA: its chain (cert-chain.pem)")
    security.add_argument("--ca-root", metavar="FILE", help="plug-in CA: the trust bundle, one or more roots (root-cert.pem)")
    security.add_argument("--max-connections-per-identity", type=int, default=256, metavar="N",
                          help="push streams one identity may hold (its replicas; default 256)")
    webhook = serve.add_argument_group("admission webhooks in Kubernetes (docs/kubernetes.md)")
    webhook.add_argument("--webhook-listen", type=_address, metavar="ADDR:PORT",
                         help="serve HTTPS POST /inject and /validate here for the API server (the manifests "
                         "use 0.0.0.0:15017, as istiod); default off")
    webhook.add_argument("--webhook-cert-dir", metavar="DIR",
                         help="tls.crt and tls.key (and ca.crt) of the webhook, e.g. a cert-manager Secret; "
                         "reloaded when they change; default: issued by the mesh CA for the Service's names")
    webhook.add_argument("--injection-settings", metavar="FILE",
                         help="the injector's settings YAML, or the ConfigMap holding it in data.settings (what "
                         "`pymesh kube-inject --settings` reads), reloaded when it changes; default: the built-in "
                         "settings")
    webhook.add_argument("--webhook-ca-bundle", choices=("patch", "off"),
                         default="patch" if os.environ.get("KUBERNETES_SERVICE_HOST") else "off",
                         help="patch: keep the caBundle of the pymesh-sidecar-injector and pymesh-validator webhook "
                         "configurations equal to the webhook certificate's CA, through the API server (default in "
                         "a cluster); off: cert-manager's inject-ca-from or you fill it")
    webhook.add_argument("--webhook-service", default="pymesh-control", metavar="NAME",
                         help="the Service the API server calls (default pymesh-control)")
    webhook.add_argument("--webhook-namespace", default=os.environ.get("POD_NAMESPACE") or "pymesh-system",
                         metavar="NS", help="its namespace [$POD_NAMESPACE, default pymesh-system]")
    serve.add_argument("--ship-filter-code", action="store_true",
                       help="send the code of PythonFilters whose module is a file in --config-dir with the "
                       "configuration (proxies run it only with --accept-filter-code). Anyone who can write the "
                       "configuration can then run code in every proxy a filter selects; without it, proxies "
                       "import installed modules only")
    input_limits.add_arguments(serve)
    bounds.add_arguments(serve)
    serve.set_defaults(func=run_serve)

    token = commands.add_parser("token", help="create, list and revoke join tokens (bootstrap credentials)",
                                description="Join tokens let a proxy get its first certificate for one namespace "
                                "and service account (pymesh proxy --token-file). The server keeps only a hash.")
    tokens = token.add_subparsers(dest="token_command", metavar="COMMAND")
    token.set_defaults(func=lambda args: token.print_help() or 2)
    create = tokens.add_parser("create", help="print a new token on stdout")
    create.add_argument("--namespace", required=True, metavar="NS")
    create.add_argument("--service-account", required=True, metavar="SA")
    create.add_argument("--ttl", type=duration_arg, default=timedelta(hours=1), metavar="DURATION",
                        help="how long it can bootstrap proxies (default 1h)")
    create.set_defaults(func=run_token_create)
    listing = tokens.add_parser("list", help="every token: id, identity, expiry, revoked")
    listing.set_defaults(func=run_token_list)
    revoke = tokens.add_parser("revoke", help="stop a token from bootstrapping any more proxies")
    revoke.add_argument("id", metavar="ID")
    revoke.set_defaults(func=run_token_revoke)
    for sub in (create, listing, revoke):
        sub.add_argument("--server", type=_address, default=("127.0.0.1", 15014), metavar="ADDR:PORT",
                         help="the control server's admin address (default 127.0.0.1:15014)")

    status = commands.add_parser("status", help="show each proxy's pushed and ACKed version, and rejected files")
    status.add_argument("--server", type=_address, default=("127.0.0.1", 15014), metavar="ADDR:PORT",
                        help="the control server's admin address (default 127.0.0.1:15014)")
    status.set_defaults(func=run_status)


def run_serve(args: argparse.Namespace) -> int:
    from pymesh.control.authority import CaOptions
    from pymesh.control.ca_store import PluginFiles
    from pymesh.control.kube.options import KubeOptions
    from pymesh.control.server import ControlOptions, ControlServer

    if args.config_dir is None and not args.kubernetes:
        print("pymesh control serve: --config-dir DIR is required (or --kubernetes)", file=sys.stderr)
        return 2
    if args.namespaces and not args.kubernetes:
        print("pymesh control serve: --namespace needs --kubernetes", file=sys.stderr)
        return 2
    if args.config_dir is not None and not os.path.isdir(args.config_dir):
        print(f"pymesh control serve: --config-dir {args.config_dir}: not a directory", file=sys.stderr)
        return 1
    if bool(args.ca_cert) != bool(args.ca_key) or (args.ca_chain or args.ca_root) and not args.ca_cert:
        print("pymesh control serve: a plug-in CA needs --ca-cert and --ca-key (--ca-chain, --ca-root with them)",
              file=sys.stderr)
        return 2
    if args.insecure and not _loopback(args.listen[0]):
        print(f"pymesh control serve: --insecure listens only on a loopback address, not {args.listen[0]} "
              "(an unauthenticated channel must not be reachable from the network)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:  # refused at start; a later bad version is reported and the last good one stays
        if args.mesh_config:
            load_mesh_config(args.mesh_config)
    except ConfigInvalid as invalid:
        print(f"pymesh control serve: --mesh-config is invalid:\n{invalid}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"pymesh control serve: --mesh-config: cannot read {args.mesh_config}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    plugin = PluginFiles(args.ca_cert, args.ca_key, args.ca_chain, args.ca_root) if args.ca_cert else None
    options = ControlOptions(
        config_dir=args.config_dir, listen=args.listen, admin=args.admin, data_dir=args.data_dir,
        debounce=args.debounce, max_debounce=args.max_debounce, grace=args.grace, ship_filter_code=args.ship_filter_code,
        workload_entry_grace=args.workload_entry_grace.total_seconds(),
        limits=input_limits.from_args(args), connection_limits=bounds.from_args(args), insecure=args.insecure,
        ca=CaOptions(args.trust_domain, args.cert_ttl, args.max_cert_ttl, plugin),
        max_per_identity=max(0, args.max_connections_per_identity), mesh_config=args.mesh_config or "",
        kubernetes=KubeOptions(args.kubeconfig, args.kube_context, args.token_audience, args.token_review_timeout,
                               max(0.1, args.root_cert_resync), tuple(args.namespaces)) if args.kubernetes else None,
    )
    try:
        options = dataclasses.replace(options, webhook=_webhook_options(args))
        server = ControlServer(options)
    except (OSError, ValueError) as exc:
        print(f"pymesh control serve: cannot start: {exc}", file=sys.stderr)
        return 1
    return asyncio.run(_serve(server))


def _webhook_options(args: argparse.Namespace):
    if args.webhook_listen is None:
        return None
    from pymesh.control.kube.webhooks import WebhookOptions

    return WebhookOptions(args.webhook_listen, args.webhook_cert_dir or "", args.webhook_service,
                          args.webhook_namespace, args.injection_settings or "",
                          patch_ca_bundle=args.webhook_ca_bundle == "patch", kubeconfig=args.kubeconfig)


async def _serve(server) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    starting = asyncio.ensure_future(server.start())  # with --kubernetes it waits for the first lists
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():  # SIGTERM before the server was up (an API server not answering): leave
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await server.stop()
        return 0
    stopping.cancel()
    try:
        starting.result()
    except OSError as exc:
        print(f"pymesh control: cannot start: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # --kubernetes without the client library or with an unusable kubeconfig
        print(f"pymesh control: cannot start: {exc}", file=sys.stderr)
        return 1
    (host, port), (admin_host, admin_port) = server.listen_address, server.admin_address
    print(f"pymesh control: serving on {host}:{port}, admin on {admin_host}:{admin_port}", flush=True)
    if server.webhooks is not None:
        print("pymesh control: webhooks on https://%s:%d" % server.webhooks.address, flush=True)
    await stop.wait()
    await server.stop()
    return 0


def run_status(args: argparse.Namespace) -> int:
    from pymesh.control.status import format_status, show

    return show(args.server, format_status, "pymesh control status")


def run_token_create(args: argparse.Namespace) -> int:
    from pymesh.control.token_client import call

    answer = call(args.server, "POST", "/tokens", {
        "namespace": args.namespace, "service_account": args.service_account, "ttl": args.ttl.total_seconds()})
    if answer is None:
        return 1
    print(answer["token"])
    print(f"token {answer['id']} for {args.namespace}/{args.service_account}, expires in {args.ttl}", file=sys.stderr)
    return 0


def run_token_list(args: argparse.Namespace) -> int:
    from pymesh.control.token_client import call, format_tokens

    answer = call(args.server, "GET", "/tokens")
    if answer is None:
        return 1
    print(format_tokens(answer["tokens"]))
    return 0


def run_token_revoke(args: argparse.Namespace) -> int:
    from pymesh.control.token_client import call

    answer = call(args.server, "POST", f"/tokens/{args.id}/revoke")
    if answer is None:
        return 1
    print(f"token {answer['id']} ({answer['namespace']}/{answer['service_account']}) revoked")
    return 0


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _address(value: str) -> tuple[str, int]:
    try:
        host, port = parse_host_port(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} out of range")
    return host or "0.0.0.0", port


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {value!r}") from None
    if seconds < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return seconds


def main(argv: list[str] | None = None) -> int:
    """`python -m pymesh.control.command serve ...`: the control server's own entry point (its
    container runs only this), the same as `pymesh control ...`."""
    parser = argparse.ArgumentParser(prog="pymesh")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["control", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
