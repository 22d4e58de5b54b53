"""PeerAuthentication scope and precedence, table-driven against Istio's ComposePeerAuthentication
rules: the narrowest scope that sets a mode wins, UNSET inherits, the oldest policy of a scope is
used, a selector policy in the root namespace applies to nothing, portLevelMtls overrides per
port (UNSET there inherits the workload's result), and PERMISSIVE when nothing applies."""

from __future__ import annotations

import pytest

from pymesh.api import model
from pymesh.routing.peer_authn import compose

LABELS = {"app": "finance", "version": "v1"}


def pa(name, namespace, mode="UNSET", selector=None, ports=(), created=None):
    return model.PeerAuthentication(
        metadata=model.Metadata(name=name, namespace=namespace, creation_timestamp=created),
        selector=selector, mode=mode, port_level_mtls=tuple(model.PortMtls(p, m) for p, m in ports))


MESH_STRICT = pa("default", "istio-system", "STRICT")
NS_PERMISSIVE = pa("default", "foo", "PERMISSIVE")
NS_DISABLE = pa("default", "foo", "DISABLE")
FINANCE = {"app": "finance"}

CASES = [
    # (id, policies, expected mode, expected per-port modes)
    ("nothing applies: PERMISSIVE", [], "PERMISSIVE", {}),
    ("mesh-wide STRICT", [MESH_STRICT], "STRICT", {}),
    ("mesh-wide UNSET: PERMISSIVE", [pa("default", "istio-system")], "PERMISSIVE", {}),
    ("namespace overrides mesh", [MESH_STRICT, NS_PERMISSIVE], "PERMISSIVE", {}),
    ("namespace UNSET inherits mesh", [MESH_STRICT, pa("default", "foo")], "STRICT", {}),
    ("workload overrides namespace", [NS_DISABLE, pa("w", "foo", "STRICT", FINANCE)], "STRICT", {}),
    ("workload UNSET inherits namespace", [NS_DISABLE, pa("w", "foo", "UNSET", FINANCE)], "DISABLE", {}),
    ("workload UNSET, namespace UNSET, inherits mesh",
     [MESH_STRICT, pa("default", "foo"), pa("w", "foo", selector=FINANCE)], "STRICT", {}),
    ("selector not matching", [NS_DISABLE, pa("w", "foo", "STRICT", {"app": "other"})], "DISABLE", {}),
    ("selector needs every label", [pa("w", "foo", "STRICT", {"app": "finance", "version": "v2"})], "PERMISSIVE", {}),
    ("another namespace's policies do not apply",
     [pa("default", "bar", "STRICT"), pa("w", "bar", "STRICT", FINANCE)], "PERMISSIVE", {}),
    ("a selector policy in the root namespace applies to nothing",
     [pa("w", "istio-system", "STRICT", FINANCE)], "PERMISSIVE", {}),
    ("empty matchLabels is namespace-wide", [pa("w", "foo", "STRICT", {})], "STRICT", {}),
    ("port level overrides the workload mode",
     [pa("w", "foo", "STRICT", FINANCE, [(8080, "DISABLE")])], "STRICT", {8080: "DISABLE"}),
    ("port level UNSET inherits the workload result (itself inherited)",
     [MESH_STRICT, pa("w", "foo", "UNSET", FINANCE, [(8080, "UNSET"), (9090, "PERMISSIVE")])],
     "STRICT", {8080: "STRICT", 9090: "PERMISSIVE"}),
    ("oldest workload policy wins",
     [pa("new", "foo", "DISABLE", FINANCE, created=200.0), pa("old", "foo", "STRICT", FINANCE, created=100.0)],
     "STRICT", {}),
    ("same age: the name decides",
     [pa("b", "foo", "DISABLE", FINANCE, created=100.0), pa("a", "foo", "STRICT", FINANCE, created=100.0)],
     "STRICT", {}),
    ("only the chosen workload policy's ports count",
     [pa("old", "foo", "STRICT", FINANCE, created=1.0), pa("new", "foo", "STRICT", FINANCE, [(80, "DISABLE")], created=2.0)],
     "STRICT", {}),
    ("oldest namespace-wide policy wins",
     [pa("b", "foo", "DISABLE", created=2.0), pa("a", "foo", "STRICT", created=3.0)], "DISABLE", {}),
    ("oldest mesh-wide policy wins, even when UNSET",
     [pa("a", "istio-system", "UNSET", created=1.0), pa("b", "istio-system", "STRICT", created=2.0)], "PERMISSIVE", {}),
]


@pytest.mark.parametrize("policies, mode, ports", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_composition(policies, mode, ports):
    result = compose(policies, "foo", LABELS)
    assert (result.mode, dict(result.per_port)) == (mode, ports)
    for port, port_mode in ports.items():
        assert result.mode_for(port) == port_mode
    assert result.mode_for(1) == mode


def test_any_strict_and_sources():
    result = compose([NS_DISABLE, pa("w", "foo", "UNSET", FINANCE, [(8443, "STRICT")])], "foo", LABELS)
    assert result.any_strict and result.sources == ("foo/default", "foo/w")
    assert not compose([NS_DISABLE], "foo", LABELS).any_strict
