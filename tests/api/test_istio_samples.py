"""Istio's own networking samples (tests/api/data/istio_samples, copied unchanged; see its
README) load with `pymesh analyze`, and every resilience field in them reads as Istio documents it.

Documents of a kind pymesh does not support yet are skipped by kind (NOT_YET_KINDS). Fields
pymesh does not implement yet are listed per file in PENDING with the exact errors, so the test
fails (and the list must shrink) the day they are implemented, or if anything else breaks.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pymesh.api import model as m
from pymesh.api.load import load_paths

SAMPLES = Path(__file__).parent / "data" / "istio_samples"
FILES = sorted(SAMPLES.glob("*/*.yaml"))
PYMESH = Path(sys.executable).with_name("pymesh")  # the console script of this environment

# Kinds pymesh does not read yet: their documents are skipped, and only they.
NOT_YET_KINDS: dict[str, str] = {}

# Fields Istio accepts that pymesh does not implement yet: (line, field path, message) per file.
PENDING: dict[str, list[tuple[int, str, str]]] = {}


def _name(path: Path) -> str:
    return path.relative_to(SAMPLES).as_posix()


def _skipped_kind(error) -> bool:
    return error.path == "kind" and any(error.message == f"kind {kind} is not supported" or
                                        error.message == f"kind {kind} is not supported yet"
                                        for kind in NOT_YET_KINDS)


def _errors(name: str) -> list[tuple[int, str, str]]:
    result = load_paths([str(SAMPLES / name)])
    return [(e.line, e.path, e.message) for e in result.errors if not _skipped_kind(e)]


def load(name: str) -> m.MeshConfig:
    result = load_paths([str(SAMPLES / name)])
    assert [e for e in result.errors if not _skipped_kind(e)] == [], result.errors
    return result.config


def test_the_samples_are_there():
    assert len(FILES) == 73  # 52 on main, 4 with the ingress Gateways, 15 of the egress tasks, 2 open-telemetry
    assert set(PENDING) <= {_name(path) for path in FILES}


@pytest.mark.parametrize("path", FILES, ids=_name)
def test_every_sample_loads(path: Path):
    assert _errors(_name(path)) == PENDING.get(_name(path), [])


@pytest.mark.parametrize("path", FILES, ids=_name)
def test_pymesh_analyze_accepts_it(path: Path):
    done = subprocess.run([str(PYMESH), "analyze", str(path)], capture_output=True, text=True, timeout=60)
    assert done.stderr == ""
    lines = [line for line in done.stdout.splitlines() if "warning: " not in line]  # kinds not applied...
    pending = PENDING.get(_name(path), [])
    if not pending:
        assert done.returncode == 0 and lines[-1].startswith("ok: "), done.stdout
        return
    assert done.returncode == 1
    expected = [f"{path}:{line} {field}: {message}" for line, field, message in pending]
    assert lines[:-1] == expected
    count = len(expected)
    assert lines[-1].startswith(f"{count} errors in 1 file" if count > 1 else "1 error in 1 file")


def test_the_tcp_echo_and_helloworld_gateways_read_as_istio_documents():
    tcp = load("tcp-echo/tcp-echo-all-v1.yaml")
    (gateway,) = tcp.gateways
    assert gateway.servers[0].port == m.ServicePort(31400, "TCP", "tcp")
    vs = _only_vs(tcp)
    assert vs.tcp[0].match[0].port == 31400 and vs.tcp[0].route[0].destination == m.Destination("tcp-echo", "v1", 9000)
    (east_west,) = load("helloworld/helloworld-gateway.yaml").gateways
    assert east_west.servers[0].tls == m.ServerTLSSettings(mode="AUTO_PASSTHROUGH")


def test_the_bookinfo_gateway_reads_as_istio_documents():
    config = load("bookinfo/bookinfo-gateway.yaml")
    (gateway,) = config.gateways
    assert (gateway.metadata.namespace, gateway.selector) == ("default", {"istio": "ingressgateway"})
    assert gateway.servers == (m.GatewayServer(port=m.ServicePort(80, "HTTP", "http"), hosts=("*",)),)
    vs = _only_vs(config)
    assert (vs.hosts, vs.gateways) == (("*",), ("bookinfo-gateway",))  # the VirtualService's namespace's Gateway
    assert [match.uri for match in vs.http[0].match] == [
        m.StringMatch("exact", "/productpage"), m.StringMatch("prefix", "/static"), m.StringMatch("exact", "/login"),
        m.StringMatch("exact", "/logout"), m.StringMatch("prefix", "/api/v1/products")]


# --- authorization (istio.io's security/authorization tasks) ---------------------------------


AUTHZ = sorted((SAMPLES / "authz").glob("*.yaml"))


@pytest.mark.parametrize("path", AUTHZ, ids=_name)
def test_authorization_samples_compile(path: Path):
    """Each task's policy loads and compiles into an Authorizer that decides."""
    from pymesh.http.message import ConnectionInfo, RequestHead
    from pymesh.security.authz import Authorizer

    authorizer = Authorizer(load(_name(path)).authorization_policies)
    head = RequestHead("GET", "/", [])
    assert authorizer.check(head, ConnectionInfo()).allowed in (True, False)


def test_the_tasks_policies_read_as_istio_documents():
    (nothing,) = load("authz/authz-http-allow-nothing.yaml").authorization_policies
    assert (nothing.action, nothing.rules, nothing.selector) == ("ALLOW", (), None)
    (viewer,) = load("authz/authz-http-productpage-viewer.yaml").authorization_policies
    assert viewer.selector == {"app": "productpage"} and viewer.rules[0].operations[0].methods == ("GET",)
    (dry,) = load("authz/authz-dry-run-deny-path-headers.yaml").authorization_policies
    assert dry.dry_run and dry.action == "DENY" and dry.metadata.namespace == "default"
    (groups,) = load("authz/authz-jwt-require-jwt-groups.yaml").authorization_policies
    assert groups.rules[0].when == (m.AuthzCondition("request.auth.claims[groups]", ("group1",)),)


# --- fault injection (bookinfo's fault files and the request-timeouts task) ----------------


def _only_vs(config: m.MeshConfig) -> m.VirtualService:
    (vs,) = config.virtual_services
    return vs


JASON = {"end-user": m.StringMatch("exact", "jason")}


ABORT = m.HTTPFaultInjection(abort=m.FaultAbort(http_status=500, percentage=100.0))
DELAY = m.HTTPFaultInjection(delay=m.FaultDelay(fixed_delay=7.0, percentage=100.0))


@pytest.mark.parametrize("name, fault", [
    ("bookinfo/virtual-service-ratings-test-abort.yaml", ABORT),
    ("bookinfo-062bdf2/virtual-service-ratings-test-abort.yaml", ABORT),
    ("bookinfo/virtual-service-ratings-test-delay.yaml", DELAY),
    ("bookinfo-062bdf2/virtual-service-ratings-test-delay.yaml", DELAY),
])
def test_ratings_fault_for_jason(name: str, fault: m.HTTPFaultInjection):
    """`percentage: {value: 100.0}` and the deprecated `percent: 100` both mean every request."""
    vs = _only_vs(load(name))
    faulty, default = vs.http
    assert [match.headers for match in faulty.match] == [JASON]
    assert faulty.fault == fault
    assert faulty.route[0].destination == m.Destination("ratings", "v1")
    assert default.fault is None and default.match == ()


def test_details_abort_555():
    config = load("bookinfo/fault-injection-details-v1.yaml")
    faulty, default = _only_vs(config).http
    assert faulty.match == ()  # every request
    assert faulty.fault.abort == m.FaultAbort(http_status=555, percentage=100.0)
    assert faulty.fault.delay is None and default.fault is None
    (rule,) = config.destination_rules
    assert [(s.name, s.labels) for s in rule.subsets] == [("v1", {"version": "v1"})]


def test_request_timeouts_task():
    (delay_route,) = _only_vs(load("istio.io/request-timeouts-ratings-delay.yaml")).http
    assert delay_route.fault == m.HTTPFaultInjection(delay=m.FaultDelay(fixed_delay=2.0, percentage=100.0))
    (timeout_route,) = _only_vs(load("istio.io/request-timeouts-reviews-timeout.yaml")).http
    assert timeout_route.timeout == 0.5
    assert timeout_route.route[0].destination == m.Destination("reviews", "v2")
    (plain,) = _only_vs(load("istio.io/request-timeouts-reviews-v2.yaml")).http
    assert plain.timeout is None and plain.retries is None  # Istio's defaults: no timeout, default retries


# --- traffic shifting (bookinfo's weighted files) --------------------------------------------


@pytest.mark.parametrize("name, split", [
    ("virtual-service-reviews-50-v3.yaml", [("v1", 50), ("v3", 50)]),
    ("virtual-service-reviews-80-20.yaml", [("v1", 80), ("v2", 20)]),
    ("virtual-service-reviews-90-10.yaml", [("v1", 90), ("v2", 10)]),
    ("virtual-service-reviews-v2-v3.yaml", [("v2", 50), ("v3", 50)]),
    ("virtual-service-reviews-v3.yaml", [("v3", 0)]),
])
def test_traffic_shifting(name: str, split):
    (route,) = _only_vs(load(f"bookinfo/{name}")).http
    assert [(d.destination.host, d.destination.subset, d.weight) for d in route.route] == [
        ("reviews", subset, weight) for subset, weight in split
    ]


def test_all_v1_and_the_subsets_it_names():
    config = load("bookinfo/virtual-service-all-v1.yaml")
    assert {vs.hosts: vs.http[0].route[0].destination.subset for vs in config.virtual_services} == {
        ("productpage",): "v1", ("reviews",): "v1", ("ratings",): "v1", ("details",): "v1"}
    rules = {rule.host: [s.name for s in rule.subsets] for rule in load("bookinfo/destination-rule-all.yaml").destination_rules}
    assert rules == {"productpage": ["v1"], "reviews": ["v1", "v2", "v3"],
                     "ratings": ["v1", "v2", "v2-mysql", "v2-mysql-vm"], "details": ["v1", "v2"]}
    assert all(rule.traffic_policy is None for rule in load("bookinfo/destination-rule-all.yaml").destination_rules)


def test_reviews_random_load_balancer():
    (rule,) = load("bookinfo/destination-rule-reviews.yaml").destination_rules
    assert rule.traffic_policy.load_balancer == m.LoadBalancerSettings(simple="RANDOM")
    assert [s.name for s in rule.subsets] == ["v1", "v2", "v3"]


def test_google_apis_service_entry():
    (entry,) = load("bookinfo/egress-rule-google-apis.yaml").service_entries
    assert entry.hosts == ("www.googleapis.com",)
    assert entry.ports == (m.ServicePort(443, "HTTP", "https"),)  # Istio reads the protocol case-insensitively
    assert (entry.location, entry.resolution) == ("MESH_EXTERNAL", "DNS")


# --- circuit breaking -------------------------------------------------------------------------


def _only_policy(name: str) -> m.TrafficPolicy:
    (rule,) = load(name).destination_rules
    return rule.traffic_policy


def test_circuit_breaking_task():
    policy = _only_policy("istio.io/circuit-breaking.yaml")
    pool = policy.connection_pool
    assert (pool.max_connections, pool.max_pending_requests, pool.max_requests_per_connection) == (1, 1, 1)
    assert (pool.max_requests, pool.max_retries) == (0, 0)  # unset: no limit beyond Envoy's defaults
    assert policy.outlier_detection == m.OutlierDetection(
        consecutive_5xx=1, interval=1.0, base_ejection_time=180.0, max_ejection_percent=100)
    assert policy.outlier_detection.consecutive_gateway == 0  # off unless set


def test_circuit_breaking_task_with_the_deprecated_consecutive_errors():
    """Istio translated consecutiveErrors to Envoy's consecutive_gateway_failure (502, 503, 504)
    and turned the 5xx detector off."""
    detector = _only_policy("istio.io/circuit-breaking-consecutiveErrors.yaml").outlier_detection
    assert (detector.consecutive_gateway, detector.consecutive_5xx) == (1, 0)
    assert (detector.interval, detector.base_ejection_time, detector.max_ejection_percent) == (1.0, 180.0, 100)


# --- mirroring --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["istio.io/mirroring.yaml", "istio.io/mirroring-mirrorPercent.yaml"])
def test_mirroring_task(name: str):
    """`mirrorPercentage: {value: 100.0}` and the deprecated `mirrorPercent: 100` alike."""
    (route,) = _only_vs(load(name)).http
    assert route.mirrors == (m.HTTPMirrorPolicy(m.Destination("httpbin", "v2"), 100.0),)
    assert [(d.destination, d.weight) for d in route.route] == [(m.Destination("httpbin", "v1"), 100)]


def test_mirroring_task_default_routing():
    config = load("istio.io/mirroring-default-routing.yaml")
    (route,) = _only_vs(config).http
    assert route.mirrors == ()
    (rule,) = config.destination_rules
    assert [s.name for s in rule.subsets] == ["v1", "v2"]


# --- locality load balancing ------------------------------------------------------------------


def test_locality_failover_task():
    policy = _only_policy("istio.io/locality-failover.yaml")
    assert policy.load_balancer.simple == "ROUND_ROBIN"
    assert policy.load_balancer.locality_lb == m.LocalityLbSetting(
        enabled=True, failover=(m.LocalityFailover("region1", "region2"),))
    assert policy.connection_pool.max_requests_per_connection == 1
    detector = policy.outlier_detection
    assert (detector.consecutive_5xx, detector.interval, detector.base_ejection_time) == (1, 1.0, 60.0)
    assert detector.max_ejection_percent == 10  # unset: Envoy's default, as Istio leaves it


def test_locality_distribute_task():
    policy = _only_policy("istio.io/locality-distribute.yaml")
    assert policy.load_balancer.locality_lb.distribute == (m.LocalityDistribute(
        "region1/zone1/*", (("region1/zone1/*", 70), ("region1/zone2/*", 20), ("region3/zone4/*", 10))),)
    assert policy.load_balancer.locality_lb.failover == ()
    assert policy.load_balancer.simple == "LEAST_REQUEST"  # Istio's default when `simple` is unset
    assert policy.outlier_detection.consecutive_5xx == 100


def test_request_authentication_samples_read_as_istio_documents():
    (gateway,) = load("istio.io-jwt/authn-policy-jwt-example.yaml").request_authentications
    assert (gateway.metadata.namespace, gateway.selector) == ("istio-system", {"istio": "ingressgateway"})
    (rule,) = gateway.jwt_rules
    assert rule.issuer == "testing@secure.istio.io"
    assert rule.jwks_uri.endswith("/security/tools/jwt/samples/jwks.json")
    assert (rule.from_headers, rule.from_params, rule.forward_original_token) == ((), (), False)  # Istio's defaults
    (claims,) = load("istio.io-jwt/claim-to-header.yaml").request_authentications
    assert claims.selector == {"app": "httpbin"}
    assert [(c.header, c.claim) for c in claims.jwt_rules[0].output_claim_to_headers] == [("x-jwt-claim-foo", "foo")]


def test_the_open_telemetry_samples_read_as_istio_documents():
    """samples/open-telemetry: tracing with sampling 0 (spans off until raised), mesh-wide logging
    to the `otel` provider (envoyOtelAls, which pymesh does not run: a warning, no log)."""
    from pymesh.routing.snapshot import ProxyIdentity
    from pymesh.routing.telemetry import compile_telemetry

    (tracing,) = load("open-telemetry/tracing-telemetry.yaml").telemetries
    assert tracing.metadata.namespace == "default" and tracing.selector is None
    assert tracing.tracing == (m.TelemetryTracing(providers=("otel-tracing",), random_sampling_percentage=0.0),)
    mesh = m.IstioMeshConfig(extension_providers=(
        m.ExtensionProvider("otel-tracing", "opentelemetry", service="opentelemetry-collector.otel-collector", port=4317),
        m.ExtensionProvider("otel", "envoyOtelAls")))
    config = m.MeshConfig(telemetries=load("open-telemetry/tracing-telemetry.yaml").telemetries
                          + load("open-telemetry/loki-telemetry.yaml").telemetries, mesh_configs=(mesh,))
    warnings: list[str] = []
    policy = compile_telemetry(config, ProxyIdentity(namespace="default"), warnings)
    assert policy.tracing.provider.name == "otel-tracing" and policy.tracing.sampling_percent == 0.0
    assert policy.access_logging.providers == ()
    assert "Telemetry: access logging provider 'otel' (envoyOtelAls) is not supported by pymesh" in warnings
