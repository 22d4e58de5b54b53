"""corsPolicy end to end with curl as the browser: preflights answered by the proxy, CORS headers
on actual responses, unmatched origins and unmatchedPreflights, over HTTP/1.1 and h2c."""

from __future__ import annotations

import pytest

from proxy_harness import curl, free_port, http_mesh, to_subset

pytestmark = pytest.mark.timeout(60)
POLICY = {
    "allowOrigins": [{"exact": "https://app.example.com"}, {"regex": "https://[a-z]+[.]example[.]org"}],
    "allowMethods": ["GET", "POST"],
    "allowHeaders": ["X-Token", "Content-Type"],
    "exposeHeaders": ["X-Trace"],
    "maxAge": "1h",
    "allowCredentials": True,
}
PREFLIGHT = ("-X", "OPTIONS", "-H", "Access-Control-Request-Method: POST")


@pytest.fixture
def cors_proxy(upstreams, proxies):
    def start(policy: dict):
        up = upstreams("v1")
        port = free_port()
        proxy = proxies(http_mesh(port, {"v1": up}, [{"corsPolicy": policy, "route": [to_subset("v1")]}]))
        return up, port, proxy
    return start


def test_preflight_from_an_allowed_origin_is_answered_by_the_proxy(cors_proxy, via):
    up, port, proxy = cors_proxy(POLICY)
    for origin in ("https://app.example.com", "https://shop.example.org"):
        result = curl(port, "/api", *via, *PREFLIGHT, "-H", f"Origin: {origin}")
        assert result.status == 200
        assert result.header("access-control-allow-origin") == origin
        assert result.header("access-control-allow-methods") == "GET,POST"
        assert result.header("access-control-allow-headers") == "X-Token,Content-Type"
        assert result.header("access-control-max-age") == "3600"
        assert result.header("access-control-allow-credentials") == "true"
    assert up.count() == 0


def test_actual_request_gets_cors_headers_on_the_response(cors_proxy, via):
    up, port, proxy = cors_proxy(POLICY)
    result = curl(port, "/api", *via, "-H", "Origin: https://app.example.com")
    assert result.status == 200 and result.body == b"v1 GET /api\n"
    assert result.header("access-control-allow-origin") == "https://app.example.com"
    assert result.header("access-control-allow-credentials") == "true"
    assert result.header("access-control-expose-headers") == "X-Trace"
    assert result.header("access-control-allow-methods") is None  # preflight only
    assert up.wait_requests(1)[0].header("origin") == "https://app.example.com"  # forwarded as is


@pytest.mark.parametrize("headers", [("-H", "Origin: https://evil.example.net"), ()])
def test_other_origins_and_non_cors_requests_get_no_cors_headers(cors_proxy, via, headers):
    up, port, proxy = cors_proxy(POLICY)
    result = curl(port, "/api", *via, *headers)
    assert result.status == 200 and result.header("access-control-allow-origin") is None
    assert up.count() == 1


@pytest.mark.parametrize("unmatched, forwarded", [("FORWARD", True), ("IGNORE", False)])
def test_unmatched_preflights(cors_proxy, via, unmatched, forwarded):
    up, port, proxy = cors_proxy({**POLICY, "unmatchedPreflights": unmatched})
    result = curl(port, "/api", *via, *PREFLIGHT, "-H", "Origin: https://evil.example.net")
    assert result.status == 200 and result.header("access-control-allow-origin") is None
    assert (up.count() == 1) is forwarded
    if not forwarded:
        assert result.body == b""


def test_deprecated_allow_origin_is_an_exact_match(cors_proxy, via):
    up, port, proxy = cors_proxy({"allowOrigin": ["https://old.example.com"]})
    ok = curl(port, "/", *via, "-H", "Origin: https://old.example.com")
    assert ok.header("access-control-allow-origin") == "https://old.example.com"
    assert curl(port, "/", *via, "-H", "Origin: https://old.example.com.evil").header("access-control-allow-origin") is None
