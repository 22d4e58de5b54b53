"""AuthorizationPolicy, compiled: which policies apply to a workload, and the decision for one
request or connection, with Istio's semantics (pilot/pkg/security/authz).

Order: CUSTOM, then DENY (any match denies), then ALLOW (when any ALLOW policy applies, a
request none of them matches is denied; a policy without rules matches nothing). AUDIT only
marks what it matches; dry-run policies (`istio.io/dry-run: "true"`) are evaluated as Envoy's
shadow rules and never enforced. pymesh has no ext_authz providers, so a CUSTOM policy is what
Istio makes of one whose provider it cannot find: a DENY of what its rules match (fail closed).

A rule matches when one of its sources, one of its operations and all of its `when` conditions
match; each field is one condition (any of its values) and its `not` form excludes. Values
follow Istio's string rules: "*" any non-empty value, "*x" suffix, "x*" prefix, else exact
(hosts case-insensitive; headers' and methods' "*" only needs presence). Principals are matched
against the peer's verified SPIFFE URI (none without mTLS: then principal, namespace and service
account values never match, and their `not` forms always do), JWT fields against the request's
`RequestPrincipal` (none: no match).

TCP connections see the policy as Istio's network RBAC filter does: an ALLOW rule that uses an
HTTP-only field (hosts, methods, paths, request principals, request.* keys) never matches, and
a DENY, AUDIT or CUSTOM rule drops those fields, matching wider.

Everything is compiled here once per snapshot; a check reads the request without building
anything in the common case (frozensets and prefix tuples; IP parsing is cached). The value
tests are in authz_values, the request attributes they read in authz_attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from pymesh.api import model
from pymesh.routing.scope import ROOT_NAMESPACE, selects
from pymesh.security.authz_attributes import DESTINATION_PORT, HOST, METHOD, PATH, Attribute, attribute


@dataclass(frozen=True, slots=True)
class Verdict:
    """A decision: `policy` is Envoy's effective policy id ("ns[foo]-policy[deny]-rule[0]",
    "none" when no policy matched), as in rbac_access_denied_matched_policy[...]."""

    allowed: bool
    policy: str = "none"


ALLOW_ALL = Verdict(True)
DENY_UNMATCHED = Verdict(False)


# --- conditions, rules, policies ---------------------------------------------------------------


class Condition:
    """One field or `when` entry: the attribute matches one of `values` (if any) and none of
    `not_values`."""

    __slots__ = ("read", "yes", "no", "http_only")

    def __init__(self, attr: Attribute, values: tuple[str, ...], not_values: tuple[str, ...]) -> None:
        self.read = attr.read
        self.yes = attr.values(values) if values else None
        self.no = attr.values(not_values) if not_values else None
        self.http_only = attr.http_only

    def match(self, head, info, jwt) -> bool:
        value = self.read(head, info, jwt)
        yes, no = self.yes, self.no
        return (yes is None or yes(value)) and (no is None or not no(value))


_SOURCE_KEYS = (("principals", "not_principals", "source.principal"),
                ("request_principals", "not_request_principals", "request.auth.principal"),
                ("namespaces", "not_namespaces", "source.namespace"),
                ("service_accounts", "not_service_accounts", "source.serviceAccount"),
                ("ip_blocks", "not_ip_blocks", "source.ip"),
                ("remote_ip_blocks", "not_remote_ip_blocks", "remote.ip"))
_OPERATION_KEYS = (("hosts", "not_hosts", HOST), ("ports", "not_ports", DESTINATION_PORT),
                   ("methods", "not_methods", METHOD), ("paths", "not_paths", PATH))


def _conditions(item: Any, keys: tuple, namespace: str) -> tuple[Condition, ...]:
    out = []
    for yes, no, attr in keys:
        values, not_values = getattr(item, yes), getattr(item, no)
        if values or not_values:
            out.append(Condition(attribute(attr, namespace) if isinstance(attr, str) else attr, values, not_values))
    return tuple(out)


def _all(conditions: tuple[Condition, ...], head, info, jwt) -> bool:
    for condition in conditions:
        if not condition.match(head, info, jwt):
            return False
    return True


def _any(branches: tuple[tuple[Condition, ...], ...], head, info, jwt) -> bool:
    if not branches:
        return True
    for branch in branches:
        if _all(branch, head, info, jwt):
            return True
    return False


class Rule:
    """One policy rule: one of its sources, one of its operations and all its conditions."""

    __slots__ = ("sources", "operations", "when", "verdict_id")

    def __init__(self, sources, operations, when, verdict_id: str) -> None:
        self.sources, self.operations, self.when, self.verdict_id = sources, operations, when, verdict_id

    @classmethod
    def compile(cls, rule: model.AuthzRule, namespace: str, verdict_id: str) -> Rule:
        return cls(tuple(_conditions(s, _SOURCE_KEYS, namespace) for s in rule.sources),
                   tuple(_conditions(o, _OPERATION_KEYS, namespace) for o in rule.operations),
                   tuple(Condition(attribute(c.key, namespace), c.values, c.not_values) for c in rule.when),
                   verdict_id)

    def uses_http(self) -> bool:
        return any(c.http_only for c in self._every())

    def without_http(self) -> Rule:
        """The rule as Istio writes it for TCP in a DENY/AUDIT policy: HTTP-only fields dropped."""

        def strip(conditions):
            return tuple(c for c in conditions if not c.http_only)

        return Rule(tuple(strip(s) for s in self.sources), tuple(strip(o) for o in self.operations),
                    strip(self.when), self.verdict_id)

    def matches_everything(self) -> bool:
        """No condition is left that could fail (a DENY rule of HTTP-only fields, seen by TCP)."""
        return ((not self.sources or () in self.sources) and (not self.operations or () in self.operations)
                and not self.when)

    def _every(self):
        for branch in self.sources + self.operations:
            yield from branch
        yield from self.when

    def match(self, head, info, jwt) -> bool:
        return (_any(self.sources, head, info, jwt) and _any(self.operations, head, info, jwt)
                and _all(self.when, head, info, jwt))


class Policy:
    """One AuthorizationPolicy compiled twice: its rules for HTTP requests and for TCP."""

    __slots__ = ("name", "action", "http", "tcp", "verdicts", "warnings")

    def __init__(self, policy: model.AuthorizationPolicy) -> None:
        meta = policy.metadata
        self.name = f"{meta.namespace}/{meta.name}"
        self.action = policy.action
        ids = [f"ns[{meta.namespace}]-policy[{meta.name}]-rule[{i}]" for i in range(len(policy.rules))]
        rules = tuple(Rule.compile(rule, meta.namespace, ids[i]) for i, rule in enumerate(policy.rules))
        self.http = rules
        if policy.action == "ALLOW":
            self.tcp = tuple(rule for rule in rules if not rule.uses_http())
        else:
            self.tcp = tuple(rule.without_http() for rule in rules)
        allowed = policy.action in ("ALLOW", "AUDIT")
        self.verdicts = {rule_id: Verdict(allowed, rule_id) for rule_id in ids}
        self.warnings = tuple(
            f"AuthorizationPolicy {self.name} will deny all traffic to TCP ports under its scope due to the use "
            f"of only HTTP attributes in a DENY rule (rule {i}); it is recommended to explicitly specify the port"
            for i, (http, tcp) in enumerate(zip(rules, self.tcp))
            if policy.action in ("DENY", "CUSTOM") and http.uses_http() and tcp.matches_everything())
        if policy.action == "CUSTOM":  # as istiod reports a provider it cannot find
            self.warnings += (f"AuthorizationPolicy {self.name}: CUSTOM provider {policy.provider!r} is not an "
                              "extension provider pymesh knows (it has no ext_authz): the requests its rules match "
                              "are denied",)

    def first_match(self, head, info, jwt) -> Verdict | None:
        for rule in self.http if head is not None else self.tcp:
            if rule.match(head, info, jwt):
                return self.verdicts[rule.verdict_id]
        return None


def _first(policies: tuple[Policy, ...], head, info, jwt) -> Verdict | None:
    for policy in policies:
        verdict = policy.first_match(head, info, jwt)
        if verdict is not None:
            return verdict
    return None


class Authorizer:
    """The policies that apply to one workload, by role. `check` decides; `audit` and
    `shadow` only report."""

    def __init__(self, policies: Iterable[model.AuthorizationPolicy]) -> None:
        enforced: dict[str, list[Policy]] = {"CUSTOM": [], "DENY": [], "ALLOW": [], "AUDIT": []}
        shadow: dict[str, list[Policy]] = {"CUSTOM": [], "DENY": [], "ALLOW": [], "AUDIT": []}
        self.names: list[str] = []
        self.warnings: list[str] = []  # Istio's validation warnings, for the snapshot's
        for policy in policies:
            compiled = Policy(policy)
            (shadow if policy.dry_run else enforced)[policy.action].append(compiled)
            self.names.append(compiled.name)
            self.warnings += compiled.warnings
        # CUSTOM without a provider pymesh can call is a DENY of what it matches (Istio, fail closed)
        self.deny = tuple(enforced["CUSTOM"] + enforced["DENY"])
        self.allow = tuple(enforced["ALLOW"])
        self.has_allow = bool(self.allow)
        self.audit = tuple(enforced["AUDIT"])
        self.shadow_deny = tuple(shadow["CUSTOM"] + shadow["DENY"])
        self.shadow_allow = tuple(shadow["ALLOW"])
        self.has_shadow = bool(self.shadow_deny or self.shadow_allow)

    def check(self, head, info, jwt=None) -> Verdict:
        """An HTTP request (head) or, with head None, a TCP connection at its start."""
        if self.deny:
            verdict = _first(self.deny, head, info, jwt)
            if verdict is not None:
                return verdict
        if not self.has_allow:
            return ALLOW_ALL
        verdict = _first(self.allow, head, info, jwt)
        return verdict if verdict is not None else DENY_UNMATCHED

    def audited(self, head, info, jwt=None) -> Verdict | None:
        """The AUDIT rule the request matches, if any (Envoy's LOG action)."""
        return _first(self.audit, head, info, jwt) if self.audit else None

    def shadow(self, head, info, jwt=None) -> tuple[bool | None, bool | None]:
        """Dry-run results: (the dry-run DENY policies allow, the dry-run ALLOW policies allow),
        None for a kind with no dry-run policy."""
        deny = None if not self.shadow_deny else _first(self.shadow_deny, head, info, jwt) is None
        allow = None if not self.shadow_allow else _first(self.shadow_allow, head, info, jwt) is not None
        return deny, allow


# --- which policies apply ------------------------------------------------------------------------


def applies(policy: model.AuthorizationPolicy, namespace: str, labels: Mapping[str, str],
            served: Callable[[str, str], bool]) -> bool:
    """Istio's scope: the root namespace's policies apply mesh-wide, others to their namespace;
    a selector narrows to the workloads whose labels it matches; targetRefs name what the policy
    binds to instead (a Service or ServiceEntry this workload serves; no Gateway is a sidecar)."""
    meta = policy.metadata
    if meta.namespace not in (ROOT_NAMESPACE, namespace):
        return False
    if policy.target_refs:
        return any(ref.kind in ("Service", "ServiceEntry") and served(meta.namespace, ref.name)
                   for ref in policy.target_refs)
    return selects(policy.selector or {}, labels)


def compile_authorizer(config: model.MeshConfig, namespace: str, labels: Mapping[str, str],
                       served: Callable[[str, str], bool]) -> Authorizer | None:
    """The workload's Authorizer, or None when no policy applies (nothing to check)."""
    chosen = [p for p in config.authorization_policies if applies(p, namespace, labels, served)]
    return Authorizer(chosen) if chosen else None
