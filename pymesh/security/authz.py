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
anything in the common case (frozensets and prefix tuples; IP parsing is cached).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from pymesh.api import model
from pymesh.routing.regex import full_matcher

log = logging.getLogger(__name__)

ROOT_NAMESPACE = "istio-system"  # Istio's default meshConfig.rootNamespace: its policies apply mesh-wide
SPIFFE = "spiffe://"


@dataclass(frozen=True, slots=True)
class Verdict:
    """A decision: `policy` is Envoy's effective policy id ("ns[foo]-policy[deny]-rule[0]",
    "none" when no policy matched), as in rbac_access_denied_matched_policy[...]."""

    allowed: bool
    policy: str = "none"


ALLOW_ALL = Verdict(True)
DENY_UNMATCHED = Verdict(False)


# --- values ----------------------------------------------------------------------------------


class Strings:
    """Istio's StringMatcher over a list of values: exact set, prefix and suffix tuples, and
    "*" (any non-empty string; with `present_star`, any present value, even empty)."""

    __slots__ = ("exact", "prefixes", "suffixes", "star", "lower", "present_star")

    def __init__(self, values: Iterable[str], *, ignore_case: bool = False, present_star: bool = False,
                 prefix: str = "") -> None:
        exact, prefixes, suffixes, star = set(), [], [], False
        for value in values:
            if ignore_case:
                value = value.lower()
            if value == "*":
                star = True
            elif value.startswith("*"):
                suffixes.append(value[1:])
            elif value.endswith("*"):
                prefixes.append(prefix + value[:-1])
            else:
                exact.add(prefix + value)
        self.exact, self.prefixes, self.suffixes = frozenset(exact), tuple(prefixes), tuple(suffixes)
        self.star, self.lower, self.present_star = star, ignore_case, present_star

    def __call__(self, value: str | None) -> bool:
        if value is None:
            return False
        if self.star and (value or self.present_star):
            return True
        if self.lower:
            value = value.lower()
        return value in self.exact or (bool(self.prefixes) and value.startswith(self.prefixes)) or (
            bool(self.suffixes) and value.endswith(self.suffixes))


class Globs:
    """Namespaces: Istio turns "*" anywhere into ".*" of a regex (so "*" here also matches an
    empty namespace of a present identity); plain names are a set."""

    __slots__ = ("exact", "pattern")

    def __init__(self, values: Iterable[str]) -> None:
        values = tuple(values)
        self.exact = frozenset(v for v in values if "*" not in v)
        wild = [".*".join(re.escape(part) for part in v.split("*")) for v in values if "*" in v]
        self.pattern = full_matcher("|".join(wild)) if wild else None  # RE2: linear, as Istio's

    def __call__(self, value: str | None) -> bool:
        if value is None:
            return False
        return value in self.exact or (self.pattern is not None and self.pattern(value))


@functools.lru_cache(maxsize=4096)
def _address(text: str) -> Any:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


class Networks:
    """ipBlocks and the IP keys: single addresses and CIDR ranges, v4 and v6."""

    __slots__ = ("networks",)

    def __init__(self, values: Iterable[str]) -> None:
        self.networks = tuple(ipaddress.ip_network(v, strict=False) for v in values)

    def __call__(self, value: str | None) -> bool:
        address = _address(value) if value else None
        if address is None:
            return False
        for network in self.networks:
            if address.version == network.version and address in network:
                return True
        return False


class Ports:
    __slots__ = ("ports",)

    def __init__(self, values: Iterable[str]) -> None:
        self.ports = frozenset(int(v) for v in values)

    def __call__(self, value: int | None) -> bool:
        return value in self.ports


class AnyItem:
    """A list-valued attribute (JWT audiences, a list claim): any item matching is a match."""

    __slots__ = ("test",)

    def __init__(self, test: Strings) -> None:
        self.test = test

    def __call__(self, value: Any) -> bool:
        if isinstance(value, str):
            return self.test(value)
        if isinstance(value, (list, tuple)):
            for item in value:
                if isinstance(item, str) and self.test(item):
                    return True
        return False


def _never(value: Any) -> bool:
    return False


# --- what a request or connection offers -------------------------------------------------------
# Readers take (head, info, jwt): head is None for a TCP connection, jwt None without a token.


def _peer_uri(info) -> str | None:
    """The verified peer's SPIFFE URI: ConnectionInfo.peer_identity holds the URI (or a
    pymesh.security.identity.SpiffeId); a bare principal ("td/ns/N/sa/S") is read as one too."""
    identity = info.peer_identity
    if identity is None:
        return None
    if type(identity) is not str:
        return identity.uri
    return identity if identity.startswith(SPIFFE) else SPIFFE + identity


def _identity_part(uri: str | None, key: str) -> str | None:
    """The `ns` or `sa` segment of spiffe://td/ns/N/sa/S."""
    if uri is None or not uri.startswith(SPIFFE):
        return None
    parts = uri[len(SPIFFE):].split("/")
    for index in range(1, len(parts) - 1, 2):
        if parts[index] == key:
            return parts[index + 1]
    return None


def _service_account(uri: str | None) -> str | None:
    namespace, account = _identity_part(uri, "ns"), _identity_part(uri, "sa")
    return None if namespace is None or account is None else f"{namespace}/{account}"


def _remote_ip(head, info) -> str:
    """Envoy's downstream remote address on an inbound sidecar (use_remote_address false, no
    trusted hops): the last x-forwarded-for entry when there is one, else the peer."""
    if head is not None:
        forwarded = head.header(b"x-forwarded-for")
        if forwarded:
            return forwarded.rsplit(b",", 1)[-1].strip().decode("latin-1")
    return info.source_ip


def _destination(info) -> tuple[str, int]:
    original = info.original_destination
    if original is not None:
        return original
    return info.local_ip, info.local_port


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def normalize_path(target: str) -> str:
    """The path part of a request target as Envoy's normalize_path (Istio's default BASE)
    sees it: no query or fragment, %-encoded unreserved characters decoded, dot segments
    removed (RFC 3986 5.2.4). Policies match this, so "/./admin" and "/%61dmin" are "/admin"."""
    end = len(target)
    for mark in ("?", "#"):
        index = target.find(mark)
        if 0 <= index < end:
            end = index
    path = target[:end] if end < len(target) else target
    if "%" not in path and "/." not in path:
        return path
    if "%" in path:
        path = re.sub(r"%([0-9A-Fa-f]{2})", _decode_unreserved, path)
    output: list[str] = []
    segments = path.split("/")
    for index, segment in enumerate(segments[1:], 1):
        last = index == len(segments) - 1
        if segment == ".":
            if last:
                output.append("")
        elif segment == "..":
            if output:
                output.pop()
            if last:
                output.append("")
        else:
            output.append(segment)
    return "/" + "/".join(output)


def _decode_unreserved(match: re.Match) -> str:
    code = int(match.group(1), 16)
    return chr(code) if code in _UNRESERVED else "%" + match.group(1).upper()


def _claim(claims: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = claims
    for name in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(name)
    return value


_BRACKETS = re.compile(r"\[([^\[\]]+)\]")


@dataclass(frozen=True)
class Attribute:
    """One thing a policy can look at: how to read it and how to match its values."""

    read: Callable[[Any, Any, Any], Any]
    values: Callable[[tuple[str, ...]], Callable[[Any], bool]]
    http_only: bool = False


def _strings(**options) -> Callable[[tuple[str, ...]], Strings]:
    return lambda values: Strings(values, **options)


_PRINCIPAL = Attribute(lambda head, info, jwt: _peer_uri(info), _strings(prefix=SPIFFE))
_NAMESPACE = Attribute(lambda head, info, jwt: _identity_part(_peer_uri(info), "ns"), Globs)
_REQUEST_PRINCIPAL = Attribute(lambda head, info, jwt: jwt.principal if jwt is not None else None,
                               _strings(), http_only=True)
_SOURCE_IP = Attribute(lambda head, info, jwt: info.source_ip, Networks)
_REMOTE_IP = Attribute(lambda head, info, jwt: _remote_ip(head, info), Networks)
_HOST = Attribute(lambda head, info, jwt: head.authority if head is not None else None,
                  _strings(ignore_case=True, present_star=True), http_only=True)
_METHOD = Attribute(lambda head, info, jwt: head.method if head is not None else None,
                    _strings(present_star=True), http_only=True)
_PATH = Attribute(lambda head, info, jwt: normalize_path(head.path) if head is not None else None,
                  lambda values: _paths(values), http_only=True)
_DESTINATION_PORT = Attribute(lambda head, info, jwt: _destination(info)[1], Ports)
_ATTRIBUTES = {
    "source.principal": _PRINCIPAL,
    "source.namespace": _NAMESPACE,
    "source.ip": _SOURCE_IP,
    "remote.ip": _REMOTE_IP,
    "request.auth.principal": _REQUEST_PRINCIPAL,
    "request.auth.audiences": Attribute(lambda head, info, jwt: jwt.audiences if jwt is not None else None,
                                        lambda values: AnyItem(Strings(values)), http_only=True),
    "request.auth.presenter": Attribute(lambda head, info, jwt: (jwt.presenter or None) if jwt is not None else None,
                                        _strings(), http_only=True),
    "destination.ip": Attribute(lambda head, info, jwt: _destination(info)[0], Networks),
    "destination.port": _DESTINATION_PORT,
    "connection.sni": Attribute(lambda head, info, jwt: info.sni, _strings()),
}


def _service_accounts(namespace: str) -> Attribute:
    """source.serviceAccount / serviceAccounts: "sa" is in the policy's namespace."""

    def values(entries: tuple[str, ...]) -> Callable[[Any], bool]:
        accounts = frozenset(e if "/" in e else f"{namespace}/{e}" for e in entries)
        return lambda value: value in accounts

    return Attribute(lambda head, info, jwt: _service_account(_peer_uri(info)), values)


def _keyed(key: str) -> Attribute:
    """request.headers[name], request.auth.claims[a][b], experimental.envoy.filters.*[...]"""
    names = tuple(_BRACKETS.findall(key))
    if key.startswith("request.headers"):
        header = names[0].lower()
        return Attribute(lambda head, info, jwt: head.headers.get(header) if head is not None else None,
                         _strings(present_star=True), http_only=True)
    if key.startswith("request.auth.claims"):
        return Attribute(lambda head, info, jwt: _claim(jwt.claims, names) if jwt is not None else None,
                         lambda values: AnyItem(Strings(values)), http_only=True)
    # Envoy filter metadata: pymesh's filters write none, so its values never match
    return Attribute(lambda head, info, jwt: None, lambda values: _never)


def attribute(key: str, namespace: str) -> Attribute:
    if key == "source.serviceAccount":
        return _service_accounts(namespace)
    found = _ATTRIBUTES.get(key)
    return found if found is not None else _keyed(key)


def _paths(values: tuple[str, ...]) -> Callable[[Any], bool]:
    """Istio's path rules, and Envoy's URI templates ({*} one segment, {**} the rest)."""
    templates = [v for v in values if "{*}" in v or "{**}" in v]
    plain = Strings([v for v in values if v not in templates])
    if not templates:
        return plain
    patterns = full_matcher("|".join(_template(t) for t in templates))
    return lambda value: plain(value) or (value is not None and patterns(value))


def _template(template: str) -> str:
    parts = []
    for segment in template.split("/"):
        parts.append({"{*}": "[^/]+", "{**}": ".*"}.get(segment, re.escape(segment)))
    return "/".join(parts)


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
_OPERATION_KEYS = (("hosts", "not_hosts", _HOST), ("ports", "not_ports", _DESTINATION_PORT),
                   ("methods", "not_methods", _METHOD), ("paths", "not_paths", _PATH))


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
    selector = policy.selector or {}
    return all(labels.get(k) == v for k, v in selector.items())


def compile_authorizer(config: model.MeshConfig, namespace: str, labels: Mapping[str, str],
                       served: Callable[[str, str], bool]) -> Authorizer | None:
    """The workload's Authorizer, or None when no policy applies (nothing to check)."""
    chosen = [p for p in config.authorization_policies if applies(p, namespace, labels, served)]
    return Authorizer(chosen) if chosen else None
