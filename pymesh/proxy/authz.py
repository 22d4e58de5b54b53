"""The authorization filter (Envoy's envoy.filters.http.rbac as Istio configures it): every
inbound request of the workload is checked against its AuthorizationPolicies
(pymesh.security.authz) before anything goes upstream.

A denial is Envoy's local reply, 403 "RBAC: access denied" (text/plain), with no response
flag: Envoy's RBAC filter sets none, only the details rbac_access_denied_matched_policy[...],
which pymesh logs at debug level. Counted in Envoy's http.<listener>.rbac. stats: allowed or
denied per request, shadow_* of the dry-run policies under Istio's istio_dry_run_allow_ and
istio_dry_run_deny_ prefixes, and pymesh's `logged` for requests an AUDIT policy matched.
"""

from __future__ import annotations

import logging

from pymesh.policy import flags
from pymesh.proxy.local_reply import LocalReply

log = logging.getLogger(__name__)

DENIED = LocalReply(403, flags.NONE, b"RBAC: access denied")


def decide(authorizer, stats: dict, head, info, jwt, what: str) -> bool:
    """One request (head) or connection (head None): dry-run and AUDIT policies reported, then
    the decision, counted."""
    if authorizer.has_shadow:
        _count_shadow(authorizer, stats, head, info, jwt)
    if authorizer.audit:
        audited = authorizer.audited(head, info, jwt)
        if audited is not None:  # logged without the query string, which may carry credentials
            stats["logged"] += 1
            log.info("authorization audit: %s matched %s from %s", what, audited.policy, info.source_ip)
    verdict = authorizer.check(head, info, jwt)
    stats["allowed" if verdict.allowed else "denied"] += 1
    if not verdict.allowed:
        log.debug("%s denied: rbac_access_denied_matched_policy[%s]", what, verdict.policy)
    return verdict.allowed


def _count_shadow(authorizer, stats: dict, head, info, jwt) -> None:
    """The dry-run policies' verdicts, counted as Envoy's shadow engines count theirs."""
    deny_allows, allow_allows = authorizer.shadow(head, info, jwt)
    if deny_allows is not None:
        stats["istio_dry_run_deny_shadow_allowed" if deny_allows else "istio_dry_run_deny_shadow_denied"] += 1
    if allow_allows is not None:
        stats["istio_dry_run_allow_shadow_allowed" if allow_allows else "istio_dry_run_allow_shadow_denied"] += 1


class Authorization:
    def __init__(self, authorizer) -> None:
        self.authorizer = authorizer  # shared by every request of the snapshot
        self.stats: dict[str, dict[str, int]] = {}  # listener name -> its rbac scope

    def on_request(self, exchange, request) -> LocalReply | None:
        head = exchange.head
        stats = self.stats.get(exchange.listener.name)
        if stats is None:
            name = exchange.listener.name
            stats = self.stats[name] = exchange.runtime.telemetry.metrics.filter_stats(name, "rbac")
        what = f"{head.method} {head.path.partition('?')[0]}" if self.authorizer.audit else "request"
        if decide(self.authorizer, stats, head, head.connection, exchange.request_principal, what):
            return None
        return DENIED


def authorize_connection(authorizer, runtime, info) -> bool:
    """A TCP connection at its start (Envoy's network RBAC filter, stats under tcp.rbac.)."""
    return decide(authorizer, runtime.telemetry.metrics.tcp_rbac_stats(), None, info, None,
                  f"connection to port {info.local_port}")
