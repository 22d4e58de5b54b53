"""Traffic mirroring (VirtualService `mirror`, `mirrors[]`, `mirrorPercentage`) end to end: real
upstreams, curl and raw clients, over HTTP/1.1 and h2c. The mirror gets an exact copy with the
authority suffixed "-shadow"; a mirror that hangs, resets, fails or refuses connections leaves
the primary's answer as it was; a stalled mirror costs the proxy no memory beyond its hold limit;
shadows show in the mirror cluster's stats and the mirror.* stats, never in the access log."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from proxy_harness import (HOST, Client, Reply, curl, dump_yaml, endpoint, free_port, http_mesh, pattern_sha256,
                           pymesh_command, service_entry, sidecar, to_subset, wait_until)
from h2_upstream import H2Upstream
from test_large_bodies import RssWatch, upload_http1, upload_http2

pytestmark = pytest.mark.timeout(120)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "mirroring"
MIRROR = {"host": HOST, "subset": "v2"}


def mirrored(port: int, primary, shadow, **fields) -> list[dict]:
    """svc.local: every request to subset v1 (`primary`), mirrored to subset v2 (`shadow`: a
    server or a bare port) unless `fields` of the route say otherwise (None: leave it out)."""
    route = {"route": [to_subset("v1")], "mirror": MIRROR, **fields}
    return http_mesh(port, {"v1": primary, "v2": shadow}, [{k: v for k, v in route.items() if v is not None}])


def mirror_stats(proxy) -> dict[str, int]:
    return {name: proxy.stat(f"mirror.{name}") for name in
            ("shadows_started", "shadows_active", "shadows_dropped_no_upstream", "shadows_dropped_overflow",
             "shadows_dropped_slow")}


def cluster_stat(proxy, port: int, subset: str, name: str) -> int:
    return proxy.stats().get(f"cluster.outbound|{port}|{subset}|{HOST}.{name}", 0)


def settled(proxy) -> dict[str, int]:
    """The mirror.* stats once no shadow is in flight."""
    return wait_until(lambda: (s := mirror_stats(proxy))["shadows_active"] == 0 and s, what="shadows to finish")


def test_the_mirror_receives_an_exact_copy_with_a_shadow_authority(upstreams, proxies, via):
    primary, mirror = upstreams("v1"), upstreams("v2")
    port = free_port()
    proxy = proxies(mirrored(port, primary, mirror))
    body = b"payload " * 1000
    result = curl(port, "/copy?q=1", *via, "-X", "PUT", "--data-binary", body.decode(), "-H", "x-custom: yes",
                  "-H", "content-type: application/octet-stream", host=f"{HOST}:{port}")
    assert (result.status, result.body, result.header("x-upstream")) == (200, b"v1 PUT /copy?q=1\n", "v1")
    original, copy = primary.wait_requests(1)[0], mirror.wait_requests(1)[0]
    assert (copy.method, copy.target, copy.body, copy.body_len) == ("PUT", "/copy?q=1", body, len(body))
    assert original.header("host") == f"{HOST}:{port}" and copy.header("host") == f"{HOST}-shadow:{port}"
    without_host = lambda received: [(n, v) for n, v in received.headers if n != "host"]  # noqa: E731
    assert without_host(copy) == without_host(original)
    assert copy.header("x-custom") == "yes" and copy.header("x-request-id") == original.header("x-request-id")
    assert settled(proxy)["shadows_started"] == 1
    assert cluster_stat(proxy, port, "v2", "upstream_rq_2xx") == 1  # the mirror's own cluster stats
    entries = proxy.wait_log(lambda e: e["path"] == "/copy?q=1") and proxy.log_entries()
    assert [e["upstream_cluster"] for e in entries] == [f"outbound|{port}|v1|{HOST}"]  # the primary only


def test_an_http2_mirror_cluster_gets_the_copy_on_its_own_stream(upstreams, proxies, via):
    primary, mirror = upstreams("v1"), H2Upstream()
    try:
        port = free_port()
        resources = mirrored(port, primary, mirror.port)
        resources[1]["spec"]["subsets"][1]["trafficPolicy"] = {"connectionPool": {"http": {"h2UpgradePolicy": "UPGRADE"}}}
        proxy = proxies(resources)
        result = curl(port, "/h2", *via, "--data-binary", "to both")
        assert (result.status, result.body) == (200, b"v1 POST /h2\n")
        copy = mirror.wait_requests(1)[0]
        assert (copy.headers[":method"], copy.path, copy.headers[":authority"]) == ("POST", "/h2", f"{HOST}-shadow")
        assert copy.recorder.body == b"to both"
        assert settled(proxy)["shadows_started"] == 1 and cluster_stat(proxy, port, "v2", "upstream_rq_2xx") == 1
    finally:
        mirror.stop()


def test_a_streamed_body_and_its_trailers_are_copied(upstreams, proxies):
    primary, mirror = upstreams("v1"), upstreams("v2")
    port = free_port()
    proxies(mirrored(port, primary, mirror))
    with Client(port) as client:
        client.send(b"POST /chunks HTTP/1.1\r\nHost: svc.local\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\r\n"
                    b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 11\r\n\r\n")
        assert client.read().status == 200
    copy = mirror.wait_requests(1)[0]
    assert (copy.body, copy.trailers) == (b"hello world", [("x-sum", "11")])
    assert copy.header("host") == "svc.local-shadow"


def test_half_the_requests_are_mirrored_at_50_percent_over_a_seeded_run(upstreams, proxies):
    primary, mirror = upstreams("v1"), upstreams("v2")
    port = free_port()
    proxy = proxies(mirrored(port, primary, mirror, mirror=None, mirrors=[
        {"destination": MIRROR, "percentage": {"value": 50}},
        {"destination": {"host": HOST, "subset": "v1"}, "percentage": {"value": 0}},  # never: Istio drops it
    ]), extra_args=["--random-seed", "7"])
    total = 400
    with Client(port) as client:
        assert all(client.request(path=f"/{i}").status == 200 for i in range(total))
    stats = settled(proxy)
    assert mirror.count() == stats["shadows_started"]
    assert abs(stats["shadows_started"] - total / 2) <= 40, stats  # 4 standard deviations
    assert primary.count() == total  # the 0% mirror to v1 sent nothing


def test_mirror_percent_zero_mirrors_nothing(upstreams, proxies):
    primary, mirror = upstreams("v1"), upstreams("v2")
    port = free_port()
    proxy = proxies(mirrored(port, primary, mirror, mirrorPercentage={"value": 0}))
    assert curl(port, "/none").status == 200
    assert mirror_stats(proxy)["shadows_started"] == 0 and mirror.count() == 0


# --- a misbehaving mirror changes nothing for the primary --------------------------------------


class Hang:
    """A mirror handler that holds every request until `release` is set (teardown sets it)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __call__(self, request) -> Reply:
        self.release.wait(30)
        return Reply(200)


@pytest.mark.parametrize("behaviour", ["hang", "reset", "503", "refused"])
def test_a_misbehaving_mirror_leaves_the_primary_answer_unchanged(upstreams, proxies, via, behaviour):
    primary = upstreams("v1")
    hang = Hang()
    handlers = {"hang": hang, "reset": lambda req: Reply(action="reset"), "503": lambda req: Reply(503, body=b"no")}
    mirror = upstreams("v2", handlers[behaviour]) if behaviour != "refused" else None
    port = free_port()
    proxy = proxies(mirrored(port, primary, mirror if mirror is not None else free_port()))
    try:
        result = curl(port, "/primary", *via, "--data-binary", "body")
        assert (result.status, result.body, result.header("x-upstream")) == (200, b"v1 POST /primary\n", "v1")
        entry = proxy.wait_log(lambda e: e["path"] == "/primary")
        assert (entry["response_code"], entry["response_flags"], entry["upstream_cluster"]) == (
            200, "-", f"outbound|{port}|v1|{HOST}")
        if behaviour == "hang":  # the primary answered while the mirror still holds its copy
            assert mirror.wait_requests(1)[0].body == b"body" and not hang.release.is_set()
            assert mirror_stats(proxy)["shadows_active"] == 1
    finally:
        hang.release.set()
    settled(proxy)
    if behaviour == "refused":
        assert wait_until(lambda: cluster_stat(proxy, port, "v2", "upstream_cx_connect_fail") == 1)
    elif behaviour == "503":
        assert cluster_stat(proxy, port, "v2", "upstream_rq_5xx") == 1
    if mirror is not None:
        assert mirror.count() == 1  # a shadow is never retried
    assert primary.count() == 1


def test_shadows_over_the_in_flight_limit_are_dropped_and_counted(upstreams, proxies):
    """The mirror cluster's circuit breaker (http2MaxRequests: requests in flight) bounds its
    shadows: one hangs, the next copies are dropped, the primaries all answer."""
    primary, hang = upstreams("v1"), Hang()
    mirror = upstreams("v2", hang)
    port = free_port()
    resources = mirrored(port, primary, mirror)
    resources[1]["spec"]["subsets"][1]["trafficPolicy"] = {"connectionPool": {"http": {"http2MaxRequests": 1}}}
    proxy = proxies(resources)
    try:
        with Client(port) as client:
            assert [client.request(path=f"/{i}").status for i in range(5)] == [200] * 5
        stats = mirror_stats(proxy)
        assert (stats["shadows_started"], stats["shadows_dropped_overflow"], stats["shadows_active"]) == (1, 4, 1)
        assert cluster_stat(proxy, port, "v2", "upstream_rq_pending_overflow") == 4  # Envoy's breaker stat
    finally:
        hang.release.set()
    assert settled(proxy)["shadows_started"] == 1


# --- a stalled mirror and a large upload ------------------------------------------------------------

SIZE = 64 << 20
RSS_GROWTH_LIMIT_KIB = 24 << 10  # far below the body: the shadow holds at most its limit


@pytest.mark.parametrize("client", ["http1", "h2c"])
def test_a_large_upload_completes_while_the_mirror_never_reads(upstreams, proxies, client):
    primary = upstreams("v1")
    stalled = upstreams.tcp("stall", "v2")
    port = free_port()
    proxy = proxies(mirrored(port, primary, stalled))
    before = proxy.rss_kib()
    with RssWatch(proxy) as rss:
        status = upload_http2(port, SIZE) if client == "h2c" else upload_http1(port, "length", SIZE)
    assert status == 200
    received = primary.wait_requests(1)[0]
    assert (received.body_len, received.body_sha256) == (SIZE, pattern_sha256(SIZE))
    assert rss.peak - before < RSS_GROWTH_LIMIT_KIB, f"proxy RSS grew by {rss.peak - before} KiB"
    stats = settled(proxy)
    assert (stats["shadows_started"], stats["shadows_dropped_slow"]) == (1, 1)


# --- Istio's mirroring task --------------------------------------------------------------------------


def test_istios_mirroring_task_behaves_as_istio_documents(upstreams, proxies, via, tmp_path):
    """examples/mirroring: Istio's DestinationRule and mirror VirtualService, unchanged. Every
    request is answered by v1; v2 gets a copy with Host httpbin-shadow; `pymesh analyze` accepts
    the files as they are."""
    assert subprocess.run([*pymesh_command(), "analyze", str(EXAMPLES)], capture_output=True).returncode == 0
    v1, v2 = upstreams("v1"), upstreams("v2")
    port = free_port()
    host = "httpbin.default.svc.cluster.local"
    mesh = [service_entry(port, [endpoint(v1, {"version": "v1"}), endpoint(v2, {"version": "v2"})], host),
            sidecar((port, "HTTP"))]
    samples = [path.read_text() for path in sorted(EXAMPLES.glob("*.yaml"))]
    proxy = proxies("\n---\n".join([*samples, dump_yaml(mesh)]))
    for n in range(3):
        result = curl(port, f"/headers?n={n}", *via, host=f"httpbin:{port}")
        assert (result.status, result.header("x-upstream")) == (200, "v1")
    copies = v2.wait_requests(3)
    assert sorted(c.target for c in copies) == ["/headers?n=0", "/headers?n=1", "/headers?n=2"]
    assert {c.header("host") for c in copies} == {f"httpbin-shadow:{port}"}
    assert v1.count() == 3 and settled(proxy)["shadows_started"] == 3
