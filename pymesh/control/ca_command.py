"""`pymesh ca init` and `pymesh ca issue`: a mesh root and workload certificates as files, for
proxies in static mode (no control server) that read Istio's file-mounted layout with --cert-dir.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta

from pymesh.api.duration import parse_duration
from pymesh.control import ca_store
from pymesh.security.ca import utc_now
from pymesh.security.identity import SpiffeId


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ca", help="make a mesh root CA and workload certificates as files (static mode)",
        description="A mesh root CA and SPIFFE workload certificates in Istio's file layout, for "
        "proxies run with --cert-dir and no control server. (The control server runs its own CA.)")
    commands = parser.add_subparsers(dest="ca_command", metavar="COMMAND")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)

    init = commands.add_parser("init", help="write a new root: DIR/root-cert.pem and DIR/root-key.pem (0600)")
    init.add_argument("dir", metavar="DIR")
    init.add_argument("--trust-domain", default="cluster.local", help="(default cluster.local)")
    init.add_argument("--force", action="store_true", help="replace a root already in DIR")
    init.set_defaults(func=run_init)

    issue = commands.add_parser("issue", help="write cert-chain.pem, key.pem (0600) and root-cert.pem for one identity")
    issue.add_argument("--ca-dir", required=True, metavar="DIR", help="where `pymesh ca init` wrote the root")
    issue.add_argument("--namespace", required=True, metavar="NS")
    issue.add_argument("--service-account", required=True, metavar="SA")
    issue.add_argument("--out", required=True, metavar="DIR", help="the proxy's --cert-dir")
    issue.add_argument("--ttl", type=duration_arg, default=timedelta(hours=24), metavar="DURATION",
                       help='certificate lifetime, e.g. "24h" or "90s" (default 24h)')
    issue.set_defaults(func=run_issue)


def run_init(args: argparse.Namespace) -> int:
    if os.path.exists(os.path.join(args.dir, ca_store.ROOT_KEY)) and not args.force:
        return _fail(f"{args.dir} already holds a root key (use --force to replace it)")
    try:
        ca = ca_store.init_root(args.dir, args.trust_domain)
    except (OSError, ValueError) as error:
        return _fail(str(error))
    print(f"root CA for trust domain {ca.trust_domain} written to {args.dir} "
          f"({ca_store.ROOT_CERT}, {ca_store.ROOT_KEY})")
    return 0


def run_issue(args: argparse.Namespace) -> int:
    try:
        ca = ca_store.load_root(args.ca_dir)
        identity = SpiffeId(ca.trust_domain, args.namespace, args.service_account)
        cert = ca.issue(identity, args.ttl, utc_now())
        ca_store.write_workload(args.out, cert)
    except (OSError, ValueError) as error:
        return _fail(str(error))
    print(f"{identity.uri} (serial {cert.serial:x}, expires {cert.not_after:%Y-%m-%dT%H:%M:%SZ}) "
          f"written to {args.out}")
    return 0


def duration_arg(value: str) -> timedelta:
    """An argparse type: a positive Istio-style duration ("24h", "90s") as a timedelta."""
    try:
        seconds = parse_duration(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return timedelta(seconds=seconds)


def _fail(message: str) -> int:
    print(f"pymesh ca: {message}", file=sys.stderr)
    return 1
