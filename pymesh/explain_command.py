"""`pymesh explain`: given a request (curl-like), say what the mesh will do with it and why.

The configuration comes from files (`--config`, compiled here for the given proxy identity) or
from a live proxy's admin port (`--admin`: its /mesh_config view compiled the same way, and its
/clusters endpoint health). The explaining is pymesh.routing.explain's; this module gathers the
inputs and formats the answer, as aligned text or `--json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
import urllib.request
from typing import Mapping

from pymesh.api.load import load_paths
from pymesh.proxy import gateway_command
from pymesh.proxy.command import parse_labels
from pymesh.routing.compile import compile_snapshot
from pymesh.routing.explain import Request, explain
from pymesh.routing.explain_log import explain_log_record
from pymesh.routing.mesh_view import decode_view
from pymesh.routing.snapshot import ProxyIdentity, Snapshot
from pymesh.telemetry.accesslog import RECENT

GATEWAY_DEFAULTS = {**gateway_command.DEFAULTS, "namespace": gateway_command.NAMESPACE}  # `pymesh gateway`'s
ADMIN_TIMEOUT = 5.0  # seconds per admin request
MAX_ADMIN_BODY = 64 << 20  # a mesh config view larger than this is refused


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="say what the mesh does with a request, and why",
        description="Walk a request through the configuration a proxy runs: the listener, the virtual host, "
        "the route that matched (and why earlier ones did not), the destination clusters and their endpoints' "
        "health, the policies in force and the outcome with Envoy's response flag. With --log-line, say why "
        "a logged request got its status.",
    )
    parser.add_argument("url", nargs="?", help="the request's URL, as curl takes it (http://reviews:9080/path)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", action="append", metavar="PATH", help="YAML file or directory (repeatable)")
    source.add_argument("--admin", metavar="HOST:PORT", help="a running proxy's admin address (e.g. 127.0.0.1:15000)")
    parser.add_argument("--namespace", help="the proxy's namespace (default: default; istio-system with --gateway)")
    parser.add_argument("--workload", help="the proxy's workload name")
    parser.add_argument("--labels", action="append", default=None, help="the proxy's labels, k=v[,k=v...] (repeatable)")
    parser.add_argument("--gateway", action="store_true", help="explain for a gateway (router) proxy, "
                        "labels istio=ingressgateway unless given")
    parser.add_argument("--inbound", action="store_true", help="the request arrives at this workload "
                        "(its inbound listener, authorization policies, JWT rules)")
    parser.add_argument("--source-principal", default="", metavar="SPIFFE_URI", help="with --inbound: the "
                        "caller's verified mTLS identity (spiffe://cluster.local/ns/N/sa/S); none: plaintext")
    parser.add_argument("--source-ip", default="127.0.0.1", help="with --inbound: the caller's address")
    parser.add_argument("-X", "--request", dest="method", default="GET", help="the method (default GET)")
    parser.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'", help="a request header (repeatable)")
    logged = parser.add_mutually_exclusive_group()
    logged.add_argument("--log-line", metavar="JSON", help="an access-log line (the proxy's JSON) to explain")
    logged.add_argument("--request-id", metavar="ID", help="with --admin: explain the request of this x-request-id "
                        "from the proxy's recent access log")
    parser.add_argument("--json", action="store_true", help="structured output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (ValueError, OSError, argparse.ArgumentTypeError) as error:
        print(f"pymesh explain: {error}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    log = _log_record(args.log_line) if args.log_line else _logged(args) if args.request_id else None
    if args.url is None and log is None:
        raise ValueError("give a URL, --log-line or --request-id")
    answer: dict = {}
    if log is not None:
        answer["log"] = explain_log_record(log)
    if args.url is not None or (log and log.get("authority") and (args.config or args.admin)):
        request = _request(args, log)
        snapshot, health = _snapshot(args)
        explanation = explain(snapshot, request, health, inbound=args.inbound)
        logged_route = (log or {}).get("route_name")
        if logged_route and explanation.route and explanation.route["name"] != logged_route:
            explanation.notes.append(f"the log records route {logged_route!r}, explain matched "
                                     f"{explanation.route['name']!r}: the access log has no request headers, give them with -H")
        answer["explanation"] = explanation.to_json()
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=False, default=str))
    else:
        print(format_text(answer))
    return 0


def _log_record(text: str) -> dict:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"--log-line is not JSON: {error}") from None
    if not isinstance(record, dict):
        raise ValueError("--log-line: expected a JSON object (one access-log line)")
    return record


def _logged(args: argparse.Namespace) -> dict:
    """The last record of --request-id in the live proxy's recent access log."""
    if not args.admin:
        raise ValueError("--request-id needs --admin HOST:PORT (the proxy keeps its recent records)")
    query = urllib.parse.urlencode({"request_id": args.request_id})
    answer = json.loads(_admin_get(args.admin, f"/access_log?{query}"))
    if not answer.get("kept"):
        raise ValueError("the proxy keeps no access log (--access-log off): nothing to look the request id up in")
    if not answer.get("records"):
        raise ValueError(f"request id {args.request_id!r} is not among the proxy's {RECENT} most recent records "
                         "(with --concurrency > 1 each worker keeps its own)")
    return answer["records"][-1]


def _request(args: argparse.Namespace, log: Mapping | None) -> Request:
    headers: dict[str, str] = {}
    for item in args.header:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"-H: expected 'name: value', got {item!r}")
        headers[name.strip().lower()] = value.strip()
    if args.url is not None:
        return Request.from_url(args.url, args.method, headers, args.source_principal, args.source_ip)
    scheme = "https" if log.get("requested_server_name") else "http"  # type: ignore[union-attr]
    url = f"{scheme}://{log['authority']}{log.get('path') or '/'}"  # type: ignore[index]
    return Request.from_url(url, log.get("method") or "GET", headers,  # type: ignore[union-attr]
                            args.source_principal, args.source_ip)


def _identity(args: argparse.Namespace) -> ProxyIdentity:
    defaults = GATEWAY_DEFAULTS if args.gateway else {"labels": "", "workload": "unknown", "namespace": "default"}
    labels = ",".join(args.labels) if args.labels is not None else defaults["labels"]
    return ProxyIdentity(workload=args.workload or defaults["workload"], namespace=args.namespace or defaults["namespace"],
                         labels=parse_labels(labels), kind="router" if args.gateway else "sidecar")


def _snapshot(args: argparse.Namespace) -> tuple[Snapshot, dict]:
    if args.admin:
        version, identity, config = decode_view(json.loads(_admin_get(args.admin, "/mesh_config")))
        health = parse_clusters(_admin_get(args.admin, "/clusters").decode("utf-8", "replace"))
        return compile_snapshot(config, identity, version, load_filters=None), health  # PythonFilters: listed, not run
    if not args.config:
        raise ValueError("give --config PATH or --admin HOST:PORT")
    result = load_paths(args.config)
    for error in result.errors:
        print(f"warning: {error} (resource left out)", file=sys.stderr)
    return compile_snapshot(result.config, _identity(args), "explain", load_filters=None), {}


def _admin_get(address: str, path: str) -> bytes:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--admin: expected HOST:PORT, got {address!r}")
    with urllib.request.urlopen(f"http://{address}{path}", timeout=ADMIN_TIMEOUT) as response:  # noqa: S310 (http only)
        body = response.read(MAX_ADMIN_BODY + 1)
    if len(body) > MAX_ADMIN_BODY:
        raise ValueError(f"{address}{path}: answer larger than {MAX_ADMIN_BODY} bytes")
    return body


def parse_clusters(text: str) -> dict[str, dict[str, str]]:
    """Envoy's /clusters text -> cluster -> host -> health_flags."""
    out: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        parts = line.split("::")
        if len(parts) >= 4 and parts[-2] == "health_flags":
            out.setdefault(parts[0], {})["::".join(parts[1:-2])] = parts[-1]
    return out


# --- text ----------------------------------------------------------------------------------------


def _rows(rows: list[tuple[str, str]]) -> list[str]:
    width = max((len(k) for k, _ in rows), default=0)
    return [f"{k.ljust(width)}  {v}" for k, v in rows]


def format_text(answer: dict) -> str:
    lines: list[str] = []
    if "log" in answer:
        log = answer["log"]
        lines += _rows([("status", f"{log['status']}  flags {','.join(log['flags']) or '-'}"),
                        *(("why", r) for r in log["reasons"]),
                        *((k, str(log[k])) for k in ("route_name", "upstream_cluster", "upstream_host", "request_id") if log.get(k))])
    if "explanation" in answer:
        if lines:
            lines.append("")
        lines += explanation_text(answer["explanation"])
    return "\n".join(lines)


def explanation_text(e: dict) -> list[str]:
    """An Explanation's JSON as short aligned lines, the outcome first."""
    out = e["outcome"]
    r = e["request"]
    p = e["proxy"]
    rows: list[tuple[str, str]] = [
        ("outcome", _outcome(out)),
        ("request", f"{r['method']} {r['scheme']}://{r['authority']}{r['path']}"),
        ("proxy", f"{p['kind']} {p['namespace']}/{p['workload']}"),
    ]
    if e["listener"]:
        l = e["listener"]
        rows.append(("listener", f"{l['name']} ({l['direction']}, {l['protocol']}, port {l['port']})"))
    if e["virtual_host"]:
        rows.append(("virtual host", e["virtual_host"]))
    for miss in e["misses"]:
        rows.append(("no match", f"{_route_name(miss)}: {' | '.join(miss['reasons'])}"))
    if e["route"]:
        match = e["route"]["match"]
        rows.append(("route", _route_name(e["route"]) + (f", match[{match}]" if match is not None else ", no match block")))
    for d in e["destinations"]:
        rows.append(("cluster", f"{d['cluster']}  {d['percent']:g}%" + (f"  PROBLEM: {d['problem']}" if d["problem"] else "")))
        for ep in d["endpoints"]:
            rows.append(("  endpoint", f"{ep['address']}  {ep['health']}" + (f"  weight {ep['weight']}" if ep["weight"] != 1 else "")))
    rows += [("policy", p) for p in e["policies"]]
    rows += [("filter", f"{f['name']} ({f['module']}): phase {f['phase']} ({f['place']}), priority {f['priority']}, "
                        f"{f['fail_strategy']}") for f in e.get("filters", ())]
    rows += [("may instead", f"{a['status']} {a['flag']} ({a['percent']:g}%): {a['reason']}") for a in e["alternatives"]]
    if e["closest_hosts"]:
        rows.append(("closest hosts", ", ".join(e["closest_hosts"])))
    rows += [("note", n) for n in e["notes"]]
    return _rows(rows)


def _outcome(out: dict) -> str:
    status = "forwarded" if out["status"] is None else str(out["status"])
    flag = f" {out['flag']}" if out["flag"] not in ("-", "") else ""
    return f"{status}{flag}: {out['reason']}"


def _route_name(route: dict) -> str:
    name = route["name"] or "(unnamed)"
    vs = route["virtual_service"] or "(default route)"
    return f"#{route['index']} {name!r} of {vs}"

