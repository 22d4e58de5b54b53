"""What a TlsOrigin dials with (SNI, ALPN, hostname check) and which origin an endpoint gets,
table-driven; the handshakes themselves are in test_upstream_tls.py."""

from __future__ import annotations

import ssl

import pytest

from pymesh.api import model as m
from pymesh.proxy.upstream_tls import TlsEnvironment, TlsFailure, TlsOrigin, origin_for
from pymesh.routing.snapshot import Cluster, Endpoint, UpstreamTls
from pymesh.telemetry.stats import TLS_STATS

HOST = "reviews.default.svc.cluster.local"
MESH_SNI = f"outbound_.9080_._.{HOST}"


def origin(mode: str, sni: str = "", sans: tuple[str, ...] = (), insecure: bool = False, auto: bool = False,
           certs=None) -> TlsOrigin:
    tls = UpstreamTls(mode, m.ClientTLSSettings(mode, sni=sni, subject_alt_names=sans, insecure_skip_verify=insecure),
                      sni or (MESH_SNI if mode == "ISTIO_MUTUAL" else ""), sans, auto=auto)
    cluster = Cluster(f"outbound|9080||{HOST}", HOST, 9080, "", "HTTP", (), m.LoadBalancerSettings(),
                      m.ConnectionPoolSettings(), tls=tls)
    return TlsOrigin(tls, cluster, TlsEnvironment(certs), dict.fromkeys(TLS_STATS, 0))


TARGETS = [
    # mode, origin options, (authority, http, http2) -> (SNI, ALPN, hostname check)
    ("ISTIO_MUTUAL", {}, ("reviews:9080", True, True), (MESH_SNI, ("istio-h2", "istio-peer-exchange", "istio"), False)),
    ("ISTIO_MUTUAL", {}, ("reviews", True, False), (MESH_SNI, ("istio-peer-exchange", "istio"), False)),  # an upgrade
    ("ISTIO_MUTUAL", {}, ("", False, False), (MESH_SNI, ("istio-peer-exchange", "istio"), False)),  # TCP
    ("ISTIO_MUTUAL", {"sni": "x.mesh"}, ("reviews", True, True), ("x.mesh", ("istio-h2", "istio-peer-exchange", "istio"), False)),
    ("SIMPLE", {}, ("api.example.com:8443", True, False), ("api.example.com", ("http/1.1",), True)),  # auto SNI and SAN
    ("SIMPLE", {}, ("[2001:db8::1]:443", True, True), ("2001:db8::1", ("h2",), True)),
    ("SIMPLE", {}, ("", True, False), (HOST, ("http/1.1",), True)),  # no Host: the service's name
    ("SIMPLE", {}, ("", False, False), (HOST, (), True)),  # TCP: the service's name, no ALPN
    ("SIMPLE", {"sni": "fixed.example"}, ("api.example.com", True, False), ("fixed.example", ("http/1.1",), False)),
    ("SIMPLE", {"sans": ("a.example",)}, ("b.example", True, False), ("b.example", ("http/1.1",), False)),
    ("MUTUAL", {"insecure": True}, ("b.example", True, True), ("b.example", ("h2",), False)),
]


@pytest.mark.parametrize("mode,options,request_,expected", TARGETS)
def test_target(mode, options, request_, expected):
    target = origin(mode, **options).target(*request_)
    assert (target.server_hostname, target.alpn, target.check_host) == expected


def test_targets_are_shared_per_sni_and_alpn():
    o = origin("SIMPLE")
    assert o.target("a.example", True, False) is o.target("a.example:80", True, False)
    assert o.target("a.example", True, False) != o.target("b.example", True, False)
    assert o.target("a.example", True, False) != o.target("a.example", True, True)


class NoCert:
    def valid(self):
        return None

    def client_context(self, alpn):
        return None


def test_which_origin_an_endpoint_gets():
    sidecar = Endpoint("10.0.0.1", 9080, labels={"security.istio.io/tlsMode": "istio"})
    plain = Endpoint("10.0.0.2", 9080)
    own, auto = origin("SIMPLE"), origin("ISTIO_MUTUAL", auto=True, certs=NoCert())
    assert origin_for(own, None, plain) is own and origin_for(own, None, sidecar) is own
    assert origin_for(None, None, sidecar) is None
    assert origin_for(None, auto, plain) is None
    assert origin_for(None, auto, sidecar) is None  # no certificate to present: plaintext


def test_failures_are_counted_as_envoy_does():
    o = origin("SIMPLE")
    verify = ssl.SSLCertVerificationError("bad")
    verify.verify_code, verify.verify_message = 20, "unable to get local issuer certificate"
    assert isinstance(o.failure(verify), TlsFailure)
    mismatch = ssl.SSLCertVerificationError("bad")
    mismatch.verify_code, mismatch.verify_message = 62, "Hostname mismatch"
    o.failure(mismatch)
    o.failure(ssl.SSLError(1, "alert"))
    refused = ConnectionRefusedError()
    assert o.failure(refused) is refused  # not TLS: as it was
    assert (o.stats["ssl.fail_verify_error"], o.stats["ssl.fail_verify_san"], o.stats["ssl.connection_error"]) == (1, 1, 3)


def test_istio_mutual_without_a_certificate_is_a_tls_failure():
    with pytest.raises(TlsFailure, match="no valid mesh certificate"):
        origin("ISTIO_MUTUAL", certs=NoCert()).target("reviews", True, True).context()
