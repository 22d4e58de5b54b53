"""Each kind parses into exactly the model objects downstream code will read."""

from __future__ import annotations

from pymesh.api import model as m
from pymesh.api.load import load_paths


def only(data, name: str):
    result = load_paths([str(data / name)])
    assert result.errors == []
    config = result.config
    resources = [r for group in (config.service_entries, config.workload_entries, config.virtual_services,
                                 config.destination_rules, config.sidecars) for r in group]
    assert len(resources) == 1
    return resources[0]


def test_service_entry(data):
    se = only(data, "serviceentry.yaml")
    assert se == m.ServiceEntry(
        metadata=m.Metadata(name="payments", namespace="shop", labels={"team": "billing"}),
        hosts=("payments.example.com",),
        addresses=("240.0.0.10",),
        ports=(
            m.ServicePort(number=443, protocol="HTTP2", name="http", target_port=8443),
            m.ServicePort(number=9000, protocol="TCP", name="tcp-db"),
        ),
        location="MESH_INTERNAL",
        resolution="STATIC",
        endpoints=(
            m.WorkloadEntrySpec(
                address="10.0.0.1",
                ports={"http": 8443},
                labels={"version": "v1"},
                weight=3,
                service_account="payments",
            ),
            m.WorkloadEntrySpec(address="10.0.0.2"),
        ),
        export_to=(".",),
        subject_alt_names=("spiffe://cluster.local/ns/shop/sa/payments",),
    )
    assert se.metadata.source == m.Source(str(data / "serviceentry.yaml"), 1)


def test_workload_entry(data):
    we = only(data, "workloadentry.yaml")
    assert we == m.WorkloadEntry(
        metadata=m.Metadata(name="details-vm"),
        spec=m.WorkloadEntrySpec(
            address="vm1.internal.example.com",
            ports={"http": 9080},
            labels={"app": "details"},
            service_account="details",
            locality="us-west/zone1/rack2",
        ),
    )
    assert we.metadata.source.line == 2  # the document starts after the comment


def test_virtual_service(data):
    vs = only(data, "virtualservice.yaml")
    jason = m.HTTPRoute(
        name="jason",
        match=(
            m.HTTPMatchRequest(
                name="by-user",
                uri=m.StringMatch("prefix", "/reviews"),
                method=m.StringMatch("exact", "GET"),
                authority=m.StringMatch("regex", "reviews(:[0-9]+)?"),
                scheme=m.StringMatch("exact", "http"),
                headers={"end-user": m.StringMatch("exact", "jason"), "x-canary": m.StringMatch("prefix", "")},
                without_headers={"x-debug": m.StringMatch("prefix", "1")},
                query_params={"version": m.StringMatch("exact", "v2")},
                port=9080,
                source_labels={"app": "productpage"},
                ignore_uri_case=True,
            ),
        ),
        route=(
            m.HTTPRouteDestination(
                destination=m.Destination(host="reviews", subset="v2", port=9080),
                weight=80,
                headers=m.Headers(request=m.HeaderOperations(set={"x-route": "v2"})),
            ),
            m.HTTPRouteDestination(destination=m.Destination(host="reviews", subset="v3"), weight=20),
        ),
        headers=m.Headers(
            request=m.HeaderOperations(add={"x-from": "mesh"}, remove=("x-internal",)),
            response=m.HeaderOperations(set={"cache-control": "no-store"}),
        ),
        rewrite=m.HTTPRewrite(uri="/", authority="reviews.internal"),
        timeout=1.5,
        retries=m.HTTPRetry(attempts=3, per_try_timeout=0.25, retry_on=("5xx", "connect-failure", "503"), backoff=0.1,
                            retry_ignore_previous_hosts=False, retry_remote_localities=True),
    )
    old = m.HTTPRoute(
        name="old",
        match=(m.HTTPMatchRequest(uri=m.StringMatch("exact", "/old")),),
        redirect=m.HTTPRedirect(
            uri="/new", authority="reviews.example.com", port=8080, scheme="https", redirect_code=308
        ),
    )
    teapot = m.HTTPRoute(
        name="teapot",
        match=(m.HTTPMatchRequest(uri=m.StringMatch("prefix", "/tea")),),
        direct_response=m.HTTPDirectResponse(status=418, body="I'm a teapot"),
    )
    default = m.HTTPRoute(
        route=(m.HTTPRouteDestination(destination=m.Destination(host="reviews")),),
        timeout=None,  # "0s" disables the timeout
        retries=m.HTTPRetry(attempts=0),
    )
    reviews = (m.HTTPRouteDestination(destination=m.Destination(host="reviews")),)
    faults = m.HTTPRoute(
        name="faults",
        match=(m.HTTPMatchRequest(uri=m.StringMatch("prefix", "/faulty")),),
        route=reviews,
        fault=m.HTTPFaultInjection(
            delay=m.FaultDelay(fixed_delay=0.25, percentage=0.0001),
            abort=m.FaultAbort(http_status=503, percentage=12.5),
        ),
        cors_policy=m.CorsPolicy(
            allow_origins=(m.StringMatch("exact", "https://example.com"),
                           m.StringMatch("regex", "https://.*[.]example[.]org")),
            allow_methods=("GET", "POST"), allow_headers=("X-Foo-Bar",), expose_headers=("*",),
            max_age=86400, allow_credentials=True, unmatched_preflights="IGNORE",
        ),
    )
    legacy = m.HTTPRoute(  # the deprecated integer percents and allowOrigin
        name="legacy-faults",
        match=(m.HTTPMatchRequest(uri=m.StringMatch("prefix", "/legacy")),),
        route=reviews,
        fault=m.HTTPFaultInjection(
            delay=m.FaultDelay(fixed_delay=1.0, percentage=10.0),
            abort=m.FaultAbort(grpc_status=14, percentage=20.0),
        ),
        cors_policy=m.CorsPolicy(allow_origins=(m.StringMatch("exact", "https://old.example.com"),)),
        mirrors=(m.HTTPMirrorPolicy(m.Destination(host="reviews", subset="v2"), percentage=10.0),),  # mirrorPercent
    )
    mirrored = m.HTTPRoute(  # mirror with mirrorPercentage, then mirrors[]
        name="mirrored",
        match=(m.HTTPMatchRequest(uri=m.StringMatch("prefix", "/mirrored")),),
        route=reviews,
        mirrors=(m.HTTPMirrorPolicy(m.Destination(host="reviews", subset="v2"), percentage=50.5),
                 m.HTTPMirrorPolicy(m.Destination(host="ratings", port=9080), percentage=0.0001)),
    )
    tcp = m.TCPRoute(
        match=(
            m.L4MatchAttributes(
                port=9090, destination_subnets=("10.0.0.0/8",), source_labels={"app": "db-client"}
            ),
        ),
        route=(m.RouteDestination(destination=m.Destination(host="db.bookinfo.svc.cluster.local", port=5432)),),
    )
    reviews = "reviews.bookinfo.svc.cluster.local"
    tls = m.TLSRoute(
        match=(m.TLSMatchAttributes(sni_hosts=(reviews,), destination_subnets=("198.18.0.0/15",), port=9443,
                                    source_labels={"app": "productpage"}, source_namespace="bookinfo",
                                    gateways=("mesh",)),),
        route=(m.RouteDestination(destination=m.Destination(host=reviews, subset="v1"), weight=80),
               m.RouteDestination(destination=m.Destination(host=reviews, subset="v2"), weight=20)),
    )
    assert vs == m.VirtualService(
        metadata=m.Metadata(name="reviews", namespace="bookinfo"),
        hosts=("reviews", reviews),
        http=(jason, old, teapot, default, faults, legacy, mirrored),
        tcp=(tcp,),
        tls=(tls,),
        gateways=("mesh",),
    )


def test_destination_rule(data):
    dr = only(data, "destinationrule.yaml")
    assert dr == m.DestinationRule(
        metadata=m.Metadata(name="reviews"),
        host="reviews.default.svc.cluster.local",
        traffic_policy=m.TrafficPolicy(
            load_balancer=m.LoadBalancerSettings(
                simple="LEAST_REQUEST",  # LEAST_CONN is an alias
                warmup=m.Warmup(30.0),  # warmupDurationSecs: Envoy's defaults for the rest
                locality_lb=m.LocalityLbSetting(distribute=(
                    m.LocalityDistribute("us-west/zone1/*", (("us-west/zone1/*", 80), ("us-west/zone2/*", 20))),
                )),
            ),
            connection_pool=m.ConnectionPoolSettings(
                connect_timeout=0.25, tcp_idle_timeout=3600.0, idle_timeout=30.0, max_requests_per_connection=100,
                max_connections=100, max_connection_duration=3600.0,
                tcp_keepalive=m.TcpKeepalive(probes=3, time=600.0, interval=60.0),
                max_pending_requests=50, max_requests=500, max_retries=3,
            ),
            port_level_settings=(m.PortTrafficPolicy(
                port=9080,
                load_balancer=m.LoadBalancerSettings(simple="RANDOM"),
                connection_pool=m.ConnectionPoolSettings(max_connections=10),
                outlier_detection=m.OutlierDetection(consecutive_5xx=2),
                tls=m.ClientTLSSettings(
                    mode="MUTUAL", client_certificate="/etc/certs/client.pem", private_key="/etc/certs/client-key.pem",
                    ca_certificates="/etc/certs/ca.pem", ca_crl="/etc/certs/ca.crl",
                    subject_alt_names=("reviews.example.com",), sni="reviews.example.com",
                ),
            ), m.PortTrafficPolicy(port=9443, tls=m.ClientTLSSettings(mode="SIMPLE", credential_name="reviews-client"))),
            tls=m.ClientTLSSettings(mode="ISTIO_MUTUAL"),
        ),
        subsets=(
            m.Subset(name="v1", labels={"version": "v1"}),
            m.Subset(
                name="v2",
                labels={"version": "v2"},
                traffic_policy=m.TrafficPolicy(
                    load_balancer=m.LoadBalancerSettings(
                        consistent_hash=m.ConsistentHash(
                            http_cookie="session", http_cookie_ttl=90.0, http_cookie_path="/",
                            http_cookie_attributes=(("SameSite", "Strict"), ("Secure", "")),
                            minimum_ring_size=2048,
                        )
                    )
                ),
            ),
            m.Subset(
                name="v3",
                labels={"version": "v3"},
                traffic_policy=m.TrafficPolicy(
                    load_balancer=m.LoadBalancerSettings(
                        consistent_hash=m.ConsistentHash(http_header_name="x-user", maglev=True),
                        warmup=m.Warmup(60.0, minimum_percent=5.0, aggression=2.0),
                        locality_lb=m.LocalityLbSetting(
                            failover=(m.LocalityFailover("us-east", "us-west"),),
                            failover_priority=("topology.istio.io/network",),
                        ),
                    ),
                    outlier_detection=m.OutlierDetection(  # the newer fields win over consecutiveErrors
                        consecutive_5xx=5, consecutive_gateway=3, consecutive_local_origin=4,
                        split_external_local_origin_errors=True, interval=5.0, base_ejection_time=60.0,
                        max_ejection_percent=50, min_health_percent=20,
                    ),
                    retry_budget=m.RetryBudget(percent=25.5, min_retry_concurrency=5),
                ),
            ),
            m.Subset(
                name="v4",
                labels={"version": "v4"},
                traffic_policy=m.TrafficPolicy(
                    load_balancer=m.LoadBalancerSettings(
                        consistent_hash=m.ConsistentHash(use_source_ip=True, minimum_ring_size=4096)
                    )
                ),
            ),
        ),
        export_to=(".",),
        workload_selector={"app": "productpage"},
    )


def test_sidecar(data):
    sc = only(data, "sidecar.yaml")
    assert sc == m.Sidecar(
        metadata=m.Metadata(name="ratings", namespace="prod"),
        workload_selector={"app": "ratings"},
        ingress=(
            m.IngressListener(
                port=m.ServicePort(number=9080, protocol="HTTP", name="http"), default_endpoint="127.0.0.1:8080"
            ),
            m.IngressListener(
                port=m.ServicePort(number=9443, protocol="GRPC", name="grpc"),
                bind="0.0.0.0",
                capture_mode="NONE",
                default_endpoint="unix:///var/run/ratings.sock",
            ),
        ),
        egress=(
            m.EgressListener(
                hosts=("*/mysql.db.svc.cluster.local",),
                port=m.ServicePort(number=3306, protocol="TCP", name="mysql"),
                bind="127.0.0.1",
            ),
            m.EgressListener(hosts=("./*", "istio-system/*"), capture_mode="IPTABLES"),
        ),
        outbound_traffic_policy="REGISTRY_ONLY",
    )


def test_minimal_resources_take_model_defaults():
    from pymesh.api.load import load_text

    result = load_text(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: s}\nspec:\n"
        "  outboundTrafficPolicy: {}\n"
        "---\n"
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: e}\nspec:\n"
        "  hosts: [e.example.com]\n"
    )
    assert result.errors == []
    # Istio: a Sidecar's written policy replaces the mesh's, and mode's zero value is REGISTRY_ONLY
    assert result.config.sidecars == (m.Sidecar(metadata=m.Metadata(name="s"), outbound_traffic_policy="REGISTRY_ONLY"),)
    # YAML without a resolution is NONE, Istio's zero value; entries built in code default to STATIC
    assert result.config.service_entries == (
        m.ServiceEntry(metadata=m.Metadata(name="e"), hosts=("e.example.com",), resolution="NONE"),)


def test_gateway(data):
    result = load_paths([str(data / "gateway.yaml")])
    assert result.errors == []
    (gw,) = result.config.gateways
    assert (gw.metadata.name, gw.metadata.namespace, gw.selector) == ("edge", "istio-system", {"istio": "ingressgateway"})
    plain, mutual, credential, pair, auto = gw.servers
    assert plain == m.GatewayServer(
        port=m.ServicePort(80, "HTTP", "http"), hosts=("bookinfo/*.bookinfo.com", "./admin.example.com"),
        name="plain", tls=m.ServerTLSSettings(https_redirect=True))
    assert mutual.port == m.ServicePort(443, "HTTPS", "https")  # the protocol is read case-insensitively
    assert (mutual.bind, mutual.default_endpoint) == ("127.0.0.1", "127.0.0.1:8443")
    assert mutual.tls == m.ServerTLSSettings(
        mode="MUTUAL", server_certificate="/etc/certs/server.pem", private_key="/etc/certs/key.pem",
        ca_certificates="/etc/certs/ca.pem", ca_crl="/etc/certs/ca.crl", subject_alt_names=("client.example.com",),
        verify_certificate_spki=("NvqYIYSbgK2vCJpQhObf77vv+bQWtc5ek5RIOwPiC9A=",),
        verify_certificate_hash=("df:6f:f7:2f:e9:11:65:21",), min_protocol_version="TLSV1_2",
        max_protocol_version="TLSV1_3", cipher_suites=("ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-GCM-SHA256"))
    assert credential.tls == m.ServerTLSSettings(mode="SIMPLE", credential_name="bookinfo-secret")
    assert pair.tls.credential_names == ("rsa-cert", "ecdsa-cert")
    assert auto.tls == m.ServerTLSSettings(mode="AUTO_PASSTHROUGH")
