"""Host naming: short names, wildcards, virtual-host domains and authority lookup."""

from __future__ import annotations

import pytest

from pymesh.routing.hosts import domains_for, fqdn, host_matches, hosts_intersect, parse_host_port, split_authority
from routing_helpers import Req, compile_, dest, http, se, vs


@pytest.mark.parametrize(
    "host,ns,want",
    [
        ("reviews", "default", "reviews.default.svc.cluster.local"),
        ("Reviews", "prod", "reviews.prod.svc.cluster.local"),
        ("reviews.prod", "default", "reviews.prod"),  # has a dot: as written
        ("api.example.com", "default", "api.example.com"),
        ("*", "default", "*"),
        ("*.example.com", "default", "*.example.com"),
    ],
)
def test_fqdn(host, ns, want):
    assert fqdn(host, ns) == want


@pytest.mark.parametrize(
    "pattern,host,want",
    [
        ("*", "a.b", True),
        ("*.example.com", "api.example.com", True),
        ("*.example.com", "a.b.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "*.sub.example.com", True),
        ("*.sub.example.com", "*.example.com", False),
        ("api.example.com", "api.example.com", True),
        ("api.example.com", "*.example.com", False),
    ],
)
def test_host_matches(pattern, host, want):
    assert host_matches(pattern, host) is want


def test_hosts_intersect_is_symmetric():
    assert hosts_intersect("api.example.com", "*.example.com")
    assert hosts_intersect("*.example.com", "api.example.com")
    assert not hosts_intersect("api.example.org", "*.example.com")


def test_domains_for_cluster_local_names():
    assert domains_for("reviews.default.svc.cluster.local", 9080, "default") == (
        "reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local:9080",
        "reviews.default.svc", "reviews.default.svc:9080",
        "reviews.default", "reviews.default:9080",
        "reviews", "reviews:9080",
    )
    other_ns = domains_for("reviews.default.svc.cluster.local", 9080, "prod")
    assert "reviews" not in other_ns and "reviews.default" in other_ns
    assert domains_for("api.example.com", 443, "default") == ("api.example.com", "api.example.com:443")
    assert domains_for("*.example.com", 443, "default") == ("*.example.com",)


@pytest.mark.parametrize(
    "authority,want",
    [
        ("reviews", ("reviews", None)),
        ("reviews:9080", ("reviews", 9080)),
        ("[::1]:80", ("[::1]", 80)),
        ("[::1]", ("[::1]", None)),
        ("::1", ("::1", None)),
        ("host:abc", ("host:abc", None)),
        ("host:", ("host:", None)),
        ("host:²", ("host:²", None)),
        ("", ("", None)),
    ],
)
def test_split_authority(authority, want):
    assert split_authority(authority) == want


def test_parse_host_port():
    assert parse_host_port("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_host_port("[::1]:8080") == ("::1", 8080)
    assert parse_host_port("unix:///var/run/app.sock") == ("unix:///var/run/app.sock", 0)
    with pytest.raises(ValueError):
        parse_host_port("127.0.0.1")


SERVICES = [
    se("reviews.default.svc.cluster.local"),
    se("ratings.prod.svc.cluster.local", ns="prod"),
    se("api.example.com"),
    se("www.example.org"),
]
VIRTUAL = [
    vs("wild", "*.example.org", http(dest("www.example.org"), name="wild-org")),
    vs("deep", "*.eu.example.org", http(dest("www.example.org"), name="wild-eu")),
]


@pytest.mark.parametrize(
    "authority,want",
    [
        ("reviews", "reviews.default.svc.cluster.local:9080"),
        ("reviews:9080", "reviews.default.svc.cluster.local:9080"),
        ("REVIEWS.Default.svc.cluster.local:9080", "reviews.default.svc.cluster.local:9080"),
        ("reviews.default", "reviews.default.svc.cluster.local:9080"),
        ("reviews.default.svc", "reviews.default.svc.cluster.local:9080"),
        ("ratings.prod", "ratings.prod.svc.cluster.local:9080"),
        ("ratings", None),  # the bare name only works in the service's own namespace
        ("api.example.com", "api.example.com:9080"),
        ("Api.Example.Com:9080", "api.example.com:9080"),
        ("api.example.com:9999", None),  # another port
        ("shop.example.org", "*.example.org:9080"),
        ("a.b.example.org:9080", "*.example.org:9080"),
        ("x.eu.example.org", "*.eu.example.org:9080"),  # longest wildcard wins
        ("example.org", None),
        ("x.example.org:9999", None),
        ("", None),
    ],
)
def test_authority_lookup(authority, want):
    table = compile_(SERVICES, VIRTUAL).captured_outbound[9080].route_table
    vh = table.virtual_host(authority)
    assert (vh.name if vh else None) == want
    assert (table.match(Req(authority=authority)) is not None) is (want is not None)


def test_star_host_catches_everything_else():
    table = compile_(SERVICES, [vs("all", "*", http(dest("api.example.com"), name="any"))]).captured_outbound[9080].route_table
    assert table.match(Req(authority="unknown.host:1234"))[0].name == "any"
    assert table.match(Req(authority="reviews"))[0].name == "any"  # "*" covers every service
