"""The cluster, listener and RBAC stats of `/stats` as Envoy's `/stats/prometheus` shows them under
Istio's bootstrap tags: the scope's name becomes a label (`cluster_name`, `listener_address`),
a `_2xx`-style suffix becomes `response_code_class`, dots become underscores, `envoy_` goes in
front. So `cluster.outbound|80||svc.upstream_rq_pending_overflow` is
`envoy_cluster_upstream_rq_pending_overflow{cluster_name="outbound|80||svc"}`.

Envoy reads the cluster name with a regex that stops at the first dot unless the host ends in
.svc.cluster.local; pymesh knows where the scope ends and keeps the whole name.
"""

from __future__ import annotations

import re

from pymesh.telemetry.store import is_gauge

_CODE_CLASS = re.compile(r"_rq_(\dxx)$")  # Istio's response_code_class tag: _rq(_(\dxx))$
_KINDS = (("cluster.", "cluster", "cluster_name"), ("listener.", "listener", "listener_address"))


def listener_address(listener_name: str) -> str:
    """Envoy's listener scope is its address, "127.0.0.1_9080"; pymesh's listener names carry
    it as "egress|127.0.0.1|9080" (a name without one is kept as it is)."""
    parts = listener_name.split("|")
    return f"{parts[1]}_{parts[2]}" if len(parts) == 3 else listener_name


# Istio's bootstrap tags for the dry-run (shadow) RBAC stats, as its authz-dry-run task reads them
_DRY_RUN = re.compile(r"istio_dry_run_(allow|deny)_shadow_(allowed|denied)$")


def _rbac(scope: str, stat: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """http.<listener>.rbac.* as Envoy shows it under Istio: the connection manager's stat prefix
    (Istio's inbound one, "inbound_0.0.0.0_80") stays in the family name, and the dry-run
    results become the authz_dry_run_action and authz_dry_run_result labels:
    envoy_http_inbound_0_0_0_0_80_rbac{authz_dry_run_action="deny",authz_dry_run_result="denied"}."""
    parts = scope[len("http."):-len(".rbac")].split("|")
    address = f"{parts[1]}_{parts[2]}" if len(parts) == 3 else f"0.0.0.0_{parts[-1]}"
    family = f"envoy_http_inbound_{address}_rbac".replace(".", "_")
    dry_run = _DRY_RUN.match(stat)
    if dry_run:
        return family, (("authz_dry_run_action", dry_run.group(1)), ("authz_dry_run_result", dry_run.group(2)))
    return f"{family}_{stat}", ()


def _series(scope: str, stat: str) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    """(family, labels) of one stat, or None for a scope Envoy does not tag this way."""
    if scope.startswith("http.") and scope.endswith(".rbac"):
        return _rbac(scope, stat)
    for prefix, kind, tag in _KINDS:
        if scope.startswith(prefix):
            name = scope[len(prefix):]
            labels = [(tag, listener_address(name) if kind == "listener" else name)]
            code_class = _CODE_CLASS.search(stat)
            if code_class:
                stat = stat[: code_class.start()] + "_rq"
                labels.insert(0, ("response_code_class", code_class.group(1)))
            return f"envoy_{kind}_{stat.replace('.', '_')}", tuple(labels)
    return None


def escape(value: str) -> str:
    """A label value in the text format (the Istio families use it too)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def exposition(scopes: dict[str, dict[str, int]]) -> str:
    """Prometheus text format 0.0.4, families sorted by name, counters and `*_active` gauges
    typed as Envoy types them (one # TYPE line each, no HELP, as Envoy writes)."""
    families: dict[str, dict[tuple, int]] = {}
    kinds: dict[str, str] = {}
    for scope, counters in scopes.items():
        for stat, value in counters.items():
            found = _series(scope, stat)
            if found is None:
                continue
            family, labels = found
            series = families.setdefault(family, {})
            series[labels] = series.get(labels, 0) + value  # two names, one address: one series
            kinds[family] = "gauge" if is_gauge(stat) else "counter"
    out = []
    for family in sorted(families):
        out.append(f"# TYPE {family} {kinds[family]}\n")
        for labels, value in sorted(families[family].items()):
            text = ",".join(f'{k}="{escape(v)}"' for k, v in labels)
            out.append(f"{family}{{{text}}} {value}\n")
    return "".join(out)
