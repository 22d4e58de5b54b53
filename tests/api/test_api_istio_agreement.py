"""What Istio accepts, pymesh accepts: one valid resource per rule, each citing the Istio rule
that allows it, with the value pymesh reads from it. (What Istio rejects is in
test_api_validation.py, one invalid input per rule.)"""

from __future__ import annotations

import textwrap

import pytest

from pymesh.api import model as m
from pymesh.api.load import load_text
from test_api_validation import DR, SC, SE, VS, doc

ROUTE = "http:\n- route:\n  - destination: {host: r}\n"


def only(kind: str, body: str):
    """The one resource `body` makes, after asserting it loads without errors (warnings allowed)."""
    result = load_text(doc(kind, body), "t.yaml")
    assert result.errors == [], [str(e) for e in result.errors]
    resources = [r for field in m.MeshConfig.__dataclass_fields__ for r in getattr(result.config, field)]
    assert len(resources) == 1
    return resources[0]


CASES = [
    # --- host names (pkg/config/validation/agent ValidateWildcardDomain, pkg/config/labels) ------
    ("hosts either case, read lower-cased (labels.dns1123LabelFmt allows A-Z)", VS,
     "hosts: [Reviews.Example.COM]\n" + ROUTE, lambda vs: vs.hosts == ("reviews.example.com",)),
    ("a trailing dot (ValidateDNS1123Labels: the last label may be empty)", VS,
     "hosts: [reviews.example.com.]\n" + ROUTE, lambda vs: vs.hosts == ("reviews.example.com",)),
    ("wildcard label forms *, *foo, *-foo (labels.wildcardPrefix)", VS,
     "hosts: ['*.a.com', '*b.c.com', '*-d.e.com']\n" + ROUTE, lambda vs: len(vs.hosts) == 3),
    ("an IP address as a VirtualService host", VS, "hosts: [10.0.0.1]\n" + ROUTE,
     lambda vs: vs.hosts == ("10.0.0.1",)),
    ("a 63-character label and a 255-character name (CheckDNS1123Preconditions)", VS,
     f"hosts: [{'a' * 63}.{'.'.join(['b' * 63] * 3)}]\n" + ROUTE, lambda vs: len(vs.hosts[0]) == 255),
    ("short names (resolved in the namespace)", VS, "hosts: [reviews]\n" + ROUTE,
     lambda vs: vs.hosts == ("reviews",)),
    ("subset names either case (validateSubsetName: IsDNS1123Label)", VS,
     "hosts: [r]\nhttp:\n- route:\n  - destination: {host: R.Example.com, subset: V1}\n",
     lambda vs: vs.http[0].route[0].destination == m.Destination("r.example.com", "V1")),
    ("DestinationRule host lower-cased", DR, "host: Reviews.Default.svc.cluster.local.\n",
     lambda dr: dr.host == "reviews.default.svc.cluster.local"),
    ("Sidecar egress hosts ./, */, ~/ and ns/ (ValidateNamespaceSlashWildcardHostname)", SC,
     "egress:\n- hosts: ['./*', '*/Foo.Example.com', '~/*', 'istio-system/*.example.com']\n",
     lambda sc: sc.egress[0].hosts == ("./*", "*/foo.example.com", "~/*", "istio-system/*.example.com")),
    # --- weights (validateHTTPRouteDestinations, validateWeight: only >= 0, no sum rule) --------
    ("weights that do not add up to 100", VS, """\
     hosts: [r]
     http:
     - route:
       - destination: {host: a}
         weight: 60
       - destination: {host: b}
         weight: 30
     """, lambda vs: [d.weight for d in vs.http[0].route] == [60, 30]),
    ("a weight over 100, and a destination without one", VS, """\
     hosts: [r]
     tcp:
     - route:
       - destination: {host: a}
         weight: 150
       - destination: {host: b}
     """, lambda vs: [d.weight for d in vs.tcp[0].route] == [150, 0]),
    ("a lone destination with weight 0", VS, "hosts: [r]\nhttp:\n- route:\n  - destination: {host: a}\n    weight: 0\n",
     lambda vs: vs.http[0].route[0].weight == 0),
    # --- header names (ValidateHTTPHeaderNameOrJwtClaimRoute, ...OperationName) ----------------
    ("a match on any RFC 9110 token and on pseudo-headers", VS, """\
     hosts: [r]
     http:
     - match:
       - headers:
           x.custom~header: {exact: a}
           ":authority": {prefix: r}
           ":method": {exact: GET}
         withoutHeaders:
           ":path": {prefix: /admin}
       route:
       - destination: {host: r}
     """, lambda vs: set(vs.http[0].match[0].headers) == {"x.custom~header", ":authority", ":method"}),
    (":authority set on the request is the Host rewrite", VS, """\
     hosts: [r]
     http:
     - route:
       - destination: {host: r}
         headers:
           request:
             set: {":authority": b.example.com}
     """, lambda vs: vs.http[0].route[0].headers.request.set == {"host": "b.example.com"}),
    ("a literal % written %% (Envoy's header value syntax)", VS, """\
     hosts: [r]
     http:
     - route:
       - destination: {host: r}
       headers:
         response:
           set: {x-discount: "100%%"}
     """, lambda vs: vs.http[0].headers.response.set == {"x-discount": "100%"}),
    # --- durations (agent.ValidateDuration: >= 1ms, ms precision) -------------------------------
    ("1ms, and Go-style units", VS, "hosts: [r]\n" + ROUTE + "  timeout: 1ms\n  retries: {attempts: 2, perTryTimeout: 1m30s}\n",
     lambda vs: (vs.http[0].timeout, vs.http[0].retries.per_try_timeout) == (0.001, 90.0)),
    ("timeout 0s: no route timeout", VS, "hosts: [r]\n" + ROUTE + "  timeout: 0s\n",
     lambda vs: vs.http[0].timeout is None),
    ("tcp.idleTimeout 0s disables it (Istio's DestinationRule reference)", DR,
     "host: r\ntrafficPolicy:\n  connectionPool:\n    tcp: {idleTimeout: 0s}\n",
     lambda dr: dr.traffic_policy.connection_pool.tcp_idle_timeout == 0.0),
    # --- ServiceEntry (ValidateServiceEntry and the CRD's x-kubernetes-validations) -------------
    ("no resolution is NONE, no protocol is sniffed", SE, "hosts: [db.example.com]\nports: [{number: 5432, name: pg}]\n",
     lambda se: (se.resolution, se.ports[0].protocol) == ("NONE", "")),
    ("NONE with several hosts on a TCP port (the hosts are ignored)", SE,
     "hosts: [a.example.com, b.example.com]\nresolution: NONE\nports: [{number: 5432, name: pg, protocol: TCP}]\n",
     lambda se: len(se.hosts) == 2),
    ("NONE with CIDR addresses", SE, "hosts: [a.example.com]\naddresses: [10.0.0.0/8]\n",
     lambda se: se.addresses == ("10.0.0.0/8",)),
    ("DNS_ROUND_ROBIN with one endpoint", SE,
     "hosts: ['*.example.com']\nresolution: DNS_ROUND_ROBIN\nendpoints: [{address: lb.example.com}]\n",
     lambda se: se.resolution == "DNS_ROUND_ROBIN"),
    ("DYNAMIC_DNS with a wildcard host", SE,
     "hosts: ['*.example.com']\nresolution: DYNAMIC_DNS\nports: [{number: 443, name: tls, protocol: TLS}]\n",
     lambda se: se.resolution == "DYNAMIC_DNS"),
    # from Istio's own CRD test data (istio/istio pkg/config/validation/testdata/crds/*-valid.yaml)
    ("serviceentry-valid.yaml 'full'", SE, """\
     hosts: ["example.com"]
     workloadSelector: {labels: {foo: bar}}
     addresses: [1.2.3.4, "001:db8::"]
     exportTo: [foo, .]
     location: MESH_EXTERNAL
     ports:
     - {name: foo, protocol: HTTP, number: 1234, targetPort: 2345}
     subjectAltNames: [sa]
     resolution: DNS
     """, lambda se: se.ports[0].target_port == 2345),
    ("serviceentry-valid.yaml 'empty-selector' and 'partial-wildcard' (warnings only)", SE,
     "workloadSelector: {}\nhosts: ['*x']\n", lambda se: se.hosts == ("*x",)),
    ("destinationrule-valid.yaml http2KeepAlive (ignored with a warning)", DR,
     "host: ratings.prod.svc.cluster.local\ntrafficPolicy:\n  connectionPool:\n    http:\n"
     "      http2KeepAlive: {interval: 15s, timeout: 5s}\n", lambda dr: dr.traffic_policy is not None),
    ("workloadentry-valid.yaml unix and FQDN addresses", SE,
     "hosts: [a.example.com]\nresolution: DNS\nports: [{number: 80, name: http}]\n"
     "endpoints: [{address: 'unix://@foo'}, {address: example.com}]\n",
     lambda se: [e.address for e in se.endpoints] == ["unix://@foo", "example.com"]),
    ("Istio's protocol list, any case (protocol.Parse)", SE, """\
     hosts: [a.example.com]
     resolution: DNS
     ports:
     - {number: 1, name: a, protocol: grpc-web}
     - {number: 2, name: B, protocol: Mongo}
     - {number: 3, name: c, protocol: mysql}
     - {number: 4, name: d, protocol: REDIS}
     - {number: 5, name: e, protocol: Udp}
     """, lambda se: [p.protocol for p in se.ports] == ["GRPC-WEB", "MONGO", "MYSQL", "REDIS", "UDP"]),
]


@pytest.mark.parametrize("kind, body, check", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_istio_accepts_so_does_pymesh(kind, body, check):
    resource = only(kind, textwrap.dedent(body))
    assert check(resource), resource
