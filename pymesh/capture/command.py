"""`pymesh iptables`: the init step that writes the capture rules, like Istio's istio-iptables.

Flags keep istio-iptables' letters so existing injector arguments carry over; each also reads a
PYMESH_* environment variable (a flag wins over its variable), which is how the init container is
configured. One table below defines flag, variable, parser and help, so they cannot drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pymesh.capture import settings as s
from pymesh.capture.apply import CaptureError, apply, clean
from pymesh.capture.rules import render
from pymesh.capture.settings import CaptureConfigError, CaptureSettings


@dataclass(frozen=True)
class Option:
    field: str  # CaptureSettings field
    flags: tuple[str, ...]
    env: str
    parse: Callable[[str], object]
    help: str


OPTIONS = (
    Option("proxy_port", ("-p", "--proxy-port"), "PYMESH_PROXY_PORT", s.parse_port,
           "port of the proxy's outbound capture listener; captured outbound TCP goes here"),
    Option("inbound_capture_port", ("-z", "--inbound-capture-port"), "PYMESH_INBOUND_CAPTURE_PORT",
           s.parse_port, "port of the proxy's inbound capture listener; captured inbound TCP goes here"),
    Option("proxy_uid", ("-u", "--proxy-uid"), "PYMESH_PROXY_UID", s.parse_int,
           "uid the proxy runs as; its traffic is never captured (no loop)"),
    Option("proxy_gid", ("-g", "--proxy-gid"), "PYMESH_PROXY_GID", s.parse_int,
           "gid the proxy runs as; its traffic is never captured"),
    Option("mode", ("-m", "--inbound-interception-mode"), "PYMESH_INBOUND_INTERCEPTION_MODE", s.parse_mode,
           "how inbound connections reach the proxy: REDIRECT (nat) or TPROXY (mangle, keeps the "
           "client's source address; the listener needs IP_TRANSPARENT)"),
    Option("outbound_ip_ranges_include", ("-i", "--outbound-ip-ranges-include"),
           "PYMESH_OUTBOUND_IP_RANGES_INCLUDE", s.parse_networks_or_all,
           "comma-separated CIDRs whose outbound traffic is captured; '*' all, '' none"),
    Option("outbound_ip_ranges_exclude", ("-x", "--outbound-ip-ranges-exclude"),
           "PYMESH_OUTBOUND_IP_RANGES_EXCLUDE", s.parse_networks,
           "comma-separated CIDRs never captured outbound"),
    Option("inbound_ports_include", ("-b", "--inbound-ports-include"), "PYMESH_INBOUND_PORTS_INCLUDE",
           s.parse_ports_or_all, "comma-separated ports captured inbound; '*' all, '' none"),
    Option("inbound_ports_exclude", ("-d", "--inbound-ports-exclude"), "PYMESH_INBOUND_PORTS_EXCLUDE",
           s.parse_ports, "comma-separated ports not captured inbound (with -b '*'); the proxy's own "
           f"ports {', '.join(map(str, s.PROXY_OWN_PORTS))} and the capture ports never are"),
    Option("outbound_ports_include", ("-q", "--outbound-ports-include"), "PYMESH_OUTBOUND_PORTS_INCLUDE",
           s.parse_ports, "comma-separated ports captured outbound whatever the destination"),
    Option("outbound_ports_exclude", ("-o", "--outbound-ports-exclude"), "PYMESH_OUTBOUND_PORTS_EXCLUDE",
           s.parse_ports, "comma-separated ports never captured outbound"),
    Option("ipv6", ("-6", "--ipv6"), "PYMESH_IPV6", s.parse_bool,
           "also write the IPv6 rules (ip6tables); the variable takes true/false"),
    Option("tproxy_mark", ("-t", "--tproxy-mark"), "PYMESH_TPROXY_MARK", s.parse_int,
           "packet mark used by TPROXY mode"),
    Option("tproxy_route_table", ("-r", "--tproxy-route-table"), "PYMESH_TPROXY_ROUTE_TABLE", s.parse_int,
           "routing table TPROXY mode delivers marked packets through"),
)

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(CaptureSettings)}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "iptables",
        help="write, print or remove the traffic capture rules (the init step)",
        description="Write the iptables rules that send a pod's TCP traffic through its sidecar proxy, "
        "as Istio's istio-iptables does. Settings come from the flags, else from the PYMESH_* "
        "environment variables named in each flag's help (set but empty means empty), else the "
        "defaults shown.",
        epilog="Exit status: 0 done, 1 a command failed (the previous rules are restored), "
        "2 a setting is invalid.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", nargs="?", choices=["clean"],
                        help="'clean' removes pymesh's chains, the jumps into them and the TPROXY "
                        "routing for -t/-r (IPv6 too with -6); without it the rules are written")
    parser.add_argument("-n", "--dry-run", action="store_true",
                        help="print the rules instead of writing them (needs no privileges)")
    parser.add_argument("--netns", metavar="NAME",
                        help="work inside this named network namespace (ip netns exec NAME)")
    for option in OPTIONS:
        default = _DEFAULTS[option.field]
        shown = "off" if default is False else repr(default) if isinstance(default, str) else default or "''"
        help_text = f"{option.help} (env {option.env}; default: {shown})"
        if option.field == "ipv6":
            parser.add_argument(*option.flags, dest=option.field, action="store_const", const="true",
                                help=help_text)
        else:
            parser.add_argument(*option.flags, dest=option.field, metavar="VALUE", help=help_text)
    parser.set_defaults(func=run)


def settings_from(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> CaptureSettings:
    """Flags over environment over defaults; errors name the flag or variable that was wrong."""
    values = {}
    for option in OPTIONS:
        raw, source = getattr(args, option.field, None), "/".join(option.flags)
        if raw is None and option.env in environ:
            raw, source = environ[option.env], option.env
        if raw is None:
            continue
        try:
            values[option.field] = option.parse(raw)
        except ValueError as error:
            raise CaptureConfigError(source, str(error)) from None
    try:
        return CaptureSettings(**values)
    except CaptureConfigError as error:
        option = next(o for o in OPTIONS if o.field == error.field)
        raise CaptureConfigError(f"{'/'.join(option.flags)} ({option.env})", error.message) from None


def run(args: argparse.Namespace) -> int:
    try:
        if args.dry_run and args.action == "clean":
            raise CaptureConfigError("--dry-run", "prints the rules to write; it does not go with clean")
        settings = settings_from(args)
    except CaptureConfigError as error:
        print(f"pymesh iptables: error: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        sys.stdout.write(render(settings))
        return 0
    try:
        if args.action == "clean":
            clean(settings, netns=args.netns)
        else:
            apply(settings, netns=args.netns)
    except CaptureError as error:
        print(f"pymesh iptables: error: {error}", file=sys.stderr)
        return 1
    done = "removed" if args.action == "clean" else "written"
    print(f"pymesh iptables: capture rules {done} (IPv{' and IPv'.join(map(str, settings.families))})")
    return 0
