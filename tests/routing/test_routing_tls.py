"""The compiled UpstreamTls of each cluster: which level's `tls` wins (subset > port > trafficPolicy,
as Istio's MergeSubsetTrafficPolicy), SNI and SANs as Istio's cluster builder sets them, and auto
mTLS for sidecar endpoints."""

from __future__ import annotations

import pytest

from pymesh.api import model as m
from pymesh.routing.snapshot import UpstreamTls
from pymesh.routing.tls import istio_sni
from routing_helpers import compile_, meta, se

HOST = "reviews.default.svc.cluster.local"
PORTS = (m.ServicePort(9080, "HTTP", "http"), m.ServicePort(9443, "HTTP", "https"))
SIMPLE = m.ClientTLSSettings("SIMPLE")
MUTUAL = m.ClientTLSSettings("MUTUAL", client_certificate="/c", private_key="/k")
MESH = m.ClientTLSSettings("ISTIO_MUTUAL")
OFF = m.ClientTLSSettings("DISABLE")
SIDECAR = {"security.istio.io/tlsMode": "istio"}


def endpoint(address: str, sa: str = "", **labels: str) -> m.WorkloadEntrySpec:
    return m.WorkloadEntrySpec(address=address, labels={"version": "v1", **labels}, service_account=sa)


def clusters(policy=None, subset_policy=None, endpoints=None, location="MESH_INTERNAL"):
    service = se(HOST, *PORTS, endpoints=endpoints or [endpoint("10.0.0.1")], location=location)
    subset = m.Subset(name="v1", labels={"version": "v1"}, traffic_policy=subset_policy)
    rule = m.DestinationRule(meta("dr"), host="reviews", traffic_policy=policy, subsets=(subset,))
    snap = compile_([service], rules=[rule])
    return {f"{name}:{port}" if name else str(port): snap.clusters[f"outbound|{port}|{name}|{HOST}"]
            for port in (9080, 9443) for name in ("", "v1")}


def modes(got) -> dict[str, str]:
    return {key: (c.tls.mode if c.tls else "-") for key, c in got.items()}


def port(number: int, tls) -> m.PortTrafficPolicy:
    return m.PortTrafficPolicy(port=number, tls=tls)


CASES = [
    ("no tls anywhere", None, None, {"9080": "-", "v1:9080": "-", "9443": "-", "v1:9443": "-"}),
    ("rule level", m.TrafficPolicy(tls=SIMPLE), None,
     {"9080": "SIMPLE", "v1:9080": "SIMPLE", "9443": "SIMPLE", "v1:9443": "SIMPLE"}),
    ("port beats rule", m.TrafficPolicy(tls=SIMPLE, port_level_settings=(port(9443, MUTUAL),)), None,
     {"9080": "SIMPLE", "v1:9080": "SIMPLE", "9443": "MUTUAL", "v1:9443": "MUTUAL"}),
    # a port entry replaces the whole policy on its port: without tls of its own, none
    ("port entry without tls", m.TrafficPolicy(tls=SIMPLE, port_level_settings=(
        m.PortTrafficPolicy(port=9443, load_balancer=m.LoadBalancerSettings("RANDOM")),)), None,
     {"9080": "SIMPLE", "v1:9080": "SIMPLE", "9443": "-", "v1:9443": "-"}),
    ("subset beats rule and port", m.TrafficPolicy(tls=SIMPLE, port_level_settings=(port(9443, MUTUAL),)),
     m.TrafficPolicy(tls=MESH),
     {"9080": "SIMPLE", "v1:9080": "ISTIO_MUTUAL", "9443": "MUTUAL", "v1:9443": "ISTIO_MUTUAL"}),
    ("subset port beats subset", None, m.TrafficPolicy(tls=MESH, port_level_settings=(port(9443, SIMPLE),)),
     {"9080": "-", "v1:9080": "ISTIO_MUTUAL", "9443": "-", "v1:9443": "SIMPLE"}),
    ("subset DISABLE turns the rule's off", m.TrafficPolicy(tls=SIMPLE), m.TrafficPolicy(tls=OFF),
     {"9080": "SIMPLE", "v1:9080": "-", "9443": "SIMPLE", "v1:9443": "-"}),
    # a subset policy without tls keeps the rule's (field by field)
    ("subset without tls inherits", m.TrafficPolicy(tls=SIMPLE),
     m.TrafficPolicy(load_balancer=m.LoadBalancerSettings("RANDOM")),
     {"9080": "SIMPLE", "v1:9080": "SIMPLE", "9443": "SIMPLE", "v1:9443": "SIMPLE"}),
    # ... but the subset's port entry replaces all port-level fields, tls among them
    ("subset port entry without tls", m.TrafficPolicy(tls=SIMPLE), m.TrafficPolicy(port_level_settings=(
        m.PortTrafficPolicy(port=9443, load_balancer=m.LoadBalancerSettings("RANDOM")),)),
     {"9080": "SIMPLE", "v1:9080": "SIMPLE", "9443": "SIMPLE", "v1:9443": "-"}),
]


@pytest.mark.parametrize("name,policy,subset_policy,expected", CASES, ids=[c[0] for c in CASES])
def test_which_level_wins(name, policy, subset_policy, expected):
    assert modes(clusters(policy, subset_policy)) == expected


def test_istio_mutual_sni_and_service_accounts():
    eps = [endpoint("10.0.0.1", "reviews"), endpoint("10.0.0.2", "reviews-v2", version="v2"), endpoint("10.0.0.3")]
    got = clusters(m.TrafficPolicy(tls=MESH), endpoints=eps)
    assert got["9080"].tls == UpstreamTls("ISTIO_MUTUAL", MESH, "outbound_.9080_._.reviews.default.svc.cluster.local",
                                          service_accounts=(("default", "reviews"), ("default", "reviews-v2")))
    # a subset's cluster: its SNI names the subset; the service accounts are the service's
    assert got["v1:9443"].tls.sni == istio_sni(9443, "v1", HOST) == "outbound_.9443_.v1_.reviews.default.svc.cluster.local"
    assert got["v1:9443"].tls.service_accounts == got["9080"].tls.service_accounts


def test_istio_mutual_explicit_sni_and_sans_win():
    tls = m.ClientTLSSettings("ISTIO_MUTUAL", sni="reviews.mesh", subject_alt_names=("spiffe://td/ns/a/sa/b",))
    got = clusters(m.TrafficPolicy(tls=tls), endpoints=[endpoint("10.0.0.1", "reviews")])
    assert got["9080"].tls == UpstreamTls("ISTIO_MUTUAL", tls, "reviews.mesh", ("spiffe://td/ns/a/sa/b",))


def test_simple_keeps_sni_empty_for_auto_sni():
    tls = m.ClientTLSSettings("SIMPLE", ca_certificates="/ca.pem", subject_alt_names=("a.example",))
    got = clusters(m.TrafficPolicy(tls=tls))
    assert got["9080"].tls == UpstreamTls("SIMPLE", tls, "", ("a.example",))


def test_auto_mtls_only_without_tls_and_with_a_sidecar_endpoint():
    eps = [endpoint("10.0.0.1", "reviews", **SIDECAR), endpoint("10.0.0.2")]
    got = clusters(endpoints=eps)
    auto = got["9080"].auto_mtls
    assert got["9080"].tls is None
    assert auto == UpstreamTls("ISTIO_MUTUAL", MESH, istio_sni(9080, "", HOST),
                               service_accounts=(("default", "reviews"),), auto=True)
    assert clusters(endpoints=[endpoint("10.0.0.2")])["9080"].auto_mtls is None  # no sidecar: nothing to do
    # any tls setting, DISABLE included, turns auto mTLS off
    for tls in (OFF, SIMPLE):
        got = clusters(m.TrafficPolicy(tls=tls), endpoints=eps)
        assert got["9080"].auto_mtls is None and got["v1:9080"].auto_mtls is None
    # a policy without tls keeps it
    got = clusters(m.TrafficPolicy(load_balancer=m.LoadBalancerSettings("RANDOM")), endpoints=eps)
    assert got["9080"].auto_mtls is not None


def test_no_auto_mtls_outside_the_mesh():
    """As Istio: a MESH_EXTERNAL ServiceEntry (the default location) never gets auto mTLS, even
    with endpoints labelled as sidecars; an explicit ISTIO_MUTUAL still applies."""
    eps = [endpoint("10.0.0.1", "reviews", **SIDECAR)]
    assert clusters(endpoints=eps, location="MESH_EXTERNAL")["9080"].auto_mtls is None
    explicit = clusters(m.TrafficPolicy(tls=MESH), endpoints=eps, location="MESH_EXTERNAL")["9080"]
    assert explicit.tls is not None and explicit.tls.mode == "ISTIO_MUTUAL"


def test_the_config_dump_shows_insecure_skip_verify():
    tls = m.ClientTLSSettings("SIMPLE", insecure_skip_verify=True)
    service = se(HOST, *PORTS, endpoints=[endpoint("10.0.0.1")])
    snap = compile_([service], rules=[m.DestinationRule(meta("dr"), host="reviews", traffic_policy=m.TrafficPolicy(tls=tls))])
    cluster = next(c for c in snap.dump()["clusters"] if c["name"] == f"outbound|9080||{HOST}")
    assert cluster["tls"]["settings"]["insecure_skip_verify"] is True


# --- DestinationRule workloadSelector (which rule a proxy gets) ------------------------------------


def rule(name: str, tls, selector=None, ns: str = "default") -> m.DestinationRule:
    return m.DestinationRule(meta(name, ns), host=HOST, traffic_policy=m.TrafficPolicy(tls=tls), workload_selector=selector,
                             export_to=("*",))


@pytest.mark.parametrize("labels,ns,rules,expected", [
    ({"app": "curl"}, "default", [rule("all", SIMPLE), rule("curl", MUTUAL, {"app": "curl"})], "MUTUAL"),
    ({"app": "other"}, "default", [rule("all", SIMPLE), rule("curl", MUTUAL, {"app": "curl"})], "SIMPLE"),
    ({"app": "other"}, "default", [rule("curl", MUTUAL, {"app": "curl"})], "-"),
    # a selector works in its own namespace only
    ({"app": "curl"}, "other", [rule("curl", MUTUAL, {"app": "curl"})], "-"),
    ({"app": "curl", "version": "v1"}, "default", [rule("curl", MUTUAL, {"app": "curl"})], "MUTUAL"),
])
def test_workload_selector(labels, ns, rules, expected):
    service = se(HOST, *PORTS, endpoints=[endpoint("10.0.0.1")], export_to=("*",))
    snap = compile_([service], rules=rules, ns=ns, labels=labels)
    cluster = snap.clusters[f"outbound|9080||{HOST}"]
    assert (cluster.tls.mode if cluster.tls else "-") == expected


# --- ServiceEntry subjectAltNames ------------------------------------------------------------------

SE_SANS = ("spiffe://cluster.local/ns/default/sa/vm", "reviews.example")


def with_service_sans(tls, sidecar: bool = False):
    labels = SIDECAR if sidecar else {}
    service = se(HOST, *PORTS, endpoints=[endpoint("10.0.0.1", "reviews", **labels)], subject_alt_names=SE_SANS,
                 location="MESH_INTERNAL")
    rules = [m.DestinationRule(meta("dr"), host="reviews", traffic_policy=m.TrafficPolicy(tls=tls))] if tls else []
    cluster = compile_([service], rules=rules).clusters[f"outbound|9080||{HOST}"]
    return cluster.tls or cluster.auto_mtls


def test_service_entry_sans_join_the_service_accounts_for_istio_mutual():
    for got in (with_service_sans(MESH), with_service_sans(None, sidecar=True)):
        assert (got.subject_alt_names, got.service_accounts) == (SE_SANS, (("default", "reviews"),))
    # the DestinationRule's own names replace both
    own = with_service_sans(m.ClientTLSSettings("ISTIO_MUTUAL", subject_alt_names=("spiffe://x/ns/a/sa/b",)))
    assert (own.subject_alt_names, own.service_accounts) == (("spiffe://x/ns/a/sa/b",), ())


def test_service_entry_sans_for_simple_only_without_auto_sni():
    # auto SNI: Envoy's auto SAN validation (the request's host) overrides the names
    assert with_service_sans(SIMPLE).subject_alt_names == ()
    assert with_service_sans(m.ClientTLSSettings("SIMPLE", sni="reviews.example")).subject_alt_names == SE_SANS
    assert with_service_sans(m.ClientTLSSettings("SIMPLE", sni="x", subject_alt_names=("y",))).subject_alt_names == ("y",)
