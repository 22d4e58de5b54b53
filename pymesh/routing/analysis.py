"""The compile-time warnings of a whole configuration, for `pymesh analyze`.

A warning the compiler gives (a route dropped, a destination no service answers for, a header
operation ignored) depends on the proxy it compiles for, so the configuration is compiled once
for a default sidecar (no labels) in every namespace that holds a resource, and once for each
Gateway's proxy (its selector as labels, in the Gateway's namespace), without loading PythonFilter
classes: `module_errors` imports each one once, whoever it selects. The same warning met by
several proxies is reported once, naming them. Routes that no listener can use (http routes for
hosts with only TCP ports, tcp routes for hosts with only HTTP ports) are reported for the mesh.
"""

from __future__ import annotations

from dataclasses import dataclass

from pymesh.api import model
from pymesh.api.errors import ConfigError
from pymesh.api.resources import identity
from pymesh.routing.compile import HTTP_PROTOCOLS, NOT_PROXIED, SNIFFED, compile_snapshot
from pymesh.routing.filter_loading import FilterLoadError, load_class
from pymesh.routing.registry import ServiceIndex
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
        identity(resource)[0]
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
    for name, proxy in proxies(config):
        for message in compile_snapshot(config, proxy, "analyze", load_filters=None).warnings:
            seen.setdefault(message, []).append(name)
    out = [CompileWarning(message, tuple(names)) for message, names in seen.items()]
    return out + [CompileWarning(message, ("mesh",)) for message in unusable_routes(config)]


def module_errors(config: model.MeshConfig) -> list[ConfigError]:
    """Every PythonFilter whose module does not import or names no filter class, as the error a
    proxy would reject its snapshot with (whichever proxies it selects). Importing runs the
    module's top level, never a hook."""
    out = []
    for f in config.python_filters:
        try:
            load_class(f)
        except FilterLoadError as error:
            out.append(ConfigError(f.metadata.source.file, f.metadata.source.line, "spec.module", str(error)))
    return out


def unusable_routes(config: model.MeshConfig) -> list[str]:
    """VirtualService http routes whose known hosts have no HTTP port (nor an unset, sniffed one),
    and tcp routes whose known hosts have only HTTP ports: no listener ever uses them."""
    out = []
    indexes: dict[str, ServiceIndex] = {}
    for vs in config.virtual_services:
        ns = vs.metadata.namespace
        index = indexes.get(ns) or indexes.setdefault(ns, ServiceIndex.from_config(config, ns, []))
        services = [svc for host in vs.hosts if (svc := index.find(host, ns)) is not None]
        protocols = {p.protocol.upper() for svc in services for p in svc.ports} - NOT_PROXIED
        if not protocols:
            continue  # hosts pymesh does not know (the compiler says so) or without ports
        where = f"VirtualService {ns}/{vs.metadata.name}"
        if vs.http and not protocols & (HTTP_PROTOCOLS | {SNIFFED}):
            out.append(f"{where}: its http routes have no effect: its hosts have no HTTP port "
                       f"({', '.join(sorted(protocols))})")
        if vs.tcp and protocols <= HTTP_PROTOCOLS:
            out.append(f"{where}: its tcp routes have no effect: its hosts have only HTTP ports")
    return out
