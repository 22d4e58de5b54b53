"""Which ProxyConfig applies to a proxy (pymesh/routing/proxy_config.py), table-driven from
Istio's precedence: a matching workload selector over its namespace's over the root namespace's;
the fields with no effect are warned about, in `pymesh analyze` too (snapshot warnings)."""

from __future__ import annotations

import pytest

from pymesh.api import model
from pymesh.api.load import load_text
from pymesh.routing.compile import compile_snapshot
from pymesh.routing.proxy_config import effective
from pymesh.routing.snapshot import ProxyIdentity


def pc(name: str, ns: str, concurrency: int | None = None, selector: dict | None = None, created: float | None = None,
       **extra) -> model.ProxyConfig:
    return model.ProxyConfig(metadata=model.Metadata(name=name, namespace=ns, creation_timestamp=created),
                             selector=selector, concurrency=concurrency, **extra)


MESH = pc("mesh", "istio-system", 1)
NAMESPACE = pc("ns", "bookinfo", 2)
WORKLOAD = pc("ratings", "bookinfo", 4, {"app": "ratings"})


@pytest.mark.parametrize("configs, namespace, labels, concurrency, source", [
    ((), "bookinfo", {}, None, ""),
    ((MESH,), "bookinfo", {}, 1, "istio-system/mesh"),
    ((MESH, NAMESPACE), "bookinfo", {}, 2, "bookinfo/ns"),
    ((MESH, NAMESPACE, WORKLOAD), "bookinfo", {"app": "ratings"}, 4, "bookinfo/ratings"),
    ((MESH, NAMESPACE, WORKLOAD), "bookinfo", {"app": "reviews"}, 2, "bookinfo/ns"),  # selector does not match
    ((MESH, NAMESPACE, WORKLOAD), "other", {"app": "ratings"}, 1, "istio-system/mesh"),  # other namespaces' ignored
    ((MESH, pc("ns", "bookinfo")), "bookinfo", {}, 1, "istio-system/mesh"),  # a level that does not set it
    ((pc("empty", "bookinfo", 3, {}),), "bookinfo", {}, 3, "bookinfo/empty"),  # empty matchLabels: namespace-wide
    ((pc("sel", "istio-system", 5, {"app": "a"}),), "istio-system", {"app": "a"}, 5, "istio-system/sel"),
    ((MESH,), "istio-system", {}, 1, "istio-system/mesh"),
])
def test_precedence(configs, namespace, labels, concurrency, source):
    applied = effective(configs, namespace, labels)
    assert (applied.concurrency, applied.source) == (concurrency, source)


def test_of_two_at_one_level_the_oldest_wins_with_a_warning():
    applied = effective((pc("b", "bookinfo", 2, created=200.0), pc("a", "bookinfo", 3, created=100.0)), "bookinfo", {})
    assert (applied.concurrency, applied.source) == (3, "bookinfo/a")
    assert applied.warnings == ("ProxyConfig bookinfo/a applies; bookinfo/b at the same level (Istio allows one) ignored",)


def test_fields_without_effect_are_warned_in_the_snapshot():
    result = load_text("""\
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: mesh, namespace: istio-system}
spec:
  concurrency: 0
  image: {imageType: distroless}
  environmentVariables: {ISTIO_META_DNS_CAPTURE: "true"}
""")
    assert result.ok, result.errors
    snapshot = compile_snapshot(result.config, ProxyIdentity(namespace="bookinfo"), "1")
    assert "ProxyConfig istio-system/mesh: image has no effect in pymesh (it configures Istio's injected container)" \
        in snapshot.warnings
    assert any("environmentVariables has no effect" in w for w in snapshot.warnings)
