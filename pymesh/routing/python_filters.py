"""PythonFilter resources -> the ordered `FilterSpec`s of one proxy's chains, as Istio places
WasmPlugins (pilot/pkg/model/wasm.go, push_context.go WasmPluginsByListenerInfo):

- which apply: those of the mesh's root namespace and of the proxy's own namespace, each whose
  selector matches the proxy's labels (no selector and no targetRefs: every workload of its
  namespace, of the mesh from the root namespace), or whose targetRefs name this gateway (its
  gateway.networking.k8s.io/gateway-name label) or a Service this proxy serves;
- per listener direction: match mode CLIENT is outbound (and gateways), SERVER inbound,
  UNDEFINED and CLIENT_AND_SERVER both; ports are left on the spec for the listener's port;
- in order: by phase (AUTHN, AUTHZ, STATS, then UNSPECIFIED_PHASE, each placed by the engine
  before the built-in filter of that phase), then priority, highest first, then oldest, then
  namespace/name.

Pure but for loading the classes (`load`, pymesh.routing.filter_loading by default), which
rejects the snapshot with a FilterLoadError when one does not load.
"""

from __future__ import annotations

from typing import Callable, Iterable

from pymesh.api import model
from pymesh.filters import FilterMatch, FilterSpec
from pymesh.routing.scope import selects
from pymesh.routing.snapshot import ProxyIdentity
from pymesh.routing.telemetry import GATEWAY_NAME_LABEL, mesh_config

Loader = Callable[[model.PythonFilter], type]
ServedBy = Callable[[str, str], bool]  # (namespace, service name) -> does this proxy serve it
PythonFilters = dict[str, tuple[FilterSpec, ...]]  # Snapshot.python_filters: listener direction -> specs
# match modes per listener direction (WasmPlugin's: a gateway's listeners are CLIENT)
MODES = {"outbound": frozenset({"CLIENT", "UNDEFINED", "CLIENT_AND_SERVER"}),
         "inbound": frozenset({"SERVER", "UNDEFINED", "CLIENT_AND_SERVER"})}


def compile_python_filters(config: model.MeshConfig, identity: ProxyIdentity, served_by: ServedBy,
                           load: Loader | None) -> PythonFilters:
    """The proxy's PythonFilters as FilterSpecs per direction, in order, directions without any
    left out. `load` imports each one's class (None: do not load, for views that only describe
    the chain: the spec keeps the HttpFilter base)."""
    if not config.python_filters:
        return {}
    chosen = sorted(applicable(config.python_filters, mesh_config(config).root_namespace, identity, served_by),
                    key=order_key)
    specs = [(f, _spec(f, load)) for f in chosen]
    out = {direction: tuple(s for f, s in specs if _in_direction(f, modes)) for direction, modes in MODES.items()}
    return {direction: chain for direction, chain in out.items() if chain}


def for_listener(filters: PythonFilters, direction: str, port: int) -> tuple[FilterSpec, ...]:
    """The specs a listener of `direction` on `port` runs (match modes and ports)."""
    modes = MODES[direction]
    return tuple(s for s in filters.get(direction, ())
                 if not s.match or any(m.mode in modes and (not m.ports or port in m.ports) for m in s.match))


def applicable(filters: Iterable[model.PythonFilter], root: str, identity: ProxyIdentity,
               served_by: ServedBy) -> list[model.PythonFilter]:
    """WasmPlugin's ShouldAttachPolicy: root namespace or own namespace, then selector or targetRefs."""
    out = []
    for f in filters:
        namespace = f.metadata.namespace
        if namespace != identity.namespace and namespace != root:
            continue
        if f.target_refs:
            if namespace == identity.namespace and any(_targets(ref, namespace, identity, served_by)
                                                       for ref in f.target_refs):
                out.append(f)
        elif f.selector is None or selects(f.selector, identity.labels):
            out.append(f)
    return out


def order_key(f: model.PythonFilter) -> tuple:
    return (model.FILTER_PHASES.index(f.phase), -f.priority, f.metadata.creation_timestamp or 0.0,
            f.metadata.namespace, f.metadata.name)


def _targets(ref: model.PolicyTargetReference, namespace: str, identity: ProxyIdentity, served_by: ServedBy) -> bool:
    if ref.kind == "Gateway":
        return identity.kind == "router" and identity.labels.get(GATEWAY_NAME_LABEL) == ref.name
    return ref.kind == "Service" and served_by(namespace, ref.name)


def _in_direction(f: model.PythonFilter, modes: frozenset[str]) -> bool:
    return not f.match or any(m.mode in modes for m in f.match)


def _spec(f: model.PythonFilter, load: Loader | None) -> FilterSpec:
    name = f"{f.metadata.namespace}/{f.metadata.name}"
    return FilterSpec(
        name=name,
        module=f.module.describe(),
        **({"filter_class": load(f)} if load is not None else {}),
        config=f.plugin_config if f.plugin_config is not None else {},
        phase=f.phase,
        priority=f.priority,
        fail_strategy=f.fail_strategy,
        match=tuple(FilterMatch(mode=m.mode, ports=m.ports) for m in f.match),
    )
