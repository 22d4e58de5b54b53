"""The compile-time warnings of a whole configuration, for `pymesh analyze`.

A warning the compiler gives (a route dropped, a destination no service answers for, a header
operation ignored) depends on the proxy it compiles for, so the configuration is compiled once
for a default sidecar (no labels) in every namespace that holds a resource, and once for each
Gateway's proxy (its selector as labels, in the Gateway's namespace). The same warning met by
several proxies is reported once, naming them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pymesh.api import model
from pymesh.routing.compile import compile_snapshot
from pymesh.routing.snapshot import ProxyIdentity


@dataclass(frozen=True)
class CompileWarning:
    message: str
    proxies: tuple[str, ...]  # "sidecar in default", "gateway istio-system/bookinfo-gateway"

    def __str__(self) -> str:
        return f"warning: {self.message} (seen by: {', '.join(self.proxies)})"


def proxies(config: model.MeshConfig) -> list[tuple[str, ProxyIdentity]]:
    """The proxies analyze compiles for, each with how a warning names it."""
    namespaces = sorted({
        resource.metadata.namespace
        for field in model.MeshConfig.__dataclass_fields__
        for resource in getattr(config, field)
    } or {"default"})
    out = [(f"sidecar in {ns}", ProxyIdentity(workload="analyze", namespace=ns)) for ns in namespaces]
    for gateway in config.gateways:
        meta = gateway.metadata
        out.append((f"gateway {meta.namespace}/{meta.name}",
                    ProxyIdentity(workload="analyze", namespace=meta.namespace, labels=dict(gateway.selector),
                                  kind="router")))
    return out


def compile_warnings(config: model.MeshConfig) -> list[CompileWarning]:
    """Every distinct compile warning, in the order first met."""
    seen: dict[str, list[str]] = {}
    for name, identity in proxies(config):
        for message in compile_snapshot(config, identity, "analyze").warnings:
            seen.setdefault(message, []).append(name)
    return [CompileWarning(message, tuple(names)) for message, names in seen.items()]
