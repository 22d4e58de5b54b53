"""Which ProxyConfig applies to a proxy, as Istio's EffectiveProxyConfig merges them: the root
namespace's (istio-system) without a selector, then its own namespace's without a selector, then
one of its namespace whose selector matches its labels, each later level overriding the fields it
sets. Istio allows one resource per level; with several, the oldest (then the first by name)
wins here, and a warning says so.

Only `concurrency` has an effect (the proxy's worker count when --concurrency is not given: 0
means one per CPU, as Istio); `environmentVariables` and `image` configure the container Istio
injects, which pymesh does not have: they are warned about, never silently dropped. Like
Istio's, the fields are read when the proxy starts: a change applies at its next restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from pymesh.api import model
from pymesh.routing.scope import ROOT_NAMESPACE, selects


@dataclass(frozen=True)
class EffectiveProxyConfig:
    concurrency: int | None = None  # None: no ProxyConfig sets it
    source: str = ""  # "namespace/name" of the ProxyConfig the concurrency came from
    warnings: tuple[str, ...] = ()


def effective(configs: tuple[model.ProxyConfig, ...], namespace: str, labels: Mapping[str, str]) -> EffectiveProxyConfig:
    levels = (
        [pc for pc in configs if pc.metadata.namespace == ROOT_NAMESPACE and not pc.selector],
        [pc for pc in configs if pc.metadata.namespace == namespace != ROOT_NAMESPACE and not pc.selector],
        [pc for pc in configs if pc.metadata.namespace == namespace and pc.selector and selects(pc.selector, labels)],
    )
    concurrency, source, warnings = None, "", []
    for level in levels:
        if not level:
            continue
        chosen = min(level, key=_age)
        if len(level) > 1:
            others = ", ".join(_name(pc) for pc in level if pc is not chosen)
            warnings.append(f"ProxyConfig {_name(chosen)} applies; {others} at the same level "
                            "(Istio allows one) ignored")
        if chosen.concurrency is not None:
            concurrency, source = chosen.concurrency, _name(chosen)
        for field, present in (("environmentVariables", chosen.environment_variables), ("image", chosen.image_type)):
            if present:
                warnings.append(f"ProxyConfig {_name(chosen)}: {field} has no effect in pymesh "
                                "(it configures Istio's injected container)")
    return EffectiveProxyConfig(concurrency, source, tuple(warnings))


def _age(pc: model.ProxyConfig) -> tuple:
    created = pc.metadata.creation_timestamp
    return (created is None, created or 0.0, pc.metadata.name)


def _name(pc: model.ProxyConfig) -> str:
    return f"{pc.metadata.namespace}/{pc.metadata.name}"
