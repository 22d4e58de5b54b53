"""AuthorizationPolicy (security.istio.io v1 and v1beta1), validated as Istio's
ValidateAuthorizationPolicy and pkg/config/security do: non-empty `from`, `to`, sources and
operations, CIDRs and ports, the `when` keys Istio knows, `provider` only with CUSTOM, DENY and
CUSTOM policies need rules. What the policy does is compiled in pymesh.security.authz."""

from __future__ import annotations

import ipaddress
import re

from pymesh.api import model, shapes
from pymesh.api.reader import Convert, Reader, Sink, Slot, choice, message, text
from pymesh.api.request_authentication import match_labels_selector, target_refs
from pymesh.api.yamltree import LineSeq

ACTION = choice("action", ("ALLOW", "DENY", "AUDIT", "CUSTOM"))
DRY_RUN = "istio.io/dry-run"

# Istio's `when` keys: exact ones, and the prefixes of the keyed ones ("request.headers[name]")
WHEN_KEYS = frozenset({
    "source.ip", "remote.ip", "source.namespace", "source.principal", "source.serviceAccount",
    "request.auth.principal", "request.auth.audiences", "request.auth.presenter",
    "destination.ip", "destination.port", "connection.sni",
})
KEYED_WHEN = ("request.headers", "request.auth.claims", "experimental.envoy.filters.")
_REPLACED_KEYS = {"destination.namespace": "is replaced by the metadata.namespace",
                  "destination.name": "is deprecated: only supported in v1alpha1",
                  "destination.user": "is deprecated: only supported in v1alpha1"}
_MAP_KEY = re.compile(r"[^\[\]]+(\[[^\[\]]+\])+\Z")  # a[b], a[b][c] (nested claims)
# Envoy's pchar literals in a path template segment (RFC 3986 appendix A)
_TEMPLATE_LITERAL = re.compile(r"[a-zA-Z0-9\-._~%!$&'()+,;:@=]+\Z")
MAX_SERVICE_ACCOUNTS = 16  # Istio's limit per list


def authorization_policy(metadata: model.Metadata, r: Reader) -> model.AuthorizationPolicy:
    action = r.get("action", ACTION, "ALLOW")
    selector = match_labels_selector(r)
    for key, value in (selector or {}).items():
        if "*" in key or "*" in value:
            r.error("selector", f'wildcard is not supported in selector: "{key}={value}"')
    refs = target_refs(r, metadata.namespace)
    provider = r.get("provider", message(shapes.EXTENSION_PROVIDER, lambda p: p.get("name", text(), "")), "")
    if r.has("provider") and action != "CUSTOM":
        r.error("provider", f"`provider` must not be with non CUSTOM action, found {action}")
    rules = r.get_list("rules", message(shapes.AUTHZ_RULE, lambda rule: _rule(rule, action)))
    if not rules and action in ("DENY", "CUSTOM") and not _present_list(r, "rules"):
        r.error("rules", f"{action} action without `rules` is meaningless as it will never be triggered, "
                         "add an empty rule `{}` if you want it be triggered for every request")
    elif action == "CUSTOM" and not provider:
        r.error("provider", "`provider.name` must not be empty")
    dry_run = metadata.annotations.get(DRY_RUN, "false")
    if dry_run not in _BOOLEANS:
        r.sink.add(metadata.source.line, f"metadata.annotations[{DRY_RUN}]",
                   f'must be "true" or "false", got "{dry_run}"')
    return model.AuthorizationPolicy(metadata=metadata, selector=selector, target_refs=refs, action=action,
                                     provider=provider, rules=rules, dry_run=_BOOLEANS.get(dry_run, False))


# what Istio reads the annotation with (Go's strconv.ParseBool)
_BOOLEANS = {**dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
             **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False)}


def _present_list(r: Reader, key: str) -> bool:
    """The field is there as a non-empty list (`rules: [{}]`); `[]` reads as absent in Istio's
    protobuf, as if the field were left out."""
    slot = r.slot(key)
    return slot is not None and isinstance(slot.value, LineSeq) and len(slot.value) > 0


# --- rules ------------------------------------------------------------------------------------


def _values(check=None) -> Convert:
    """A list entry: a non-empty string (Istio's CheckEmptyValues), optionally checked."""

    def convert(sink: Sink, slot: Slot) -> str | None:
        value = text()(sink, slot)
        if value is None:
            return None
        problem = "empty value not allowed" if value == "" else (check(value) if check else None)
        if problem:
            sink.at(slot, problem)
            return None
        return value

    return convert


def ip_block(value: str) -> str | None:
    """Istio's ValidateIPs: a CIDR range when it has "/", else an address (v4 or v6)."""
    try:
        if "/" in value:
            ipaddress.ip_network(value, strict=False)
        else:
            ipaddress.ip_address(value)
    except ValueError:
        return f"bad CIDR range ({value})" if "/" in value else f"bad IP address ({value})"
    return None


def port_value(value: str) -> str | None:
    if not value.isdigit() or not value.isascii() or int(value) > 65535:
        return f"bad port ({value}): must be a number between 0 and 65535"
    return None


def service_account(value: str) -> str | None:
    """Istio's CheckServiceAccount: "sa" or "namespace/sa", no wildcard, at most 320 bytes."""
    if "*" in value:
        return "wildcard not allowed"
    if len(value) > 320:
        return "value cannot exceed 320 characters"
    parts = value.split("/")
    if len(parts) > 2 or not all(parts):
        return f"expected format 'serviceAccount' or 'namespace/serviceAccount', found {value!r}"
    return None


def path_template(value: str) -> str | None:
    """Istio's CheckValidPathTemplate: `{*}` one segment, `{**}` the rest (last), literals
    Envoy accepts around them, no other braces."""
    if "{" not in value and "}" not in value:
        return None
    seen_any = False
    for segment in value.strip("/").split("/"):
        if segment in ("{*}", "{**}"):
            if seen_any:
                return f"invalid or unsupported path {value}: {{**}} is not the last operator"
            seen_any = segment == "{**}"
        elif "{" in segment or "}" in segment:
            return f"invalid or unsupported path {value}: contains '{{' or '}}' beyond a supported path template"
        elif not _TEMPLATE_LITERAL.match(segment):
            return f"invalid or unsupported path {value}: contains segment {segment} with invalid string literal"
    return None


_SOURCE_FIELDS = {  # YAML name -> (model field, value check)
    "principals": ("principals", None), "notPrincipals": ("not_principals", None),
    "requestPrincipals": ("request_principals", None), "notRequestPrincipals": ("not_request_principals", None),
    "namespaces": ("namespaces", None), "notNamespaces": ("not_namespaces", None),
    "serviceAccounts": ("service_accounts", service_account),
    "notServiceAccounts": ("not_service_accounts", service_account),
    "ipBlocks": ("ip_blocks", ip_block), "notIpBlocks": ("not_ip_blocks", ip_block),
    "remoteIpBlocks": ("remote_ip_blocks", ip_block), "notRemoteIpBlocks": ("not_remote_ip_blocks", ip_block),
}
_OPERATION_FIELDS = {
    "hosts": ("hosts", None), "notHosts": ("not_hosts", None),
    "ports": ("ports", port_value), "notPorts": ("not_ports", port_value),
    "methods": ("methods", None), "notMethods": ("not_methods", None),
    "paths": ("paths", path_template), "notPaths": ("not_paths", path_template),
}
# CUSTOM policies cannot match on identities (Istio: "is currently not supported with CUSTOM action")
_NOT_WITH_CUSTOM = ("principals", "notPrincipals", "requestPrincipals", "notRequestPrincipals",
                    "namespaces", "notNamespaces", "serviceAccounts", "notServiceAccounts")


def _lists(r: Reader, fields: dict, what: str) -> dict[str, tuple[str, ...]]:
    values = {name: r.get_list(key, _values(check)) for key, (name, check) in fields.items()}
    if not any(r.has(key) and r.data.get(key) for key in fields):
        r.error_here(f"`{what}` must not be empty")
    return values


def _source(r: Reader, action: str) -> model.AuthzSource:
    source = model.AuthzSource(**_lists(r, _SOURCE_FIELDS, "from.source"))
    if (source.service_accounts or source.not_service_accounts) and (
            source.principals or source.not_principals or source.namespaces or source.not_namespaces):
        r.error_here("cannot set serviceAccounts with namespaces or principals")
    for key in ("serviceAccounts", "notServiceAccounts"):
        value = r.data.get(key)
        if isinstance(value, list) and len(value) > MAX_SERVICE_ACCOUNTS:  # not a list: an error already
            r.error(key, f"may not have more than {MAX_SERVICE_ACCOUNTS} values")
    if action == "CUSTOM":
        for key in _NOT_WITH_CUSTOM:
            if r.has(key):
                r.error(key, f"{key} is currently not supported with CUSTOM action")
    return source


def _nested(shape, key: str, build, what: str) -> Convert:
    """A `from` or `to` entry: its one field (`source`, `operation`) is required."""

    def read(r: Reader):
        if not r.has(key):
            r.error_here(f"`{what}` must not be nil")
            return None
        return r.get(key, build)

    return message(shape, read)


def condition_key(key: str) -> str | None:
    """Istio's ValidateAttribute for a `when` key."""
    if key in WHEN_KEYS:
        return None
    if key in _REPLACED_KEYS or key.startswith("destination.labels"):
        return f"attribute {key} " + _REPLACED_KEYS.get(key, "is replaced by the workload selector")
    if key.startswith(KEYED_WHEN):
        return None if _MAP_KEY.match(key) else f"bad key ({key}): should have format a[b]"
    return f"unknown attribute: {key}"


_CONDITION_CHECKS = {"source.ip": ip_block, "remote.ip": ip_block, "destination.ip": ip_block,
                     "destination.port": port_value, "source.serviceAccount": service_account}


def _condition(r: Reader, action: str) -> model.AuthzCondition:
    key = r.get("key", text(), "", required=True)
    problem = condition_key(key) if key else "`key` must not be empty"
    if problem:
        r.error("key", problem)
        key = ""
    if action == "CUSTOM" and (key in ("source.namespace", "source.principal", "source.serviceAccount")
                               or key.startswith("request.auth.")):
        r.error("key", f"{key} is currently not supported with CUSTOM action")
    check = _CONDITION_CHECKS.get(key)
    values, not_values = r.get_list("values", _values(check)), r.get_list("notValues", _values(check))
    if not r.data.get("values") and not r.data.get("notValues"):
        r.error_here(f"at least one of `values` or `notValues` must be set for key {key}")
    return model.AuthzCondition(key=key, values=values, not_values=not_values)


def _required_entries(r: Reader, key: str, convert: Convert) -> tuple:
    """`from` and `to`: absent is fine (any source, any operation), an empty list is not."""
    if r.has(key) and isinstance(r.data[key], LineSeq) and not r.data[key]:
        r.error(key, f"`{key}` must not be empty")
    return r.get_list(key, convert)


def _rule(r: Reader, action: str) -> model.AuthzRule:
    source = message(shapes.AUTHZ_SOURCE, lambda s: _source(s, action))
    operation = message(shapes.AUTHZ_OPERATION, lambda o: model.AuthzOperation(**_lists(o, _OPERATION_FIELDS, "to.operation")))
    return model.AuthzRule(
        sources=_required_entries(r, "from", _nested(shapes.AUTHZ_RULE_FROM, "source", source, "from.source")),
        operations=_required_entries(r, "to", _nested(shapes.AUTHZ_RULE_TO, "operation", operation, "to.operation")),
        when=r.get_list("when", message(shapes.AUTHZ_CONDITION, lambda c: _condition(c, action))),
    )
