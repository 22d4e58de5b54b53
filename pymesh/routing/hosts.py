"""Host names as Istio reads them: short-name expansion, wildcards and virtual-host domains.

Kept apart from compilation so the rules for "which host is this?" live in one place and the
same answers are given to VirtualServices, DestinationRules and Sidecar egress scopes.
"""

from __future__ import annotations

CLUSTER_SUFFIX = ".svc.cluster.local"


def is_wildcard(host: str) -> bool:
    return host.startswith("*")


def fqdn(host: str, namespace: str) -> str:
    """A short Kubernetes name ("reviews") relative to `namespace`; anything with a dot, and
    wildcards, stay as written. Lower-cased: DNS names compare case-insensitively."""
    host = host.lower()
    if "." in host or is_wildcard(host):
        return host
    return f"{host}.{namespace}{CLUSTER_SUFFIX}"


def host_matches(pattern: str, host: str) -> bool:
    """Whether `pattern` ("*", "*.example.com" or a plain name) covers `host`; a wildcard `host`
    is covered only by a pattern at least as broad."""
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return pattern == host


def hosts_intersect(a: str, b: str) -> bool:
    """Whether some name is covered by both (Istio's rule for scoping wildcard hosts)."""
    return host_matches(a, b) or host_matches(b, a)


def domains_for(host: str, port: int, proxy_namespace: str) -> tuple[str, ...]:
    """The Host/:authority values that reach `host` on `port`, as Istio's virtual hosts list them:
    the name with and without the port, and for cluster-local names the short forms a client in
    the mesh may use (the bare name only from the service's own namespace)."""
    if is_wildcard(host):
        return (host,)
    names = [host]
    if host.endswith(CLUSTER_SUFFIX):
        parts = host[: -len(CLUSTER_SUFFIX)].split(".")
        if len(parts) == 2:
            name, ns = parts
            names += [f"{name}.{ns}.svc", f"{name}.{ns}"]
            if ns == proxy_namespace:
                names.append(name)
    out: list[str] = []
    for name in names:
        out += [name, f"{name}:{port}"]
    return tuple(out)


def split_authority(authority: str) -> tuple[str, int | None]:
    """("host", port) from "host:port", "host", "[::1]:80" or "[::1]"; anything malformed is all
    host, so it can never match a port-qualified domain by accident."""
    if authority.startswith("["):
        close = authority.find("]")
        host, rest = authority[: close + 1], authority[close + 1 :]
        if close < 0 or not rest.startswith(":"):
            return authority, None
        digits = rest[1:]
    else:
        host, colon, digits = authority.partition(":")
        if not colon or ":" in digits:
            return authority, None
    if not (digits.isascii() and digits.isdigit()):
        return authority, None
    return host, int(digits)


def parse_host_port(value: str) -> tuple[str, int]:
    """An endpoint address "127.0.0.1:8080", "[::1]:8080" or "unix:///path" (port 0)."""
    if value.startswith("unix://"):
        return value, 0
    host, port = split_authority(value)
    if port is None:
        raise ValueError(f"expected host:port, got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port
