"""LocalRateLimit end to end: the bucket's size in requests, 429 with Envoy's headers and flag RL,
keyed buckets, and rules that name a route. The refill itself is unit-tested with an injected
clock (tests/policy/test_ratelimit.py): a minute-long interval keeps this test timing-free."""

from __future__ import annotations

import pytest

from proxy_harness import Client, curl, free_port, http_mesh, to_subset

pytestmark = pytest.mark.timeout(60)


def limit(*rules: dict) -> dict:
    return {"apiVersion": "pymesh.dev/v1alpha1", "kind": "LocalRateLimit",
            "metadata": {"name": "limit", "namespace": "default"}, "spec": {"rules": list(rules)}}


BUCKET = {"maxTokens": 3, "tokensPerFill": 3, "fillInterval": "60s"}


def test_requests_past_the_bucket_get_429_rl(upstreams, proxies, via):
    up = upstreams("v1")
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}, [{"route": [to_subset("v1")]}]) + [limit({"tokenBucket": BUCKET})])
    results = [curl(port, f"/{i}", *via) for i in range(5)]
    assert [r.status for r in results] == [200, 200, 200, 429, 429]
    refused = results[3]
    assert refused.body == b"local_rate_limited"
    assert (refused.header("x-envoy-ratelimited"), refused.header("x-local-rate-limit")) == ("true", "true")
    assert proxy.wait_log(lambda e: e["path"] == "/3")["response_flags"] == "RL"
    assert up.count() == 3
    _, _, stats = proxy.admin("/stats")
    assert b".local_rate_limit.rate_limited: 2" in stats and b".local_rate_limit.ok: 3" in stats


def test_a_keyed_rule_has_a_bucket_per_header_value(upstreams, proxies):
    up = upstreams("v1")
    port = free_port()
    rule = {"tokenBucket": {**BUCKET, "maxTokens": 1}, "key": {"header": "x-user"}}
    proxies(http_mesh(port, {"v1": up}, [{"route": [to_subset("v1")]}]) + [limit(rule)])
    with Client(port) as client:
        statuses = [client.request(path="/", headers={"x-user": user}).status for user in ("a", "b", "a", "b", "c")]
    assert statuses == [200, 200, 429, 429, 200]


def test_a_rule_naming_a_route_limits_only_that_route(upstreams, proxies):
    up = upstreams("v1")
    port = free_port()
    http = [{"name": "limited", "match": [{"uri": {"prefix": "/limited"}}], "route": [to_subset("v1")]},
            {"name": "free", "route": [to_subset("v1")]}]
    proxies(http_mesh(port, {"v1": up}, http) + [limit({"route": "limited", "tokenBucket": {**BUCKET, "maxTokens": 1}})])
    with Client(port) as client:
        assert [client.request(path=p).status for p in ("/limited", "/limited", "/free", "/free")] == [200, 429, 200, 200]
