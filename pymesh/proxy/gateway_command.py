"""`pymesh gateway`: the proxy run as a standalone gateway at the mesh's edge (Istio's ingress or
egress gateway), serving the Gateway resources whose selector matches its labels."""

from __future__ import annotations

import dataclasses
import os

from pymesh.proxy import command

GATEWAY_DESCRIPTION = (
    "Run pymesh as a gateway (Istio's ingress or egress gateway): it serves the servers of the "
    "Gateway resources whose selector matches its labels (default istio=ingressgateway, from any "
    "namespace) and the VirtualServices bound to them, with --config files or from --control. "
    "A server port listens on the targetPort of the gateway's own service (a ServiceEntry in its "
    "namespace whose workloadSelector matches it), else on the port number. TLS credentialName "
    "is read from --credentials-dir. The options are `pymesh proxy`'s."
)
DEFAULTS = {"labels": "istio=ingressgateway", "workload": "istio-ingressgateway"}
NAMESPACE = "istio-system"  # unless a join token names another: the certificate will carry the token's


def register(subparsers) -> None:
    parser = subparsers.add_parser("gateway", help="run the proxy as an ingress or egress gateway",
                                   description=GATEWAY_DESCRIPTION)
    command.add_proxy_arguments(parser)
    parser.add_argument("--listen-address", default=os.environ.get("PYMESH_LISTEN_ADDRESS") or "0.0.0.0",
                        metavar="ADDRESS", help="where the Gateway servers that name no `bind` listen (default "
                        "0.0.0.0, as Istio's gateways; 127.0.0.1 keeps a local gateway off the network) "
                        "[$PYMESH_LISTEN_ADDRESS]")
    parser.set_defaults(func=run)
    for action in parser._actions:  # the gateway's defaults, unless the environment gives one
        if action.dest in DEFAULTS and action.default in (None, "", "unknown"):
            action.default = DEFAULTS[action.dest]
            action.help = f"{action.help} (gateway default: {DEFAULTS[action.dest]})"
        if action.dest == "namespace":
            action.help = f"{action.help} (gateway default: the join token's, else {NAMESPACE})"


def options_from_args(args):
    """`pymesh proxy`'s options, with the identity (and the control server hello) a router's."""
    if args.namespace is None and command.join_token(args) is None:
        args.namespace = NAMESPACE
    options = command.options_from_args(args)
    identity = dataclasses.replace(options.identity, kind="router", listen_address=args.listen_address)
    control = options.control
    if control is not None:
        control = dataclasses.replace(control, node=dataclasses.replace(control.node, kind="router"))
    return dataclasses.replace(options, identity=identity, control=control)


def run(args) -> int:
    return command.start(args, options_from_args, "pymesh gateway")
