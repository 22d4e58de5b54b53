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


def count_shadow(authorizer, stats: dict, head, info, jwt) -> None:
    """The dry-run policies' verdicts, counted as Envoy's shadow engines count theirs."""
    deny_allows, allow_allows = authorizer.shadow(head, info, jwt)
    if deny_allows is not None:
        stats["istio_dry_run_deny_shadow_allowed" if deny_allows else "istio_dry_run_deny_shadow_denied"] += 1
    if allow_allows is not None:
        stats["istio_dry_run_allow_shadow_allowed" if allow_allows else "istio_dry_run_allow_shadow_denied"] += 1


def note_audit(authorizer, stats: dict, head, info, jwt, what: str) -> None:
    """An AUDIT policy matched: counted and logged (never the query string, which may carry
    credentials)."""
    verdict = authorizer.audited(head, info, jwt)
    if verdict is not None:
        stats["logged"] += 1
        log.info("authorization audit: %s matched %s from %s", what, verdict.policy, info.source_ip)


class Authorization:
    def __init__(self, authorizer) -> None:
        self.authorizer = authorizer  # shared by every request of the snapshot

    def on_request(self, exchange, request) -> LocalReply | None:
        authorizer = self.authorizer
        head = exchange.head
        info = head.connection
        jwt = exchange.request_principal
        stats = exchange.runtime.telemetry.metrics.filter_stats(exchange.listener.name, "rbac")
        if authorizer.has_shadow:
            count_shadow(authorizer, stats, head, info, jwt)
        if authorizer.audit:
            note_audit(authorizer, stats, head, info, jwt, f"{head.method} {head.path.partition('?')[0]}")
        verdict = authorizer.check(head, info, jwt)
        if verdict.allowed:
            stats["allowed"] += 1
            return None
        stats["denied"] += 1
        log.debug("rbac_access_denied_matched_policy[%s]", verdict.policy)
        return DENIED


def authorize_connection(authorizer, runtime, info) -> bool:
    """A TCP connection at its start (Envoy's network RBAC filter, stats under tcp.rbac.)."""
    stats = runtime.telemetry.metrics.tcp_rbac_stats()
    if authorizer.has_shadow:
        count_shadow(authorizer, stats, None, info, None)
    if authorizer.audit:
        note_audit(authorizer, stats, None, info, None, f"connection to port {info.local_port}")
    verdict = authorizer.check(None, info)
    if verdict.allowed:
        stats["allowed"] += 1
        return True
    stats["denied"] += 1
    log.debug("connection closed: rbac_access_denied_matched_policy[%s]", verdict.policy)
    return False
