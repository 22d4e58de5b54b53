"""The service graph of the mesh page, as data: pure, from the registry, the configuration and
two scrapes of the proxies' Istio metrics.

Nodes are workloads (the registered proxies, and any workload a metric names) and services (the
ServiceEntry hosts, and any destination_service a metric names). Edges come as Kiali draws them
from the same series: workload -> service from reporter="source" istio_requests_total (requests,
5xx share, latency from istio_request_duration_milliseconds), service -> workload from the
destination_workload those series name (a registered proxy's WorkloadEntry is named by its node
id: that name is its proxy's workload). An edge is mTLS when the reporter="destination" series
between the same workloads say connection_security_policy="mutual_tls" (the destination's proxy
may not know the service's name, so they are matched by workload).

Rates are the difference between two scrapes over the time between them; with one scrape only
the totals are known and the rates are None. At most MAX_EDGES edges, the busiest, are drawn
(`edges_left_out` counts the others).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable

from pymesh.control.scrape import Round

MAX_EDGES = 300  # the busiest are kept: one proxy naming thousands of services must not flood the page
REQUESTS = "istio_requests_total"
DURATION = "istio_request_duration_milliseconds"
UNKNOWN = "unknown"


def workload_id(name: str, namespace: str) -> str:
    return f"workload:{namespace}/{name}"


Aliases = dict[tuple[str, str], str]  # (namespace, registered entry name) -> workload


def _workload(labels: dict, side: str, aliases: Aliases) -> str:
    namespace = labels.get(f"{side}_workload_namespace") or UNKNOWN
    name = labels.get(f"{side}_workload") or UNKNOWN
    return workload_id(aliases.get((namespace, name), name), namespace)


def service_id(host: str) -> str:
    return f"service:{host}"


def build(services: Iterable[tuple[str, str]], proxies: Iterable[dict], latest: Round | None,
          previous: Round | None) -> dict:
    """{"nodes": [...], "edges": [...]} for /mesh/graph.json. `services`: (host, namespace)
    pairs; `proxies`: the hub's status records."""
    nodes: dict[str, dict] = {}
    proxies = list(proxies)
    aliases = {(p["namespace"], p["id"]): p.get("workload") or p["id"] for p in proxies}
    for host, namespace in services:
        nodes[service_id(host)] = {"id": service_id(host), "kind": "service", "name": host, "namespace": namespace}
    for proxy in proxies:
        key = workload_id(proxy.get("workload") or proxy["id"], proxy["namespace"])
        node = nodes.setdefault(key, {"id": key, "kind": "workload", "name": proxy.get("workload") or proxy["id"],
                                      "namespace": proxy["namespace"], "proxies": []})
        node["proxies"].append({"id": proxy["id"], "state": proxy.get("state"), "connected": proxy.get("connected")})
    now = _edges(latest, aliases)
    before = _edges(previous, aliases)
    seconds = latest.at - previous.at if latest and previous and latest.at > previous.at else None
    mtls = _mtls(latest, aliases)
    edges = []
    kept = sorted(sorted(now.items(), key=lambda item: -item[1].requests)[:MAX_EDGES], key=lambda item: item[0])
    for (source, target), cell in kept:
        for end in (source, target):
            kind, _, rest = end.partition(":")
            namespace, _, name = rest.rpartition("/") if kind == "workload" else ("", "", rest)
            nodes.setdefault(end, {"id": end, "kind": kind, "name": name, "namespace": namespace,
                                   **({"proxies": []} if kind == "workload" else {})})
        edges.append(_edge(source, target, cell, before.get((source, target)), seconds, mtls))
    return {"nodes": sorted(nodes.values(), key=lambda n: n["id"]), "edges": edges,
            "window_seconds": seconds, "edges_left_out": len(now) - len(kept),
            "scrape_errors": [{"proxy": p, "error": e} for p, e in (latest.errors if latest else ())]}


class _Cell:
    """One edge's counters in one scrape."""

    def __init__(self) -> None:
        self.requests = 0.0
        self.errors = 0.0
        self.duration_sum = 0.0
        self.duration_count = 0.0
        self.buckets: dict[float, float] = defaultdict(float)  # le -> cumulative count
        self.pairs: set[tuple[str, str]] = set()  # (source, destination) workloads it stands for


def _ends(labels: dict, aliases: Aliases) -> tuple[tuple[str, str], list[tuple[str, str]]]:
    """The (source, destination) workloads of one reporter="source" series, and the edges it
    counts for."""
    service = service_id(labels.get("destination_service") or UNKNOWN)
    source, destination = _workload(labels, "source", aliases), _workload(labels, "destination", aliases)
    ends = [(source, service)]
    if labels.get("destination_workload", UNKNOWN) != UNKNOWN:
        ends.append((service, destination))
    return (source, destination), ends


def _edges(scrape: Round | None, aliases: Aliases) -> dict[tuple[str, str], _Cell]:
    cells: dict[tuple[str, str], _Cell] = defaultdict(_Cell)
    for name, labels, value in scrape.samples if scrape else ():
        if labels.get("reporter") != "source":
            continue
        pair, ends = _ends(labels, aliases)
        for end in ends:
            cell = cells[end]
            cell.pairs.add(pair)
            if name == REQUESTS:
                cell.requests += value
                if labels.get("response_code", "").startswith("5") or labels.get("response_code") == "0":
                    cell.errors += value
            elif name == DURATION + "_sum":
                cell.duration_sum += value
            elif name == DURATION + "_count":
                cell.duration_count += value
            elif name == DURATION + "_bucket":
                cell.buckets[float(labels.get("le", "inf"))] += value
    return cells


def _mtls(scrape: Round | None, aliases: Aliases) -> dict[tuple[str, str], set[str]]:
    """(source, destination) workload nodes -> the policies the destination's proxies saw."""
    seen: dict[tuple[str, str], set[str]] = defaultdict(set)
    for name, labels, _ in scrape.samples if scrape else ():
        if name == REQUESTS and labels.get("reporter") == "destination":
            pair = (_workload(labels, "source", aliases), _workload(labels, "destination", aliases))
            seen[pair].add(labels.get("connection_security_policy") or UNKNOWN)
    return seen


def _edge(source: str, target: str, now: _Cell, before: _Cell | None, seconds: float | None,
          mtls: dict[tuple[str, str], set[str]]) -> dict:
    delta = _delta(now, before) if before is not None else now
    policies = set().union(*(mtls.get(pair, set()) for pair in now.pairs))
    return {
        "source": source,
        "target": target,
        "requests_total": now.requests,
        "errors_total": now.errors,
        "rps": delta.requests / seconds if seconds else None,
        "error_rate": delta.errors / delta.requests if delta.requests else None,
        "latency_ms": {
            "mean": delta.duration_sum / delta.duration_count if delta.duration_count else None,
            "p50": quantile(0.5, delta.buckets),
            "p99": quantile(0.99, delta.buckets),
        },
        "mtls": "mutual_tls" if policies == {"mutual_tls"} else
                "partial" if "mutual_tls" in policies else ("none" if policies else UNKNOWN),
    }


def _delta(now: _Cell, before: _Cell) -> _Cell:
    """Counters since the previous scrape (a proxy restart makes them smaller: then the totals)."""
    if now.requests < before.requests:
        return now
    out = _Cell()
    out.requests = now.requests - before.requests
    out.errors = max(0.0, now.errors - before.errors)
    out.duration_sum = now.duration_sum - before.duration_sum
    out.duration_count = now.duration_count - before.duration_count
    for le, count in now.buckets.items():
        out.buckets[le] = count - before.buckets.get(le, 0.0)
    return out


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus's histogram_quantile over cumulative buckets (linear within a bucket; the
    highest finite bound when the rank falls in +Inf)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if count >= rank:
            if math.isinf(le):
                return lower
            return lower + (le - lower) * ((rank - below) / (count - below) if count > below else 0.0)
        lower, below = le, count
    return lower
