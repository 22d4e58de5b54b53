"""Istio's host name rules, in one place for every kind that names hosts (ServiceEntry,
VirtualService, DestinationRule, Sidecar egress, Gateway servers).

They follow Istio's pkg/config/validation/agent (ValidateFQDN, ValidateWildcardDomain,
ValidateNamespaceSlashWildcardHostname, ValidatePartialWildCard) and pkg/config/labels:

- a label is RFC 1123 without the case rule: letters of either case, digits and '-', at most 63
  characters, not starting or ending with '-'. Host names are case-insensitive (DNS, and Envoy's
  domain matching), so `read_host` lower-cases them as they are read;
- a name is at most 255 characters, its last label is not all digits, and it may end with a dot
  ("istio.io."), which `read_host` drops (the same host as without it);
- only the first label may be a wildcard: "*", "*.example.com", "*foo.example.com" or
  "*-foo.example.com"; "foo.*.com" is not a host. ServiceEntry warns about "*foo" (a partial
  wildcard), Sidecar and Gateway hosts refuse it;
- Sidecar egress hosts and Gateway server hosts are "namespace/dnsName": the namespace is "*",
  ".", a namespace name, and in a Sidecar also "~" (no namespace); dnsName is "*" or a name with
  a dot (short names are not allowed there). A Gateway host may leave out the namespace, and may
  be an IP address.
"""

from __future__ import annotations

import ipaddress
import re

from pymesh.api.reader import Convert, Sink, Slot, expect

MAX_NAME = 255  # Istio's CheckDNS1123Preconditions (DNS itself says 253 without the dot)
MAX_LABEL = 63
_LABEL = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?\Z")
_WILDCARD_LABEL = re.compile(r"(\*|(\*|\*-)?[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)\Z")


def dns1123_label(value: str) -> bool:
    """Istio's labels.IsDNS1123Label (subset names, port names, namespaces in host forms)."""
    return len(value) <= MAX_LABEL and bool(_LABEL.match(value))


def istio_label(value: str) -> str | None:
    """A subset, port or gateway name as Istio checks them (either case)."""
    if not dns1123_label(value):
        return f"{value!r} is not a valid name (letters, digits and '-', at most {MAX_LABEL})"
    return None


def _preconditions(name: str) -> str | None:
    if not name:
        return "empty domain name is not allowed"
    if len(name) > MAX_NAME:
        return f"domain name {name!r} is too long (max {MAX_NAME})"
    return None


def _labels(domain: str, rest: str) -> str | None:
    """Istio's ValidateDNS1123Labels on `rest`: the labels of `domain` after any wildcard."""
    parts = rest.split(".")
    if parts[-1].isdigit():
        return f"domain name {domain!r} is invalid (top-level domain {parts[-1]!r} is all digits)"
    for i, label in enumerate(parts):
        if i == len(parts) - 1 and label == "" and i > 0:
            return None  # a trailing dot: "istio.io."
        if not dns1123_label(label):
            return f"domain name {domain!r} is invalid (label {label!r} is invalid)"
    return None


def fqdn(value: str) -> str | None:
    """A DNS name without wildcards (ServiceEntry hosts with DNS resolution, endpoint addresses)."""
    return _preconditions(value) or _labels(value, value)


def wildcard_domain(value: str) -> str | None:
    """A DNS name whose first label may be a wildcard (Istio's ValidateWildcardDomain)."""
    if problem := _preconditions(value):
        return problem
    first, dot, rest = value.partition(".")
    if len(first) > MAX_LABEL or not _WILDCARD_LABEL.match(first):
        return f"domain name {value!r} is invalid (label {first!r} is invalid)"
    return _labels(value, rest) if dot else None


def partial_wildcard(value: str) -> str | None:
    """Istio's ValidatePartialWildCard: "*foo.com" is a warning in a ServiceEntry, an error in
    Sidecar and Gateway hosts."""
    if "*" in value and value != "*" and not value.startswith("*."):
        return f"partial wildcard {value!r} not allowed"
    return None


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def host_or_ip(value: str) -> str | None:
    """A wildcard domain or an IP address (VirtualService hosts)."""
    return None if is_ip(value) else wildcard_domain(value)


def _dns_part(value: str, name: str, *, gateway: bool) -> str | None:
    """The dnsName of a "namespace/dnsName" host (Istio's validateSidecarOrGatewayHostnamePart)."""
    if name != "*" and "." not in name and not (gateway and is_ip(name)):
        return f"host {value!r}: short names (non FQDN) are not allowed"
    if (problem := wildcard_domain(name)) and not (gateway and is_ip(name)):
        return f"host {value!r}: {problem}"
    if problem := partial_wildcard(name):
        return f"host {value!r}: {problem}"
    return None


def namespace_host(value: str, *, gateway: bool) -> str | None:
    """A Sidecar egress host ("ns/dnsName", ns "*", ".", "~" or a name) or a Gateway server host
    ("ns/dnsName" with ns "*", "." or a name, or a bare dnsName or IP)."""
    namespace, slash, name = value.partition("/")
    if not slash:
        if gateway:
            return _dns_part(value, value, gateway=True)
        return f'host {value!r} must be of the form namespace/dnsName (e.g. "./*" or "*/foo.example.com")'
    if not namespace or not name:
        return f"host {value!r}: namespace and dnsName must not be empty"
    specials = ("*", ".") if gateway else ("*", ".", "~")
    if namespace not in specials and not dns1123_label(namespace):
        return f"host {value!r}: invalid namespace {namespace!r}"
    return _dns_part(value, name, gateway=gateway)


def overlaps(a: str, b: str) -> bool:
    """Istio's host.Name.Matches: some name is covered by both (normalised hosts)."""
    if a.startswith("*") and b.startswith("*"):
        short, long = sorted((a, b), key=len)
        return long[1:].endswith(short[1:])
    if a.startswith("*"):
        return b.endswith(a[1:])
    if b.startswith("*"):
        return a.endswith(b[1:])
    return a == b


def normalize(host: str) -> str:
    """The form hosts are kept and compared in: lower case, without a trailing dot."""
    host = host.lower()
    return host[:-1] if host.endswith(".") and len(host) > 1 else host


def normalize_namespace_host(value: str) -> str:
    """"ns/Name." -> "ns/name" (the namespace part is left as written)."""
    namespace, slash, name = value.rpartition("/")
    return f"{namespace}{slash}{normalize(name)}"


def read_host(check, normal=normalize) -> Convert:
    """A host string checked by `check` and kept in its normal form (see `normalize`)."""

    def convert(sink: Sink, slot: Slot) -> str | None:
        if not expect(sink, slot, str):
            return None
        if problem := check(slot.value):
            sink.at(slot, problem)
            return None
        return normal(slot.value)

    return convert
