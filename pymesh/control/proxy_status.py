"""`pymesh proxy-status` (alias `ps`): what Istio users type for `istioctl proxy-status`, the
control server's proxies in istioctl's columns (pymesh/control/status.py)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from pymesh.control.command import _address

    parser = subparsers.add_parser(
        "proxy-status", aliases=["ps"], help="each proxy's sync state, as istioctl proxy-status shows it",
        description="The proxies the control server serves, in istioctl proxy-status's columns: CDS, LDS, "
        "EDS and RDS are SYNCED (the proxy ACKed its last push), STALE (pushed, not ACKed yet) or NACKED "
        "(rejected: the error follows); pymesh pushes them in one snapshot, so they agree. The same data as "
        "`pymesh control status`.")
    parser.add_argument("--server", type=_address, default=("127.0.0.1", 15014), metavar="ADDR:PORT",
                        help="the control server's admin address (default 127.0.0.1:15014)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pymesh.control.status import format_proxy_status, show

    return show(args.server, format_proxy_status, "pymesh proxy-status")
