"""The `pymesh` command: one entry point, one module per subcommand.

Each subcommand module exposes `register(subparsers)`, which adds its parser and sets `func`
(called with the parsed arguments, returning the exit status). Modules are imported only when
listed here, so `pymesh --help` stays fast and a subcommand's heavy imports load only when used.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMAND_MODULES = (
    "pymesh.proxy.command",  # pymesh proxy
    "pymesh.proxy.gateway_command",  # pymesh gateway
    "pymesh.proxy.lifecycle",  # pymesh run
    "pymesh.api.analyze",  # pymesh analyze
    "pymesh.explain_command",  # pymesh explain
    "pymesh.capture.command",  # pymesh iptables
    "pymesh.kube_inject_command",  # pymesh kube-inject, kube-uninject
    "pymesh.control.command",  # pymesh control serve|status
    "pymesh.control.proxy_status",  # pymesh proxy-status (istioctl's name)
    "pymesh.control.ca_command",  # pymesh ca init|issue
    "pymesh.control.dashboard",  # pymesh dashboard prometheus-config
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pymesh",
        description="A service mesh in Python: sidecar proxy, control server and capture init step, "
        "configured with Istio-shaped YAML resources.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(raw_argv)
    args.raw_argv = raw_argv
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
